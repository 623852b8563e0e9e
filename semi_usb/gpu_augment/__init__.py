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

from .levels import CUTOUT_FILL, NO_COLOR_OP_NAMES, OP_NAMES, OP_RANGES
from .ops import apply_op, cutout
from .views import (GPUAugment, RandAugmentParams, WeakParams, apply_rand_augment, normalize, rand_augment,
    sample_rand_augment_params, sample_weak_params, strong_view, weak_view)

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
    # single ops: by USB's name (apply_op) and Cutout
    "apply_op",
    "cutout",
]

