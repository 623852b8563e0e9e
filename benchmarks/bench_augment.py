"""Throughput of USB's PIL weak+strong transforms vs semi_usb.gpu_augment's batched tensor path.

For every unlabeled image USB builds one weak and one strong view
(``semilearn/datasets/cv_datasets/cifar.py``).  This benchmark reports
images/s for producing both views (normalised float tensors):

* ``usb-pil``: USB's torchvision/PIL ``transform_weak`` and
  ``transform_strong`` on PIL images, one image at a time, single process
  (what one dataloader worker does);
* ``tensor-cpu``: :class:`semi_usb.gpu_augment.GPUAugment` ``weak`` + ``strong``
  on a uint8 batch on CPU (torch's intra-op threads);
* ``tensor-cuda``: the same on CUDA, if available (timed with synchronisation).

Usage::

    python benchmarks/bench_augment.py [--batch-size 128] [--seconds 3] [--threads N]

Images come from the CIFAR-10 JPEG archive (``SEMI_USB_CIFAR_TAR`` or
``<repo>/../shared/data/cifar10-jpeg.tar.gz``) if present, else random pixels.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from semi_usb.gpu_augment import GPUAugment  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # USB's cifar10 normalisation


def load_images(n: int):
    from PIL import Image

    env = os.environ.get("SEMI_USB_CIFAR_TAR")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    imgs = []
    if path.is_file():
        with tarfile.open(path, "r:*") as tf:
            for m in tf:
                if m.isfile() and m.name.startswith("train/") and m.name.endswith(".jpg"):
                    imgs.append(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB"))
                    if len(imgs) == n:
                        break
        source = str(path)
    else:
        rng = np.random.RandomState(0)
        imgs = [Image.fromarray(rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
        source = "random pixels"
    x = torch.stack([torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1) for im in imgs])
    return imgs, x, source


def usb_transforms(crop_size: int = 32, crop_ratio: float = 0.875):
    from torchvision import transforms

    from semilearn.datasets.augmentation import RandAugment

    pad = int(crop_size * (1 - crop_ratio))
    weak = transforms.Compose(
        [
            transforms.Resize(crop_size),
            transforms.RandomCrop(crop_size, padding=pad, padding_mode="reflect"),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    strong = transforms.Compose(
        [
            transforms.Resize(crop_size),
            transforms.RandomCrop(crop_size, padding=pad, padding_mode="reflect"),
            transforms.RandomHorizontalFlip(),
            RandAugment(3, 5),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    return weak, strong


def bench_pil(imgs, seconds: float) -> float:
    weak, strong = usb_transforms()
    for im in imgs[:32]:  # warm-up
        weak(im), strong(im)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for im in imgs:
            weak(im)
            strong(im)
        n += len(imgs)
    return n / (time.perf_counter() - t0)


def bench_tensor(x: torch.Tensor, seconds: float, device: torch.device) -> float:
    x = x.to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    aug = GPUAugment(MEAN, STD, padding=4, n_ops=3, generator=gen)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):  # warm-up
        aug.weak(x), aug.strong(x)
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        aug.weak(x)
        aug.strong(x)
        n += x.shape[0]
        if device.type == "cuda" and n % (x.shape[0] * 20) == 0:
            sync()
    sync()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads on CPU")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    imgs, x, source = load_images(args.batch_size)
    rows = [("usb-pil (1 process)", "cpu", bench_pil(imgs, args.seconds))]
    rows.append((f"tensor batch {args.batch_size}", f"cpu ({torch.get_num_threads()} threads)",
                 bench_tensor(x, args.seconds, torch.device("cpu"))))
    if torch.cuda.is_available():
        rows.append((f"tensor batch {args.batch_size}", torch.cuda.get_device_name(),
                     bench_tensor(x, args.seconds, torch.device("cuda"))))
    base = rows[0][2]
    print(f"images: {len(imgs)} from {source}; weak+strong views per image; torch {torch.__version__}")
    print(f"{'path':<24} {'device':<28} {'images/s':>12} {'vs PIL':>8}")
    for name, dev, ips in rows:
        print(f"{name:<24} {dev:<28} {ips:>12.0f} {ips / base:>7.1f}x")


if __name__ == "__main__":
    main()
