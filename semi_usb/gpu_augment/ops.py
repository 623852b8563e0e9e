"""The single ops of USB's RandAugment on batched levels, each mirroring one USB function, and
PIL's nearest-neighbour affine warp (part of :mod:`semi_usb.gpu_augment`)."""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch

from .levels import (CUTOUT_FILL, Magnitude, _apply_lut, _as_levels_op, _autocontrast_lut, _blend,
    _contrast_degenerate, _equalize_lut, _from_levels, _grayscale, _per_sample, _posterize_lut, _smooth,
    _solarize_lut, _to_levels)


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
