"""USB's RandAugment op table and the float32 "levels" helpers that mirror PIL's pixel arithmetic
(part of :mod:`semi_usb.gpu_augment`)."""
from __future__ import annotations

import inspect
from typing import Tuple, Union

import torch

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
