"""Random parameters, the weak and strong views and :class:`GPUAugment`
(part of :mod:`semi_usb.gpu_augment`)."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch

from .levels import (NO_COLOR_OP_NAMES, OP_NAMES, OP_RANGES, _AUTOCONTRAST, _BLEND, _COLOR, _CONTRAST,
    _EQUALIZE, _IDX, _POSTERIZE, _ROTATE, _SHARPNESS, _SHEARX, _SHEARY, _SOLARIZE, _TRANSLATEX, _TRANSLATEY,
    _apply_lut, _autocontrast_lut, _blend, _check_batch, _contrast_degenerate, _equalize_lut, _from_levels,
    _grayscale, _identity_lut, _posterize_lut, _smooth, _solarize_lut, _to_levels)
from .ops import (_cutout, _identity_matrix, _rotate_matrix, _shear_x_matrix, _shear_y_matrix,
    _translate_matrix, _warp_nearest)


# ---------------------------------------------------------------------------
# Random parameters
# ---------------------------------------------------------------------------


class WeakParams(NamedTuple):
    """Per-sample parameters of the weak view (all ``(N,)``)."""

    top: torch.Tensor  # int64 row offset in the padded image, in [0, 2*padding]
    left: torch.Tensor  # int64 column offset in the padded image, in [0, 2*padding]
    flip: torch.Tensor  # bool, horizontal flip (after the crop)


class RandAugmentParams(NamedTuple):
    """Per-sample parameters of USB's ``RandAugment.__call__``."""

    op_index: torch.Tensor  # (N, n_ops) int64 indices into OP_NAMES
    magnitude: torch.Tensor  # (N, n_ops) float32, min + (max - min) * U[0, 1)
    cutout_frac: torch.Tensor  # (N,) float32, U[0, 1) * 0.5
    cutout_x: torch.Tensor  # (N,) float32, numpy uniform(low=W, high=1) i.e. in (1, W]
    cutout_y: torch.Tensor  # (N,) float32, numpy uniform(low=H, high=1) i.e. in (1, H]


def _gen_device(generator: Optional[torch.Generator], device) -> torch.device:
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def sample_weak_params(
    n: int,
    padding: int = 4,
    device=None,
    generator: Optional[torch.Generator] = None,
    flip_p: float = 0.5,
) -> WeakParams:
    """Per-sample offsets/flip of ``RandomCrop(s, padding, 'reflect')`` +
    ``RandomHorizontalFlip(flip_p)``: offsets uniform on ``{0, ..., 2*padding}``
    (torchvision ``RandomCrop.get_params``), flip with probability ``flip_p``."""
    gdev = _gen_device(generator, device)
    off = torch.randint(0, 2 * padding + 1, (n, 2), device=gdev, generator=generator)
    flip = torch.rand(n, device=gdev, generator=generator) < flip_p
    dev = torch.device(device) if device is not None else gdev
    off, flip = off.to(dev, non_blocking=True), flip.to(dev, non_blocking=True)
    return WeakParams(off[:, 0], off[:, 1], flip)


def sample_rand_augment_params(
    n: int,
    n_ops: int = 3,
    height: int = 32,
    width: int = 32,
    device=None,
    generator: Optional[torch.Generator] = None,
    exclude_color_aug: bool = False,
) -> RandAugmentParams:
    """Per-sample draws of USB's ``RandAugment(n_ops, m).__call__``.

    USB: ``ops = random.choices(augment_list, k=n)`` (uniform, with
    replacement; ``choices`` picks ``floor(random() * len)``), then per op
    ``val = min + (max - min) * random()``; then ``Cutout(img, random() * 0.5)``
    whose ``CutoutAbs`` draws ``np.random.uniform(w)``, ``np.random.uniform(h)``
    = uniform with low=w/h and high=1 (numpy computes ``low + (high - low) * U``).
    ``m`` is unused by USB.
    """
    gdev = _gen_device(generator, device)
    dev = torch.device(device) if device is not None else gdev
    names = NO_COLOR_OP_NAMES if exclude_color_aug else OP_NAMES
    table = torch.tensor([_IDX[nm] for nm in names], dtype=torch.int64)
    lo = torch.tensor([OP_RANGES[nm][0] for nm in OP_NAMES], dtype=torch.float32)
    hi = torch.tensor([OP_RANGES[nm][1] for nm in OP_NAMES], dtype=torch.float32)
    u = torch.rand(n, 2 * n_ops + 3, device=gdev, generator=generator).to(dev, non_blocking=True)
    table, lo, hi = (t.to(dev, non_blocking=True) for t in (table, lo, hi))
    choice = torch.floor(u[:, :n_ops] * len(names)).to(torch.int64).clamp_(max=len(names) - 1)
    op_index = table[choice]
    magnitude = lo[op_index] + (hi[op_index] - lo[op_index]) * u[:, n_ops : 2 * n_ops]
    cutout_frac = u[:, 2 * n_ops] * 0.5
    cutout_x = width + (1.0 - width) * u[:, 2 * n_ops + 1]
    cutout_y = height + (1.0 - height) * u[:, 2 * n_ops + 2]
    return RandAugmentParams(op_index, magnitude, cutout_frac, cutout_x, cutout_y)


# ---------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Index of 'reflect' padding (edge not repeated) for -size < i < 2 size - 1."""
    i = torch.where(i < 0, -i, i)
    return torch.where(i >= size, 2 * (size - 1) - i, i)


def _crop_flip(x: torch.Tensor, params: WeakParams, padding: int) -> torch.Tensor:
    N, C, H, W = x.shape
    dev = x.device
    ys = torch.arange(H, device=dev).view(1, H, 1)
    xs = torch.arange(W, device=dev).view(1, 1, W)
    top = params.top.to(dev).view(N, 1, 1)
    left = params.left.to(dev).view(N, 1, 1)
    flip = params.flip.to(dev).view(N, 1, 1)
    src_x = torch.where(flip, W - 1 - xs, xs)  # flip is applied after the crop
    r = _reflect(ys + top - padding, H)
    c = _reflect(src_x + left - padding, W)
    idx = (r * W + c).reshape(N, 1, H * W).expand(N, C, H * W)
    return torch.gather(x.reshape(N, C, H * W), 2, idx).reshape(N, C, H, W)


def weak_view(
    x: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    padding: int = 4,
    params: Optional[WeakParams] = None,
) -> torch.Tensor:
    """USB's weak view without ToTensor/Normalize, batched.

    Mirrors ``RandomCrop(s, padding=padding, padding_mode='reflect')`` followed
    by ``RandomHorizontalFlip()`` (torchvision), with independent offsets and
    flip per sample; output size = input size (USB resizes to the crop size
    first).  Works for any dtype (pure gather), returns ``x.dtype``.
    """
    _check_batch(x)
    N, C, H, W = x.shape
    if padding < 0 or padding >= min(H, W):
        raise ValueError(f"reflect padding must be in [0, {min(H, W) - 1}], got {padding}")
    if params is None:
        params = sample_weak_params(N, padding, device=x.device, generator=generator)
    return _crop_flip(x, params, padding)


def _geometric_matrix(op: torch.Tensor, mag: torch.Tensor, H: int, W: int) -> torch.Tensor:
    N = op.shape[0]
    mag = mag.to(torch.float64)
    z = torch.zeros_like(mag)
    m = _identity_matrix(N, op.device)
    for k, mk in (
        (_ROTATE, _rotate_matrix(mag, H, W)),
        (_SHEARX, _shear_x_matrix(mag)),
        (_SHEARY, _shear_y_matrix(mag)),
        (_TRANSLATEX, _translate_matrix(mag * W, z)),
        (_TRANSLATEY, _translate_matrix(z, mag * H)),
    ):
        m = torch.where((op == k).view(N, 1), mk, m)
    return m


def _isin(op: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    out = torch.zeros_like(op, dtype=torch.bool)
    for k in ks:
        out = out | (op == k)
    return out


def _rand_augment_slot(lv: torch.Tensor, op: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """Apply op ``op[i]`` with magnitude ``mag[i]`` to sample ``i``, whole batch at once.

    The ops form three families that are each computed for the whole batch
    with per-sample parameters: ImageOps look-up tables (AutoContrast,
    Equalize, Posterize, Solarize), ImageEnhance blends (Brightness, Color,
    Contrast, Sharpness) and nearest-neighbour affine warps (Rotate, ShearX/Y,
    TranslateX/Y).  A sample outside a family gets that family's exact
    identity (identity LUT, blend factor 1, identity matrix), so chaining the
    three families applies exactly the one chosen op (or none, for Identity)
    to every sample, without any per-sample selection or data-dependent shape.
    """
    N, C, H, W = lv.shape
    col = lambda mask: mask.view(N, 1, 1)  # noqa: E731

    # ImageOps LUT family.
    lut = _identity_lut(lv)
    lut = torch.where(col(op == _AUTOCONTRAST), _autocontrast_lut(lv), lut)
    lut = torch.where(col(op == _EQUALIZE), _equalize_lut(lv), lut)
    lut = torch.where(col(op == _POSTERIZE), _posterize_lut(lv, mag), lut)
    lut = torch.where(col(op == _SOLARIZE), _solarize_lut(lv, mag), lut)
    lv = _apply_lut(lv, lut)

    # ImageEnhance family: blend(degenerate, img, alpha); alpha = 1 is the identity.
    alpha = torch.where(_isin(op, _BLEND), mag, torch.ones_like(mag))
    gray = _grayscale(lv)
    deg1 = torch.where(col(op == _CONTRAST).unsqueeze(1), _contrast_degenerate(lv), 0.0)
    deg1 = torch.where(col(op == _COLOR).unsqueeze(1), gray, deg1)  # (N, 1, H, W)
    deg = torch.where(col(op == _SHARPNESS).unsqueeze(1), _smooth(lv), deg1)
    lv = _blend(deg, lv, alpha)

    # Affine family (identity matrix for the other samples).
    return _warp_nearest(lv, _geometric_matrix(op, mag, H, W))


def apply_rand_augment(x: torch.Tensor, params: RandAugmentParams, cutout: bool = True) -> torch.Tensor:
    """Apply given per-sample RandAugment parameters (see :func:`rand_augment`)."""
    lv = _to_levels(x)
    n_ops = params.op_index.shape[1]
    op_index = params.op_index.to(lv.device)
    magnitude = params.magnitude.to(lv.device)
    for k in range(n_ops):  # loop over op slots (n_ops = 3), not over samples
        lv = _rand_augment_slot(lv, op_index[:, k], magnitude[:, k])
    if cutout:
        lv = _cutout(lv, params.cutout_frac, params.cutout_x, params.cutout_y)
    return _from_levels(lv, x.dtype)


def rand_augment(
    x: torch.Tensor,
    n_ops: int = 3,
    generator: Optional[torch.Generator] = None,
    params: Optional[RandAugmentParams] = None,
    exclude_color_aug: bool = False,
    cutout: bool = True,
) -> torch.Tensor:
    """Batched ``semilearn.datasets.augmentation.RandAugment(n_ops, m)``.

    Per sample: ``n_ops`` ops drawn uniformly with replacement from USB's
    14-op list (9 with ``exclude_color_aug``), each with magnitude uniform in
    its USB range, applied in order; then USB's Cutout with fraction
    ``U[0, 0.5)`` and fill (125, 123, 114).  Returns ``x.dtype``.
    """
    _check_batch(x)
    N, _, H, W = x.shape
    if params is None:
        params = sample_rand_augment_params(
            N, n_ops, H, W, device=x.device, generator=generator, exclude_color_aug=exclude_color_aug
        )
    return apply_rand_augment(x, params, cutout=cutout)


def strong_view(
    x: torch.Tensor,
    n_ops: int = 3,
    generator: Optional[torch.Generator] = None,
    padding: int = 4,
    exclude_color_aug: bool = False,
    weak_params: Optional[WeakParams] = None,
    ra_params: Optional[RandAugmentParams] = None,
) -> torch.Tensor:
    """USB's strong view without ToTensor/Normalize, batched.

    ``RandomCrop(s, padding, 'reflect')`` -> ``RandomHorizontalFlip()`` ->
    ``RandAugment(n_ops, 5)`` (see :func:`weak_view` and :func:`rand_augment`).
    Returns ``x.dtype``.
    """
    y = weak_view(x, generator=generator, padding=padding, params=weak_params)
    return rand_augment(y, n_ops, generator=generator, params=ra_params, exclude_color_aug=exclude_color_aug)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``ToTensor()`` + ``Normalize(mean, std)``: uint8 levels -> ``(x / 255 - mean) / std``
    in float32 (floating inputs are taken to be in [0, 1] already)."""
    xf = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
    c = xf.shape[-3]
    m = torch.as_tensor(mean, dtype=torch.float32).to(xf.device, non_blocking=True).view(c, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).to(xf.device, non_blocking=True).view(c, 1, 1)
    return (xf - m) / s


class GPUAugment:
    """USB's CIFAR-style weak / strong / eval transforms for uint8 batches on any device.

    ``weak(x)``, ``strong(x)`` and ``eval(x)`` take ``(N, C, H, W)`` uint8 images
    (already at the crop size, as after USB's ``Resize``) and return normalised
    float32 tensors on the same device.  ``generator`` (optional) drives all
    randomness.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        padding: int = 4,
        n_ops: int = 3,
        exclude_color_aug: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.padding = int(padding)
        self.n_ops = int(n_ops)
        self.exclude_color_aug = bool(exclude_color_aug)
        self.generator = generator
        self._stats = {}

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """:func:`normalize` with the mean and std kept on each device they were used on."""
        key = (x.device.type, x.device.index)
        if key not in self._stats:
            c = len(self.mean)
            m = torch.tensor(self.mean, dtype=torch.float32).view(c, 1, 1).to(x.device, non_blocking=True)
            s = torch.tensor(self.std, dtype=torch.float32).view(c, 1, 1).to(x.device, non_blocking=True)
            self._stats[key] = (m, s)
        return normalize(x, *self._stats[key])

    def weak(self, x: torch.Tensor) -> torch.Tensor:
        return self._normalize(weak_view(x, generator=self.generator, padding=self.padding))

    def strong(self, x: torch.Tensor) -> torch.Tensor:
        return self._normalize(
            strong_view(
                x,
                n_ops=self.n_ops,
                generator=self.generator,
                padding=self.padding,
                exclude_color_aug=self.exclude_color_aug,
            )
        )

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x)
        return self._normalize(x)

    def __repr__(self) -> str:
        return (
            f"GPUAugment(mean={self.mean}, std={self.std}, padding={self.padding}, "
            f"n_ops={self.n_ops}, exclude_color_aug={self.exclude_color_aug})"
        )
