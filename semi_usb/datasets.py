"""Data, offline first: the plugin's datasets (image folders, scikit-learn's digits) and the
checks that let USB's CIFAR/STL/ImageNet loaders fail with one line instead of downloading.
The patches that point semilearn's loaders here are in :mod:`semi_usb.compat`;
``semilearn data import`` is :mod:`semi_usb.data_import`.

Every plugin dataset is split by semilearn's own ``split_ssl_data`` (so N1, M1, gamma_l and
gamma_u mean exactly what they mean in USB) and wrapped in semilearn's ``BasicDataset`` with
USB's CIFAR transforms (weak: reflect-pad crop + flip; strong: + ``RandAugment(3, 5)``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import DataError
from .ulb_distribution import permuted_counts

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "stl10": 10, "imagenet127": 127, "digits": 10}


@dataclass
class ImageSet:
    """Images (N, H, W, 3) uint8 with integer targets, in a fixed order."""

    data: np.ndarray
    targets: np.ndarray
    classes: list


# --------------------------------------------------------------------------- image folders

def class_files(root: str) -> tuple[list, list]:
    if not os.path.isdir(root):
        raise DataError(f"image folder not found: {root} (expected {root}/<class>/<image>)")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DataError(f"no class folders in {root} (expected {root}/<class>/<image>)")
    files = []
    for c, name in enumerate(classes):
        folder = os.path.join(root, name)
        files += [(os.path.join(folder, f), c) for f in sorted(os.listdir(folder)) if f.lower().endswith(IMAGE_EXTS)]
    return classes, files


def _to_rgb_array(img, size: int | None) -> np.ndarray:
    from PIL import Image

    img = img.convert("RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def read_image_folder(root: str, size: int | None = None) -> ImageSet:
    """Read ``root/<class>/*`` (classes sorted by name, files sorted by name) into memory."""
    from PIL import Image

    classes, files = class_files(root)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTS)}) under {root}")
    arrays = []
    for path, _ in files:
        try:
            with Image.open(path) as img:
                arrays.append(_to_rgb_array(img, size))
        except (OSError, SyntaxError, ValueError) as exc:  # not an image, truncated, corrupt
            raise DataError(f"{path} is not a readable image ({type(exc).__name__}: {' '.join(str(exc).split())}): "
                            "remove or replace it") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"images under {root} differ in size {sorted(shapes)[:3]}...: set img_size to resize them")
    return ImageSet(np.stack(arrays), np.array([c for _, c in files], dtype=np.int64), classes)


def content_key(folder: str) -> str:
    """A hash of what training reads from ``folder``: each image of :func:`class_files`
    (links followed, as the reader follows them) with its class folder, the file it resolves
    to, and that file's device, inode, size, mtime and ctime. Repointing a linked class
    folder, adding an image inside it, moving an image between classes or rewriting one in
    place (even with the same size and a restored mtime: its ctime moves) changes the key."""
    import hashlib

    classes, files = class_files(folder)
    entries = ["\0".join(classes)]
    for path, label in files:
        st = os.stat(path)
        entries.append(f"{label}\0{os.path.relpath(path, folder)}\0{os.path.realpath(path)}\0{st.st_dev}\0{st.st_ino}"
                       f"\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}")
    return hashlib.sha256("\n".join(entries).encode("utf-8", "surrogateescape")).hexdigest()


def _cached_split(root: str, split: str, size: int | None) -> tuple[ImageSet, Callable[[], None]]:
    """``read_image_folder`` with an .npz cache beside the folder (decoding is the slow part),
    keyed by the folder's content (:func:`content_key`): rebuilt when any file changes.
    Returns the images and the function that writes the cache, called by
    :func:`write_data_caches` once the run's own files are written (a command that fails on
    its input leaves no cache behind)."""
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        raise DataError(f"image folder not found: {folder} (expected {folder}/<class>/<image>)")
    cache = os.path.join(root, f".semi_usb_{split}_{size or 'native'}.npz")
    key = content_key(folder)
    if os.path.isfile(cache):
        try:
            with np.load(cache, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    return ImageSet(z["data"], z["targets"], list(z["classes"])), lambda: None
        except (OSError, ValueError, KeyError):
            pass  # an old-format or damaged cache: rebuilt below
    images = read_image_folder(folder, size)

    def write() -> None:
        from .checkpoint import atomic_write

        try:
            atomic_write(cache, lambda f: np.savez(f, data=images.data, targets=images.targets,
                                                   classes=np.array(images.classes), key=np.array(key)))
        except OSError:
            pass  # read-only data folder: no cache

    return images, write


# --------------------------------------------------------------------------- USB datasets offline

def missing_message(dataset: str, path: str) -> str:
    how = {
        "cifar10": f"run `semilearn data import <cifar10 image folder or .tar.gz> --dataset cifar10 --data_dir {os.path.dirname(path) or '.'}`"
                   " or put the official python version (cifar-10-batches-py) there",
        "cifar100": f"run `semilearn data import <folder or .tar.gz> --dataset cifar100 --data_dir {os.path.dirname(path) or '.'}`"
                    " or put the official python version (cifar-100-python) there",
        "stl10": "put the official binary version (stl10_binary/) there",
        "imagenet127": "put ImageNet-127 as an image folder there (train/<class>/, val/<class>/)",
    }.get(dataset, "put the files semilearn's loader for it reads there (USB's data preparation)")
    return f"{dataset} not found at {path} and it cannot be downloaded here: {how}"


# What semilearn's loaders read, under data_dir, for each dataset its get_dataset knows
# (semilearn/core/utils/build.py:60-105; the folders are those of semilearn/datasets/*/*.py).
USB_DATA_PATHS = {
    "cifar10": "cifar10/cifar-10-batches-py", "cifar100": "cifar100/cifar-100-python",
    "stl10": "stl10/stl10_binary", "svhn": "svhn/train_32x32.mat", "eurosat": "eurosat",
    "tissuemnist": "medmnist/tissuemnist/tissuemnist.npz", "semi_aves": "semi_fgvc", "semi_aves_out": "semi_fgvc",
    "imagenet": "imagenet/train", "imagenet127": "imagenet127/train",
    **{name: name for name in ("esc50", "fsdnoisy", "gtzan", "superbks", "superbsi", "urbansound8k",
                               "aclImdb", "ag_news", "amazon_review", "dbpedia", "yahoo_answers", "yelp_review")},
}


def known_datasets() -> list:
    """Every dataset name ``train`` accepts: semilearn's and the plugin's."""
    return sorted(set(USB_DATA_PATHS) | set(PLUGIN_DATASETS))


def check_usb_data_present(dataset: str, data_dir: str) -> None:
    """Fail with a one-line message naming the path looked at, before semilearn's loaders
    try to download (no network here) or create folders under ``data_dir``."""
    rel = USB_DATA_PATHS.get(dataset)
    if rel is None:
        return
    path = os.path.join(data_dir, rel)
    if not os.path.exists(path):
        shown = os.path.join(data_dir, dataset) if dataset in CIFAR_DIRS or dataset == "stl10" else path
        raise DataError(missing_message(dataset, shown))


# --------------------------------------------------------------------------- plugin datasets

def _transforms(mean, std, img_size: int, crop_ratio: float):
    from torchvision import transforms
    from semilearn.datasets.augmentation import RandAugment

    pad = int(img_size * (1 - crop_ratio))
    crop = [transforms.Resize(img_size),
            transforms.RandomCrop(img_size, padding=pad, padding_mode="reflect"),
            transforms.RandomHorizontalFlip()]
    tail = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    weak = transforms.Compose(crop + tail)
    strong = transforms.Compose(crop + [RandAugment(3, 5)] + tail)
    val = transforms.Compose([transforms.Resize(img_size)] + tail)
    return weak, strong, val


def samples_per_class(n1: int, num_classes: int, gamma: float) -> list:
    """USB's long-tailed class sizes (semilearn.datasets.utils.make_imbalance_data)."""
    from semilearn.datasets.utils import make_imbalance_data

    if gamma == 1:
        return [int(n1 / num_classes)] * num_classes
    return make_imbalance_data(n1, num_classes, gamma)


def unlabeled_per_class(ulb_num_labels: int, num_classes: int, ulb_imb_ratio: float,
                        ulb_distribution: str = "usb") -> list:
    """The unlabeled class sizes: USB's, in ``ulb_distribution``'s class order."""
    return permuted_counts(samples_per_class(ulb_num_labels, num_classes, ulb_imb_ratio), ulb_distribution)


def check_split(counts, num_labels: int, ulb_num_labels, lb_imb_ratio: float, ulb_imb_ratio: float,
                dataset: str, ulb_distribution: str = "usb") -> None:
    """Refuse a long-tailed split that asks a class for more images than it has."""
    counts = list(counts)
    c = len(counts)
    lb = samples_per_class(num_labels, c, lb_imb_ratio)
    ulb = ([0] * c if ulb_num_labels in (None, "None")
           else unlabeled_per_class(int(ulb_num_labels), c, ulb_imb_ratio, ulb_distribution))
    for k in range(c):
        if lb[k] + ulb[k] > counts[k]:
            raise DataError(
                f"{dataset}: class {k} has {counts[k]} training images but the split asks for "
                f"{lb[k]} labeled + {ulb[k]} unlabeled (num_labels={num_labels}, ulb_num_labels={ulb_num_labels}, "
                f"lb_imb_ratio={lb_imb_ratio}, ulb_imb_ratio={ulb_imb_ratio})")
        if lb[k] < 1:
            raise DataError(f"{dataset}: class {k} gets no labeled image (num_labels={num_labels}, lb_imb_ratio={lb_imb_ratio})")


def build_ssl_datasets(args, alg: str, train: ImageSet, test: ImageSet, dataset: str):
    """Split ``train`` with USB's split_ssl_data and wrap both sets in BasicDataset."""
    from semilearn.datasets.cv_datasets.datasetbase import BasicDataset
    from semilearn.datasets.utils import split_ssl_data

    num_classes = args.num_classes
    if len(train.classes) < 2:
        raise DataError(f"{dataset} has {len(train.classes)} class ({', '.join(train.classes)}): a classification "
                        "task needs at least 2 class folders")
    if len(train.classes) != num_classes:
        raise DataError(f"{dataset} has {len(train.classes)} classes but num_classes={num_classes}")
    check_split(np.bincount(train.targets, minlength=num_classes), args.num_labels, args.ulb_num_labels,
                args.lb_imb_ratio, args.ulb_imb_ratio, dataset, getattr(args, "ulb_distribution", "usb"))
    mean = (train.data.reshape(-1, 3).mean(0) / 255).tolist()
    std = (np.maximum(train.data.reshape(-1, 3).std(0), 1) / 255).tolist()
    weak, strong, val = _transforms(mean, std, args.img_size, args.crop_ratio)
    lb_x, lb_y, ulb_x, ulb_y = split_ssl_data(
        args, train.data, train.targets, num_classes, lb_num_labels=args.num_labels,
        ulb_num_labels=args.ulb_num_labels, lb_imbalance_ratio=args.lb_imb_ratio,
        ulb_imbalance_ratio=args.ulb_imb_ratio, include_lb_to_ulb=args.include_lb_to_ulb)
    lb = BasicDataset(alg, lb_x, lb_y, num_classes, weak, False, strong, False)
    ulb = BasicDataset(alg, ulb_x, ulb_y, num_classes, weak, True, strong, False)
    ev = BasicDataset(alg, test.data, test.targets, num_classes, val, False, None, False)
    for d in (lb, ulb, ev):
        d.class_names = train.classes
    return lb, ulb, ev


def load_digits_sets(test_per_class_from: int = 140) -> tuple[ImageSet, ImageSet]:
    """scikit-learn's bundled 8x8 digits as RGB uint8; per class, the first
    ``test_per_class_from`` images (in sklearn's order) train, the rest (34-43) test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    images = np.repeat(images[..., None], 3, axis=-1)
    rank = np.zeros(len(d.target), dtype=np.int64)
    for c in range(10):
        idx = np.where(d.target == c)[0]
        rank[idx] = np.arange(len(idx))
    tr, te = rank < test_per_class_from, rank >= test_per_class_from
    classes = [str(c) for c in range(10)]
    order_tr = np.argsort(d.target[tr], kind="stable")
    order_te = np.argsort(d.target[te], kind="stable")
    return (ImageSet(images[tr][order_tr], d.target[tr][order_tr].astype(np.int64), classes),
            ImageSet(images[te][order_te], d.target[te][order_te].astype(np.int64), classes))


def _digits(args, alg, data_dir):
    train, test = load_digits_sets()
    return build_ssl_datasets(args, alg, train, test, "digits")


def _imagefolder(args, alg, data_dir):
    size = args.img_size
    train, write_train = _cached_split(data_dir, "train", size)
    test, write_test = _cached_split(data_dir, "test", size)
    if train.classes != test.classes:
        raise DataError(f"train/ and test/ of {data_dir} have different class folders")
    datasets = build_ssl_datasets(args, alg, train, test, f"imagefolder {data_dir}")
    datasets[-1].semi_usb_cache_writes = [write_train, write_test]  # see write_data_caches
    return datasets


def write_data_caches(alg) -> None:
    """Write the image-folder caches that building ``alg``'s datasets left pending (attached
    to its evaluation dataset). Called once the command has got past every input check, so
    that a command that fails leaves no cache."""
    for dataset in (alg.dataset_dict or {}).values():
        for write in getattr(dataset, "semi_usb_cache_writes", ()):
            write()
        if hasattr(dataset, "semi_usb_cache_writes"):
            dataset.semi_usb_cache_writes = []


PLUGIN_DATASETS: dict[str, Callable] = {"digits": _digits, "imagefolder": _imagefolder}
