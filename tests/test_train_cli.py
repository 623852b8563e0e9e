"""End-to-end `semilearn train` / `eval` on real data with the real semilearn trainer (CPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, digits_flags
from semi_usb.cli import main


def test_import_semi_usb_is_light():
    """`import semi_usb` loads neither torch nor semilearn (registration is explicit)."""
    code = "import semi_usb, sys; assert 'torch' not in sys.modules and 'semilearn' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_plugin_registers_its_names():
    import semi_usb.plugin

    semi_usb.plugin.register()
    import semilearn.nets
    from semilearn.core.utils import IMB_ALGORITHMS

    from semi_usb.imb_algorithms.acr.acr import ACR
    from semi_usb.imb_algorithms.semi.semi import SeMi

    assert IMB_ALGORITHMS["acr"] is ACR and IMB_ALGORITHMS["semi"] is SeMi
    keys = sorted(IMB_ALGORITHMS.keys())
    semi_usb.plugin.register()  # a second call changes nothing
    assert sorted(IMB_ALGORITHMS.keys()) == keys and IMB_ALGORITHMS["acr"] is ACR and IMB_ALGORITHMS["semi"] is SeMi
    for name, features in [("cnn_tiny", 32), ("cnn_mid", 64), ("cnn_small", 128)]:
        net = getattr(semilearn.nets, name)(num_classes=10)
        out = net(torch.zeros(2, 3, 28, 28))
        assert net.num_features == features and out["feat"].shape == (2, features)
        assert out["logits"].shape == (2, 10)


def _summary(tmp_path) -> dict:
    (path,) = [os.path.join(r, "summary.json") for r, _, f in os.walk(tmp_path) if "summary.json" in f]
    with open(path) as f:
        return json.load(f)


@pytest.mark.parametrize("method,extra", [
    ("fixmatch", {}),
    ("daso", {"daso_num_pretrain_iter": 2, "daso_num_pl_dist_iter": 2}),
    ("abc", {}),
    ("acr", {"acr_est_epoch": 0, "epoch": 3}),
    ("semi", {"semi_warmup_iter": 2, "semi_decay_step": 2}),
])
def test_train_digits(tmp_path, method, extra):
    assert main(["train", "--algorithm", method] + digits_flags(tmp_path, iters=6, **extra)) == 0
    s = _summary(tmp_path)
    assert s["iterations_done"] == 6 and s["model"] == "ema"
    assert s["method"] == ("fixmatch" if method == "fixmatch" else f"fixmatch+{method}")
    assert s["head"] == {"abc": "aux", "acr": "balanced", "semi": "balanced"}.get(method, "standard")
    assert len(s["final"]["per_class_acc"]) == 10 and 0 <= s["final"]["top1"] <= 1
    assert sum(map(sum, s["final"]["confusion_matrix"])) == 397  # the digits test split (1797 - 10 x 140)
    assert s["lb_class_counts"] == [40, 30, 23, 18, 14, 11, 8, 6, 5, 4]  # USB's gamma=10 profile
    run = os.path.dirname(next(os.path.join(r, f) for r, _, fs in os.walk(tmp_path) for f in fs if f == "summary.json"))
    for name in ("latest_model.pth", "config.yaml", "versions.json", "eval_history.jsonl", "log.txt"):
        assert os.path.isfile(os.path.join(run, name)), name


def test_train_cifar_subset_and_eval(tmp_path, cifar_subset_data, capsys):
    flags = ["--dataset", "cifar10", "--data_dir", cifar_subset_data, "--net", "cnn_tiny", "--num_classes", "10",
             "--num_labels", "30", "--ulb_num_labels", "25", "--lb_imb_ratio", "10", "--ulb_imb_ratio", "-10",
             "--include_lb_to_ulb", "False", "--img_size", "32", "--num_train_iter", "4", "--num_eval_iter", "2",
             "--batch_size", "8", "--uratio", "2", "--eval_batch_size", "64", "--num_workers", "0",
             "--save_dir", str(tmp_path), "--use_tensorboard", "True", "--seed", "0"]
    assert main(["train", "--algorithm", "semi", "--semi_warmup_iter", "1"] + flags) == 0
    s = _summary(tmp_path)
    assert s["setting"] == "cifar10_lb30_10_ulb25_-10" and s["head"] == "balanced"
    assert s["lb_class_counts"][0] == 30 and s["ulb_class_counts"][0] == 2  # reversed unlabeled tail
    assert sum(map(sum, s["final"]["confusion_matrix"])) == 200
    run = os.path.join(str(tmp_path), s["save_name"])
    assert os.listdir(os.path.join(run, "tensorboard"))
    capsys.readouterr()
    assert main(["eval", "--checkpoint", os.path.join(run, "latest_model.pth")]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["final"]["confusion_matrix"] == s["final"]["confusion_matrix"]


def test_resume_continues_from_checkpoint(tmp_path):
    flags = digits_flags(tmp_path, iters=4, semi_warmup_iter=1)
    assert main(["train", "--algorithm", "semi"] + flags) == 0
    s1 = _summary(tmp_path)
    run = os.path.join(str(tmp_path), s1["save_name"])
    ckpt = torch.load(os.path.join(run, "latest_model.pth"), weights_only=False)
    assert ckpt["it"] == 4 and "semi_state" in ckpt and "acr_tau1_state" in ckpt
    # a longer budget is another experiment: a new run that starts from this checkpoint
    longer = digits_flags(tmp_path, iters=8, semi_warmup_iter=1)
    assert main(["train", "--algorithm", "semi", "--resume", "True", "--save_name", "longer",
                 "--load_path", os.path.join(run, "latest_model.pth")] + longer) == 0
    with open(os.path.join(str(tmp_path), "longer", "summary.json")) as f:
        assert json.load(f)["iterations_done"] == 8
    log = open(os.path.join(str(tmp_path), "longer", "log.txt")).read()
    assert "resumed from" in log and "at iteration 4" in log
    assert _summary_of(run)["iterations_done"] == 4  # the first run is left as it was


def _summary_of(run: str) -> dict:
    with open(os.path.join(run, "summary.json")) as f:
        return json.load(f)


def test_acr_and_semi_refuse_another_base(tmp_path, capsys):
    """Their step is FixMatch's: on FlexMatch they would silently drop FlexMatch's own step."""
    for argv, line in ((["--algorithm", "flexmatch+semi"], "semi runs on fixmatch only (got flexmatch)"),
                       (["--algorithm", "acr", "--base", "flexmatch"], "acr runs on fixmatch only (got flexmatch)")):
        assert main(["train"] + argv + digits_flags(tmp_path)) == 2
        err = [e for e in capsys.readouterr().err.strip().splitlines() if not e.startswith("note:")]
        assert err == [f"semilearn train: error: {line}"]
    assert not os.listdir(tmp_path)


def test_wrong_usage_is_one_line_exit_2(tmp_path):
    cmd = [sys.executable, "-m", "semi_usb.cli", "train", "--algorithm", "semi", "--config",
           os.path.join(REPO, "config", "quickstart", "digits_lt.yaml"), "--semi_bank_sise", "64", "--save_dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    err = [line for line in proc.stderr.strip().splitlines() if not line.startswith("note:")]
    assert len(err) == 1 and "unknown key 'semi_bank_sise'" in err[0] and "semi_bank_size" in err[0]
    assert "Traceback" not in proc.stderr
    assert not os.listdir(tmp_path)


def test_missing_cifar_is_one_line(tmp_path, capsys):
    code = main(["train", "--algorithm", "fixmatch", "--dataset", "cifar10", "--data_dir", str(tmp_path / "nodata"),
                 "--num_labels", "1500", "--ulb_num_labels", "3000", "--lb_imb_ratio", "100", "--ulb_imb_ratio", "-100",
                 "--save_dir", str(tmp_path / "runs"), "--net", "cnn_tiny", "--num_workers", "0"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
    assert code == 2 and len(err) == 1
    assert str(tmp_path / "nodata" / "cifar10") in err[0] and "semilearn data import" in err[0]


def test_help_lists_commands():
    proc = subprocess.run([sys.executable, "-m", "semi_usb.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0
    for cmd in ("train", "eval", "data", "compare", "report"):
        assert cmd in proc.stdout
