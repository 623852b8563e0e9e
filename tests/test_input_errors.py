"""Reliability, second pass: races on a run folder, atomic run files, content-keyed
image-folder caches, declared value ranges, I/O failures, and commands that leave nothing
behind when their input is bad.

Real data (scikit-learn's digits; small image folders made from real images) and the real
trainer on the CPU. docs/reliability.md lists what is covered.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from conftest import REPO
from semi_usb.cli import main
from test_reliability import digits_cfg, digits_yaml, flags, tree  # noqa: F401  (fixtures)

RACE_DRIVER = textwrap.dedent("""
    import multiprocessing as mp, os, sys

    def child(barrier, argv, err_path, code):
        fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        from semi_usb import cli, runner  # the heavy imports before the barrier
        barrier.wait()                    # both enter `semilearn train` at the same moment
        code.value = cli.main(argv)

    if __name__ == "__main__":
        import json
        argvs, errs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(2)
        codes = [ctx.Value("i", -1) for _ in argvs]
        procs = [ctx.Process(target=child, args=(barrier, a, e, c)) for a, e, c in zip(argvs, errs, codes)]
        for p in procs: p.start()
        for p in procs: p.join()
        print(json.dumps([c.value for c in codes]))
""")


def test_two_trains_racing_on_one_run_folder_one_trains_the_other_is_refused(digits_yaml, tmp_path):
    """Two `semilearn train` on one save_name with different seeds, released together by a
    barrier: exactly one trains, the other gets one line and exit 2, and the folder holds
    one run's config, checkpoint, summary and evaluation history."""
    driver = tmp_path / "race.py"
    driver.write_text(RACE_DRIVER, encoding="utf-8")
    save_dir = tmp_path / "runs"
    argvs = [["train", "--algorithm", "fixmatch"] + flags(digits_yaml, save_dir, num_train_iter=4, epoch=1,
                                                           num_eval_iter=2, seed=seed) for seed in (0, 1)]
    errs = [str(tmp_path / f"err{seed}.txt") for seed in (0, 1)]
    out = subprocess.run([sys.executable, str(driver), json.dumps(argvs), json.dumps(errs)], capture_output=True,
                         text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    codes = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(codes) == [0, 2], (codes, [open(e).read()[-1000:] for e in errs])
    winner, loser = codes.index(0), codes.index(2)
    lines = [line for line in open(errs[loser], encoding="utf-8").read().splitlines() if line.strip()]
    run = save_dir / "run"
    assert lines == [f"semilearn train: error: run {run} is in use by another process: wait for it to end, "
                     "or choose another save_name"], lines
    with open(run / "config.yaml") as f:
        assert yaml.safe_load(f)["seed"] == winner
    with open(run / "summary.json") as f:
        summary = json.load(f)
    assert (summary["seed"], summary["iterations_done"]) == (winner, 4)
    rows = [json.loads(line) for line in (run / "eval_history.jsonl").read_text().splitlines()]
    assert [r["it"] for r in rows] == [2, 4]  # one run's evaluations, none twice
    assert abs(rows[-1]["top1"] - summary["final"]["top1"]) < 1e-9
    import torch

    assert torch.load(run / "latest_model.pth", map_location="cpu", weights_only=True)["it"] == 4
