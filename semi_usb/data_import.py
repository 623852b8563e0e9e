"""``semilearn data import`` / ``import-idx``: image folders, ``.tar.gz`` archives and
MNIST-format idx files into the layouts the loaders read (:mod:`semi_usb.datasets`; for
``--dataset cifar10/cifar100``, the files semilearn's own CIFAR loader reads). Nothing
existing is overwritten. An archive is extracted inside the import's staging folder, on the
target's disk (:mod:`semi_usb.staging`): a kill leaves nothing in the system's temporary
folder, and the next import of the same target removes what it left.
"""
from __future__ import annotations

import errno
import os
import pickle
import shutil
import tarfile

import numpy as np

from .datasets import CIFAR_DIRS, NUM_CLASSES, ImageSet, class_files, read_image_folder
from .errors import DataError
from .staging import refuse_existing, staged_folder

#: The archive's extraction, inside the staging folder: its entries are moved into the folder
#: (one write), and what is left is removed before the folder is renamed.
EXTRACTED = ".extracted"
#: Errors of writing the extraction: the target's disk, not the archive.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _extract_archive(src: str, workdir: str) -> str:
    """Extract ``src`` into ``workdir`` (a new folder); a member that would land outside it
    (``../``, an absolute path, a link out), a truncated or corrupt archive are one-line
    errors; an error of writing (a full disk) is raised as it is."""
    import zlib

    try:
        with tarfile.open(src) as tar:
            tar.extractall(workdir, filter="data")
    except tarfile.FilterError as exc:
        raise DataError(f"{src} holds a member that would be written outside the import folder ({exc}): "
                        "refused; repack the archive with relative paths") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            raise
        raise DataError(f"{src} is not a readable .tar/.tar.gz archive ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())}): download or pack it again") from None
    entries = [e for e in os.listdir(workdir) if not e.startswith(".")]
    if "train" not in entries and len(entries) == 1 and os.path.isdir(os.path.join(workdir, entries[0])):
        return os.path.join(workdir, entries[0])
    return workdir


def _write_cifar(out: str, dataset: str, train: ImageSet, test: ImageSet) -> None:
    """Write torchvision's python layout (the files semilearn's get_cifar reads) into ``out``."""
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


def import_image_folder(src: str, data_dir: str, dataset: str = "imagefolder", name: str | None = None,
                        img_size: int | None = None) -> str:
    """Import ``src`` (a folder or .tar.gz holding ``train/<class>/*`` and ``test/<class>/*``).

    ``dataset`` cifar10/cifar100 writes the layout semilearn's own CIFAR loader reads, at
    ``data_dir/<dataset>/``, in the folder's per-class file order. Otherwise the image
    folder is copied to ``data_dir/<name>/`` for the ``imagefolder`` dataset. Returns the
    path written. Nothing existing is overwritten; the target appears whole or not at all
    (:func:`semi_usb.staging.staged_folder`).
    """
    if not os.path.exists(src):
        raise DataError(f"import source not found: {src}")
    archive = os.path.isfile(src)
    if not archive:
        _check_layout(src, src, dataset)  # before anything is written
    cifar = dataset in CIFAR_DIRS
    target = os.path.join(data_dir, dataset, CIFAR_DIRS[dataset]) if cifar else os.path.join(data_dir, name or "imagefolder")
    refuse_existing(target)
    with staged_folder(target, src) as work:
        root = _extract_archive(src, os.path.join(work, EXTRACTED)) if archive else src
        if archive:
            _check_layout(root, src, dataset)
        if cifar:
            train = read_image_folder(os.path.join(root, "train"), img_size or 32)
            test = read_image_folder(os.path.join(root, "test"), img_size or 32)
            if train.classes != test.classes:
                raise DataError(f"train/ and test/ of {src} have different classes")
            if len(train.classes) != NUM_CLASSES[dataset]:
                raise DataError(f"{src} has {len(train.classes)} classes, {dataset} has {NUM_CLASSES[dataset]}")
            _write_cifar(work, dataset, train, test)
        elif not (archive and _move_visible(root, work)):
            shutil.copytree(root, work, ignore=shutil.ignore_patterns(".*"), dirs_exist_ok=True)
        if archive:
            shutil.rmtree(os.path.join(work, EXTRACTED))
    return target


def _move_visible(root: str, work: str) -> bool:
    """Move the extraction ``root`` (inside ``work``, on the same disk) into ``work`` without
    writing it again, leaving out its hidden entries (``.*``, at any depth, e.g. ``.DS_Store``)
    as the copy of a source folder does. False, with nothing moved, where it holds a symbolic
    link (the copy writes the linked file in its place)."""
    hidden = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if name.startswith("."):
                hidden.append(path)
            elif os.path.islink(path):
                return False
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    for path in hidden:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    for entry in os.listdir(root):
        if not entry.startswith("."):
            os.rename(os.path.join(root, entry), os.path.join(work, entry))
    return True


def _check_layout(root: str, src: str, dataset: str) -> None:
    """``root`` (the source folder or its extraction) holds ``train/<class>/*`` and
    ``test/<class>/*``; an image folder's files are checked here, CIFAR's as they are read."""
    for split in ("train", "test"):
        if not os.path.isdir(os.path.join(root, split)):
            raise DataError(f"{src} has no {split}/ folder (expected train/<class>/*, test/<class>/*)")
    if dataset not in CIFAR_DIRS:
        for split in ("train", "test"):
            class_files(os.path.join(root, split))  # validates the layout

FASHION_MNIST_CLASSES = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                         "ankle_boot"]


def _read_idx(path: str) -> np.ndarray:
    """An MNIST-format idx file (optionally .gz) as a numpy array."""
    import gzip
    import struct

    opener = gzip.open if path.endswith(".gz") else open
    try:
        return _read_idx_file(opener, path, struct)
    except (OSError, EOFError, struct.error) as exc:
        raise DataError(f"{path} is not a readable idx file ({type(exc).__name__}: {exc}): download it again") from None


def _read_idx_file(opener, path: str, struct) -> np.ndarray:
    with opener(path, "rb") as f:
        zero, dtype, ndim = struct.unpack(">HBB", f.read(4))
        if zero != 0 or dtype != 0x08:
            raise DataError(f"{path} is not an unsigned-byte idx file")
        shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        data = f.read()
    expected = int(np.prod(shape))
    if len(data) != expected:
        raise DataError(f"{path} is truncated or corrupt: its header announces {expected} bytes of data "
                        f"{tuple(shape)}, it holds {len(data)}: download it again")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def import_idx(src: str, out: str, class_names: list | None = None) -> str:
    """MNIST-format files (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte``,
    ``t10k-...``) in ``src`` -> an image folder ``out/{train,test}/<k>_<class>/<n>.png`` in
    the files' order (the index prefix keeps the official label order when folders are
    sorted by name). Debian's dataset-fashion-mnist installs such files in
    /usr/share/datasets/fashion-mnist."""
    from PIL import Image

    refuse_existing(out)

    def find(stem: str) -> str:
        for name in (stem, stem + ".gz"):
            if os.path.isfile(os.path.join(src, name)):
                return os.path.join(src, name)
        raise DataError(f"{os.path.join(src, stem)}[.gz] not found")

    parts = {split: (_read_idx(find(f"{prefix}-images-idx3-ubyte")), _read_idx(find(f"{prefix}-labels-idx1-ubyte")))
             for split, prefix in (("train", "train"), ("test", "t10k"))}  # all read before anything is made
    with staged_folder(out, src) as work:  # whole or not at all
        _write_idx_folder(parts, work, class_names, Image)
    return out


def _write_idx_folder(parts: dict, out: str, class_names, Image) -> None:
    for split, (images, labels) in parts.items():
        names = class_names or [str(c) for c in range(int(labels.max()) + 1)]
        for c, name in enumerate(names):
            os.makedirs(os.path.join(out, split, f"{c}_{name}"), exist_ok=True)
        for n, (img, y) in enumerate(zip(images, labels)):
            Image.fromarray(img).save(os.path.join(out, split, f"{y}_{names[y]}", f"{n:05d}.png"))
