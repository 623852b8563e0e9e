"""Shared fixtures: real data only (scikit-learn's digits, CIFAR-10 JPEGs from shared/)."""
from __future__ import annotations

import json
import math
import os
import sys
import tarfile
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("SEMI_USB_OFFLINE", "1")  # never try a download in tests
QUICKSTART = os.path.join(REPO, "config", "quickstart", "digits_lt.yaml")  # the quick-start digits config


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
    return as_flags(QUICKSTART, flags)


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
    args = build_args(method, QUICKSTART,
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


def ema_predictions(alg, nine=(), zero=()):
    """``alg.evaluate``'s predictions after the biases of the linear layers ``nine`` are set
    to say class 9 (``arange(10) * 100``), those of ``zero`` to say class 0, and the EMA model
    takes the current weights: which head the evaluation reads."""
    import torch

    with torch.no_grad():
        for layer in nine:
            layer.bias.copy_(torch.arange(10.0) * 100)
        for layer in zero:
            layer.bias.copy_(-torch.arange(10.0) * 100)
    alg.ema.register()  # EMA := current weights
    alg.evaluate("eval")
    return alg.last_eval.y_pred


def semilearn_eval(run, capsys) -> dict:
    """``semilearn eval --checkpoint RUN/latest_model.pth``: its JSON (the last line of stdout)."""
    from semi_usb.cli import main

    capsys.readouterr()
    assert main(["eval", "--checkpoint", os.path.join(run, "latest_model.pth")]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def help_defaults(method: str, capsys) -> dict:
    """``semilearn train --algorithm METHOD --help``: each listed key's default as printed
    (``--simpro_tau`` -> ``2.0``)."""
    from semi_usb.cli import main

    capsys.readouterr()
    assert main(["train", "--algorithm", method, "--help"]) == 0
    return {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()
            if line.strip().startswith("--") and len(line.split()) > 1}


def digits_batch(alg) -> dict:
    """The first labeled and unlabeled batch of ``alg``'s loaders, with the same augmentations
    (python/numpy RNG) for every algorithm."""
    from semi_usb.runner import seed_everything

    seed_everything(1)
    lb = next(iter(alg.loader_dict["train_lb"]))
    ulb = next(iter(alg.loader_dict["train_ulb"]))
    return alg.process_batch(**lb, **ulb)


# ----------------------------------------------------------------------------- synthetic runs
# Finished run folders written by hand (summary.json, eval_history.jsonl) for the report's
# tests: their numbers are inputs to the reporting code, not results; the expected outputs
# are worked out by hand in the tests next to them.
from semi_usb.naming import make_setting  # noqa: E402  (light: no torch, no semilearn)

C = 10
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"]
# Class 0 has the fewest labels, so sorted by labeled count (desc) the order is
# 1,2,3 | 4,5,6,7 | 8,9,0  -> head {1,2,3}, medium {4,5,6,7}, tail {8,9,0}.
LB_COUNTS = [10, 100, 90, 80, 70, 60, 50, 40, 30, 20]
SETTING_A = "cifar10_lb1500_100_ulb3000_100"  # USB table: fixmatch 76.69
SETTING_B = "cifar10_lb1500_100_ulb3000_50"   # not published

BASE = {
    "fixmatch": [0.2, 0.9, 0.8, 0.9, 0.6, 0.5, 0.7, 0.4, 0.3, 0.5],
    "fixmatch+semi": [0.0, 0.95, 0.9, 0.9, 0.8, 0.8, 0.8, 0.7, 0.6, 0.7],
}
# Per run: top-1 of the 7 evaluations and the factor multiplying BASE in each.
TOP1 = {
    ("fixmatch", 0): [0.10, 0.20, 0.50, 0.70, 0.60, 0.80, 0.65],   # last5 median .65, best .80 @6
    ("fixmatch", 1): [0.10, 0.30, 0.55, 0.75, 0.62, 0.70, 0.85],   # last5 median .70, best .85 @7
    ("fixmatch+semi", 0): [0.2, 0.4, 0.70, 0.80, 0.75, 0.78, 0.82],  # median .78, best .82 @7
    ("fixmatch+semi", 1): [0.2, 0.4, 0.72, 0.74, 0.90, 0.76, 0.80],  # median .76, best .90 @5
}
FACTOR = {
    ("fixmatch", 0): [0.3, 0.5, 0.9, 1.0, 0.8, 1.1, 0.95],   # last5 median .95; @best 1.1
    ("fixmatch", 1): [0.3, 0.5, 0.7, 1.0, 0.9, 0.8, 1.05],   # last5 median .90; @best 1.05
    ("fixmatch+semi", 0): [0.3, 0.5, 0.9, 1.0, 0.8, 0.9, 0.95],  # median .90
    ("fixmatch+semi", 1): [0.3, 0.5, 0.7, 1.0, 0.9, 0.8, 1.0],   # median .90
}


def report_summary(method: str, seed: int, ulb_imb_ratio: int = 100, net: str = "wrn_28_2",
             final: Optional[Dict] = None, best: Optional[Dict] = None) -> Dict:
    algo, _, imb = method.partition("+")
    cm = [[(90 if i == j else 1) + seed for j in range(C)] for i in range(C)]
    return {
        "algorithm": algo, "imb_algorithm": imb or None, "method": method,
        "dataset": "cifar10", "net": net, "seed": seed, "num_classes": C,
        "num_labels": 1500, "ulb_num_labels": 3000, "lb_imb_ratio": 100,
        "ulb_imb_ratio": ulb_imb_ratio,
        "setting": make_setting("cifar10", 1500, 100, 3000, ulb_imb_ratio),
        "num_train_iter": 7168, "iterations_done": 7168, "batch_size": 64, "uratio": 2,
        "model": "ema", "head": "balanced" if imb else "standard",
        "final": final or {"it": 7168, "top1": 0.5, "balanced_acc": 0.5,
                           "per_class_acc": [0.5] * C, "confusion_matrix": cm,
                           "class_names": NAMES},
        "best": best or {"it": 6144, "top1": 0.9},
        "lb_class_counts": LB_COUNTS, "ulb_class_counts": [300] * C,
        "hardware": {"device": "cpu", "cpu": "test cpu", "num_threads": 2},
        "versions": {"semi_usb": "0.1.0", "semilearn": "0.3.2", "torch": "x",
                     "python": "3.11.7"},
        "wall_time_s": 1.0, "date": f"2026-11-2{seed}T10:00:00",
    }


def write_run(root: Path, method: str, seed: int, with_history: bool = True, **kw) -> Path:
    d = root / f"{method}_{seed}_{kw.get('ulb_imb_ratio', 100)}"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(report_summary(method, seed, **kw)))
    if with_history:
        lines = []
        for k, (t, f) in enumerate(zip(TOP1[(method, seed)], FACTOR[(method, seed)])):
            pca = [b * f for b in BASE[method]]
            lines.append(json.dumps({"it": 1024 * (k + 1), "top1": t,
                                     "balanced_acc": sum(pca) / C, "per_class_acc": pca}))
        (d / "eval_history.jsonl").write_text("\n".join(lines) + "\n")
    return d


def table_rows(md: str, setting: str, header_start: str) -> Dict[str, List[str]]:
    """Rows (method -> cells) of the first table after `## setting` whose header starts so."""
    section = md.split(f"## {setting}\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(header_start))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def pm(mean: float, std: float) -> str:
    return f"{mean * 100:.2f} ± {std * 100:.2f}"


def pair(a: float, b: float) -> str:
    """mean ± sample std (ddof=1) of two values, by hand: std = |a-b|/sqrt(2)."""
    return pm((a + b) / 2, abs(a - b) / math.sqrt(2))
