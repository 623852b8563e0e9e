"""Reliability, third pass: every bad value is one line on stderr and exit status 2, with
nothing written anywhere (the run's save_dir, the data folder, HOME); run names stay plain
folder names; reports count each (method, seed) once and refuse what is not a result.

Real data (scikit-learn's digits) and the real trainer on the CPU. docs/reliability.md
lists each case.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import pytest
import yaml

from conftest import REPO, cli
from run_helpers import QUICKSTART, SEMI, digits_cfg, digits_yaml, finished_run, flags, tree  # noqa: F401  (fixtures)
from semi_usb.cli import main

BAD_VALUES = [
    ("seed-negative", ["--seed", "-1"], "seed must be in [0, 4294967295], got -1"),
    ("seed-too-large", ["--seed", "4294967296"], "seed must be in [0, 4294967295], got 4294967296"),
    ("ratio-nan", ["--ulb_imb_ratio", "nan"], "ulb_imb_ratio must be a finite number, got nan"),
    ("lb-ratio-inf", ["--lb_imb_ratio", "inf"], "lb_imb_ratio must be a finite number, got inf"),
    ("lr-inf", ["--lr", "inf"], "lr must be finite (float32: at most 3.4e38) and > 0, got inf"),
    ("weight-decay-inf", ["--weight_decay", "inf"], "weight_decay must be finite (float32: at most 3.4e38) and >= 0, got inf"),
    ("lr-beyond-float32", ["--lr", "1e300"], "lr must be finite (float32: at most 3.4e38) and > 0, got 1e+300"),
    ("temperature-inf", ["--T", "inf"], "T must be finite (float32: at most 3.4e38) and > 0, got inf"),
    ("unknown-dataset", ["--dataset", "mnist"], "unknown dataset 'mnist' (did you mean 'tissuemnist'?) (known: "),
    ("usb-dataset-offline", ["--dataset", "svhn", "--data_dir", "{tmp}/data"],
     "svhn not found at {tmp}/data/svhn/train_32x32.mat and it cannot be downloaded here"),
    ("unknown-optimizer", ["--optim", "Adamm"], "unknown optim 'Adamm' (did you mean 'AdamW'?)"),
    ("unknown-torchvision-net", ["--net", "resnet_bogus", "--net_from_name", "True"],
     "unknown network 'resnet_bogus' in torchvision.models (net_from_name True)"),
    ("save-name-dot-slash", ["--save_name", "./"], "save_name './' must name a folder inside save_dir"),
    ("save-name-dot", ["--save_name", "."], "save_name '.' must name a folder inside save_dir"),
    ("save-name-subfolder", ["--save_name", "sub/run"], "save_name 'sub/run' must name a folder inside save_dir"),
    ("save-name-newline", ["--save_name", "a\nb"], "save_name 'a\\nb' must name a folder inside save_dir"),
    ("huge-value", ["--lr", "x" * 5000], "key 'lr' in the command line: expected float, got 'xxxx"),
    ("huge-string-value", ["--data_pipeline", "x" * 5000], "data_pipeline must be 'usb' or 'gpu', got 'xxxx"),
    ("huge-key", ["--" + "k" * 5000, "1"], "unknown key 'kkkk"),
]


@pytest.mark.parametrize("extra,expected", [pytest.param(*c[1:], id=c[0]) for c in BAD_VALUES])
def test_a_bad_value_is_one_short_line_exit_2_and_writes_nothing(digits_yaml, tmp_path, capsys, extra, expected):
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    before = tree(tmp_path)
    code = main(["train", "--algorithm", "semi"] + flags(digits_yaml, tmp_path / "runs") + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err[:5]
    assert err[0].startswith("semilearn train: error: ") and expected.replace("{tmp}", str(tmp_path)) in err[0], err[0]
    assert len(err[0]) < 600, len(err[0])  # a value the user gave is quoted shortened
    assert tree(tmp_path) == before


def test_yaml_anchors_are_refused_and_never_expanded_into_a_message(digits_cfg, tmp_path, capsys):
    """Nested anchors grow exponentially (a 1.4 KB file fills the memory); here 9**3 values
    stand for that: refused at the first alias, one short line."""
    config = tmp_path / "anchors.yaml"
    config.write_text(yaml.safe_dump(digits_cfg) + 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
                      "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nlr: *c\n",
                      encoding="utf-8")
    before = tree(tmp_path)
    code = main(["train", "--algorithm", "fixmatch", "--config", str(config), "--save_dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err[:3]
    assert f"config file {config} line " in err[0] and "anchors and aliases are not accepted" in err[0], err[0]
    assert len(err[0]) < 400
    assert tree(tmp_path) == before


def test_notes_about_ignored_keys_wait_for_a_successful_start(tmp_path, capsys):
    """The quick-start config under another method: its SeMi/DASO/ACR keys draw a note. A
    refused command prints its error alone; a run that starts prints the note and logs it."""
    base = ["train", "--algorithm", "fixmatch", "--config", QUICKSTART, "--save_dir", str(tmp_path / "runs"),
            "--save_name", "run", "--num_train_iter", "2", "--num_eval_iter", "2", "--epoch", "1",
            "--use_tensorboard", "False"]
    assert main(base + ["--lr", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["semilearn train: error: lr must be > 0, got -1.0"], err
    assert main(base) == 0
    err = capsys.readouterr().err
    assert "note: ignored keys of other methods (not fixmatch): semi_warmup_iter (semi)" in err
    log = (tmp_path / "runs" / "run" / "log.txt").read_text(encoding="utf-8")
    assert "note: ignored keys of other methods (not fixmatch)" in log


@pytest.mark.parametrize("case", ["bad-value", "empty-config"])
def test_a_refused_command_writes_nothing_to_home_or_the_data_folder(tmp_path, case):
    """semilearn's import made ~/.medmnist; an empty config (CIFAR-10 by default, not on
    disk) left ./data/cifar10 behind."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    if case == "bad-value":
        argv = ["--algorithm", "semi", "--config", QUICKSTART, "--lr", "-1"]
        expected = "lr must be > 0, got -1.0"
    else:
        (work / "empty.yaml").write_text("", encoding="utf-8")
        argv = ["--config", "empty.yaml"]
        expected = "cifar10 not found at ./data/cifar10 and it cannot be downloaded here"
    before = tree(work)
    proc = subprocess.run(cli("train", *argv), capture_output=True, text=True, cwd=work, timeout=600,
                          env={**os.environ, "HOME": str(home), "PYTHONPATH": REPO})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]
    assert os.listdir(home) == []
    assert tree(work) == before


def test_run_files_get_the_mode_of_the_umask(digits_yaml, tmp_path):
    old = os.umask(0o027)
    try:
        assert main(["train", "--algorithm", "fixmatch"] + flags(digits_yaml, tmp_path, num_train_iter=2, epoch=1,
                                                                  num_eval_iter=2)) == 0
    finally:
        os.umask(old)
    run = tmp_path / "run"
    modes = {n: stat.S_IMODE(os.stat(run / n).st_mode) for n in ("config.yaml", "versions.json", "summary.json",
                                                                  "latest_model.pth", "eval_history.jsonl")}
    assert modes == dict.fromkeys(modes, 0o640), {k: oct(v) for k, v in modes.items()}


def test_a_lock_taken_as_a_failing_run_removes_its_folder_is_not_a_traceback(digits_yaml, tmp_path, monkeypatch):
    """A failing run on the same name removes its (empty) folder just after this command
    found it: the lock is taken in a folder claimed again, and the run trains."""
    from semi_usb import run_folder

    real = run_folder._claim_dirs
    removed = []

    def claim_dirs_then_lose_the_folder(path):
        created = real(path)
        if not removed:  # the other process's cleanup, between our claim and our lock
            os.rmdir(path)
            removed.append(path)
        return created

    monkeypatch.setattr(run_folder, "_claim_dirs", claim_dirs_then_lose_the_folder)
    assert main(["train", "--algorithm", "fixmatch"] + flags(digits_yaml, tmp_path / "runs", num_train_iter=2, epoch=1,
                                                              num_eval_iter=2)) == 0
    assert removed and (tmp_path / "runs" / "run" / "summary.json").is_file()


# ------------------------------------------------------------------------------ eval

def test_eval_of_a_non_torch_file_is_one_line(finished_run, tmp_path, capsys):
    import pickle

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    with open(run / "other.pth", "wb") as f:
        pickle.dump({"model": 1, "x": object}, f, protocol=4)
    assert main(["eval", "--checkpoint", str(run / "other.pth")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"semilearn eval: error: checkpoint {run / 'other.pth'} is unreadable (RuntimeError: "
                   "not a checkpoint written by torch.save (not its zip format))"], err


def test_eval_of_another_networks_checkpoint_keeps_its_reason(finished_run, tmp_path, capsys):
    cfg = yaml.safe_load(open(os.path.join(finished_run, "config.yaml"), encoding="utf-8"))
    cfg["net"] = "cnn_small"
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    ckpt = os.path.join(finished_run, "latest_model.pth")
    assert main(["eval", "--checkpoint", ckpt, "--config", str(other), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "does not fit fixmatch_semi / cnn_small: Error(s) in loading state_dict for DataParallel: " \
           "Missing key(s) in state_dict: \"module." in err[0], err[0]
    assert not (tmp_path / "o.json").exists()


# ------------------------------------------------------------------------------ report

def _report(args: list, capsys) -> tuple:
    code = main(["report", *map(str, args)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_report_refuses_a_run_folder_that_also_holds_runs(finished_run, tmp_path, capsys):
    """What `--save_name ./` made before it was refused: a run written into save_dir
    itself, beside the other runs; the report took the folder for one run and dropped the rest."""
    outer = tmp_path / "save_dir"
    shutil.copytree(finished_run, outer)
    shutil.copytree(finished_run, outer / "other")
    code, err = _report([outer, "--out", tmp_path / "out"], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0] == (f"semilearn report: error: {outer} is a run (it has summary.json or config.yaml) and also holds "
                      f"runs ({outer / 'other'}): name the runs one by one, or move the outer run into a folder of "
                      "its own"), err[0]
    assert not (tmp_path / "out").exists()


def test_report_counts_a_method_and_seed_once(finished_run, tmp_path, capsys):
    for name in ("a", "b"):
        shutil.copytree(finished_run, tmp_path / name / "run")
    code, err = _report([tmp_path / "a" / "run", tmp_path / "b" / "run", "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    assert f"note: left out {tmp_path / 'b' / 'run'}: fixmatch+semi seed 0 on digits_lb40_10_ulb90_10 is already " \
           f"{tmp_path / 'a' / 'run'} (a (method, seed) counts once)" in err
    import csv

    with open(tmp_path / "out" / "results.csv", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["n_seeds"], row["top1_final_n"]) == ("1", "1"), row


@pytest.mark.parametrize("where", ["history", "summary"])
def test_report_refuses_a_non_finite_result(finished_run, tmp_path, capsys, where):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if where == "history":
        rows = [json.loads(line) for line in (run / "eval_history.jsonl").read_text(encoding="utf-8").splitlines()]
        rows[-1]["top1"] = float("nan")
        (run / "eval_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        expected = f"{run / 'eval_history.jsonl'} (it {rows[-1]['it']}): non-finite top1 (NaN or inf): the run diverged"
    else:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        summary["final"]["balanced_acc"] = float("inf")
        (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
        (run / "eval_history.jsonl").unlink()
        expected = f"{run / 'summary.json'} 'final': non-finite balanced_acc (NaN or inf): the run diverged"
    code, err = _report([run, "--out", tmp_path / "out"], capsys)
    assert code == 2 and len(err) == 1 and expected in err[0], err


@pytest.mark.parametrize("command", ["eval", "report"])
def test_eval_and_report_write_nothing_into_home(finished_run, tmp_path, command):
    """semilearn's import made ~/.medmnist (eval); matplotlib's font cache and configuration
    went to ~/.cache/matplotlib and ~/.config/matplotlib (report)."""
    home = tmp_path / "home"
    home.mkdir()
    if command == "eval":
        argv = ["eval", "--checkpoint", os.path.join(finished_run, "latest_model.pth"), "--out", str(tmp_path / "e.json")]
    else:
        argv = ["report", finished_run, "--out", str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    proc = subprocess.run(cli(*argv), capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**env, "HOME": str(home), "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.listdir(home) == []
