"""Adding an imbalanced algorithm is adding one folder (docs/adding_a_method.md).

The package is copied to a temporary folder; the example algorithm of the page (its code
blocks, exactly) is written into ``imb_algorithms/toy/`` of the copy; every other file of the
copy is the repository's, unchanged. ``semilearn train`` of the copy then finds, configures,
refuses a bad value of, trains, checkpoints and summarises ``toy`` on the quick-start digits.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import QUICKSTART, REPO, digits_flags

PAGE = os.path.join(REPO, "docs", "adding_a_method.md")
BLOCK = re.compile(r"^```python\n# (semi_usb/imb_algorithms/toy/[\w/]+\.py)\n(.*?)^```", re.S | re.M)


def page_files() -> dict:
    """{path in the package: text} of the page's code blocks that name a file of ``toy``."""
    with open(PAGE, encoding="utf-8") as f:
        return {path: text for path, text in BLOCK.findall(f.read())}


def _digests(root: str) -> dict:
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".pyc"):
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def with_toy(tmp_path_factory) -> str:
    """A copy of the package with the page's ``toy`` folder added; returns the folder that holds it."""
    root = str(tmp_path_factory.mktemp("extended"))
    shutil.copytree(os.path.join(REPO, "semi_usb"), os.path.join(root, "semi_usb"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    files = page_files()
    assert set(files) == {f"semi_usb/imb_algorithms/toy/{n}.py" for n in ("__init__", "toy", "counts", "hooks")}
    for path, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
        with open(os.path.join(root, path), "w", encoding="utf-8") as f:
            f.write(text)
    return root


def _semilearn(root: str, *argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "semi_usb.cli", *argv], capture_output=True, text=True, cwd=root,
                          env=env)


def test_the_new_folder_is_the_only_change(with_toy):
    ours = _digests(os.path.join(REPO, "semi_usb"))
    theirs = _digests(os.path.join(with_toy, "semi_usb"))
    added = sorted(set(theirs) - set(ours))
    assert added == [os.path.join("imb_algorithms", "toy", n) for n in ("__init__.py", "counts.py", "hooks.py",
                                                                         "toy.py")]
    assert {k: v for k, v in theirs.items() if k in ours} == ours


def test_the_new_algorithm_is_found_configured_and_checked(with_toy):
    shown = _semilearn(with_toy, "train", "--algorithm", "toy", "--help")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert re.search(r"--toy_tau\s+1\.0\s+logit adjustment", shown.stdout)
    assert re.search(r"--toy_start_iter\s+0\s", shown.stdout)
    refused = _semilearn(with_toy, "train", "--algorithm", "toy", "--config",
                         QUICKSTART, "--toy_tau", "-1",
                         "--save_dir", os.path.join(with_toy, "runs"))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "semilearn train: error: toy_tau must be >= 0, got -1.0"], refused.stderr[-2000:]
    assert not os.path.exists(os.path.join(with_toy, "runs"))


def test_the_new_algorithm_trains_through_semilearn_train(with_toy):
    import torch

    runs = os.path.join(with_toy, "runs")
    proc = _semilearn(with_toy, "train", "--algorithm", "toy",
                      *digits_flags(runs, iters=4, p_cutoff=0.0, toy_tau=0.5, toy_start_iter=1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (name,) = os.listdir(runs)
    run = os.path.join(runs, name)
    with open(os.path.join(run, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["method"] == "fixmatch+toy" and summary["head"] == "standard" and summary["iterations_done"] == 4
    with open(os.path.join(run, "config.yaml"), encoding="utf-8") as f:
        assert "toy_tau: 0.5\n" in f.read()
    ckpt = torch.load(os.path.join(run, "latest_model.pth"), map_location="cpu", weights_only=True)
    counts = ckpt["toy_state"]["counts"]
    assert counts.sum() == 3 * 16  # p_cutoff 0: every unlabeled image of steps 1-3 (batch 8 x uratio 2)
