"""No stale data, no half-made imports.

* The image-folder cache is keyed by what training reads (the class folders' images, links
  followed, each file's inode, size, mtime and ctime): a linked class folder repointed,
  images added inside it, an image rewritten with the same size and modification time all
  rebuild it.
* ``semilearn data import`` (image folders, CIFAR) and ``import-idx`` fill a temporary
  sibling and rename it into place when complete: SIGKILL, Ctrl-C (SIGINT) and a real full
  tmpfs leave nothing that looks imported, and the retry works.

Real images (CIFAR-10 JPEGs from shared/, Debian's Fashion-MNIST idx files).
docs/reliability.md lists each case.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, cifar_subset_folder, cli  # noqa: F401  (fixture)
from run_helpers import image_folder, tmpfs, tree

FASHION = "/usr/share/datasets/fashion-mnist"


# ------------------------------------------------------------------------------ the cache

@pytest.fixture
def cifar_tar_path():
    from conftest import cifar_tar

    path = cifar_tar()
    if path is None:
        pytest.skip("CIFAR-10 archive not found (set SEMI_USB_CIFAR_TAR)")
    return path


def _read_cached(root):
    """The train split as training gets it (cache used when its key matches), and the
    cache written as the trainer writes it once the run has started."""
    from semi_usb.datasets import _cached_split

    images, write = _cached_split(str(root), "train", 32)
    write()
    return images


def _fresh(root):
    from semi_usb.datasets import read_image_folder

    return read_image_folder(os.path.join(root, "train"), 32)


def _same(a, b) -> bool:
    return a.classes == b.classes and np.array_equal(a.targets, b.targets) and np.array_equal(a.data, b.data)


@pytest.mark.parametrize("change", ["repoint-link", "add-inside-link"])
def test_the_cache_follows_a_linked_class_folder(tmp_path, cifar_tar_path, change):
    """A class folder that is a symbolic link to shared storage: repointing it, or adding
    images inside it, rebuilds the cache (it walked the folder without following links:
    the link contributed nothing to the key)."""
    shared = tmp_path / "shared"
    image_folder(shared / "one", {"a": {"train": 3}}, cifar_tar_path)
    image_folder(shared / "two", {"a": {"train": 5}, "extra": {"train": 2}}, cifar_tar_path)
    root = tmp_path / "data"
    image_folder(root, {"b": {"train": 3}}, cifar_tar_path)
    os.symlink(shared / "one" / "train" / "a", root / "train" / "a")
    first = _read_cached(root)
    assert len(first.targets) == 6 and (root / ".semi_usb_train_32.npz").is_file()
    if change == "repoint-link":
        os.unlink(root / "train" / "a")
        os.symlink(shared / "two" / "train" / "a", root / "train" / "a")
    else:
        for name in os.listdir(shared / "two" / "train" / "extra"):
            shutil.copy2(shared / "two" / "train" / "extra" / name, shared / "one" / "train" / "a" / name)
    again = _read_cached(root)
    assert _same(again, _fresh(root)) and len(again.targets) == (8 if change == "repoint-link" else 8)
    assert not _same(again, first)


def test_the_cache_follows_an_image_rewritten_with_the_same_size_and_mtime(tmp_path, cifar_tar_path):
    """Uncompressed BMPs of one size: an image overwritten in place by another, its mtime
    put back, keeps path, size and mtime (the old key); its ctime moves."""
    from PIL import Image

    pngs = tmp_path / "pngs"
    image_folder(pngs, {"a": {"train": 3}, "b": {"train": 3}}, cifar_tar_path)
    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / "train" / cls).mkdir(parents=True)
        for name in sorted(os.listdir(pngs / "train" / cls)):
            Image.open(pngs / "train" / cls / name).save(root / "train" / cls / (name[:-4] + ".bmp"))
    first = _read_cached(root)
    target, other = root / "train" / "a" / "a_0.bmp", root / "train" / "b" / "b_0.bmp"
    st = os.stat(target)
    data = other.read_bytes()
    assert len(data) == st.st_size and data != target.read_bytes()
    time.sleep(0.01)  # the ctime moves on a clock with a coarse tick too
    with open(target, "r+b") as f:
        f.write(data)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(target).st_size, os.stat(target).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    again = _read_cached(root)
    assert _same(again, _fresh(root)) and not _same(again, first)


# ------------------------------------------------------------------------------ imports

PAUSE_DRIVER = textwrap.dedent("""
    import importlib, signal, sys, time
    # Ctrl-C raises KeyboardInterrupt, also where pytest was started in the background (a
    # non-interactive shell's `&` passes SIGINT on as ignored, and Python then keeps it so)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    where, ready, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    module, _, path = where.partition(":")
    owner = importlib.import_module(module)
    *parents, attr = path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    real, calls = getattr(owner, attr), [0]

    def paused(*a, **k):
        out = real(*a, **k)
        calls[0] += 1
        if calls[0] == 3:  # a few files written: the import is half made
            open(ready, "w").close()
            time.sleep(300)
        return out

    setattr(owner, attr, paused)
    from semi_usb.cli import main
    sys.exit(main(argv))
""")


def _small_idx(folder, n_train: int = 300, n_test: int = 50) -> str:
    """The first images of Debian's Fashion-MNIST as idx files (train-*, t10k-*)."""
    if not os.path.isdir(FASHION):
        pytest.skip("Fashion-MNIST not installed (Debian's dataset-fashion-mnist)")
    from semi_usb.data_import import _read_idx

    os.makedirs(folder)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = _read_idx(os.path.join(FASHION, f"{prefix}-images-idx3-ubyte.gz"))[:n]
        labels = _read_idx(os.path.join(FASHION, f"{prefix}-labels-idx1-ubyte.gz"))[:n]
        with gzip.open(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(b"\0\0\x08\x03" + np.array(images.shape, ">u4").tobytes() + images.tobytes())
        with gzip.open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(b"\0\0\x08\x01" + np.array(labels.shape, ">u4").tobytes() + labels.tobytes())
    return str(folder)


def _import_case(kind: str, src_folder: str, tmp_path) -> tuple:
    """(argv of the import, the folder it makes, the function to pause in)."""
    data_dir = tmp_path / "disk" / "data"
    if kind == "imagefolder":
        return (["data", "import", src_folder, "--dataset", "imagefolder", "--name", "imgs", "--data_dir", str(data_dir)],
                data_dir / "imgs", "shutil:copyfile")
    if kind == "cifar10":
        return (["data", "import", src_folder, "--dataset", "cifar10", "--data_dir", str(data_dir)],
                data_dir / "cifar10" / "cifar-10-batches-py", "pickle:dump")
    if kind == "archive":  # a .tar.gz with one top folder, extracted on the target's disk
        import tarfile

        archive = tmp_path / "src" / "imgs.tar.gz"
        archive.parent.mkdir()
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(src_folder, arcname="cifar_subset")
        return (["data", "import", str(archive), "--dataset", "imagefolder", "--name", "imgs", "--data_dir",
                 str(data_dir)], data_dir / "imgs", "tarfile:copyfileobj")
    src = _small_idx(tmp_path / "idx")
    return (["data", "import-idx", src, str(data_dir / "fmnist"), "--classes", "fashion-mnist"], data_dir / "fmnist",
            "PIL.Image:Image.save")


def _pause_and_signal(argv: list, where: str, sig: int, tmp_path) -> subprocess.Popen:
    driver, ready = tmp_path / "pause.py", tmp_path / "ready"
    driver.write_text(PAUSE_DRIVER, encoding="utf-8")
    systmp = tmp_path / "systmp"  # the system's temporary folder, for this process alone
    systmp.mkdir()
    proc = subprocess.Popen([sys.executable, str(driver), where, str(ready), *argv], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": REPO, "TMPDIR": str(systmp)})
    deadline = time.monotonic() + 300
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(60)
    return proc


def _looks_imported(data_dir) -> list:
    """What a reader of data_dir would see: the non-hidden entries, at any depth."""
    out = []
    for root, dirs, files in os.walk(data_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [os.path.relpath(os.path.join(root, n), data_dir) for n in dirs + files if not n.startswith(".")]
    return out


@pytest.mark.parametrize("kind", ["imagefolder", "cifar10", "idx", "archive"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_an_interrupted_import_leaves_nothing_and_the_retry_works(cifar_subset_folder, tmp_path, kind, sig):
    argv, target, where = _import_case(kind, cifar_subset_folder, tmp_path)
    (tmp_path / "disk").mkdir()
    proc = _pause_and_signal(argv, where, sig, tmp_path)
    disk = tmp_path / "disk"
    assert os.listdir(tmp_path / "systmp") == []  # nothing the next import could not find
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and proc.stderr.read().strip() == "semilearn: interrupted"
        assert os.listdir(disk) == []  # not even the data folder made for it
    else:
        assert proc.returncode == -signal.SIGKILL
        assert not target.exists() and _looks_imported(disk) in ([], ["data"], ["data", "data/cifar10"])  # empty folders
    out = subprocess.run(cli(*argv), capture_output=True, text=True, cwd=REPO, timeout=600,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert out.returncode == 0, out.stderr[-2000:]
    assert target.is_dir() and not [n for n in os.listdir(target.parent) if ".importing-" in n]
    again = subprocess.run(cli(*argv), capture_output=True, text=True, cwd=REPO, timeout=600,
                           env={**os.environ, "PYTHONPATH": REPO})
    assert again.returncode == 2 and f"{target} already exists and is a complete import (" in again.stderr, again.stderr


@pytest.mark.parametrize("kind", ["imagefolder", "cifar10", "idx", "archive"])
def test_an_import_onto_a_full_disk_is_one_line_and_leaves_nothing(cifar_subset_folder, tmp_path, kind):
    argv, target, _ = _import_case(kind, cifar_subset_folder, tmp_path)
    with tmpfs(tmp_path / "disk", "1m") as disk:
        before = tree(disk)
        out = subprocess.run(cli(*argv), capture_output=True, text=True, cwd=REPO, timeout=600,
                             env={**os.environ, "PYTHONPATH": REPO})
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
        assert lines[0].startswith("semilearn data: error: cannot write the import of ") and \
            "(No space left on device): free space on its disk or choose a writable place, then import again; " \
            "nothing was imported" in lines[0], lines[0]
        assert tree(disk) == before


def test_already_exists_says_whether_the_folder_is_complete(cifar_subset_folder, tmp_path, capsys):
    from semi_usb.cli import main

    data_dir = tmp_path / "data"
    argv = ["data", "import", cifar_subset_folder, "--name", "imgs", "--data_dir", str(data_dir)]
    assert main(argv) == 0
    capsys.readouterr()
    target = data_dir / "imgs"
    victim = sorted((target / "train").iterdir())[-1]
    removed = sorted(victim.iterdir())[-1]
    removed.unlink()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    total = json.loads((target / ".semi_usb_import.json").read_text(encoding="utf-8"))["files"]
    assert err == [f"semilearn data: error: {target} already exists and is incomplete ({total - 1} of the {total} "
                   "files its import wrote): remove it and import again"], err
    handmade = data_dir / "handmade"
    shutil.copytree(cifar_subset_folder, handmade)
    assert main(["data", "import", cifar_subset_folder, "--name", "handmade", "--data_dir", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"semilearn data: error: {handmade} already exists and is not a complete import (no "
                   ".semi_usb_import.json: files put there by hand, or an import interrupted before this check "
                   "existed): check it, or remove it and import again"], err


def _archive(tmp_path, src_folder: str, extra) -> str:
    """A .tar.gz of ``src_folder`` under one top folder, with ``extra(top)`` run on a copy first."""
    import tarfile

    top = tmp_path / "pack" / "cifar_subset"
    shutil.copytree(src_folder, top)
    extra(top)
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname="cifar_subset")
    return str(archive)


def test_an_archive_import_moves_its_extraction_once_and_leaves_hidden_entries_out(
        cifar_subset_folder, tmp_path, monkeypatch):
    """The extraction is moved into the import (no second write of every image: a copy is
    refused here); hidden entries at any depth are left out, as with a source folder."""
    from semi_usb.cli import main

    def add_hidden(top):
        (top / ".DS_Store").write_bytes(b"x")
        (top / "train" / "cat" / "._0.jpg").write_bytes(b"x")
        (top / "test" / ".git").mkdir()
        (top / "test" / ".git" / "HEAD").write_text("ref")

    archive = _archive(tmp_path, cifar_subset_folder, add_hidden)

    def no_copy(*a, **k):
        raise AssertionError("the extraction was copied")

    monkeypatch.setattr(shutil, "copytree", no_copy)
    monkeypatch.setattr(shutil, "copyfile", no_copy)
    data_dir = tmp_path / "data"
    assert main(["data", "import", archive, "--name", "imgs", "--data_dir", str(data_dir)]) == 0
    target = data_dir / "imgs"
    assert sorted(_looks_imported(target)) == sorted(_looks_imported(cifar_subset_folder))
    hidden = [os.path.join(r, n) for r, ds, fs in os.walk(target) for n in ds + fs if n.startswith(".")]
    assert hidden == [str(target / ".semi_usb_import.json")], hidden
    some = sorted((target / "train" / "cat").iterdir())[0]
    assert some.read_bytes() == (Path(cifar_subset_folder) / "train" / "cat" / some.name).read_bytes()


def test_an_archive_with_a_link_is_copied_with_the_linked_file_in_its_place(cifar_subset_folder, tmp_path):
    from semi_usb.cli import main

    def add_link(top):
        first = sorted((top / "train" / "cat").iterdir())[0]
        os.symlink(first.name, top / "train" / "cat" / "linked.jpg")

    archive = _archive(tmp_path, cifar_subset_folder, add_link)
    data_dir = tmp_path / "data"
    assert main(["data", "import", archive, "--name", "imgs", "--data_dir", str(data_dir)]) == 0
    linked = data_dir / "imgs" / "train" / "cat" / "linked.jpg"
    first = sorted((data_dir / "imgs" / "train" / "cat").iterdir())[0]
    assert not linked.is_symlink() and linked.read_bytes() == first.read_bytes()
    assert not (data_dir / "imgs" / ".extracted").exists()
