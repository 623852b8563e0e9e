"""Batched, on-device versions of USB's CIFAR-style weak/strong augmentations.

USB (``semilearn`` 0.3.2) builds, per unlabeled image, a weak view and a
strong view with PIL inside dataloader workers
(``semilearn/datasets/cv_datasets/cifar.py``)::

    weak   = Resize(s) -> RandomCrop(s, padding=int(s*(1-0.875)), padding_mode='reflect')
             -> RandomHorizontalFlip() -> ToTensor() -> Normalize(mean, std)
    strong = Resize(s) -> RandomCrop(...) -> RandomHorizontalFlip()
             -> RandAugment(3, 5) -> ToTensor() -> Normalize(mean, std)
    eval   = Resize(s) -> ToTensor() -> Normalize(mean, std)

This module re-implements those transforms for a whole batch ``(N, C, H, W)``
of images held on any torch device (CPU or CUDA).  Every sample gets its own
random parameters; the code has no Python loop over samples and no
host-device synchronisation (no ``.item()``, no data-dependent shapes): each
RandAugment slot computes every op *family* for the whole batch with
per-sample parameters and picks the result per sample with ``torch.where``.

The goal is the *same distribution* of augmentations as USB, not the same
pixels for the same seed.  Given the same parameters, though, every op
reproduces the PIL (Pillow 13) arithmetic used by
``semilearn.datasets.augmentation.randaugment``:

* images are kept as integer grey levels 0..255 between ops (PIL works on
  uint8 images, so every op re-quantises);
* ``ImageEnhance`` blends use PIL's float32 ``blend`` with truncation,
  ``convert('L')`` uses PIL's fixed-point ITU-R 601-2 luma, ``SMOOTH`` uses
  PIL's float32 3x3 filter with rounding and kept borders;
* affine ops (rotate / shear / translate) use PIL's nearest-neighbour affine
  engines (16.16 fixed point, or the float "scale" path for pure
  translations), sampling at pixel centres and filling with black;
* AutoContrast / Equalize / Posterize / Solarize are per-sample, per-channel
  look-up tables built exactly like ``PIL.ImageOps``;
* Cutout reproduces USB's ``Cutout``/``CutoutAbs`` including its quirks
  (see :func:`cutout`).

Value conventions: ``uint8`` inputs hold levels 0..255; floating inputs are
taken to be in ``[0, 1]`` (``ToTensor`` convention) and are quantised to
levels ``round(255 x)`` before the PIL-equivalent ops.  The augmentation
functions return the input dtype; :func:`normalize` / :class:`GPUAugment`
return normalised ``float32``.

Randomness: every sampling function takes an optional ``torch.Generator``.
Random numbers are drawn on the generator's device and moved to the images'
device; pass a generator living on the images' device (e.g.
``torch.Generator(device='cuda')``) to avoid the copy.
"""

from __future__ import annotations

import inspect
import math
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "OP_NAMES",
    "OP_RANGES",
    "NO_COLOR_OP_NAMES",
    "CUTOUT_FILL",
    "WeakParams",
    "RandAugmentParams",
    "sample_weak_params",
    "sample_rand_augment_params",
    "weak_view",
    "strong_view",
    "rand_augment",
    "apply_rand_augment",
    "normalize",
    "GPUAugment",
    # single ops
    "auto_contrast",
    "brightness",
    "color",
    "contrast",
    "equalize",
    "identity",
    "posterize",
    "rotate",
    "sharpness",
    "shear_x",
    "shear_y",
    "solarize",
    "translate_x",
    "translate_y",
    "invert",
    "cutout",
    "apply_op",
]

Number = Union[float, int]
Magnitude = Union[Number, torch.Tensor]

# ---------------------------------------------------------------------------
# USB's op table (semilearn.datasets.augmentation.randaugment.augment_list)
# ---------------------------------------------------------------------------

#: Op names, in the order of USB's ``augment_list()``; indices used in
#: :class:`RandAugmentParams` refer to this tuple.
OP_NAMES: Tuple[str, ...] = (
    "AutoContrast",
    "Brightness",
    "Color",
    "Contrast",
    "Equalize",
    "Identity",
    "Posterize",
    "Rotate",
    "Sharpness",
    "ShearX",
    "ShearY",
    "Solarize",
    "TranslateX",
    "TranslateY",
)

#: ``(min_val, max_val)`` of each op, as in USB's ``augment_list()``; the
#: magnitude is drawn as ``min + (max - min) * U[0, 1)``.
OP_RANGES = {
    "AutoContrast": (0.0, 1.0),
    "Brightness": (0.05, 0.95),
    "Color": (0.05, 0.95),
    "Contrast": (0.05, 0.95),
    "Equalize": (0.0, 1.0),
    "Identity": (0.0, 1.0),
    "Posterize": (4.0, 8.0),
    "Rotate": (-30.0, 30.0),
    "Sharpness": (0.05, 0.95),
    "ShearX": (-0.3, 0.3),
    "ShearY": (-0.3, 0.3),
    "Solarize": (0.0, 256.0),
    "TranslateX": (-0.3, 0.3),
    "TranslateY": (-0.3, 0.3),
}

#: Ops of USB's ``augment_list_no_color()`` (``RandAugment(exclude_color_aug=True)``).
NO_COLOR_OP_NAMES: Tuple[str, ...] = (
    "Brightness",
    "Equalize",
    "Identity",
    "Rotate",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)

#: Fill colour of USB's ``CutoutAbs``.
CUTOUT_FILL: Tuple[int, int, int] = (125, 123, 114)

_IDX = {name: i for i, name in enumerate(OP_NAMES)}
_AUTOCONTRAST = _IDX["AutoContrast"]
_BRIGHTNESS = _IDX["Brightness"]
_COLOR = _IDX["Color"]
_CONTRAST = _IDX["Contrast"]
_EQUALIZE = _IDX["Equalize"]
_POSTERIZE = _IDX["Posterize"]
_ROTATE = _IDX["Rotate"]
_SHARPNESS = _IDX["Sharpness"]
_SHEARX = _IDX["ShearX"]
_SHEARY = _IDX["ShearY"]
_SOLARIZE = _IDX["Solarize"]
_TRANSLATEX = _IDX["TranslateX"]
_TRANSLATEY = _IDX["TranslateY"]

_BLEND = (_BRIGHTNESS, _COLOR, _CONTRAST, _SHARPNESS)


# ---------------------------------------------------------------------------
# dtype helpers
# ---------------------------------------------------------------------------


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}")


def _to_levels(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 levels; float in [0, 1] -> float32 levels round(255 x)."""
    _check_batch(x)
    if x.dtype == torch.uint8:
        return x.to(torch.float32)
    if x.is_floating_point():
        return torch.round(x.to(torch.float32) * 255.0).clamp_(0.0, 255.0)
    raise TypeError(f"expected a uint8 or floating tensor, got {x.dtype}")


def _from_levels(lv: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.uint8:
        return lv.to(torch.uint8)
    return (lv / 255.0).to(dtype)


def _per_sample(v: Magnitude, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A magnitude given as a number or an (N,) tensor, as an (N,) tensor."""
    if isinstance(v, torch.Tensor):
        v = v.to(device=device, dtype=dtype)
        if v.dim() == 0:
            v = v.expand(n)
        if v.shape != (n,):
            raise ValueError(f"per-sample magnitude must have shape ({n},), got {tuple(v.shape)}")
        return v
    return torch.full((n,), float(v), device=device, dtype=dtype)


def _as_levels_op(fn):
    """Wrap a levels -> levels function as a public dtype-preserving op."""

    def wrapper(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return _from_levels(fn(_to_levels(x), *args, **kwargs), x.dtype)

    wrapper.__name__ = fn.__name__.lstrip("_")
    wrapper.__qualname__ = wrapper.__name__
    wrapper.__doc__ = fn.__doc__
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    x_param = params[0].replace(name="x")
    wrapper.__signature__ = sig.replace(parameters=[x_param] + params[1:])
    return wrapper


# ---------------------------------------------------------------------------
# PIL building blocks (on float32 levels)
# ---------------------------------------------------------------------------


def _blend(degenerate: torch.Tensor, image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``PIL.Image.blend(degenerate, image, alpha)`` for uint8 images.

    PIL (Blend.c) computes ``(UINT8)(in1 + alpha * (in2 - in1))`` in float32
    with a float32 ``alpha`` (clipping to [0, 255] when extrapolating) and
    truncates.  Same operation order here, so results are bit-identical.
    """
    a = alpha.to(torch.float32).view(-1, 1, 1, 1)
    out = degenerate + a * (image - degenerate)
    return torch.trunc(out.clamp(0.0, 255.0))


def _grayscale(lv: torch.Tensor) -> torch.Tensor:
    """``img.convert('L')``: PIL's fixed-point ITU-R 601-2 luma, (N, 1, H, W).

    PIL documents L = R*299/1000 + G*587/1000 + B*114/1000; Convert.c
    implements it as ``(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`` which is
    what we compute (exact integers in float32/int32).
    """
    if lv.shape[1] == 1:
        return lv
    q = lv.to(torch.int32)
    g = (q[:, 0:1] * 19595 + q[:, 1:2] * 38470 + q[:, 2:3] * 7471 + 0x8000) >> 16
    return g.to(torch.float32)


def _contrast_degenerate(lv: torch.Tensor) -> torch.Tensor:
    """Per-sample ``int(mean(L) + 0.5)`` of ``ImageEnhance.Contrast``, (N, 1, 1, 1)."""
    g = _grayscale(lv).to(torch.int64)
    n = g.shape[-1] * g.shape[-2]
    s = g.sum(dim=(1, 2, 3), keepdim=True)
    # int(S / n + 0.5) == floor((2 S + n) / (2 n)) exactly.
    return torch.div(2 * s + n, 2 * n, rounding_mode="floor").to(torch.float32)


def _smooth(lv: torch.Tensor) -> torch.Tensor:
    """``img.filter(ImageFilter.SMOOTH)``: PIL's 3x3 filter, border pixels kept.

    SMOOTH = 1/13 * [[1, 1, 1], [1, 5, 1], [1, 1, 1]].  PIL
    (``ImagingFilter3x3``, Filter.c) accumulates ``0.5 + sum(k_i p_i)`` in
    float32 and truncates, i.e. rounds ``S / 13`` half up, where
    ``S = box3x3 + 4 * centre`` is an integer.  Since ``S / 13 + 0.5`` is
    never closer than 1/26 to an integer, far above float32 error, this equals
    the exact integer expression ``floor((S + 6.5) / 13)`` computed here
    (integers < 2**24 are exact in float32, in any summation order).
    """
    H, W = lv.shape[-2:]
    if H < 3 or W < 3:
        return lv.clone()
    rows = lv[:, :, :-2, :] + lv[:, :, 1:-1, :] + lv[:, :, 2:, :]  # (N, C, H-2, W)
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]  # (N, C, H-2, W-2)
    s = box + 4.0 * lv[:, :, 1:-1, 1:-1] + 6.5
    out = lv.clone()
    out[:, :, 1:-1, 1:-1] = torch.floor(s / 13.0)
    return out


def _apply_lut(lv: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample, per-channel LUT ``(N, C, 256)`` (``Image.point``)."""
    N, C, H, W = lv.shape
    idx = lv.to(torch.int64).reshape(N, C, H * W)
    return torch.gather(lut.to(lv.dtype), 2, idx).reshape(N, C, H, W)


def _identity_lut(lv: torch.Tensor) -> torch.Tensor:
    N, C = lv.shape[:2]
    return torch.arange(256, device=lv.device, dtype=torch.float32).expand(N, C, 256)


def _histogram(lv: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel 256-bin histogram ``(N, C, 256)`` int64."""
    N, C, H, W = lv.shape
    idx = lv.to(torch.int64).reshape(N, C, H * W)
    hist = torch.zeros(N, C, 256, dtype=torch.int64, device=lv.device)
    return hist.scatter_add_(2, idx, torch.ones((1, 1, 1), dtype=torch.int64, device=lv.device).expand_as(idx))


def _autocontrast_lut(lv: torch.Tensor) -> torch.Tensor:
    """LUT of ``PIL.ImageOps.autocontrast(img)`` (cutoff=0), per channel.

    lo/hi are the smallest/largest level present; if hi <= lo the channel is
    unchanged, else ``lut[i] = clip(int(i * scale + offset))`` with
    ``scale = 255 / (hi - lo)``, ``offset = -lo * scale`` (float64, as Python).
    """
    lo = lv.amin(dim=(2, 3)).to(torch.float64).unsqueeze(-1)
    hi = lv.amax(dim=(2, 3)).to(torch.float64).unsqueeze(-1)
    ok = hi > lo
    # tensor / tensor: ``255.0 / t`` would be computed as ``255 * (1 / t)`` by
    # torch (Tensor.__rtruediv__), which is not Python's correctly rounded division.
    scale = torch.full_like(hi, 255.0) / torch.where(ok, hi - lo, torch.ones_like(hi))
    offset = -lo * scale
    ix = torch.arange(256, device=lv.device, dtype=torch.float64)
    lut = torch.trunc(ix * scale + offset).clamp(0.0, 255.0)
    return torch.where(ok, lut, ix.expand_as(lut)).to(torch.float32)


def _equalize_lut(lv: torch.Tensor) -> torch.Tensor:
    """LUT of ``PIL.ImageOps.equalize(img)`` (Pillow 13), per channel.

    ``step = (sum(h) - h[last non-empty bin]) // 255``; identity if at most
    one level is present or step == 0; else
    ``lut[i] = (step // 2 + sum(h[:i])) // step`` (clipped to 255 by
    ``Image.point``).
    """
    h = _histogram(lv)
    total = lv.shape[-1] * lv.shape[-2]
    top = lv.amax(dim=(2, 3)).to(torch.int64).unsqueeze(-1)
    last = torch.gather(h, 2, top)
    nonempty = (h > 0).sum(dim=2, keepdim=True)
    step = torch.div(total - last, 255, rounding_mode="floor")
    ok = (nonempty > 1) & (step > 0)
    step_safe = torch.where(ok, step, torch.ones_like(step))
    cum_excl = torch.cumsum(h, dim=2) - h
    lut = torch.div(step_safe // 2 + cum_excl, step_safe, rounding_mode="floor").clamp(0, 255)
    ident = torch.arange(256, device=lv.device, dtype=torch.int64).expand_as(lut)
    return torch.where(ok, lut, ident).to(torch.float32)


def _posterize_lut(lv: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """LUT of USB ``Posterize``: ``bits = max(1, int(v))``, ``lut[i] = i & ~(2**(8-bits)-1)``."""
    bits = torch.trunc(v.to(torch.float64)).clamp(1, 8).to(torch.int64).view(-1, 1, 1)
    keep = 255 - ((1 << (8 - bits)) - 1)  # ~(2**(8-bits) - 1) & 0xff
    ix = torch.arange(256, device=lv.device, dtype=torch.int64)
    lut = ix & keep
    return lut.expand(lv.shape[0], lv.shape[1], 256).to(torch.float32)


def _solarize_lut(lv: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """LUT of ``PIL.ImageOps.solarize(img, v)``: ``i if i < v else 255 - i``."""
    thr = v.to(torch.float64).view(-1, 1, 1)
    ix = torch.arange(256, device=lv.device, dtype=torch.float64)
    lut = torch.where(ix < thr, ix, 255.0 - ix)
    return lut.expand(lv.shape[0], lv.shape[1], 256).to(torch.float32)


# ---------------------------------------------------------------------------
# PIL nearest-neighbour affine transform
# ---------------------------------------------------------------------------


def _identity_matrix(n: int, device) -> torch.Tensor:
    m = torch.zeros(n, 6, dtype=torch.float64, device=device)
    m[:, 0] = 1.0
    m[:, 4] = 1.0
    return m


def _rotate_matrix(deg: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """PIL ``Image.rotate(deg)`` inverse matrix (centre (W/2, H/2), no expand)."""
    angle = -(deg.to(torch.float64) * (math.pi / 180.0))
    c = torch.round(torch.cos(angle), decimals=15)
    s = torch.round(torch.sin(angle), decimals=15)
    ms = torch.round(-torch.sin(angle), decimals=15)
    cx, cy = W / 2.0, H / 2.0
    m2 = (c * (-cx) + s * (-cy) + 0.0) + cx
    m5 = (ms * (-cx) + c * (-cy) + 0.0) + cy
    return torch.stack([c, s, m2, ms, c, m5], dim=1)


def _shear_x_matrix(v: torch.Tensor) -> torch.Tensor:
    v = v.to(torch.float64)
    o, z = torch.ones_like(v), torch.zeros_like(v)
    return torch.stack([o, v, z, z, o, z], dim=1)


def _shear_y_matrix(v: torch.Tensor) -> torch.Tensor:
    v = v.to(torch.float64)
    o, z = torch.ones_like(v), torch.zeros_like(v)
    return torch.stack([o, z, z, v, o, z], dim=1)


def _translate_matrix(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    tx, ty = tx.to(torch.float64), ty.to(torch.float64)
    o, z = torch.ones_like(tx), torch.zeros_like(tx)
    return torch.stack([o, z, tx, z, o, ty], dim=1)


def _fix16(v: torch.Tensor) -> torch.Tensor:
    """PIL's ``FIX(v) = floor(v * 65536 + 0.5)`` (16.16 fixed point), as int32 like PIL."""
    return torch.floor(v * 65536.0 + 0.5).to(torch.int32)


def _warp_nearest(lv: torch.Tensor, m: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """``img.transform(img.size, AFFINE, m)`` with NEAREST and black fill.

    ``m`` is an ``(N, 6)`` float64 tensor of PIL affine data ``(a, b, c, d,
    e, f)``: output pixel (x, y) samples input (a x' + b y' + c, d x' + e y'
    + f) with x' = x + 0.5, y' = y + 0.5, floored (Geometry.c).  As in PIL,
    samples with ``b == d == 0`` follow ``ImagingScaleAffine``
    (``xin = floor(c + a/2 + a x)``; written here as an exact integer shift,
    which requires integer ``a`` and ``e`` -- true of every USB op), the
    others ``affine_fixed`` (16.16 fixed-point accumulation in int32).
    """
    N, C, H, W = lv.shape
    dev = lv.device
    a0, a1, a2, a3, a4, a5 = m.unbind(dim=1)
    scale_path = (a1 == 0) & (a3 == 0)
    f0, f1, f3, f4 = (_fix16(t) for t in (a0, a1, a3, a4))
    f2 = torch.where(scale_path, _fix16(torch.floor(a2 + a0 * 0.5)), _fix16(a2 + a0 * 0.5 + a1 * 0.5))
    f5 = torch.where(scale_path, _fix16(torch.floor(a5 + a4 * 0.5)), _fix16(a5 + a3 * 0.5 + a4 * 0.5))
    xs = torch.arange(W, device=dev, dtype=torch.int32).view(1, 1, W)
    ys = torch.arange(H, device=dev, dtype=torch.int32).view(1, H, 1)
    v = lambda t: t.view(N, 1, 1)  # noqa: E731
    xin = ((v(f2) + ys * v(f1)) + xs * v(f0)) >> 16  # (N, H, W)
    yin = ((v(f5) + ys * v(f4)) + xs * v(f3)) >> 16
    valid = (xin >= 0) & (xin < W) & (yin >= 0) & (yin < H)
    # out-of-image samples read an extra fill pixel appended at index H*W
    idx = torch.where(valid, yin * W + xin, H * W).to(torch.int64).view(N, 1, H * W)
    flat = torch.cat([lv.reshape(N, C, H * W), lv.new_full((N, C, 1), fill)], dim=2)
    return torch.gather(flat, 2, idx.expand(N, C, H * W)).view(N, C, H, W)


# ---------------------------------------------------------------------------
# Single ops (levels -> levels), each mirroring one USB function
# ---------------------------------------------------------------------------


def _auto_contrast(lv: torch.Tensor, v: Magnitude = None) -> torch.Tensor:
    """Mirrors USB ``AutoContrast(img, _)`` = ``PIL.ImageOps.autocontrast(img)``."""
    return _apply_lut(lv, _autocontrast_lut(lv))


def _brightness(lv: torch.Tensor, v: Magnitude) -> torch.Tensor:
    """Mirrors USB ``Brightness(img, v)`` = ``ImageEnhance.Brightness(img).enhance(v)``
    (blend with black)."""
    a = _per_sample(v, lv.shape[0], lv.device, torch.float32)
    return _blend(torch.zeros_like(lv), lv, a)


def _color(lv: torch.Tensor, v: Magnitude) -> torch.Tensor:
    """Mirrors USB ``Color(img, v)`` = ``ImageEnhance.Color(img).enhance(v)``
    (blend with ``img.convert('L')``)."""
    a = _per_sample(v, lv.shape[0], lv.device, torch.float32)
    return _blend(_grayscale(lv).expand_as(lv), lv, a)


def _contrast(lv: torch.Tensor, v: Magnitude) -> torch.Tensor:
    """Mirrors USB ``Contrast(img, v)`` = ``ImageEnhance.Contrast(img).enhance(v)``
    (blend with the rounded mean of the grayscale)."""
    a = _per_sample(v, lv.shape[0], lv.device, torch.float32)
    return _blend(_contrast_degenerate(lv).expand_as(lv), lv, a)


def _equalize(lv: torch.Tensor, v: Magnitude = None) -> torch.Tensor:
    """Mirrors USB ``Equalize(img, _)`` = ``PIL.ImageOps.equalize(img)`` (per channel)."""
    return _apply_lut(lv, _equalize_lut(lv))


def _identity(lv: torch.Tensor, v: Magnitude = None) -> torch.Tensor:
    """Mirrors USB ``Identity(img, v)``."""
    return lv.clone()


def _posterize(lv: torch.Tensor, v: Magnitude) -> torch.Tensor:
    """Mirrors USB ``Posterize(img, v)``: ``ImageOps.posterize(img, max(1, int(v)))``."""
    vv = _per_sample(v, lv.shape[0], lv.device, torch.float64)
    return _apply_lut(lv, _posterize_lut(lv, vv))


def _rotate(lv: torch.Tensor, v: Magnitude) -> torch.Tensor:
    """Mirrors USB ``Rotate(img, v)`` = ``img.rotate(v)`` (degrees counter-clockwise,
    NEAREST, black fill, same size)."""
    vv = _per_sample(v, lv.shape[0], lv.device, torch.float64)
    return _warp_nearest(lv, _rotate_matrix(vv, lv.shape[-2], lv.shape[-1]))


def _sharpness(lv: torch.Tensor, v: Magnitude) -> torch.Tensor:
    """Mirrors USB ``Sharpness(img, v)`` = ``ImageEnhance.Sharpness(img).enhance(v)``
    (blend with ``img.filter(SMOOTH)``)."""
    a = _per_sample(v, lv.shape[0], lv.device, torch.float32)
    return _blend(_smooth(lv), lv, a)


def _shear_x(lv: torch.Tensor, v: Magnitude) -> torch.Tensor:
    """Mirrors USB ``ShearX(img, v)`` = ``img.transform(size, AFFINE, (1, v, 0, 0, 1, 0))``."""
    vv = _per_sample(v, lv.shape[0], lv.device, torch.float64)
    return _warp_nearest(lv, _shear_x_matrix(vv))


def _shear_y(lv: torch.Tensor, v: Magnitude) -> torch.Tensor:
    """Mirrors USB ``ShearY(img, v)`` = ``img.transform(size, AFFINE, (1, 0, 0, v, 1, 0))``."""
    vv = _per_sample(v, lv.shape[0], lv.device, torch.float64)
    return _warp_nearest(lv, _shear_y_matrix(vv))


def _solarize(lv: torch.Tensor, v: Magnitude) -> torch.Tensor:
    """Mirrors USB ``Solarize(img, v)`` = ``PIL.ImageOps.solarize(img, v)``."""
    vv = _per_sample(v, lv.shape[0], lv.device, torch.float64)
    return _apply_lut(lv, _solarize_lut(lv, vv))


def _translate_x(lv: torch.Tensor, v: Magnitude) -> torch.Tensor:
    """Mirrors USB ``TranslateX(img, v)``: affine ``(1, 0, v * width, 0, 1, 0)``."""
    vv = _per_sample(v, lv.shape[0], lv.device, torch.float64)
    return _warp_nearest(lv, _translate_matrix(vv * lv.shape[-1], torch.zeros_like(vv)))


def _translate_y(lv: torch.Tensor, v: Magnitude) -> torch.Tensor:
    """Mirrors USB ``TranslateY(img, v)``: affine ``(1, 0, 0, 0, 1, v * height)``."""
    vv = _per_sample(v, lv.shape[0], lv.device, torch.float64)
    return _warp_nearest(lv, _translate_matrix(torch.zeros_like(vv), vv * lv.shape[-2]))


def _invert(lv: torch.Tensor, v: Magnitude = None) -> torch.Tensor:
    """Mirrors USB ``Invert(img, _)`` = ``PIL.ImageOps.invert`` (not in USB's op list)."""
    return 255.0 - lv


def _cutout_box(
    frac: torch.Tensor, x0f: torch.Tensor, y0f: torch.Tensor, H: int, W: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inclusive box ``(x0, y0, x1, y1)`` drawn by USB's ``Cutout``/``CutoutAbs``."""
    v = frac.to(torch.float64) * W  # USB: v = v * img.size[0]
    x0f = x0f.to(torch.float64)
    y0f = y0f.to(torch.float64)
    x0 = torch.trunc(torch.clamp(x0f - v / 2.0, min=0.0))
    y0 = torch.trunc(torch.clamp(y0f - v / 2.0, min=0.0))
    x1 = torch.clamp(x0 + v, max=float(W))
    y1 = torch.clamp(y0 + v, max=float(H))
    # ImageDraw.rectangle truncates the float corners to int and fills the
    # closed rectangle [x0, x1] x [y0, y1] (clipped to the image).
    return x0.long(), y0.long(), torch.trunc(x1).long(), torch.trunc(y1).long()


def _cutout(
    lv: torch.Tensor,
    v: Magnitude,
    x0f: Magnitude,
    y0f: Magnitude,
    fill: Sequence[int] = CUTOUT_FILL,
) -> torch.Tensor:
    """Mirrors USB ``Cutout(img, v)`` -> ``CutoutAbs(img, v * width)``.

    ``v`` is the fraction in [0, 0.5); ``x0f``/``y0f`` are the centre values
    USB draws with ``np.random.uniform(w)`` / ``np.random.uniform(h)``.  Note
    that numpy's signature is ``uniform(low=0, high=1)``, so USB actually
    draws uniform on ``(1, w]`` (low=w, high=1), not ``[0, w)``; that is
    reproduced by :func:`sample_rand_augment_params`.  Then
    ``x0 = int(max(0, x0f - v/2))``, ``x1 = min(w, x0 + v)`` (same for y) and
    ``ImageDraw.rectangle((x0, y0, x1, y1), fill)`` paints the closed
    rectangle with colour ``(125, 123, 114)``.  ``v <= 0`` leaves the image
    unchanged.
    """
    N, C, H, W = lv.shape
    dev = lv.device
    frac = _per_sample(v, N, dev, torch.float64)
    x0f = _per_sample(x0f, N, dev, torch.float64)
    y0f = _per_sample(y0f, N, dev, torch.float64)
    x0, y0, x1, y1 = _cutout_box(frac, x0f, y0f, H, W)
    xs = torch.arange(W, device=dev).view(1, 1, W)
    ys = torch.arange(H, device=dev).view(1, H, 1)
    inside = (
        (xs >= x0.view(N, 1, 1))
        & (xs <= x1.view(N, 1, 1))
        & (ys >= y0.view(N, 1, 1))
        & (ys <= y1.view(N, 1, 1))
        & (frac > 0).view(N, 1, 1)
    )
    fill_t = torch.tensor(list(fill)[:C] if C > 1 else list(fill)[:1], dtype=lv.dtype)
    fill_t = fill_t.to(dev, non_blocking=True).view(1, C, 1, 1)
    return torch.where(inside.unsqueeze(1), fill_t, lv)


auto_contrast = _as_levels_op(_auto_contrast)
brightness = _as_levels_op(_brightness)
color = _as_levels_op(_color)
contrast = _as_levels_op(_contrast)
equalize = _as_levels_op(_equalize)
identity = _as_levels_op(_identity)
posterize = _as_levels_op(_posterize)
rotate = _as_levels_op(_rotate)
sharpness = _as_levels_op(_sharpness)
shear_x = _as_levels_op(_shear_x)
shear_y = _as_levels_op(_shear_y)
solarize = _as_levels_op(_solarize)
translate_x = _as_levels_op(_translate_x)
translate_y = _as_levels_op(_translate_y)
invert = _as_levels_op(_invert)
cutout = _as_levels_op(_cutout)

_LEVEL_OPS = {
    "AutoContrast": _auto_contrast,
    "Brightness": _brightness,
    "Color": _color,
    "Contrast": _contrast,
    "Equalize": _equalize,
    "Identity": _identity,
    "Posterize": _posterize,
    "Rotate": _rotate,
    "Sharpness": _sharpness,
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "Solarize": _solarize,
    "TranslateX": _translate_x,
    "TranslateY": _translate_y,
    "Invert": _invert,
}


def apply_op(x: torch.Tensor, name: str, v: Magnitude = 0.0) -> torch.Tensor:
    """Apply the op named like USB's function (``'Rotate'``, ``'Posterize'``, ...)
    to the whole batch with magnitude ``v`` (number or per-sample ``(N,)`` tensor)."""
    return _from_levels(_LEVEL_OPS[name](_to_levels(x), v), x.dtype)


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
        key = (x.device.type, x.device.index)
        if key not in self._stats:
            c = len(self.mean)
            m = torch.tensor(self.mean, dtype=torch.float32).view(c, 1, 1).to(x.device, non_blocking=True)
            s = torch.tensor(self.std, dtype=torch.float32).view(c, 1, 1).to(x.device, non_blocking=True)
            self._stats[key] = (m, s)
        m, s = self._stats[key]
        xf = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
        return (xf - m) / s

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
