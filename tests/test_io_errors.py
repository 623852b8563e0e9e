"""Unwritable places and full disks, on real file systems (a tmpfs, full or mounted read-only,
which refuses root too): every write of a run is one line naming the path and exit status 2,
the previous files intact, nothing left behind; a read-only HOME does not matter.

Real data (scikit-learn's digits; a small image folder made from real CIFAR-10 images) and
the real trainer on the CPU. docs/reliability.md lists these cases.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, cli
from run_helpers import digits_cfg, digits_yaml, fill, flags, small_folder, tmpfs, tree  # noqa: F401  (fixtures)

ADVICE = "free space on its disk or choose a writable place, then run the command again"


def _train(argv: list, **env) -> subprocess.CompletedProcess:
    return subprocess.run(cli("train", "--algorithm", "fixmatch", *argv), capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **env}, timeout=600)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("note: ")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("semilearn train: error: "), lines[0]
    return lines[0]


def test_a_full_disk_at_the_start_of_a_run_is_one_line_and_leaves_nothing(digits_yaml, tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        fill(disk)
        before = tree(disk)
        line = _one_line(_train(flags(digits_yaml, disk / "runs")))
        assert f"cannot write {disk / 'runs' / 'run' / 'config.yaml'} (No space left on device): {ADVICE}" in line
        assert tree(disk) == before  # the claimed folder and save_dir removed again


def test_a_read_only_save_dir_is_one_line_and_leaves_nothing(digits_yaml, tmp_path):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        line = _one_line(_train(flags(digits_yaml, ro / "runs")))
        assert f"cannot create the run folder {ro / 'runs' / 'run'} (Read-only file system)" in line
        assert os.listdir(ro) == []


def test_a_read_only_home_does_not_stop_a_run(digits_yaml, tmp_path):
    """semilearn writes its split indices under a folder of its own (site-packages, then a
    cache in HOME); they now go to a temporary folder removed at once, so HOME can be
    read-only (a cluster node) and nothing is left there."""
    with tmpfs(tmp_path / "home", "1m", read_only=True) as home:
        proc = _train(flags(digits_yaml, tmp_path / "runs", num_train_iter=2, num_eval_iter=2, epoch=1),
                      HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
    summary = json.loads((tmp_path / "runs" / "run" / "summary.json").read_text())
    assert summary["iterations_done"] == 2


def test_writes_on_a_full_disk_are_one_line_and_keep_the_previous_file(tmp_path):
    """summary.json, config.yaml, reports (atomic_write) and eval_history.jsonl (append_line)
    when the disk is full: a WriteError (an OSError, an InputError) naming the file, the
    previous content unchanged, no temporary file left."""
    from semi_usb.checkpoint import append_line, atomic_json_dump
    from semi_usb.errors import InputError, WriteError

    with tmpfs(tmp_path / "disk", "1m") as disk:
        summary, history = disk / "summary.json", disk / "eval_history.jsonl"
        atomic_json_dump({"final": {"top1": 0.5}}, str(summary))
        append_line(str(history), json.dumps({"it": 2, "top1": 0.5}))
        fill(disk)
        old = {p: p.read_bytes() for p in (summary, history)}
        with pytest.raises(WriteError) as err:
            atomic_json_dump({"final": {"top1": 0.9}, "pad": "x" * 20_000}, str(summary))
        assert isinstance(err.value, (OSError, InputError))
        assert str(err.value) == f"cannot write {summary} (No space left on device): {ADVICE} " \
                                 "(a run continues with --resume True)"
        with pytest.raises(WriteError) as err:
            append_line(str(history), json.dumps({"it": 4, "top1": 0.9, "pad": "x" * 20_000}))
        assert str(err.value).startswith(f"cannot write {history} (No space left on device)")
        assert "\n" not in str(err.value)
        assert {p: p.read_bytes() for p in (summary, history)} == old
        assert sorted(os.listdir(disk)) == ["eval_history.jsonl", "filler", "summary.json"]


def test_a_run_that_fails_after_reading_an_image_folder_leaves_no_cache(small_folder, digits_yaml, tmp_path):
    """The image-folder cache is written only once the run's own files are: a run refused
    later (here: a full disk for its config.yaml) leaves the data folder as it was; the
    same run on a writable disk caches the decoded images."""
    extra = ["--dataset", "imagefolder", "--data_dir", str(small_folder), "--num_classes", "2", "--num_labels", "2",
             "--ulb_num_labels", "2", "--lb_imb_ratio", "1", "--ulb_imb_ratio", "1", "--img_size", "32"]
    data_before = tree(small_folder)
    with tmpfs(tmp_path / "disk", "1m") as disk:
        fill(disk)
        line = _one_line(_train(flags(digits_yaml, disk / "runs") + extra))
        assert f"cannot write {disk / 'runs' / 'run' / 'config.yaml'} (No space left on device)" in line
    assert tree(small_folder) == data_before
    proc = _train(flags(digits_yaml, tmp_path / "runs", num_train_iter=2, num_eval_iter=2, epoch=1) + extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in small_folder.glob(".semi_usb_*.npz")) == [".semi_usb_test_32.npz",
                                                                           ".semi_usb_train_32.npz"]


def test_a_full_disk_for_log_txt_stops_the_run_with_one_line(tmp_path):
    """log.txt (USB's lines, the run's logger): a failed write raises the WriteError naming
    the file, which the command prints as its one line, instead of logging's traceback on
    stderr while the run goes on without its log."""
    from semi_usb.errors import InputError, WriteError
    from semi_usb.run_log import run_logger

    with tmpfs(tmp_path / "disk", "1m") as disk:
        logger = run_logger("full_disk_log", str(disk / "run"), "INFO")
        try:
            logger.info("first line")
            fill(disk)
            with pytest.raises(WriteError) as err:
                logger.info("x" * 20_000)
        finally:  # closed before the tmpfs is unmounted
            for h in list(logger.handlers):
                logger.removeHandler(h)
                h.close()
        assert isinstance(err.value, InputError)
        assert str(err.value).startswith(f"cannot write {disk / 'run' / 'log.txt'} (No space left on device): {ADVICE}")
        assert (disk / "run" / "log.txt").read_text().splitlines()[0].endswith("first line")


_TB_FULL_DISK = """
import os, sys
from semi_usb.errors import WriteError
from semi_usb.run_log import tensorboard_log
from run_helpers import fill
run = sys.argv[1]
try:
    with tensorboard_log(run, True) as tb:
        tb.update({"train/loss": 1.0}, 0)
        tb.writer.flush()
        print(os.listdir(os.path.join(run, "tensorboard"))[0])
        fill(os.path.dirname(run))
        for it in range(1, 2000):  # more than the free bytes, and than the writer's queue
            tb.update({"train/loss": 1.0 / it, "train/util_ratio": 0.5}, it)
except WriteError as err:
    sys.exit(str(err))
"""


def test_a_full_disk_for_tensorboard_stops_the_run_with_one_line(tmp_path):
    """TensorBoard's event files (written by torch's background writer thread): a write that
    fails on a full disk is the one-line WriteError naming the folder, when the writer
    reports it (the next scalar or the close at the end of the run), and the thread's own
    traceback is not printed (a subprocess: pytest would catch the thread's exception)."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        proc = subprocess.run([sys.executable, "-c", _TB_FULL_DISK, str(disk / "run")], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.path.join(REPO, "tests")])})
        event = disk / "run" / "tensorboard" / proc.stdout.strip()
        assert event.stat().st_size > 0  # the events written before the disk filled are kept
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith("  warnings.warn")]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"cannot write {disk / 'run' / 'tensorboard'} (No space left on device): {ADVICE}")
