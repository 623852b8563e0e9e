"""`semilearn compare --launcher slurm` against a real SLURM cluster (tests/slurm_cluster.py):
a grid submitted as a job array, followed with --status through pending, running and
finished, reported as a leaderboard; and a job signalled before its time limit that
checkpoints, requeues and resumes to the same final checkpoint as an uninterrupted run,
bitwise. Real digits runs with the real trainer. Skipped only where the SLURM binaries
are absent (CI installs them: .ci/run)."""
from __future__ import annotations

import os
import re
import time

import pytest

from conftest import QUICKSTART
from semi_usb.cli import main
from semi_usb.grid import plan
from semi_usb.launchers.slurm import queued, read_jobs
from slurm_cluster import SlurmCluster, missing_binaries
from run_helpers import assert_same_final_state, load

SETTING = "digits_lb40_10_ulb90_10"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_binaries()
    if missing:
        pytest.skip(f"SLURM not installed (no {', '.join(missing)}): apt-get install slurmctld slurmd slurm-client munge")
    c = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    saved = {k: os.environ.get(k) for k in c.env}
    os.environ.update(c.env)
    yield c
    c.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _slurm_yaml(tmp_path) -> str:
    path = tmp_path / "slurm.yaml"  # what a lab writes once (README): no GPU on this cluster
    path.write_text("gpus: 0\ncpus: 1\ntime: 10\narray_parallelism: 2\nsignal_delay_s: 30\n")
    return str(path)


TRAIN = ("--epoch", "1", "--batch_size", "8", "--use_tensorboard", "False", "--semi_usb_num_threads", "1",
         "--num_workers", "0")


def _grid(save_dir, seeds: str, *extra) -> list:
    return ["--algorithms", "fixmatch", "--setting", SETTING, "--seeds", seeds, "--config", QUICKSTART,
            "--save_dir", str(save_dir), *TRAIN, *extra]


def _status(capsys, save_dir, seeds, *extra) -> dict:
    """{run: (state, its line)} from `compare --status`."""
    capsys.readouterr()
    assert main(["compare", "--status"] + _grid(save_dir, seeds, *extra)) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines()[1:-1]:
        if not line.startswith("    |"):
            name, rest = line.split(None, 1)
            rows[name] = ("not started" if rest.startswith("not started") else rest.split()[0], line)
    return rows


def _until(check, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_refused_submission_is_one_line_and_leaves_nothing(cluster, tmp_path, capsys):
    save = tmp_path / "grid"
    argv = ["compare", "--launcher", "slurm", "--slurm_config", _slurm_yaml(tmp_path), "--slurm_partition", "nope"]
    assert main(argv + _grid(save, "0")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("semilearn compare: error: sbatch refused the jobs: ") and "partition" in err[0]
    assert not save.exists()


def test_grid_as_job_array_status_then_leaderboard(cluster, tmp_path, capsys):
    save = tmp_path / "grid"
    budget = ("--num_train_iter", "24", "--num_eval_iter", "12", "--num_log_iter", "6")
    names = [f"fixmatch_{SETTING}_{s}" for s in (0, 1, 2)]
    before = _status(capsys, save, "0,1,2", *budget)
    assert {s for s, _ in before.values()} == {"not started"}

    t0 = time.time()
    submit = ["compare", "--launcher", "slurm", "--slurm_config", _slurm_yaml(tmp_path)] + _grid(save, "0,1,2", *budget)
    assert main(submit) == 0
    jobs = read_jobs(str(save))
    assert sorted(jobs) == names and len({j.split("_")[0] for j in jobs.values()}) == 1  # one array

    # two jobs at a time (array_parallelism 2): the third waits while the first two train
    seen = set()

    def mixed():
        states = {n: s for n, (s, _) in _status(capsys, save, "0,1,2", *budget).items()}
        seen.update(states.values())
        return "running" in states.values() and "pending" in states.values()

    _until(mixed, 120, "a running and a pending job at once")

    # the same command again submits nothing: every run is queued, running or finished
    capsys.readouterr()
    assert main(submit + ["--wait"]) == 0
    out = capsys.readouterr().out
    assert "submitted" not in out and "3/3 runs finished" in out, out
    final = _status(capsys, save, "0,1,2", *budget)
    assert {n: s for n, (s, _) in final.items()} == {n: "finished" for n in names}
    for n, (_, line) in final.items():
        assert jobs[n] in line and re.search(r"\b24\s+it 24: top-1 \d+\.\d\d%", line), line
    assert seen >= {"pending", "running"}

    out_dir = tmp_path / "report"
    assert main(["report", str(save), "--out", str(out_dir), "--no-plots"]) == 0
    board = (out_dir / "leaderboard.md").read_text()
    rows = [line for line in board.splitlines() if line.startswith("| fixmatch |")]
    assert board.count(f"| method | {SETTING} |") == 2 and len(rows) == 2  # best and final tables
    for row in rows:  # 3 seeds, no published value
        assert re.fullmatch(r"\| fixmatch \| \d+\.\d\d ± \d+\.\d\d \|", row), row
    print(f"grid of 3 on SLURM: {time.time() - t0:.0f} s")


def test_signalled_job_checkpoints_requeues_and_resumes_bitwise(cluster, tmp_path, capsys):
    budget = ("--num_train_iter", "120", "--num_eval_iter", "60", "--num_log_iter", "10")
    save, ref = tmp_path / "slurm", tmp_path / "local"
    name = f"fixmatch_{SETTING}_0"
    log = save / "logs" / f"{name}.log"
    t0 = time.time()
    assert main(["compare", "--launcher", "slurm", "--slurm_config", _slurm_yaml(tmp_path)] + _grid(save, "0", *budget)) == 0
    job = read_jobs(str(save))[name]

    # what SLURM sends signal_delay_s before the time limit (sbatch --signal=USR2@30)
    _until(lambda: log.is_file() and re.search(r"it [2-9]0/120", log.read_text()), 240, "the job to train")
    assert cluster.run("scancel", "--signal=USR2", job).returncode == 0
    _until(lambda: "stopped by SIGUSR2" in log.read_text(), 60, "the run to save and stop")
    assert _status(capsys, save, "0", *budget)[name][0] in ("pending", "running")  # requeued, not failed

    # meanwhile, the same run here without interruption (in this process: no second start-up)
    run = plan(["fixmatch"], SETTING, [0], "", QUICKSTART, str(ref), [*TRAIN, *budget])[0]
    assert main(["train", "--algorithm", run["algorithm"], "--config", run["config"]] + run["flags"]) == 0

    _until(lambda: not queued([job]), 240, "the requeued job to finish")
    text = log.read_text()
    stopped = int(re.search(r"stopped by SIGUSR2 after iteration (\d+)", text)[1])
    resumed = int(re.search(r"resumed from \S+ at iteration (\d+)", (save / name / "log.txt").read_text())[1])
    assert 0 < stopped == resumed < 120 and text.count("== SLURM job") == 2, text[-2000:]
    assert "Restarts=1" in cluster.run("scontrol", "show", "job", job).stdout
    assert (save / name / "summary.json").is_file()
    assert_same_final_state(load(ref / name / "latest_model.pth"), load(save / name / "latest_model.pth"))
    assert (ref / name / "eval_history.jsonl").read_text() == (save / name / "eval_history.jsonl").read_text()
    print(f"preempted run on SLURM: {time.time() - t0:.0f} s")
