"""Shared fixtures: real data only (scikit-learn's digits, CIFAR-10 JPEGs from shared/)."""
from __future__ import annotations

import json
import os
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("SEMI_USB_OFFLINE", "1")  # never try a download in tests


def cli(*args) -> list:
    """The argv of ``semilearn ARGS...`` as a separate process."""
    return [sys.executable, "-m", "semi_usb.cli", *args]


def cifar_tar() -> str | None:
    path = os.environ.get("SEMI_USB_CIFAR_TAR", os.path.join(REPO, "..", "shared", "data", "cifar10-jpeg.tar.gz"))
    return path if os.path.isfile(path) else None


@pytest.fixture(scope="session")
def cifar_subset_folder(tmp_path_factory) -> str:
    """A CIFAR-10 image folder with the first 60 train and 20 test images of each class."""
    tar_path = cifar_tar()
    if tar_path is None:
        pytest.skip("CIFAR-10 archive not found (set SEMI_USB_CIFAR_TAR)")
    root = tmp_path_factory.mktemp("cifar_subset")
    keep = {"train": 60, "test": 20}
    with tarfile.open(tar_path) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        chosen = [m for m in members if int(os.path.splitext(os.path.basename(m.name))[0]) < keep[m.name.split("/")[0]]]
        tar.extractall(root, members=chosen, filter="data")
    return str(root)


@pytest.fixture(scope="session")
def cifar_subset_data(cifar_subset_folder, tmp_path_factory) -> str:
    """``data_dir`` holding that subset imported as semilearn's CIFAR-10 files."""
    from semi_usb.cli import main

    data_dir = str(tmp_path_factory.mktemp("data"))
    assert main(["data", "import", cifar_subset_folder, "--dataset", "cifar10", "--data_dir", data_dir]) == 0
    return data_dir


def as_flags(config: str, values: dict) -> list:
    """``--config CONFIG --key value ...`` for ``semilearn train``."""
    out = ["--config", config]
    for k, v in values.items():
        out += [f"--{k}", str(v)]
    return out


def digits_flags(tmp_path, iters: int = 6, **extra) -> list:
    """Flags for a few iterations on the quick-start digits config."""
    flags = {"save_dir": str(tmp_path), "num_train_iter": iters, "epoch": 1, "num_eval_iter": max(iters // 2, 1),
             "num_log_iter": 2, "batch_size": 8, "uratio": 2, "use_tensorboard": "False",
             "semi_usb_nonfinite_patience": 5}
    flags.update(extra)
    return as_flags(os.path.join(REPO, "config", "quickstart", "digits_lt.yaml"), flags)


def only_run(root) -> str:
    """The one run folder (the folder holding ``summary.json``) anywhere under ``root``."""
    (run,) = [r for r, _, files in os.walk(root) if "summary.json" in files]
    return run


def run_summary(run) -> dict:
    """The ``summary.json`` of the run folder ``run``."""
    with open(os.path.join(run, "summary.json"), encoding="utf-8") as f:
        return json.load(f)


def error_lines(err: str) -> list:
    """The lines of stderr that are not notes (``note: ...``)."""
    return [line for line in err.strip().splitlines() if not line.startswith("note:")]


def build_on_digits(method: str, **flags):
    """The algorithm ``method`` built on the quick-start digits config, its EMA registered and
    its method state on the model's device, ready for ``train_step`` (no training loop)."""
    from semi_usb.config import build_args  # registers the plugin (semilearn imported through compat)
    from semi_usb.runner import build_algorithm, place_models, seed_everything

    base = {"save_dir": "/nonexistent", "num_train_iter": 100, "batch_size": 8, "uratio": 2, "use_tensorboard": False,
            "epoch": 1, "seed": 0}
    base.update(flags)
    args = build_args(method, os.path.join(REPO, "config", "quickstart", "digits_lt.yaml"),
                      {k: str(v) for k, v in base.items()})
    from semilearn.core.utils import EMA

    seed_everything(0)
    alg = build_algorithm(args)
    place_models(args, alg)
    alg.ema = EMA(alg.model, alg.ema_m)
    alg.ema.register()
    if "MethodStateHook" in alg.hooks_dict:
        alg.hooks_dict["MethodStateHook"].before_run(alg)
    return alg


def digits_batch(alg) -> dict:
    """The first labeled and unlabeled batch of ``alg``'s loaders, with the same augmentations
    (python/numpy RNG) for every algorithm."""
    from semi_usb.runner import seed_everything

    seed_everything(1)
    lb = next(iter(alg.loader_dict["train_lb"]))
    ulb = next(iter(alg.loader_dict["train_ulb"]))
    return alg.process_batch(**lb, **ulb)
