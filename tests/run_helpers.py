"""Shared helpers and fixtures of the reliability tests (test_reliability.py, test_refusals.py,
test_input_errors.py, test_preempt.py, test_slurm.py): real digits runs, bitwise state comparison."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from conftest import QUICKSTART, as_flags
from semi_usb.cli import main

# Method settings that make every part of the state move within a dozen iterations:
# p_cutoff 0.12 lets pseudo-labels pass (memory bank, pseudo-label histogram, tau1
# estimate), semi_warmup_iter 2 switches PLCE, OHEML and Embedding Align on early, and
# acr_est_epoch 0 makes ACR estimate in its second epoch and set tau1 at the third's start.
SEMI = {"semi_warmup_iter": 2, "semi_decay_step": 3, "p_cutoff": 0.12}
ACR = {"acr_est_epoch": 0, "p_cutoff": 0.12, "num_train_iter": 18, "epoch": 3}
EXTRA_STATE = {"semi": ("semi_state", "acr_tau1_state"), "acr": ("acr_tau1_state",)}


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def digits_cfg() -> dict:
    """The quick-start digits configuration without method-specific keys (each draws a
    note on stderr when another method runs), so stderr holds only what a test expects."""
    with open(QUICKSTART, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    return {k: v for k, v in cfg.items() if not k.startswith(("semi_", "daso_", "acr_", "abc_"))}


@pytest.fixture(scope="module")
def digits_yaml(digits_cfg, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "digits.yaml"
    path.write_text(yaml.safe_dump(digits_cfg), encoding="utf-8")
    return str(path)


def flags(config: str, save_dir, **extra) -> list:
    """``--config`` plus flags for a short, fully specified digits run named ``run``."""
    values = {"save_dir": str(save_dir), "save_name": "run", "num_train_iter": 12, "epoch": 2, "num_eval_iter": 4,
              "num_log_iter": 1000, "batch_size": 8, "uratio": 2, "use_tensorboard": "False", "num_workers": 0,
              "seed": 0, "semi_usb_nonfinite_patience": 5}
    values.update(extra)
    return as_flags(config, values)


def load(path) -> dict:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def differences(a, b, where: str = "") -> list:
    """Where two checkpoint structures differ; tensors must be bitwise equal (same dtype,
    shape and values, ``torch.equal``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}: keys {sorted(set(a) ^ set(b))}"] if set(a) != set(b) else []
        return out + [d for k in a if k in b for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        out = [f"{where}: length {len(a)} != {len(b)}"] if len(a) != len(b) else []
        return out + [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [f"{where}: tensors differ"]
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:  # both NaN
        return []
    return [] if type(a) is type(b) and a == b else [f"{where}: {a!r} != {b!r}"]


def assert_same_final_state(ref: dict, out: dict) -> None:
    """Every entry of the checkpoint equal: model, ema_model, optimizer (and scheduler if
    any), the SeMi/ACR extra state, the loop position and the RNG states; all but the
    training time, which is bookkeeping."""
    for key in ("model", "ema_model", "optimizer", "semi_usb_loop"):
        assert key in ref, key
    assert ref["semi_usb_loop"]["train_time_s"] > 0 and out["semi_usb_loop"]["train_time_s"] > 0
    diff = [d for d in differences(ref, out) if not d.startswith("/semi_usb_loop/train_time_s:")]
    assert not diff, "resumed run differs from the uninterrupted one:\n" + "\n".join(diff[:20])


def resume_a_copy(checkpoint, save_dir, method: str, config: str, run_flags: dict, run_config):
    """Copy ``checkpoint`` and its run's ``config.yaml`` (``run_config``: a resume without it
    is refused) into a new run folder under ``save_dir`` and finish that run with
    ``--resume True``; returns the run folder."""
    run = save_dir / "run"
    run.mkdir(parents=True)
    shutil.copy2(checkpoint, run / "latest_model.pth")
    shutil.copy2(run_config, run / "config.yaml")
    assert main(["train", "--algorithm", method, "--resume", "True"] + flags(config, save_dir, **run_flags)) == 0
    return run


def tree(root) -> dict:
    """path -> (size, mtime_ns, sha256) of every file under ``root`` (and every folder)."""
    out = {}
    for r, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(r, d), root) + "/"] = None
        for f in files:
            p = os.path.join(r, f)
            with open(p, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, digest)
    return out


def truncate(path) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def error_lines(err: str, command: str = "train") -> list:
    return [line for line in err.strip().splitlines() if line.startswith(f"semilearn {command}: error:")]


@pytest.fixture
def snapshots(tmp_path, monkeypatch) -> dict:
    """Copies of ``latest_model.pth`` each time the trainer writes it, by completed
    iterations: a spy around the real (atomic) save, which it calls unchanged."""
    from semilearn.core.algorithmbase import AlgorithmBase

    from semi_usb import compat

    compat.apply()
    real_save = AlgorithmBase.save_model
    folder = tmp_path / "snapshots"
    folder.mkdir()
    taken = {}

    def save_model(self, save_name, save_path):
        real_save(self, save_name, save_path)
        if save_name == "latest_model.pth":
            dst = folder / f"{self.semi_usb_done}.pth"
            shutil.copy2(os.path.join(save_path, save_name), dst)
            taken[self.semi_usb_done] = str(dst)

    monkeypatch.setattr(AlgorithmBase, "save_model", save_model)
    return taken


# ------------------------------------------------------------------ resume: deterministic


@pytest.fixture(scope="module")
def finished_run(digits_yaml, tmp_path_factory) -> str:
    """A finished 4-iteration SeMi run (checkpoints, config.yaml, versions.json, summary)."""
    save_dir = tmp_path_factory.mktemp("finished")
    assert main(["train", "--algorithm", "semi"] + flags(digits_yaml, save_dir, num_train_iter=4, epoch=1,
                                                          num_eval_iter=2, **SEMI)) == 0
    return str(save_dir / "run")


def copy_run(finished_run: str, tmp_path) -> str:
    dst = tmp_path / "saved" / "run"
    shutil.copytree(finished_run, dst)  # copy2: times kept
    return str(dst)


# ----------------------------------------------------------------------------- image folders, file systems

def image_folder(root, classes: dict, tar_path) -> None:
    """``root/<split>/<class>/<n>.png`` from real CIFAR-10 JPEGs: ``classes`` maps a class
    folder to (split -> number of images), images taken in the archive's order."""
    import io
    import tarfile

    from PIL import Image

    with tarfile.open(tar_path) as tar:
        members = (m for m in tar if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png")))
        for cls, splits in classes.items():
            for split, n in splits.items():
                folder = os.path.join(root, split, cls)
                os.makedirs(folder, exist_ok=True)
                for i in range(n):
                    data = tar.extractfile(next(members)).read()
                    Image.open(io.BytesIO(data)).convert("RGB").save(os.path.join(folder, f"{cls}_{i}.png"))


@pytest.fixture
def small_folder(tmp_path):
    from conftest import cifar_tar

    tar_path = cifar_tar()
    if tar_path is None:
        pytest.skip("CIFAR-10 archive not found (set SEMI_USB_CIFAR_TAR)")
    root = tmp_path / "imgs"
    image_folder(root, {"a": {"train": 3, "test": 2}, "b": {"train": 3, "test": 2}}, tar_path)
    return root


@contextlib.contextmanager
def tmpfs(path, size: str, read_only: bool = False):
    """A real tmpfs of ``size`` (``"2m"``) mounted at ``path`` (made) for the block: a full
    disk or a read-only file system that refuses root too. Needs root and mount: the test
    is skipped otherwise."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def fill(folder) -> None:
    """Fill the file system of ``folder`` up to its last block (a file ``filler``)."""
    with open(os.path.join(folder, "filler"), "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
