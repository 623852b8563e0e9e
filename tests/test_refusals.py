"""Never lose a run, refuse bad input: existing, finished, corrupt or busy run folders, wrong
types, bad training input and bad checkpoints get one line, exit 2, and nothing changes on disk.

Real data (scikit-learn's digits) and the real semilearn trainer, on the CPU; docs/reliability.md
summarises what is covered."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import torch
import yaml

from conftest import REPO, cli
from semi_usb.cli import main
from run_helpers import SEMI, copy_run, differences, error_lines, flags, load, tree, truncate
from run_helpers import digits_cfg, digits_yaml, finished_run, snapshots  # noqa: F401  (fixtures)


def test_each_run_saves_config_and_versions_beside_its_checkpoints(finished_run):
    files = set(os.listdir(finished_run))
    assert {"latest_model.pth", "model_best.pth", "config.yaml", "versions.json", "summary.json"} <= files
    with open(os.path.join(finished_run, "config.yaml")) as f:
        config = yaml.safe_load(f)
    assert (config["algorithm"], config["imb_algorithm"], config["num_train_iter"], config["seed"]) == ("fixmatch", "semi", 4, 0)
    assert config["p_cutoff"] == 0.12 and config["dataset"] == "digits"
    with open(os.path.join(finished_run, "versions.json")) as f:
        info = json.load(f)
    assert info["versions"]["torch"] == torch.__version__ and "semilearn" in info["versions"]
    assert info["hardware"]["device"] == "cpu" or torch.cuda.is_available()
    assert info["hardware"]["cpu_count"] == os.cpu_count()
    if os.path.exists("/proc/cpuinfo"):  # Linux: the model name of its first CPU
        models = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        assert info["hardware"]["cpu_model"] == (models[0] if models else None)
    with open(os.path.join(finished_run, "summary.json")) as f:
        assert json.load(f)["resumed_from_it"] == 0


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "unfinished"])
def test_rerunning_an_existing_run_without_resume_refuses_and_touches_nothing(finished_run, digits_yaml, tmp_path,
                                                                            capsys, finished):
    run = copy_run(finished_run, tmp_path)
    if not finished:
        os.remove(os.path.join(run, "summary.json"))
    before = tree(tmp_path)
    code = main(["train", "--algorithm", "semi"] + flags(digits_yaml, tmp_path / "saved", num_train_iter=4, epoch=1,
                                                          num_eval_iter=2, **SEMI))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("semilearn train: error: run ") and "already exists" in err[0]
    assert ("is finished" in err[0]) == finished and ("pass --resume" in err[0]) == (not finished)
    assert tree(tmp_path) == before


def test_resume_from_a_corrupt_checkpoint_fails_loudly_and_keeps_it(finished_run, digits_yaml, tmp_path):
    """USB logs "Fail to resume" and trains from scratch; here: one line, exit 2, and the
    corrupt file (and every other file) is left exactly as it was."""
    run = copy_run(finished_run, tmp_path)
    os.remove(os.path.join(run, "summary.json"))  # killed before the end
    truncate(os.path.join(run, "latest_model.pth"))
    before = tree(tmp_path)
    proc = subprocess.run(cli("train", "--algorithm", "semi", "--resume", "True",
                              *flags(digits_yaml, tmp_path / "saved", num_train_iter=8, epoch=1, num_eval_iter=2, **SEMI)),
                          capture_output=True, text=True, cwd=REPO)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert err[0].startswith("semilearn train: error: checkpoint ") and "latest_model.pth is unreadable" in err[0]
    assert "Traceback" not in proc.stderr
    assert tree(tmp_path) == before


def test_resume_with_a_checkpoint_that_does_not_fit_fails_loudly_and_touches_nothing(finished_run, digits_yaml,
                                                                                     tmp_path, capsys):
    """Starting a new run from a checkpoint of another network: one line, exit 2, and
    nothing is written (the run folder is made only once the checkpoint has loaded)."""
    run = copy_run(finished_run, tmp_path)
    before = tree(tmp_path)
    code = main(["train", "--algorithm", "semi", "--resume", "True", "--net", "cnn_small",
                 "--load_path", os.path.join(run, "latest_model.pth")]
                + flags(digits_yaml, tmp_path / "saved", save_name="other", num_train_iter=8, epoch=1, num_eval_iter=2,
                        **SEMI))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"semilearn train: error: checkpoint {run}/latest_model.pth does not fit fixmatch_semi / "
                             "cnn_small: Error(s) in loading state_dict")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("change,expect", [
    ({"num_train_iter": 8}, "num_train_iter=4 (now 8)"),
    ({"net": "cnn_small", "lr": 0.1}, "lr=0.03 (now 0.1), net='cnn_tiny' (now 'cnn_small')"),
])
def test_resume_with_another_configuration_is_refused_and_touches_nothing(finished_run, digits_yaml, tmp_path,
                                                                          capsys, change, expect):
    """USB resumes whatever it is given: a changed budget or network would mix two
    experiments in one run folder (and a finished run would count as done)."""
    run = copy_run(finished_run, tmp_path)
    os.remove(os.path.join(run, "summary.json"))
    before = tree(tmp_path)
    values = {"num_train_iter": 4, "epoch": 1, "num_eval_iter": 2, **SEMI, **change}
    code = main(["train", "--algorithm", "semi", "--resume", "True"] + flags(digits_yaml, tmp_path / "saved", **values))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"semilearn train: error: run {run} was started with {expect}: continue it with its own "
                             "configuration"), err[0]
    assert tree(tmp_path) == before
    # runtime keys (threads, loader workers, logging, where the data is) may change
    assert main(["train", "--algorithm", "semi", "--resume", "True"]
                + flags(digits_yaml, tmp_path / "saved", num_train_iter=4, epoch=1, num_eval_iter=2, **SEMI,
                        num_log_iter=3, semi_usb_num_threads=1, eval_batch_size=32)) == 0


@pytest.mark.parametrize("lb_in_ulb,mask_l,refused", [
    (True, True, True),     # ACR's estimate counted the labeled images before acr_mask_l: not the same run
    (True, False, False),   # the value the old file means
    (False, True, False),   # no labeled images in the unlabeled set: acr_mask_l changes nothing
])
def test_a_key_added_since_a_run_began_counts_at_what_its_config_meant(tmp_path, lb_in_ulb, mask_l, refused):
    """A run whose config.yaml predates ``acr_mask_l`` counted the labeled images of the
    unlabeled set in ACR's estimate: under today's default (leave them out) it is another
    experiment, and is neither resumed nor counted as done; where they are absent, or with
    ``--acr_mask_l False``, it is the same one."""
    from argparse import Namespace

    from semi_usb.run_folder import check_same_experiment, experiment_changes

    old = {"algorithm": "fixmatch", "imb_algorithm": "acr", "include_lb_to_ulb": lb_in_ulb, "acr_tau1": 2.0, "num_train_iter": 4}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    now = Namespace(**old, acr_mask_l=mask_l, save_dir="elsewhere")
    changes = experiment_changes(now, str(tmp_path))
    if refused:
        assert changes == ["acr_mask_l=False (absent from its config.yaml, which predates the key; now True)"]
        with pytest.raises(Exception, match=r"was started with acr_mask_l=False \(absent"):
            check_same_experiment(now, str(tmp_path))
    else:
        assert changes == []
    # a file that names the key is compared as written
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**old, "acr_mask_l": not mask_l}))
    assert experiment_changes(now, str(tmp_path)) == [f"acr_mask_l={not mask_l!r} (now {mask_l!r})"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="DDP on a machine without GPUs")
def test_ddp_without_a_gpu_is_refused_and_writes_nothing(digits_yaml, tmp_path, capsys):
    """An externally launched DDP job on the CPU: USB's hooks divide the rank by the GPU count,
    and every rank would count as the main one and write the run folder."""
    code = main(["train", "--algorithm", "semi", "--world_size", "2", "--rank", "0"]
                + flags(digits_yaml, tmp_path / "saved", num_train_iter=4, epoch=1, num_eval_iter=2, **SEMI))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["semilearn train: error: world_size 2 needs GPUs: this machine has none, and USB's "
                                 "DDP picks its main process by GPU; train on the CPU with world_size 1"], err
    assert not (tmp_path / "saved").exists()


def test_resume_of_a_run_killed_after_its_last_checkpoint_finishes_it(finished_run, digits_yaml, tmp_path):
    """Killed after the last step's checkpoint, before summary.json: resuming trains nothing,
    evaluates, and writes the summary (the loop state of the checkpoint is kept)."""
    run = copy_run(finished_run, tmp_path)
    os.remove(os.path.join(run, "summary.json"))
    ckpt = load(os.path.join(run, "latest_model.pth"))
    assert main(["train", "--algorithm", "semi", "--resume", "True"]
                + flags(digits_yaml, tmp_path / "saved", num_train_iter=4, epoch=1, num_eval_iter=2, **SEMI)) == 0
    with open(os.path.join(run, "summary.json")) as f:
        summary = json.load(f)
    assert (summary["iterations_done"], summary["resumed_from_it"]) == (4, 4)
    # its wall time is the run's training time, the killed process's included
    assert summary["wall_time_s"] >= ckpt["semi_usb_loop"]["train_time_s"] > 0
    again = load(os.path.join(run, "latest_model.pth"))
    assert again["it"] == 4 and again["semi_usb_loop"]["epoch_step"] == ckpt["semi_usb_loop"]["epoch_step"]
    assert not differences(again["model"], ckpt["model"])


@pytest.mark.parametrize("checkpoints", [True, False], ids=["with-checkpoints", "checkpoints-deleted"])
def test_resume_of_a_finished_run_keeps_it_as_it_is(finished_run, digits_yaml, tmp_path, capsys, checkpoints):
    """USB resumes a finished run by evaluating its last checkpoint again and rewriting its
    summary (wall time ~0 s); without its checkpoints it would train from scratch into the
    finished folder. Here both say "nothing to resume", return the run's own summary and
    leave every file as it was."""
    run = copy_run(finished_run, tmp_path)
    if not checkpoints:
        for name in ("latest_model.pth", "model_best.pth"):
            os.remove(os.path.join(run, name))
    with open(os.path.join(run, "summary.json")) as f:
        summary = json.load(f)
    before = tree(tmp_path)
    code = main(["train", "--algorithm", "semi", "--resume", "True"]
                + flags(digits_yaml, tmp_path / "saved", num_train_iter=4, epoch=1, num_eval_iter=2, **SEMI))
    out, err = capsys.readouterr()
    assert code == 0 and err.strip() == f"run {run} is finished: nothing to resume (its summary.json is kept)"
    assert f"{100 * summary['final']['top1']:.2f}%" in out
    assert tree(tmp_path) == before
    # ... with another configuration it is refused, as an unfinished run is
    code = main(["train", "--algorithm", "semi", "--resume", "True"]
                + flags(digits_yaml, tmp_path / "saved", num_train_iter=8, epoch=1, num_eval_iter=2, **SEMI))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"semilearn train: error: run {run} was started with num_train_iter=4 (now 8): "
                                 "continue it with its own configuration (its config.yaml), or start a new run from "
                                 "its checkpoint (another --save_name, --load_path to the checkpoint)"]
    assert tree(tmp_path) == before


def test_an_unreadable_summary_is_one_line_and_kept(finished_run, digits_yaml, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    truncate(os.path.join(run, "summary.json"))
    before = tree(tmp_path)
    code = main(["train", "--algorithm", "semi", "--resume", "True"]
                + flags(digits_yaml, tmp_path / "saved", num_train_iter=4, epoch=1, num_eval_iter=2, **SEMI))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"semilearn train: error: run {run} has an unreadable "
                                                             "summary.json (JSONDecodeError"), err
    assert tree(tmp_path) == before


def test_a_run_in_use_by_another_process_is_refused_and_touches_nothing(finished_run, digits_yaml, tmp_path, capsys):
    """Two processes writing one run folder would interleave checkpoints: while one holds
    the run's lock (here: this test, through the same flock the trainer takes), a second
    `train --resume` is one line, exit 2, and leaves every file as it was."""
    import fcntl

    run = copy_run(finished_run, tmp_path)
    os.remove(os.path.join(run, "summary.json"))
    with open(os.path.join(run, ".lock"), "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = tree(tmp_path)
        code = main(["train", "--algorithm", "semi", "--resume", "True"]
                    + flags(digits_yaml, tmp_path / "saved", num_train_iter=4, epoch=1, num_eval_iter=2, **SEMI))
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err == [f"semilearn train: error: run {run} is in use by another process: wait for it to "
                                     "end, or choose another save_name"], err
        assert tree(tmp_path) == before
    # released: the same command now finishes the run
    assert main(["train", "--algorithm", "semi", "--resume", "True"]
                + flags(digits_yaml, tmp_path / "saved", num_train_iter=4, epoch=1, num_eval_iter=2, **SEMI)) == 0
    assert os.path.isfile(os.path.join(run, "summary.json"))


# ------------------------------------------------------------------ non-finite steps

def test_a_diverging_run_skips_counts_and_stops_with_the_last_good_checkpoint_intact(tmp_path, digits_yaml,
                                                                                   snapshots, capsys):
    """lr 1e12 on digits: the first step blows the weights up, the following steps are
    non-finite; they are skipped (weights, buffers and optimizer untouched), counted, and
    after 3 in a row training stops. The checkpoint written meanwhile holds the last good
    step's model, all finite."""
    code = main(["train", "--algorithm", "semi"] + flags(digits_yaml, tmp_path, num_train_iter=20, epoch=1, num_eval_iter=1,
                                                          num_log_iter=1, lr=1e12, semi_usb_nonfinite_patience=3, **SEMI))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = error_lines(err)
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err[-2000:]
    stop = re.match(r"semilearn train: error: 3 non-finite steps in a row at iteration (\d+): stopped; "
                    r"the last checkpoint in .* is intact$", errors[0])
    assert stop, errors[0]
    stop_it = int(stop.group(1))
    run = tmp_path / "run"
    log = (run / "log.txt").read_text()
    first_skip = int(re.search(r"at iteration (\d+): step skipped \(1 in a row, 1 in all\)", log).group(1))
    assert first_skip >= 2 and stop_it == first_skip + 2
    for n in (1, 2, 3):
        assert f"step skipped ({n} in a row, {n} in all)" in log
    assert "train/nonfinite_steps: 2.0000" in log  # counted (logged at the step before the stop)
    assert not (run / "summary.json").exists()

    final = load(run / "latest_model.pth")  # loadable
    assert final["it"] == stop_it - 1  # written after the skipped steps, not at the stop
    last_good = load(snapshots[first_skip - 1])
    assert not differences(last_good["model"], final["model"]), "skipped steps changed the model"
    assert not differences(last_good["optimizer"], final["optimizer"]), "skipped steps changed the optimizer"
    for part in ("model", "ema_model"):
        for name, t in final[part].items():
            assert not t.is_floating_point() or torch.isfinite(t).all(), f"{part}/{name}"
    for name, t in final["acr_tau1_state"].items():
        assert torch.isfinite(t).all(), f"acr_tau1_state/{name}"
    bank = final["semi_state"]["bank"]
    assert torch.isfinite(bank["feats"]).all() and torch.isfinite(bank["conf"][bank["filled"]]).all()
    assert torch.isfinite(final["semi_state"]["ealign_center"]).all()
    for state in final["optimizer"]["state"].values():
        assert all(torch.isfinite(v).all() for v in state.values() if isinstance(v, torch.Tensor))


# ------------------------------------------------------------------ bad configuration

def test_wrong_type_is_one_line_exit_2_and_debug_shows_the_traceback(digits_yaml, tmp_path):
    argv = cli("train", "--algorithm", "semi", *flags(digits_yaml, tmp_path / "runs"), "--num_train_iter", "abc")
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "semilearn train: error: key 'num_train_iter' in the command line: expected int, got 'abc'"]
    assert not os.path.exists(tmp_path / "runs")

    proc = subprocess.run(argv + ["--debug"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "semi_usb.errors.ConfigError: key 'num_train_iter' in the command line: expected int, got 'abc'" in proc.stderr
    assert not os.path.exists(tmp_path / "runs")


BAD_TRAIN = [
    # (id, algorithm, extra flags, YAML: dict merged into the digits config / raw text / None, expected)
    ("unknown-key-flag", "semi", ["--num_train_iters", "5"], None,
     ["unknown key 'num_train_iters' in the command line", "(did you mean 'num_train_iter'?)"]),
    ("unknown-key-yaml", "semi", [], {"p_cutof": 0.5},
     ["unknown key 'p_cutof' in the config file", "(did you mean 'p_cutoff'?)"]),
    ("yaml-string-for-float", "semi", [], {"lr": "fast"},
     ["key 'lr' in the config file: expected float, got 'fast'"]),
    ("flag-string-for-float", "semi", ["--ema_m", "high"], None, ["key 'ema_m' in the command line: expected float, got 'high'"]),
    ("gamma-l-below-1", "semi", ["--lb_imb_ratio", "0.5"], None, ["lb_imb_ratio (gamma_l) must be >= 1, got 0.5"]),
    ("gamma-u-0.5", "semi", ["--ulb_imb_ratio", "0.5"], None,
     ["ulb_imb_ratio (gamma_u) must be 1 or |gamma_u| > 1", "got 0.5"]),
    ("gamma-u-minus-0.5", "semi", ["--ulb_imb_ratio", "-0.5"], None,
     ["ulb_imb_ratio (gamma_u) must be 1 or |gamma_u| > 1", "got -0.5"]),
    ("more-labels-than-a-class-has", "semi", ["--num_labels", "150"], None,
     ["digits: class 0 has 140 training images but the split asks for 150 labeled + 90 unlabeled"]),
    ("more-unlabeled-than-a-class-has", "semi", ["--ulb_num_labels", "120"], None,
     ["digits: class 0 has 140 training images but the split asks for 40 labeled + 120 unlabeled"]),
    ("num-classes-mismatch", "semi", ["--num_classes", "9"], None, ["num_classes=9 but digits has 10 classes"]),
    ("unknown-algorithm", "semii", [], None, ["unknown algorithm 'semii'", "(did you mean 'semi'?)"]),
    ("unknown-network", "semi", ["--net", "cnn_tinny"], None, ["unknown network 'cnn_tinny'", "(did you mean 'cnn_tiny'?)"]),
    ("cifar10-empty-data-dir", "semi", ["--dataset", "cifar10", "--data_dir", "{tmp}/data"], None,
     ["cifar10 not found at {tmp}/data/cifar10", "semilearn data import"]),
    ("imagefolder-missing", "semi", ["--dataset", "imagefolder", "--data_dir", "{tmp}/no_such_folder"], None,
     ["image folder not found: {tmp}/no_such_folder/train"]),
    ("yaml-not-yaml", "semi", [], "lr: [0.1\nseed: 0\n", ["is not valid YAML"]),
    ("resume-from-missing-load-path", "semi", ["--resume", "True", "--load_path", "{tmp}/none.pth"], None,
     ["resume requested but checkpoint not found: {tmp}/none.pth"]),
    ("config-file-missing", "semi", ["--config", "{tmp}/missing.yaml"], None, ["config file not found: {tmp}/missing.yaml"]),
]


@pytest.mark.parametrize("algorithm,extra,yaml_change,expected", [pytest.param(*c[1:], id=c[0]) for c in BAD_TRAIN])
def test_bad_training_input_is_one_line_exit_2_and_writes_nothing(digits_cfg, digits_yaml, tmp_path, capsys, algorithm,
                                                                  extra, yaml_change, expected):
    (tmp_path / "data").mkdir()  # an empty data_dir
    config = digits_yaml
    if yaml_change is not None:
        config = str(tmp_path / "bad.yaml")
        text = yaml_change if isinstance(yaml_change, str) else yaml.safe_dump(dict(digits_cfg, **yaml_change))
        with open(config, "w", encoding="utf-8") as f:
            f.write(text)
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    before = tree(tmp_path)
    code = main(["train", "--algorithm", algorithm] + flags(config, tmp_path / "runs") + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("semilearn train: error: ")
    for text in expected:
        assert text.replace("{tmp}", str(tmp_path)) in err[0], err[0]
    assert tree(tmp_path) == before  # no run folder, no data folder, nothing overwritten


@pytest.mark.parametrize("case", ["missing", "corrupt", "no-config"])
def test_eval_of_a_bad_checkpoint_is_one_line_exit_2(finished_run, tmp_path, capsys, case):
    if case == "missing":
        checkpoint, expected = str(tmp_path / "nope.pth"), f"checkpoint not found: {tmp_path / 'nope.pth'}"
    elif case == "corrupt":
        checkpoint = os.path.join(copy_run(finished_run, tmp_path), "latest_model.pth")
        truncate(checkpoint)
        expected = f"checkpoint {checkpoint} is unreadable"
    else:
        checkpoint = str(tmp_path / "latest_model.pth")
        shutil.copy2(os.path.join(finished_run, "latest_model.pth"), checkpoint)
        expected = "no run configuration beside"
    before = tree(tmp_path)
    code = main(["eval", "--checkpoint", checkpoint])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("semilearn eval: error: ") and expected in err[0], err[0]
    assert tree(tmp_path) == before  # the corrupt file kept, no eval_*.json written
