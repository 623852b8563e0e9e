"""``data_pipeline: gpu``: USB's splits and samplers, images and augmentations on the device.

USB's loaders stay the default. With ``data_pipeline: gpu`` the labeled, unlabeled and
evaluation loaders are replaced by DataLoaders over *indices* with the very same samplers
(so the long-tailed splits, the sampling and the epoch seeding are USB's); their collate
function gathers the uint8 images held on the training device and applies the weak view
(pad-and-crop, flip) and USB's strong view (RandAugment(3, 5) with Cutout) batched, per
sample, on the device (:mod:`semi_usb.gpu_augment`). Same distribution of augmentations
as USB's PIL transforms, not the same pixels.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from .gpu_augment import GPUAugment


def _transform_params(dataset) -> tuple:
    """mean, std, padding and RandAugment op count from a BasicDataset's transforms."""
    from torchvision import transforms as T

    mean = std = None
    padding, n_ops = 0, 3
    for t in getattr(dataset.transform, "transforms", []):
        if isinstance(t, T.Normalize):
            mean, std = list(t.mean), list(t.std)
        elif isinstance(t, T.RandomCrop):
            padding = t.padding if isinstance(t.padding, int) else t.padding[0]
    for t in getattr(dataset.strong_transform, "transforms", None) or []:
        if type(t).__name__ == "RandAugment":
            n_ops = t.n
    if mean is None:
        raise ValueError("data_pipeline gpu needs a Normalize in the dataset's transform")
    return mean, std, padding, n_ops


def _images(dataset, device, size: int) -> torch.Tensor:
    """The images as uint8 (N, 3, size, size) on ``device``; USB's deterministic
    ``Resize(size)`` is applied once, here, with torchvision's own transform."""
    data = np.asarray(dataset.data)
    if data.dtype != np.uint8 or data.ndim != 4 or data.shape[-1] != 3:
        raise ValueError("data_pipeline gpu needs uint8 images (N, H, W, 3) in memory (CIFAR, STL, image folders)")
    if data.shape[1:3] != (size, size):
        from PIL import Image
        from torchvision import transforms as T

        resize = T.Resize(size)
        data = np.stack([np.asarray(resize(Image.fromarray(a))) for a in data])
    return torch.from_numpy(data).to(device).permute(0, 3, 1, 2).contiguous()


class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


class DeviceBatches:
    """Collate function: indices -> a USB batch dict built on the device."""

    def __init__(self, dataset, device, kind: str, augment: GPUAugment, size: int, num_strong_views: int = 1):
        self.images = _images(dataset, device, size)
        self.targets = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.long, device=device)
        self.kind, self.augment, self.device = kind, augment, device
        self.num_strong_views = num_strong_views

    def __call__(self, indices) -> dict:
        idx = torch.as_tensor(indices, dtype=torch.long).to(self.device, non_blocking=True)
        x = self.images[idx]
        if self.kind == "lb":
            return {"idx_lb": idx, "x_lb": self.augment.weak(x), "y_lb": self.targets[idx]}
        if self.kind == "ulb":
            batch = {"idx_ulb": idx, "x_ulb_w": self.augment.weak(x), "x_ulb_s": self.augment.strong(x)}
            if self.num_strong_views == 2:  # a second, independent strong view (num_strong_views)
                batch["x_ulb_s_1"] = self.augment.strong(x)
            return batch
        return {"idx_lb": idx, "x_lb": self.augment.eval(x), "y_lb": self.targets[idx]}


def _replace(loader: DataLoader, batches: DeviceBatches) -> DataLoader:
    return DataLoader(_Indices(len(loader.dataset)), batch_size=loader.batch_size, sampler=loader.sampler,
                      drop_last=loader.drop_last, num_workers=0, collate_fn=batches)


def install(algorithm, device) -> None:
    """Swap the algorithm's loaders for device-side ones (same samplers and batch sizes)."""
    loaders, data = algorithm.loader_dict, algorithm.dataset_dict
    mean, std, padding, n_ops = _transform_params(data["train_lb"])
    augment = GPUAugment(mean, std, padding=padding, n_ops=n_ops)
    kinds = {"train_lb": "lb", "train_ulb": "ulb", "eval": "eval", "test": "eval"}
    for name, kind in kinds.items():
        if loaders.get(name) is not None and data.get(name) is not None:
            batches = DeviceBatches(data[name], device, kind, augment, algorithm.args.img_size,
                                    getattr(algorithm.args, "num_strong_views", 1))
            loaders[name] = _replace(loaders[name], batches)
