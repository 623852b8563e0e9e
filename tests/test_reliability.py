"""Reliability: kill and resume, never losing a run, non-finite steps, bad input.

Real data (scikit-learn's digits) and the real semilearn trainer, on the CPU. Runs go
through ``semilearn train`` in-process (``main([...])``) where that is enough, and through
``python -m semi_usb.cli`` subprocesses where the point is a real process: SIGKILL, real
exit codes, what really reaches stderr. docs/reliability.md summarises what is covered.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time

import pytest

from conftest import REPO, cli
from semi_usb.checkpoint import temp_files
from semi_usb.cli import main
from run_helpers import (ACR, EXTRA_STATE, SEMI, assert_same_final_state, differences, flags, load,
                         resume_a_copy)
from run_helpers import digits_cfg, digits_yaml, snapshots  # noqa: F401  (fixtures)


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
        # 6 iterations an epoch; a checkpoint at an epoch's last step is still in that epoch
        assert (mid["it"], loop["epoch"], loop["epoch_step"]) == (it, (it - 1) // 6, (it - 1) % 6 + 1)
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
    def checkpoint_temps() -> set:  # not config.yaml's or versions.json's: those are atomic too
        return {t for t in temp_files(run) if ".pth." in os.path.basename(t)}

    stale = checkpoint_temps()  # left by an earlier kill
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"trainer ended ({proc.returncode}) before a write could be interrupted {why}"
        if checkpoint_temps() - stale:
            proc.send_signal(signal.SIGSTOP)
            left = sorted(checkpoint_temps() - stale)
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
