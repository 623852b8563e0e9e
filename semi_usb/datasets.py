"""Data, offline first: USB's CIFAR/STL/ImageNet loaders without downloads, image folders,
scikit-learn's digits, and ``semilearn data import``.

Every plugin dataset is split by semilearn's own ``split_ssl_data`` (so N1, M1, gamma_l and
gamma_u mean exactly what they mean in USB) and wrapped in semilearn's ``BasicDataset`` with
USB's CIFAR transforms (weak: reflect-pad crop + flip; strong: + ``RandAugment(3, 5)``).
"""
from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import DataError  # noqa: F401  (raised here, re-exported)

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

def _class_files(root: str) -> tuple[list, list]:
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

    classes, files = _class_files(root)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTS)}) under {root}")
    arrays = []
    for path, _ in files:
        with Image.open(path) as img:
            arrays.append(_to_rgb_array(img, size))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"images under {root} differ in size {sorted(shapes)[:3]}...: set img_size to resize them")
    return ImageSet(np.stack(arrays), np.array([c for _, c in files], dtype=np.int64), classes)


def _cached_split(root: str, split: str, size: int | None) -> ImageSet:
    """``read_image_folder`` with an .npz cache beside the folder (decoding is the slow part)."""
    folder = os.path.join(root, split)
    cache = os.path.join(root, f".semi_usb_{split}_{size or 'native'}.npz")
    if os.path.isfile(cache) and os.path.getmtime(cache) >= os.path.getmtime(folder):
        with np.load(cache, allow_pickle=False) as z:
            return ImageSet(z["data"], z["targets"], list(z["classes"]))
    images = read_image_folder(folder, size)
    try:
        tmp = cache + ".tmp.npz"
        np.savez(tmp, data=images.data, targets=images.targets, classes=np.array(images.classes))
        os.replace(tmp, cache)
    except OSError:
        pass  # read-only data folder: no cache
    return images


# --------------------------------------------------------------------------- import

def _extract_archive(src: str, workdir: str) -> str:
    with tarfile.open(src) as tar:
        tar.extractall(workdir, filter="data")
    entries = [e for e in os.listdir(workdir) if not e.startswith(".")]
    if "train" not in entries and len(entries) == 1 and os.path.isdir(os.path.join(workdir, entries[0])):
        return os.path.join(workdir, entries[0])
    return workdir


def _write_cifar(root: str, dataset: str, train: ImageSet, test: ImageSet) -> str:
    """Write torchvision's python layout (the files semilearn's get_cifar reads)."""
    out = os.path.join(root, CIFAR_DIRS[dataset])
    os.makedirs(out, exist_ok=True)
    key = "labels" if dataset == "cifar10" else "fine_labels"

    def dump(name: str, images: ImageSet) -> None:
        flat = images.data.transpose(0, 3, 1, 2).reshape(len(images.data), -1)
        with open(os.path.join(out, name), "wb") as f:
            pickle.dump({"data": flat, key: images.targets.tolist()}, f)

    if dataset == "cifar10":
        for i, part in enumerate(np.array_split(np.arange(len(train.data)), 5)):
            dump(f"data_batch_{i + 1}", ImageSet(train.data[part], train.targets[part], train.classes))
        dump("test_batch", test)
        meta = {"label_names": train.classes}
        meta_name = "batches.meta"
    else:
        dump("train", train)
        dump("test", test)
        meta = {"fine_label_names": train.classes}
        meta_name = "meta"
    with open(os.path.join(out, meta_name), "wb") as f:
        pickle.dump(meta, f)
    return out


def import_image_folder(src: str, data_dir: str, dataset: str = "imagefolder", name: str | None = None,
                        img_size: int | None = None) -> str:
    """Import ``src`` (a folder or .tar.gz holding ``train/<class>/*`` and ``test/<class>/*``).

    ``dataset`` cifar10/cifar100 writes the layout semilearn's own CIFAR loader reads, at
    ``data_dir/<dataset>/``, in the folder's per-class file order. Otherwise the image
    folder is copied to ``data_dir/<name>/`` for the ``imagefolder`` dataset. Returns the
    path written. Nothing existing is overwritten.
    """
    if not os.path.exists(src):
        raise DataError(f"import source not found: {src}")
    with tempfile.TemporaryDirectory() as work:
        root = _extract_archive(src, work) if os.path.isfile(src) else src
        for split in ("train", "test"):
            if not os.path.isdir(os.path.join(root, split)):
                raise DataError(f"{src} has no {split}/ folder (expected train/<class>/*, test/<class>/*)")
        if dataset in CIFAR_DIRS:
            target = os.path.join(data_dir, dataset, CIFAR_DIRS[dataset])
            if os.path.exists(target):
                raise DataError(f"{target} already exists: remove it first to re-import")
            train = read_image_folder(os.path.join(root, "train"), img_size or 32)
            test = read_image_folder(os.path.join(root, "test"), img_size or 32)
            if train.classes != test.classes:
                raise DataError(f"train/ and test/ of {src} have different classes")
            if len(train.classes) != NUM_CLASSES[dataset]:
                raise DataError(f"{src} has {len(train.classes)} classes, {dataset} has {NUM_CLASSES[dataset]}")
            return _write_cifar(os.path.join(data_dir, dataset), dataset, train, test)
        target = os.path.join(data_dir, name or "imagefolder")
        if os.path.exists(target):
            raise DataError(f"{target} already exists: remove it first to re-import")
        for split in ("train", "test"):
            _class_files(os.path.join(root, split))  # validates the layout
        shutil.copytree(root, target, ignore=shutil.ignore_patterns(".*"))
        return target


FASHION_MNIST_CLASSES = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                         "ankle_boot"]


def _read_idx(path: str) -> np.ndarray:
    """An MNIST-format idx file (optionally .gz) as a numpy array."""
    import gzip
    import struct

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        zero, dtype, ndim = struct.unpack(">HBB", f.read(4))
        if zero != 0 or dtype != 0x08:
            raise DataError(f"{path} is not an unsigned-byte idx file")
        shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)


def import_idx(src: str, out: str, class_names: list | None = None) -> str:
    """MNIST-format files (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte``,
    ``t10k-...``) in ``src`` -> an image folder ``out/{train,test}/<k>_<class>/<n>.png`` in
    the files' order (the index prefix keeps the official label order when folders are
    sorted by name). Debian's dataset-fashion-mnist installs such files in
    /usr/share/datasets/fashion-mnist."""
    from PIL import Image

    if os.path.exists(out):
        raise DataError(f"{out} already exists: remove it first to re-import")

    def find(stem: str) -> str:
        for name in (stem, stem + ".gz"):
            if os.path.isfile(os.path.join(src, name)):
                return os.path.join(src, name)
        raise DataError(f"{os.path.join(src, stem)}[.gz] not found")

    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = _read_idx(find(f"{prefix}-images-idx3-ubyte")), _read_idx(find(f"{prefix}-labels-idx1-ubyte"))
        names = class_names or [str(c) for c in range(int(labels.max()) + 1)]
        for c, name in enumerate(names):
            os.makedirs(os.path.join(out, split, f"{c}_{name}"), exist_ok=True)
        for n, (img, y) in enumerate(zip(images, labels)):
            Image.fromarray(img).save(os.path.join(out, split, f"{y}_{names[y]}", f"{n:05d}.png"))
    return out


# --------------------------------------------------------------------------- USB datasets offline

def _offline_cifar(base: type) -> type:
    """torchvision's CIFAR class, reading files semilearn expects without the md5 check.

    torchvision verifies the md5 of each pickle and downloads when it does not match, so
    CIFAR imported from images (same layout, other bytes) would trigger a download.
    """

    class OfflineCIFAR(base):  # type: ignore[misc, valid-type]
        def _check_integrity(self) -> bool:
            folder = os.path.join(self.root, self.base_folder)
            return all(os.path.isfile(os.path.join(folder, f)) for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

        def download(self) -> None:
            if self._check_integrity():
                return
            if os.environ.get("SEMI_USB_OFFLINE", "") not in ("", "0"):
                raise DataError(_missing_message(base.__name__.lower(), self.root))
            try:
                super().download()
            except Exception:
                raise DataError(_missing_message(base.__name__.lower(), self.root)) from None

    OfflineCIFAR.__name__ = base.__name__
    return OfflineCIFAR


def _missing_message(dataset: str, path: str) -> str:
    how = {
        "cifar10": f"run `semilearn data import <cifar10 image folder or .tar.gz> --dataset cifar10 --data_dir {os.path.dirname(path) or '.'}`"
                   " or put the official python version (cifar-10-batches-py) there",
        "cifar100": f"run `semilearn data import <folder or .tar.gz> --dataset cifar100 --data_dir {os.path.dirname(path) or '.'}`"
                    " or put the official python version (cifar-100-python) there",
        "stl10": "put the official binary version (stl10_binary/) there",
        "imagenet127": "put ImageNet-127 as an image folder there (train/<class>/, val/<class>/)",
    }.get(dataset, "prepare it as described in the README")
    return f"{dataset} not found at {path} and it cannot be downloaded here: {how}"


def check_usb_data_present(dataset: str, data_dir: str) -> None:
    """Fail with a one-line message before semilearn's loaders try to download."""
    expected = {
        "stl10": os.path.join(data_dir, "stl10", "stl10_binary"),
        "imagenet127": os.path.join(data_dir, "imagenet127", "train"),
    }
    path = expected.get(dataset)
    if path and not os.path.isdir(path):
        raise DataError(_missing_message(dataset, os.path.dirname(path) if dataset == "stl10" else path))


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


def check_split(counts, num_labels: int, ulb_num_labels, lb_imb_ratio: float, ulb_imb_ratio: float,
                dataset: str) -> None:
    """Refuse a long-tailed split that asks a class for more images than it has."""
    counts = list(counts)
    c = len(counts)
    lb = samples_per_class(num_labels, c, lb_imb_ratio)
    ulb = [0] * c if ulb_num_labels in (None, "None") else samples_per_class(int(ulb_num_labels), c, ulb_imb_ratio)
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
    if len(train.classes) != num_classes:
        raise DataError(f"{dataset} has {len(train.classes)} classes but num_classes={num_classes}")
    check_split(np.bincount(train.targets, minlength=num_classes), args.num_labels, args.ulb_num_labels,
                args.lb_imb_ratio, args.ulb_imb_ratio, dataset)
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
    train = _cached_split(data_dir, "train", size)
    test = _cached_split(data_dir, "test", size)
    if train.classes != test.classes:
        raise DataError(f"train/ and test/ of {data_dir} have different class folders")
    return build_ssl_datasets(args, alg, train, test, f"imagefolder {data_dir}")


PLUGIN_DATASETS: dict[str, Callable] = {"digits": _digits, "imagefolder": _imagefolder}


def make_get_dataset(usb_get_dataset: Callable) -> Callable:
    """semilearn's ``get_dataset`` extended with the plugin datasets and offline checks."""

    def get_dataset(args, algorithm, dataset, num_labels, num_classes, data_dir="./data", include_lb_to_ulb=True):
        if dataset in PLUGIN_DATASETS:
            lb, ulb, ev = PLUGIN_DATASETS[dataset](args, algorithm, data_dir)
            return {"train_lb": lb, "train_ulb": ulb, "eval": ev, "test": None}
        check_usb_data_present(dataset, data_dir)
        return usb_get_dataset(args, algorithm, dataset, num_labels, num_classes, data_dir, include_lb_to_ulb)

    get_dataset.semi_usb_wrapped = usb_get_dataset  # type: ignore[attr-defined]
    return get_dataset


def checked_split(usb_split: Callable) -> Callable:
    """semilearn's ``split_ssl_data`` that first refuses a split asking a class for more
    images than it has (USB silently returns fewer)."""

    def split_ssl_data(args, data, targets, num_classes, lb_num_labels, ulb_num_labels=None,
                       lb_imbalance_ratio=1.0, ulb_imbalance_ratio=1.0, *rest, **kwargs):
        if num_classes != len(np.unique(np.asarray(targets))):
            raise DataError(f"{args.dataset} has {len(np.unique(np.asarray(targets)))} classes but num_classes={num_classes}")
        check_split(np.bincount(np.asarray(targets), minlength=num_classes), lb_num_labels, ulb_num_labels,
                    lb_imbalance_ratio, ulb_imbalance_ratio, args.dataset)
        return usb_split(args, data, targets, num_classes, lb_num_labels, ulb_num_labels,
                         lb_imbalance_ratio, ulb_imbalance_ratio, *rest, **kwargs)

    return split_ssl_data


def install(cifar_module) -> None:
    """Point semilearn's CIFAR loader (cv_datasets/cifar.py) at the offline classes and
    the checked split."""
    import types
    import torchvision

    cifar_module.split_ssl_data = checked_split(cifar_module.split_ssl_data)
    cifar_module.torchvision = types.SimpleNamespace(datasets=types.SimpleNamespace(
        CIFAR10=_offline_cifar(torchvision.datasets.CIFAR10),
        CIFAR100=_offline_cifar(torchvision.datasets.CIFAR100)))
