"""End-to-end `semilearn train` / `eval` on real data with the real semilearn trainer (CPU)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import QUICKSTART, REPO, cli, digits_flags, error_lines, only_run, run_summary
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
    for name in ("cpe", "cdmad", "simpro", "bacon"):  # every folder under imb_algorithms/, as the docstring says
        assert IMB_ALGORITHMS[name].__module__ == f"semi_usb.imb_algorithms.{name}.{name}"
    keys = sorted(IMB_ALGORITHMS.keys())
    semi_usb.plugin.register()  # a second call changes nothing
    assert sorted(IMB_ALGORITHMS.keys()) == keys and IMB_ALGORITHMS["acr"] is ACR and IMB_ALGORITHMS["semi"] is SeMi
    for name, features in [("cnn_tiny", 32), ("cnn_mid", 64), ("cnn_small", 128)]:
        net = getattr(semilearn.nets, name)(num_classes=10)
        out = net(torch.zeros(2, 3, 28, 28))
        assert net.num_features == features and out["feat"].shape == (2, features)
        assert out["logits"].shape == (2, 10)


@pytest.mark.parametrize("method,extra", [
    ("fixmatch", {}),
    ("daso", {"daso_num_pretrain_iter": 2, "daso_num_pl_dist_iter": 2}),
    ("abc", {}),
    ("acr", {"acr_est_epoch": 0, "epoch": 3}),
    ("semi", {"semi_warmup_iter": 2, "semi_decay_step": 2}),
])
def test_train_digits(tmp_path, method, extra):
    assert main(["train", "--algorithm", method] + digits_flags(tmp_path, iters=6, **extra)) == 0
    s = run_summary(only_run(tmp_path))
    assert s["iterations_done"] == 6 and s["model"] == "ema"
    assert s["method"] == ("fixmatch" if method == "fixmatch" else f"fixmatch+{method}")
    assert s["head"] == {"abc": "aux", "acr": "balanced", "semi": "balanced"}.get(method, "standard")
    assert len(s["final"]["per_class_acc"]) == 10 and 0 <= s["final"]["top1"] <= 1
    assert sum(map(sum, s["final"]["confusion_matrix"])) == 397  # the digits test split (1797 - 10 x 140)
    assert s["lb_class_counts"] == [40, 30, 23, 18, 14, 11, 8, 6, 5, 4]  # USB's gamma=10 profile
    run = only_run(tmp_path)
    assert "data pipeline: train_lb USB, train_ulb USB, eval USB" in open(os.path.join(run, "log.txt")).read()
    for name in ("latest_model.pth", "config.yaml", "versions.json", "eval_history.jsonl", "log.txt"):
        assert os.path.isfile(os.path.join(run, name)), name


def test_train_cifar_subset_and_eval(tmp_path, cifar_subset_data, capsys):
    flags = ["--dataset", "cifar10", "--data_dir", cifar_subset_data, "--net", "cnn_tiny", "--num_classes", "10",
             "--num_labels", "30", "--ulb_num_labels", "25", "--lb_imb_ratio", "10", "--ulb_imb_ratio", "-10",
             "--include_lb_to_ulb", "False", "--img_size", "32", "--num_train_iter", "4", "--num_eval_iter", "2",
             "--batch_size", "8", "--uratio", "2", "--eval_batch_size", "64", "--num_workers", "0",
             "--save_dir", str(tmp_path), "--use_tensorboard", "True", "--seed", "0"]
    assert main(["train", "--algorithm", "semi", "--semi_warmup_iter", "1"] + flags) == 0
    s = run_summary(only_run(tmp_path))
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
    s1 = run_summary(only_run(tmp_path))
    run = os.path.join(str(tmp_path), s1["save_name"])
    ckpt = torch.load(os.path.join(run, "latest_model.pth"), weights_only=False)
    assert ckpt["it"] == 4 and "semi_state" in ckpt and "acr_tau1_state" in ckpt
    # a longer budget is another experiment: a new run that starts from this checkpoint
    longer = digits_flags(tmp_path, iters=8, semi_warmup_iter=1)
    assert main(["train", "--algorithm", "semi", "--resume", "True", "--save_name", "longer",
                 "--load_path", os.path.join(run, "latest_model.pth")] + longer) == 0
    assert run_summary(os.path.join(str(tmp_path), "longer"))["iterations_done"] == 8
    log = open(os.path.join(str(tmp_path), "longer", "log.txt")).read()
    assert "resumed from" in log and "at iteration 4" in log
    assert run_summary(run)["iterations_done"] == 4  # the first run is left as it was


def test_fixmatch_only_methods_refuse_another_base(tmp_path, capsys):
    """Their step is FixMatch's: on FlexMatch they would silently drop FlexMatch's own step."""
    cases = [(["--algorithm", "flexmatch+semi"], "semi runs on fixmatch only (got flexmatch)"),
             (["--algorithm", "acr", "--base", "flexmatch"], "acr runs on fixmatch only (got flexmatch)")]
    cases += [(["--algorithm", f"flexmatch+{m}"], f"{m} runs on fixmatch only (got flexmatch)")
              for m in ("cpe", "cdmad", "simpro", "bacon")]
    for argv, line in cases:
        assert main(["train"] + argv + digits_flags(tmp_path)) == 2
        err = error_lines(capsys.readouterr().err)
        assert err == [f"semilearn train: error: {line}"]
    assert not os.listdir(tmp_path)


def test_wrong_usage_is_one_line_exit_2(tmp_path):
    cmd = cli("train", "--algorithm", "semi", "--config",
           QUICKSTART, "--semi_bank_sise", "64", "--save_dir", str(tmp_path))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    err = error_lines(proc.stderr)
    assert len(err) == 1 and "unknown key 'semi_bank_sise'" in err[0] and "semi_bank_size" in err[0]
    assert "Traceback" not in proc.stderr
    assert not os.listdir(tmp_path)


def test_missing_cifar_is_one_line(tmp_path, capsys):
    code = main(["train", "--algorithm", "fixmatch", "--dataset", "cifar10", "--data_dir", str(tmp_path / "nodata"),
                 "--num_labels", "1500", "--ulb_num_labels", "3000", "--lb_imb_ratio", "100", "--ulb_imb_ratio", "-100",
                 "--save_dir", str(tmp_path / "runs"), "--net", "cnn_tiny", "--num_workers", "0"])
    err = error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1
    assert str(tmp_path / "nodata" / "cifar10") in err[0] and "semilearn data import" in err[0]


COMMANDS = {  # each command and the start of its own help line in `semilearn --help`
    "train": "train one algorithm", "eval": "evaluate a checkpoint", "data": "prepare data offline",
    "compare": "run several algorithms", "report": "tables and figures",
}


def test_help_lists_commands():
    """Each command has its own line in `semilearn --help` (the usage line's {train,...} list
    is a fixed string and would name a command that is gone), and `semilearn CMD --help`
    answers for each."""
    from semi_usb.cli import build_parser

    text = build_parser().format_help()
    for cmd, help_start in COMMANDS.items():
        assert re.search(rf"^\s+{cmd}\s+{re.escape(help_start)}", text, re.M), cmd
    for cmd in COMMANDS:
        proc = subprocess.run(cli(cmd, "--help"), capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0 and proc.stdout.startswith("usage: ") and f" {cmd}" in proc.stdout.splitlines()[0], cmd


def test_config_precedence_defaults_yaml_command_line(tmp_path):
    """defaults < --config YAML < command line: num_train_iter is set at all three levels
    (default 20, YAML 40, flag 60: 60 wins), batch_size at two (default 8, YAML 16: 16),
    uratio only by default (1)."""
    from semi_usb.config import BASE_KEYS, build_args

    defaults = {k.name: k.default for k in BASE_KEYS}
    assert (defaults["num_train_iter"], defaults["batch_size"], defaults["uratio"]) == (20, 8, 1)
    config = tmp_path / "c.yaml"
    config.write_text("algorithm: fixmatch\ndataset: digits\nnum_classes: 10\nnum_labels: 100\n"
                      "num_train_iter: 40\nepoch: 1\nbatch_size: 16\n", encoding="utf-8")
    args = build_args(None, str(config), {"num_train_iter": "60"}, warn=lambda m: None)
    assert (args.num_train_iter, args.batch_size, args.uratio) == (60, 16, 1)
    assert build_args(None, str(config), {}, warn=lambda m: None).num_train_iter == 40
    assert build_args(None, None, {"dataset": "digits", "num_classes": "10", "num_labels": "100"},
                      warn=lambda m: None).num_train_iter == 20


# --- command-line behaviour a user expects: begin ---
def _protocol_shaped_config(tmp_path, save_name="fixmatch_daso_digits_lb40_10_ulb90_10_0") -> str:
    """The quick-start digits config in the shape of USB's protocol configs (config/classic_cv_imb):
    its own save_dir/save_name, ``resume: True`` with the default ``load_path``, epoch 256."""
    text = open(QUICKSTART, encoding="utf-8").read()
    text = text.replace("save_dir: ./saved_models/quickstart\n",
                        f"imb_algorithm: daso\nsave_dir: ./saved_models/classic_cv_imb\nsave_name: {save_name}\n"
                        f"resume: True\nload_path: ./saved_models/classic_cv_imb/{save_name}/latest_model.pth\n")
    text = text.replace("epoch: 3\n", "epoch: 256\n")
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_protocol_config_follows_save_dir_epoch_and_method(tmp_path, capsys):
    """`--save_dir` moves the run and its default load_path (no 'checkpoint not found'), the
    epoch follows num_train_iter / num_eval_iter, and `--algorithm semi` on a DASO config
    writes into a folder named for SeMi."""
    runs = tmp_path / "runs"
    assert main(["train", "--algorithm", "semi", "--config", _protocol_shaped_config(tmp_path), "--save_dir", str(runs),
                 "--num_train_iter", "4", "--num_eval_iter", "2", "--batch_size", "8", "--use_tensorboard", "False",
                 "--semi_warmup_iter", "1"]) == 0
    err = capsys.readouterr().err
    assert "note: epoch 2 (the config's epoch 256 does not divide num_train_iter 4" in err
    assert "note: run name fixmatch_semi_digits_lb40_10_ulb90_10_0" in err
    assert os.listdir(runs) == ["fixmatch_semi_digits_lb40_10_ulb90_10_0"]
    s = run_summary(only_run(runs))
    assert s["method"] == "fixmatch+semi" and s["iterations_done"] == 4
    assert not os.path.exists(os.path.join(REPO, "saved_models", "classic_cv_imb"))


def test_command_line_names_win(tmp_path):
    """An explicit --save_name and --load_path, an explicit --epoch, and a config whose save_name
    does not start with its method (one-line error when another method runs)."""
    from semi_usb.config import build_args
    from semi_usb.errors import ConfigError

    config = _protocol_shaped_config(tmp_path)
    quiet = dict(warn=lambda m: None)
    args = build_args("semi", config, {"save_dir": "/x", "save_name": "mine"}, **quiet)
    assert (args.save_name, args.load_path) == ("mine", os.path.join("/x", "mine", "latest_model.pth"))
    args = build_args("semi", config, {"save_dir": "/x", "load_path": "/elsewhere/ckpt.pth"}, **quiet)
    assert args.save_name == "fixmatch_semi_digits_lb40_10_ulb90_10_0" and args.load_path == "/elsewhere/ckpt.pth"
    args = build_args(None, config, {}, **quiet)  # nothing overridden: the config as written
    assert args.save_name == "fixmatch_daso_digits_lb40_10_ulb90_10_0" and args.epoch == 3  # 600 / 200
    assert args.load_path == "./saved_models/classic_cv_imb/fixmatch_daso_digits_lb40_10_ulb90_10_0/latest_model.pth"
    assert build_args(None, config, {"num_train_iter": "30", "num_eval_iter": "7"}, **quiet).epoch == 1
    with pytest.raises(ConfigError, match="not divisible by epoch 256"):
        build_args(None, config, {"num_train_iter": "30", "epoch": "256"}, **quiet)
    with pytest.raises(ConfigError, match="save_name 'my_daso_run' does not start with its method 'fixmatch_daso'"):
        build_args("semi", _protocol_shaped_config(tmp_path, "my_daso_run"), {}, **quiet)
    assert build_args("semi", _protocol_shaped_config(tmp_path, "my_daso_run"), {"save_name": "s"}, **quiet).save_name == "s"
# --- command-line behaviour a user expects: end ---


# --- quiet console: begin ---
def test_console_is_quiet_verbose_shows_usb_lines_and_eval_prints_only_json(tmp_path, capsys):
    """By default the console has the progress line every num_log_iter (2), one line per
    evaluation (at 3 and 6) and the final line; USB's lines (confusion matrices, "validating...")
    are in log.txt only. --verbose puts them on the console too. `semilearn eval`'s stdout is
    one JSON document (as `| python -m json.tool` needs)."""
    assert main(["train", "--algorithm", "semi", "--save_name", "quiet"] + digits_flags(tmp_path, iters=6)) == 0
    out, err = capsys.readouterr()
    lines = error_lines(err)
    assert len(out.strip().splitlines()) == 1 and "top-1" in out  # the final line
    assert len(lines) == 5, lines  # it 2, eval at 3, it 4, eval at 6, it 6
    assert sum("eval at it" in line for line in lines) == 2 and all("ETA" in line for line in lines if " it/s" in line)
    assert "confusion matrix" not in err + out and "validating" not in err + out
    log = open(os.path.join(str(tmp_path), "quiet", "log.txt"), encoding="utf-8").read()
    assert "confusion matrix" in log and "validating..." in log

    assert main(["train", "--algorithm", "semi", "--save_name", "loud", "--verbose"] + digits_flags(tmp_path, iters=6)) == 0
    out, err = capsys.readouterr()
    assert "confusion matrix" in err and "validating..." in err and len(error_lines(err)) > 10
    assert "confusion matrix" in open(os.path.join(str(tmp_path), "loud", "log.txt"), encoding="utf-8").read()

    proc = subprocess.run(cli("eval", "--checkpoint", os.path.join(str(tmp_path), "quiet", "latest_model.pth")),
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["final"]["confusion_matrix"] == run_summary(os.path.join(str(tmp_path), "quiet"))["final"]["confusion_matrix"]
    assert "confusion matrix" not in proc.stderr


def test_format_eta():
    from semi_usb.monitor import format_eta

    assert (format_eta(0), format_eta(75.4), format_eta(3725), format_eta(-3)) == ("0:00", "1:15", "1:02:05", "0:00")
# --- quiet console: end ---
