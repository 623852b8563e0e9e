"""benchmarks/gpu_check.sh --cpu --tiny: every step of the GPU check runs on the CPU, on real
data (a tiny CIFAR-10 subset of the shared archive, else scikit-learn's digits), without a
wheel folder, and leaves its sections, numbers and performance lines in the output folder.
No time is asserted: the check measures, the test keeps it working before the one GPU run."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from bench_steps import parse_variant, trace_counts, union_ms  # noqa: E402
from gpu_check import short_schedule  # noqa: E402


def test_trace_counts_union_and_sync_calls():
    events = [{"ph": "X", "cat": "kernel", "ts": 0, "dur": 10}, {"ph": "X", "cat": "kernel", "ts": 5, "dur": 10},
              {"ph": "X", "cat": "gpu_memcpy", "ts": 30, "dur": 5}, {"ph": "X", "cat": "cpu_op", "ts": 0, "dur": 99},
              {"ph": "X", "cat": "cuda_runtime", "name": "cudaStreamSynchronize", "ts": 1, "dur": 1}]
    c = trace_counts(events)
    assert c["device_events"] == 3 and c["sync_calls"] == 1
    assert math.isclose(c["busy_ms"], 0.020)  # [0, 15) and [30, 35) microseconds
    assert union_ms([]) == 0.0
    assert parse_variant("bf16+channels_last") == ({"semi_usb_bf16": "True", "semi_usb_channels_last": "True"}, False)
    assert parse_variant("fp32+compile") == ({}, True)


def test_short_schedule_scales_the_protocol():
    s = short_schedule(PROTOCOL := 262144)
    assert (s["epoch"], s["acr_est_epoch"], s["semi_warmup_iter"]) == (256, 5, 5120)
    s = short_schedule(6)
    assert s["num_train_iter"] == 6 and s["epoch"] >= 1 and s["semi_warmup_iter"] >= 1 and s["num_eval_iter"] >= 1
    assert PROTOCOL == 262144


def test_gpu_check_cpu_tiny_runs_every_step(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)  # the script sets its own
    proc = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "gpu_check.sh"), "--cpu", "--tiny", str(out),
                           "--carry", str(tmp_path / "no_carry"), "--work", str(tmp_path / "work"), "--budget", "600"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no wheels in" in proc.stdout  # a missing wheel folder is fine in CPU mode
    assert sorted(os.listdir(out)) == ["log.txt", "performance_lines.md", "results.json", "summary.md"]
    res = json.loads((out / "results.json").read_text())
    assert res["mode"] == "cpu-tiny" and res["elapsed_s"] <= res["budget_s"]
    for step in ("env", "data", "tests", "bank", "steps", "pipeline", "train", "eval"):
        assert res["steps"][step]["status"] == "ok", (step, res["steps"][step])
    assert not res["errors"]
    assert res["steps"]["tests"]["counts"].get("skipped", 0) >= 17  # the CUDA-only tests, skipped on CPU

    steps = {r["variant"]: r for r in res["steps_bench"]}
    assert set(steps) == {"fp32", "bf16+channels_last"}
    assert steps["bf16+channels_last"]["switches"] == {"semi_usb_bf16": "True", "semi_usb_channels_last": "True"}
    for r in res["steps_bench"] + res["compile"]:
        assert 0 < r["ratio_semi_acr"] < 10
        for m in ("fixmatch", "acr", "semi"):
            x = r["methods"][m]
            assert x["median_ms"] > 0 and x["it_s"] > 0 and x["profiled_events"] > 0 and not x["errors"]
            assert x["gpu_busy"] is None and x["syncs_per_step"] is None  # CUDA only
    assert [r["compile_backend"] for r in res["compile"]] == ["eager"]

    pipe = {(r["method"], r["pipeline"]): r for r in res["pipeline"]}
    assert set(pipe) == {("semi", "usb"), ("semi", "fast"), ("fixmatch", "usb"), ("fixmatch", "fast")}
    for r in pipe.values():
        assert r["it_s"] > 0 and r["eval_s"] > 0
        assert math.isclose(r["extrapolated_train_min"], 262144 / r["it_s"] / 60)

    bank = {(r["C"], r["op"]): r for r in res["bank"]}
    assert {C for C, _ in bank} == {10, 100} and all(r["vec_ms"] > 0 and r["match"] == "yes" for r in bank.values())

    for m in ("semi", "fixmatch"):
        run = res["train"][m]
        assert run["summary"]["iterations_done"] == run["iterations_planned"] > 0
        ev = run["eval"]
        assert ev["status"] == "ok" and ev["it"] == run["iterations_planned"]
        # the checkpoint evaluates to about what the run reported at its end (same EMA model and test
        # set; training kept the net in channels_last, the evaluation loads it contiguous)
        assert abs(ev["top1"] - run["summary"]["top1"]) <= 0.05 and 0 <= ev["balanced_acc"] <= 1

    lines = (out / "performance_lines.md").read_text()
    assert lines.strip() in proc.stdout  # printed at the end too
    for needle in ("CPU REHEARSAL", "- hardware:", "full protocol (262,144 iterations) of fixmatch+semi",
                   "speed-up", "semi/acr", "torch.compile (eager", "host-device syncs per step: not measured",
                   "memory bank on cpu", "short training, semi", "short training, fixmatch", "CUDA-only tests"):
        assert needle in lines, needle
    summary = (out / "summary.md").read_text()
    for section in ("## Steps", "### Step time", "### Data pipeline", "### Memory bank operations"):
        assert section in summary, section
    assert not (tmp_path / "no_carry").exists()
