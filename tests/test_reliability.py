"""Reliability: kill and resume, never losing a run, non-finite steps, bad input.

Real data (scikit-learn's digits) and the real semilearn trainer, on the CPU. Runs go
through ``semilearn train`` in-process (``main([...])``) where that is enough, and through
``python -m semi_usb.cli`` subprocesses where the point is a real process: SIGKILL, real
exit codes, what really reaches stderr. docs/reliability.md summarises what is covered.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest
import torch
import yaml

from conftest import REPO, as_flags, cli
from semi_usb.checkpoint import temp_files
from semi_usb.cli import main

QUICKSTART = os.path.join(REPO, "config", "quickstart", "digits_lt.yaml")
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

@pytest.mark.parametrize("method,extra,every,resume_from", [
    ("semi", SEMI, 3, (3, 6)),  # 6 iterations an epoch: from mid-epoch 0, and from its end
    ("acr", ACR, 4, (4, 8)),    # from mid-epoch 0 and mid-epoch 1 (mid-sums), across the start where tau1 is set
])
def test_resume_from_a_mid_run_checkpoint_is_bitwise(tmp_path, digits_yaml, snapshots, method, extra, every,
                                                     resume_from):
    """6 iterations an epoch (12 in 2, ACR 18 in 3), a checkpoint every ``every``; resuming from a copy of a
    mid-run checkpoint ends with exactly the uninterrupted run's checkpoint."""
    run_flags = {"num_train_iter": 12, "epoch": 2, "num_eval_iter": every, **extra}
    assert main(["train", "--algorithm", method] + flags(digits_yaml, tmp_path / "ref", **run_flags)) == 0
    ref_run = tmp_path / "ref" / "run"
    ref = load(ref_run / "latest_model.pth")
    assert ref["it"] == run_flags["num_train_iter"] and all(k in ref for k in EXTRA_STATE[method])
    if method == "semi":  # the extra state is not trivial
        assert ref["semi_state"]["bank"]["filled"].any() and ref["semi_state"]["pl_hist"]["counts"].sum() > 0
    else:
        assert float(ref["acr_tau1_state"]["tau1"]) != 2.0  # estimated at it 12, not the initial 2.0

    for it in resume_from:
        mid = load(snapshots[it])
        loop = mid["semi_usb_loop"]
        assert (mid["it"], loop["epoch"], loop["epoch_step"]) == (it, it // 6, it % 6)  # 6 iterations an epoch
        assert differences(mid["model"], ref["model"])  # the resumed run has work left to do
        assert_round_trip(snapshots[it], str(ref_run / "config.yaml"), tmp_path / f"again_{it}.pth", method)

        run = resume_a_copy(snapshots[it], tmp_path / f"resumed_from_{it}", method, digits_yaml, run_flags,
                            ref_run / "config.yaml")
        log = (run / "log.txt").read_text()
        assert f"at iteration {it}" in log and "resumed from" in log
        assert_same_final_state(ref, load(run / "latest_model.pth"))


@pytest.mark.parametrize("method,extra", [
    ("daso", {"daso_num_pretrain_iter": 2, "p_cutoff": 0.12}),  # its feature queue and one-step-late label
    ("abc", {"p_cutoff": 0.12}),                                 # its Bernoulli masks (RNG)
])
def test_resume_of_a_compared_baseline_is_bitwise(tmp_path, digits_yaml, snapshots, method, extra):
    """What ``compare`` resumes besides SeMi and ACR: resuming from iteration 4 (after
    DASO's pre-training, mid-epoch) ends with exactly the uninterrupted run's checkpoint."""
    run_flags = dict(extra, num_train_iter=12, epoch=2, num_eval_iter=4)
    assert main(["train", "--algorithm", method] + flags(digits_yaml, tmp_path / "ref", **run_flags)) == 0
    ref = load(tmp_path / "ref" / "run" / "latest_model.pth")
    if method == "daso":  # the queue holds labeled features of every class seen
        assert ref["semi_usb_daso"]["queue"] and all(len(f) for f in ref["semi_usb_daso"]["queue"].values())
    run = resume_a_copy(snapshots[4], tmp_path / "resumed", method, digits_yaml, run_flags,
                        tmp_path / "ref" / "run" / "config.yaml")
    assert "at iteration 4" in (run / "log.txt").read_text()
    assert_same_final_state(ref, load(run / "latest_model.pth"))


def assert_round_trip(ckpt_path: str, config: str, again_path, method: str) -> None:
    """Save -> load -> equal: a freshly built algorithm loaded from the checkpoint holds
    exactly the saved tensors; written again (atomically) and read back, still the same."""
    from semi_usb.checkpoint import atomic_torch_save
    from semi_usb.config import build_args
    from semi_usb.runner import build_algorithm, place_models, seed_everything

    saved = load(ckpt_path)
    args = build_args(None, config, {"resume": "False"})
    seed_everything(args.seed)
    alg = build_algorithm(args)
    place_models(args, alg)
    alg.load_model(ckpt_path)
    state = {"model": alg.model.state_dict(), "ema_model": alg.ema_model.state_dict(),
             "optimizer": alg.optimizer.state_dict(),
             "acr_tau1_state": alg.tau1_estimator.state_dict(), "it": alg.it, "best_it": alg.best_it,
             "best_eval_acc": alg.best_eval_acc, "semi_usb_loop": alg.semi_usb_resume}
    if alg.scheduler is not None:  # ImbAlgorithmBase has none for digits (constant lr)
        state["scheduler"] = alg.scheduler.state_dict()
    if method == "semi":
        state["semi_state"] = {"bank": alg.bank.state_dict(), "pl_hist": alg.pl_hist.state_dict(),
                               "ealign_center": alg.ealign_center.state_dict()}
    expected = {k: saved[k] for k in state}
    diff = differences(expected, state)
    assert not diff, "loaded state differs from the file:\n" + "\n".join(diff[:20])
    atomic_torch_save(state, str(again_path))
    diff = differences(expected, load(again_path))
    assert not diff, "state saved again differs:\n" + "\n".join(diff[:20])


# ------------------------------------------------------------------ resume: SIGKILL

def _last_eval_it(run) -> int:
    path = os.path.join(run, "eval_history.jsonl")
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as f:
        rows = [line for line in f if line.strip()]
    try:
        return json.loads(rows[-1])["it"] if rows else 0
    except ValueError:  # a row being written
        return 0


def _checkpoint_files_load(run, why: str) -> int | None:
    """Every checkpoint present loads (weights_only); returns latest_model.pth's iteration."""
    it = None
    for name in ("latest_model.pth", "model_best.pth"):
        path = os.path.join(run, name)
        if os.path.exists(path):
            ckpt = load(path)  # raises if a kill left it unreadable
            assert "model" in ckpt and "semi_state" in ckpt, f"{name} {why}"
            if name == "latest_model.pth":
                it = ckpt["it"]
    return it


def _kill_after_random_delay(proc, run, started, delay: float, cap: int, why: str) -> None:
    """SIGKILL ``delay`` seconds after ``started()`` holds, or as soon as the run has
    evaluated iteration ``cap`` (so that a fast machine cannot finish the run first)."""
    deadline = time.monotonic() + 240
    while not started():
        assert proc.poll() is None, f"trainer exited ({proc.returncode}) before it started training {why}"
        assert time.monotonic() < deadline, f"trainer did not start {why}"
        time.sleep(0.01)
    end = time.monotonic() + delay
    while time.monotonic() < end and _last_eval_it(run) < cap and proc.poll() is None:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"trainer ended by itself ({proc.returncode}) {why}"


def _kill_during_checkpoint_write(proc, run, why: str) -> list:
    """Poll for a new checkpoint temporary file; stop the trainer when one appears and, if
    the file is still there (the write is not finished), kill it. Returns the temp files."""
    deadline = time.monotonic() + 240
    stale = set(temp_files(run))  # left by an earlier kill
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"trainer ended ({proc.returncode}) before a write could be interrupted {why}"
        if set(temp_files(run)) - stale:
            proc.send_signal(signal.SIGSTOP)
            left = sorted(set(temp_files(run)) - stale)
            if left:  # frozen between creating the temp file and renaming it
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return left
            proc.send_signal(signal.SIGCONT)  # the rename won the race: wait for the next write
        time.sleep(0.0005)
    proc.kill()
    proc.wait()
    pytest.fail(f"no checkpoint write interrupted within 240 s {why}")


def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tmp_path, digits_yaml):
    """A run SIGKILLed three times (twice after a random delay, once while it writes a
    checkpoint) and resumed each time ends bitwise equal to an uninterrupted run."""
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    why = f"(kill-delay seed {seed})"
    # 24 iterations, 3 epochs of 8, a checkpoint every 2 iterations (mid-epoch and at ends).
    run_flags = dict(SEMI, num_train_iter=24, epoch=3, num_eval_iter=2)
    assert main(["train", "--algorithm", "semi"] + flags(digits_yaml, tmp_path / "ref", **run_flags)) == 0
    ref_run = tmp_path / "ref" / "run"

    save_dir = tmp_path / "killed"
    run = str(save_dir / "run")
    train_cmd = cli("train", "--algorithm", "semi", *flags(digits_yaml, save_dir, **run_flags))
    stderr_log = open(tmp_path / "trainer_stderr.txt", "a", encoding="utf-8")
    procs = []

    def start(*more):
        procs.append(subprocess.Popen(train_cmd + list(more), cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr_log))
        return procs[-1]

    def resumed_count() -> int:
        path = os.path.join(run, "log.txt")
        return open(path, encoding="utf-8").read().count("resumed from") if os.path.isfile(path) else 0

    resumes = []  # the iteration each restart must resume from
    try:
        # 1: a fresh run, killed a random time after its first checkpoint
        proc = start()
        _kill_after_random_delay(proc, run, lambda: os.path.isfile(os.path.join(run, "latest_model.pth")),
                                 rng.uniform(0.0, 1.5), cap=10, why=why)
        resumes.append(_checkpoint_files_load(run, why))

        # 2: resumed, killed a random time after it has loaded the checkpoint
        proc = start("--resume", "True")
        _kill_after_random_delay(proc, run, lambda: resumed_count() >= 1, rng.uniform(0.0, 1.5), cap=16, why=why)
        resumes.append(_checkpoint_files_load(run, why))

        # 3: resumed, killed while it writes a checkpoint: the previous one stays loadable
        proc = start("--resume", "True")
        interrupted = _kill_during_checkpoint_write(proc, run, why)
        assert all(os.path.exists(t) for t in interrupted)
        resumes.append(_checkpoint_files_load(run, why))
        assert resumes[-1] is not None and resumes[-1] >= resumes[0], why
    finally:
        for p in procs:  # never leave a trainer running (or stopped) behind a failed assertion
            if p.poll() is None:
                p.kill()
                p.wait()
        stderr_log.close()

    # the last resume, with the stray temp file still there, completes the run (and removes it)
    assert main(["train", "--algorithm", "semi", "--resume", "True"] + flags(digits_yaml, save_dir, **run_flags)) == 0
    assert not temp_files(run), "stray temporary checkpoint left behind"
    log = open(os.path.join(run, "log.txt"), encoding="utf-8").read()
    found = [int(n) for n in re.findall(r"resumed from .*latest_model\.pth at iteration (\d+)", log)]
    assert found == resumes, f"restarts resumed from {found}, checkpoints were at {resumes} {why}"
    assert_same_final_state(load(ref_run / "latest_model.pth"), load(os.path.join(run, "latest_model.pth")))
    with open(ref_run / "eval_history.jsonl") as f, open(os.path.join(run, "eval_history.jsonl")) as g:
        assert f.read() == g.read(), f"evaluation history differs {why}"  # redone evaluations trimmed
    with open(os.path.join(run, "summary.json")) as f:
        assert json.load(f)["iterations_done"] == 24


# ------------------------------------------------------------------ never lose a run

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
