"""The benchmark scripts run end to end (a handful of steps on the digits quick-start config)
and append their Markdown sections to one ``--out`` file, as benchmarks/performance.sh uses
them. Timings are not checked: the benchmarks measure, the tests only keep them working."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import QUICKSTART, REPO



def _bench(script: str, *args: str, cwd) -> None:
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_benchmarks_append_their_tables(tmp_path):
    out = str(tmp_path / "perf" / "performance.md")
    data = ["--data_dir", str(tmp_path / "data"), "--save_dir", str(tmp_path / "runs")]
    _bench("bench_steps.py", "--config", QUICKSTART, "--net", "cnn_tiny", "--threads", "1", "--batches", "2",
           "--warmup", "1", "--rounds", "2", "--steps", "1", "--out", out, *data, cwd=tmp_path)
    _bench("bench_bank.py", "--device", "cpu", "--classes", "10", "--sizes", "16", "--dim", "8", "--n", "32",
           "--reps", "2", "--warmup", "1", "--ref-budget", "0.01", "--out", out, cwd=tmp_path)
    _bench("bench_pipeline.py", "--algorithm", "semi", "--config", QUICKSTART, "--steps", "3", "--warmup", "1",
           "--out", out, *data, cwd=tmp_path)
    with open(out, encoding="utf-8") as f:
        text = f.read()
    for section in ("### Step time", "### Memory bank operations", "### Data pipeline"):
        assert text.count(section) == 1, section
    for row in ("| fixmatch |", "| fixmatch+acr |", "| fixmatch+semi |", "| usb |", "| gpu |"):
        assert row in text, row
    assert "| NO |" not in text  # the vectorised bank agrees with the per-sample reference
