"""`semilearn compare` then `semilearn report`, end to end: real digits runs with the real
semilearn trainer (one `semilearn train` process per run, two at a time), then the tables
and the four kinds of figure; finished runs are skipped, and a run folder that holds
another configuration is refused before anything runs."""
from __future__ import annotations

import fcntl
import glob
import os
import signal
import subprocess
import threading
import time

from conftest import QUICKSTART, REPO, cli, run_summary
from semi_usb.cli import main
from semi_usb.compare import run_all

SETTING = "digits_lb40_10_ulb90_10"  # the quick start's long-tailed digits split
ALGORITHMS = ("fixmatch", "semi")
SEEDS = (0, 1)


def _compare(save_dir, *extra) -> list:
    return ["compare", "--algorithms", ",".join(ALGORITHMS), "--setting", SETTING, "--seeds",
            ",".join(map(str, SEEDS)), "--jobs", "2", "--config",
            QUICKSTART, "--save_dir", str(save_dir),
            "--num_train_iter", "6", "--epoch", "1", "--num_eval_iter", "3", "--num_log_iter", "3",
            "--batch_size", "8", "--semi_warmup_iter", "2", "--use_tensorboard", "False",
            "--semi_usb_num_threads", "1", *extra]


def _files(root) -> dict:
    return {os.path.join(r, f): os.stat(os.path.join(r, f)).st_mtime_ns for r, _, fs in os.walk(root) for f in fs}


def test_compare_then_report(tmp_path, capsys):
    save = tmp_path / "runs"
    assert main(_compare(save)) == 0
    names = [f"{m}_{SETTING}_{s}" for m in ("fixmatch", "fixmatch_semi") for s in SEEDS]
    for name in names:
        summary = run_summary(save / name)
        assert summary["iterations_done"] == 6 and summary["setting"] == SETTING
        assert summary["seed"] == int(name[-1])
    # the same split for every method: identical labeled class counts per seed
    counts = {n: run_summary(save / n)["lb_class_counts"] for n in names}
    assert counts[names[0]] == counts[names[2]] and counts[names[1]] == counts[names[3]]
    capsys.readouterr()

    out = tmp_path / "report"
    assert main(["report"] + [str(save / n) for n in names] + ["--out", str(out)]) == 0
    kinds = ("per_class_acc", "group_acc", "confusion", "acc_curve")
    assert sorted(os.listdir(out)) == sorted(["results.md", "results.csv", "leaderboard.md", "paired.md",
                                              "mechanism.md"]  # SeMi's runs record their mechanism metrics
                                             + [f"{k}_{SETTING}.png" for k in kinds]
                                             + [f"embedding_{SETTING}.png"]  # the runs' test_features.npz
                                             + [f"reliability_{SETTING}.png"])  # the runs' ECE bins
    md = (out / "results.md").read_text()
    assert "fixmatch+semi" in md and "balanced" in md and " (n=1)" not in md.split("## ", 2)[-1]  # two seeds per method

    # again: every run is finished, nothing is retrained
    before = _files(save)
    assert main(_compare(save)) == 0
    printed = capsys.readouterr().out
    assert printed.count("skip ") == 4 and "start " not in printed
    assert {k: v for k, v in _files(save).items() if "/logs/" not in k} == {
        k: v for k, v in before.items() if "/logs/" not in k}

    # another budget into the same folders: one line, exit 2, before any run starts
    assert main(_compare(save, "--num_train_iter", "12")) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "start " not in captured.out
    assert err[0].startswith(f"semilearn compare: error: run {save / names[0]} was started with num_train_iter=6 (now 12)")
    assert {k: v for k, v in _files(save).items() if "/logs/" not in k} == {
        k: v for k, v in before.items() if "/logs/" not in k}


def _unlaunchable_run(tmp_path, name: str) -> dict:
    """A run entry of compare's list whose config does not exist: launched, it fails at once."""
    return {"name": name, "dir": str(tmp_path / name), "algorithm": "fixmatch",
            "config": str(tmp_path / "no_such.yaml"), "flags": []}


def test_run_finished_meanwhile_is_skipped(tmp_path):
    """A run that another process finishes while compare works through its list (a second
    compare, a hand-started run) is skipped when its turn comes, not launched into a
    finished folder (which fails)."""
    a, b = (_unlaunchable_run(tmp_path, n) for n in ("a", "b"))
    lines = []

    def echo(line):
        lines.append(line)
        if line == "start a":  # b finishes elsewhere while a runs
            os.makedirs(b["dir"])
            open(os.path.join(b["dir"], "summary.json"), "w").close()

    assert run_all([a, b], jobs=1, log_dir=str(tmp_path / "logs"), echo=echo) == 1  # a fails: no config
    assert lines[0] == "start a" and lines[1].startswith("FAILED a") and lines[2:] == ["skip b (finished meanwhile)"]


def _hold(run_dir: str):
    """Take a run folder's lock as another `semilearn train` would; returns the open file."""
    os.makedirs(run_dir, exist_ok=True)
    f = open(os.path.join(run_dir, ".lock"), "a")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return f


def _release_when_waiting(held, lines: list):
    """compare's echo: records the lines and, once the run waits, lets go of ``held`` 1 s later
    (the other process ends without finishing the run)."""
    def echo(line):
        lines.append(line)
        if line.startswith("wait b"):
            threading.Timer(1.0, held.close).start()

    return echo


def test_run_held_by_another_process_waits_then_is_skipped_when_it_finishes(tmp_path):
    """Two compares sharing run folders: a run the other one holds is not launched (it was
    refused the lock and counted FAILED, and a lane script under `set -e` stopped); it waits
    and is skipped once the holder has finished it."""
    b = _unlaunchable_run(tmp_path, "b")
    held = _hold(b["dir"])
    lines = []

    def finish_elsewhere():
        time.sleep(1.5)
        open(os.path.join(b["dir"], "summary.json"), "w").close()
        held.close()  # the holder ends: its lock goes

    def echo(line):
        lines.append(line)
        if line.startswith("wait b"):
            threading.Thread(target=finish_elsewhere).start()

    assert run_all([b], jobs=1, log_dir=str(tmp_path / "logs"), echo=echo) == 0
    assert lines == ["wait b (in use by another process: taken over or skipped when it lets go)",
                     "skip b (finished meanwhile)"], lines
    assert not os.path.exists(tmp_path / "logs" / "b.log")  # never launched


def test_run_let_go_unfinished_is_taken_over(tmp_path):
    """A holder that dies before finishing leaves the run to the waiting compare, which
    launches it (here it fails at once: the config does not exist) instead of losing it."""
    b = _unlaunchable_run(tmp_path, "b")
    held, lines = _hold(b["dir"]), []
    assert run_all([b], jobs=1, log_dir=str(tmp_path / "logs"), echo=_release_when_waiting(held, lines)) == 1
    assert lines[0].startswith("wait b") and lines[1] == "start b" and lines[2].startswith("FAILED b"), lines
    assert "no_such.yaml" in (tmp_path / "logs" / "b.log").read_text()


def test_run_taken_by_another_process_just_before_launch_waits_too(tmp_path, monkeypatch):
    """The other process takes the lock between compare's look and its launch: the refused
    launch (exit 2, the lock held) is not a failure; the run goes back to wait."""
    import semi_usb.compare as compare
    from semi_usb.layout import lock_held

    b = _unlaunchable_run(tmp_path, "b")
    held = _hold(b["dir"])
    looks = []

    def first_look_misses_the_holder(run_dir):
        looks.append(run_dir)
        return len(looks) > 1 and lock_held(run_dir)

    monkeypatch.setattr(compare, "lock_held", first_look_misses_the_holder)
    lines = []
    assert run_all([b], jobs=1, log_dir=str(tmp_path / "logs"), echo=_release_when_waiting(held, lines)) == 1
    assert lines[0] == "start b" and lines[1].startswith("wait b") and lines[2] == "start b", lines
    assert lines[3].startswith("FAILED b") and len(lines) == 4, lines


def test_sigterm_stops_compare_and_the_runs_it_started(tmp_path):
    """A compare that is stopped stops its runs: before, its `semilearn train` children went
    on training unwatched (and holding their folders' locks, so that the same compare
    started again found them "in use" and counted them as failed)."""
    save = tmp_path / "runs"
    proc = subprocess.Popen(cli(*_compare(save, "--num_train_iter", "3000")), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while len(glob.glob(str(save / "*" / "latest_model.pth"))) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)  # both runs of the first pair are training
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    lines = out.splitlines()
    names = [f"fixmatch_{SETTING}_{s}" for s in SEEDS]
    assert [f"start {n}" for n in names] == lines[:2] and lines[-2:] == [
        f"stopped {n}: the same command resumes it" for n in names], out
    left = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, str(save))]
    assert not left, "a run is still training after compare stopped"
    for name in names:  # nobody holds the runs: a new compare (or train --resume) can take them
        with open(save / name / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert not os.path.isfile(save / name / "summary.json")


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:  # ended meanwhile
        return False
