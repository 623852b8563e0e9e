"""The pure parts of the SLURM launcher, the grid, --status and the leaderboard (no scheduler
needed; tests/test_slurm.py runs them against a real one)."""
from __future__ import annotations

import json
import os

import pytest

from conftest import REPO
from semi_usb.errors import ConfigError
from semi_usb.grid import GRIDS, axes, plan_grid
from semi_usb.layout import find_runs
from semi_usb.launchers import slurm
from semi_usb.published import PublishedEntry
from semi_usb.report.leaderboard import Cell, format_cell, render, run_protocol
from semi_usb.published import USB_TABLE_COLUMNS
from semi_usb.run_status import collect, render as render_status, status_of


def test_parse_minutes_reads_slurm_time_formats():
    assert [slurm.parse_minutes(t) for t in ("90", 45, "30:00", "1:30:00", "2-00:00:00", "1-12", "0:0:30")] == [
        90, 45, 30, 90, 2880, 2160, 1]
    for bad in ("", "1h", "0", "abc"):
        with pytest.raises(ConfigError):
            slurm.parse_minutes(bad)


def test_options_defaults_then_file_then_flags(tmp_path):
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text("partition: gpu\naccount: lab\ntime: '4:00:00'\ngpus: 2\nsbatch: ['--constraint=a100']\n")
    opts = slurm.resolve_options(slurm.load_config(slurm.config_path(str(cfg))),
                                 {"gpus": 1, "qos": "high", "account": None})
    assert (opts["partition"], opts["account"], opts["qos"], opts["time"], opts["gpus"]) == ("gpu", "lab", "high", 240, 1)
    assert opts["cpus"] == slurm.DEFAULTS["cpus"] and opts["sbatch"] == ["--constraint=a100"]
    params = slurm.executor_parameters({**opts, "mem_gb": 32, "setup": ["module load cuda"]}, "semilearn:x")
    assert params == {"job_name": "semilearn:x", "time": 240, "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": 4,
                      "array_parallelism": 64, "signal_delay_s": 120, "stderr_to_stdout": True, "partition": "gpu",
                      "account": "lab", "qos": "high", "gpus_per_node": 1, "mem": "32GB", "setup": ["module load cuda"],
                      "additional_parameters": {"constraint": "a100"}}
    assert "gpus_per_node" not in slurm.executor_parameters({**opts, "gpus": 0}, "x")  # a CPU cluster


def test_config_file_errors_and_the_user_default(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("partiton: gpu\n")
    with pytest.raises(ConfigError, match="unknown key 'partiton'"):
        slurm.load_config(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        slurm.config_path(str(tmp_path / "none.yaml"))
    with pytest.raises(ConfigError, match="cpus must be >= 1"):
        slurm.resolve_options({"cpus": 0}, {})
    assert slurm.config_path(None, {"XDG_CONFIG_HOME": str(tmp_path)}) is None
    (tmp_path / "semi_usb").mkdir()
    (tmp_path / "semi_usb" / "slurm.yaml").write_text("qos: low\n")
    assert slurm.config_path(None, {"XDG_CONFIG_HOME": str(tmp_path)}) == str(tmp_path / "semi_usb" / "slurm.yaml")


def test_rendezvous_from_slurm_environment():
    env = {"SLURM_JOB_NODELIST": "gpu[07-09,12],cpu1", "SLURM_JOB_ID": "123456", "SLURM_GPUS_ON_NODE": "4",
           "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0"}
    assert slurm.rendezvous(env) == {"multiprocessing_distributed": True, "world_size": 1, "rank": 0,
                                     "dist_url": f"tcp://gpu07:{15000 + 123456 % 20000}", "dist_backend": "nccl"}
    assert slurm.rendezvous({**env, "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29500"})["dist_url"] == "tcp://10.0.0.5:29500"
    assert slurm.rendezvous({**env, "SLURM_GPUS_ON_NODE": "1"}) == {}
    assert slurm.rendezvous({"SLURM_JOB_NODELIST": "n1", "SLURM_JOB_ID": "5", "CUDA_VISIBLE_DEVICES": "0,1"})[
        "dist_url"] == "tcp://n1:15005"
    assert slurm.rendezvous({"SLURM_JOB_NODELIST": "n1", "SLURM_JOB_ID": "5"}) == {}  # no GPU
    assert [slurm.first_host(n) for n in ("node3", "a[1-2]", "a[05,07]", "x1,x2")] == ["node3", "a1", "a05", "x1"]
    # the keys it sets may change on a resume (another node, another port)
    from semi_usb.config import RUNTIME_KEYS

    assert set(slurm.rendezvous(env)) <= RUNTIME_KEYS


def test_parse_squeue():
    text = "12_0|RUNNING|None\n12_1|PENDING|JobArrayTaskLimit\n13|REQUEUED|BeginTime\n\n"
    assert slurm.parse_squeue(text) == {"12_0": ("RUNNING", "None"), "12_1": ("PENDING", "JobArrayTaskLimit"),
                                        "13": ("REQUEUED", "BeginTime")}


def test_status_of():
    assert status_of(True, "RUNNING", True, True) == "finished"
    assert status_of(False, "PENDING", False, True) == "pending"
    assert status_of(False, "REQUEUED", False, True) == "pending"
    assert status_of(False, "RUNNING", False, True) == "running"
    assert status_of(False, None, True, True) == "running"  # the run lock: trained here (local launcher)
    assert status_of(False, None, False, True) == "failed"
    assert status_of(False, None, False, False) == "not started"


def test_status_of_folders_shows_failed_log_tail(tmp_path):
    runs = [{"name": n, "dir": str(tmp_path / n)} for n in ("done", "broken", "queued", "new")]
    for n in ("done", "broken"):
        (tmp_path / n).mkdir()
    (tmp_path / "done" / "summary.json").write_text("{}")
    (tmp_path / "done" / "eval_history.jsonl").write_text(json.dumps({"it": 24, "top1": 0.5}) + "\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "broken.log").write_text("".join(f"line {i}\n" for i in range(9)) + "RuntimeError: boom\n")
    statuses = collect(runs, str(tmp_path), {"broken": "7_1", "queued": "7_2"}, {"7_2": ("PENDING", "Resources")})
    assert [s.state for s in statuses] == ["finished", "failed", "pending", "not started"]
    text = render_status(statuses)
    assert "it 24: top-1 50.00%" in text and "    | RuntimeError: boom" in text and "    | line 4" not in text
    assert text.splitlines()[-1] == "1 finished, 1 pending, 1 failed, 1 not started (4 runs)"


def test_named_grid_is_usb_classic_cv_imb_table():
    algs, sets, seeds, cdir = axes("classic_cv_imb", None, None, None, None)
    assert (algs, tuple(sets), seeds) == (list(GRIDS["classic_cv_imb"]["algorithms"]), USB_TABLE_COLUMNS, [0, 1, 2])
    assert algs == ["fixmatch", "daso", "abc", "acr", "semi", "cpe", "cdmad", "simpro", "bacon"]
    runs = plan_grid(algs, sets, seeds, os.path.join(REPO, cdir), None, "out", [])
    assert len(runs) == 9 * 9 * 3 and all(os.path.isfile(r["config"]) for r in runs)
    assert {r["name"] for r in runs} >= {"fixmatch_semi_cifar10_lb1500_100_ulb3000_-100_2", "fixmatch_cifar100_lb150_15_ulb300_15_0"}
    # a command-line axis replaces the grid's
    assert axes("classic_cv_imb", "semi", None, "1", None)[0::2] == (["semi"], [1])
    with pytest.raises(ConfigError, match="unknown grid"):
        axes("nope", None, None, None, None)
    with pytest.raises(ConfigError, match="--algorithms and --setting"):
        axes(None, "fixmatch", None, None, None)


def test_find_runs(tmp_path):
    for n in ("a", "b"):
        (tmp_path / n).mkdir()
        (tmp_path / n / "summary.json").write_text("{}")
    (tmp_path / "logs").mkdir()
    assert find_runs([str(tmp_path)]) == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert find_runs([str(tmp_path / "a")]) == [str(tmp_path / "a")]


def test_leaderboard_cells_and_table():
    """Best against published best, final against published last; a published number of
    another protocol than the runs' is marked in the cell, and the legend says what the mark
    means; each unlabeled distribution is a group of its own."""
    usb_best = PublishedEntry(76.69, "USB's table", "best", "usb")
    acr_best = PublishedEntry(84.1, "ACR paper", "best", "acr")
    acr_usb_best = PublishedEntry(84.25, "CPE logs", "best", "usb")
    acr_last = PublishedEntry(83.0, "a paper's last", "last", "acr")
    assert format_cell((70.0, 72.0, 74.0), usb_best, "usb") == "72.00 ± 2.00 / 76.69, Δ -4.69"
    assert format_cell((70.0, 72.0, 74.0), usb_best, "acr") == "72.00 ± 2.00 / 76.69ᵘ, Δ -4.69"
    assert format_cell((70.0, 72.0, 74.0), acr_best, "other") == "72.00 ± 2.00 / 84.10ᵃ, Δ -12.10"
    assert format_cell((80.0,)) == "80.00 ± 0.00 (n=1)"
    assert format_cell(()) == "—"
    c10, rev = "cifar10_lb1500_100_ulb3000_100", "cifar10_lb1500_100_ulb3000_-100"
    cells = [Cell("fixmatch+semi", c10, (80.0, 82.0), (81.0, 83.0), (), "usb"),
             Cell("fixmatch", rev, (70.0, 71.0), (72.0, 73.0), (PublishedEntry(69.95, "USB's table"),), "usb"),
             Cell("fixmatch", c10, (76.0, 77.0), (77.0, 78.0), (usb_best,), "usb"),
             Cell("fixmatch+acr", c10, (84.0, 85.0), (85.0, 86.0), (acr_best, acr_usb_best, acr_last), "usb"),
             Cell("fixmatch", "digits_lb40_10_ulb90_10", (50.0, 52.0), (51.0, 53.0)),
             Cell("fixmatch", "digits_lb40_10_ulb90_10_middle", (40.0, 42.0), (41.0, 43.0), (), "other",
                  "middle")]
    table = render(cells, method_key=lambda m: (m != "fixmatch", m))
    lines = table.splitlines()
    best_at = lines.index("## Best top-1 (highest evaluation; optimistic) against published best")
    final_at = lines.index("## Final top-1 (median of the last evaluations) against published last")
    assert best_at < final_at
    best, final = lines[best_at:final_at], lines[final_at:]
    assert "### unlabeled distribution: usb" in best and "### unlabeled distribution: middle" in best
    header = "| method | cifar10_lb1500_100_ulb3000_100 | cifar10_lb1500_100_ulb3000_-100 | digits_lb40_10_ulb90_10 |"
    assert best.count(header) == 1 and final.count(header) == 1  # USB's column order first
    # best against published best: the run's protocol (usb) first, so ACR's USB re-run, unmarked
    assert "| fixmatch | 77.50 ± 0.71 / 76.69, Δ +0.81 | 72.50 ± 0.71 / 69.95, Δ +2.55 | 52.00 ± 1.41 |" in best
    assert "| fixmatch+acr | 85.50 ± 0.71 / 84.25, Δ +1.25 | — | — |" in best
    assert "| fixmatch+semi | 82.00 ± 1.41 | — | — |" in best
    # final against published last: USB's table is best only, so no comparison; ACR's last is marked
    assert "| fixmatch | 76.50 ± 0.71 | 70.50 ± 0.71 | 51.00 ± 1.41 |" in final
    assert "| fixmatch+acr | 84.50 ± 0.71 / 83.00ᵃ, Δ +1.50 | — | — |" in final
    assert "| fixmatch | 42.00 ± 1.41 |" in best and "| fixmatch | 41.00 ± 1.41 |" in final  # the middle group
    assert "| fixmatch | 41.00 ± 1.41 |" not in best and "| method | digits_lb40_10_ulb90_10_middle |" in final
    assert any(line.startswith("- `ᵃ`: published under the ACR / SeMi authors'") for line in lines)
    assert not any(line.startswith("- `ᵘ`") for line in lines)  # no USB number in a non-USB cell here
    assert "Published numbers: " in table and "a paper's last (last, acr protocol, wrn_28_2)" in table


def test_run_protocol_from_the_protocol_keys():
    usb = {"lr_schedule": "usb", "num_strong_views": 1, "uratio": 2, "include_lb_to_ulb": False}
    acr = {"lr_schedule": "cosine", "num_strong_views": 2, "uratio": 1, "include_lb_to_ulb": True}
    assert run_protocol([usb, usb]) == "usb" and run_protocol([acr]) == "acr"
    assert run_protocol([{**usb, "lr_schedule": "cosine"}]) == "other"
    assert run_protocol([usb, acr]) == "other"
    simpro = {**acr, "uratio": 8, "include_lb_to_ulb": False}  # config/simpro_paper/
    assert run_protocol([simpro, simpro]) == "simpro" and run_protocol([simpro, acr]) == "other"
    assert run_protocol([{**simpro, "uratio": 16}]) == "simpro"  # its STL-10 files


def test_a_report_over_folders_of_runs_leaves_out_unfinished_ones(tmp_path, capsys):
    """`semilearn report <folder of compare folders>` finds the runs at any depth; a run
    still training (config.yaml, no summary.json) is left out with a note, and named
    alone it is a one-line error saying it is not finished."""
    from semi_usb.cli import main
    from conftest import write_run

    done = write_run(tmp_path / "all" / "ablation" / "no_plce", "fixmatch", 0)
    training = tmp_path / "all" / "main" / "fixmatch_1"
    training.mkdir(parents=True)
    (training / "config.yaml").write_text("seed: 1\n")
    assert find_runs([str(tmp_path / "all")]) == [str(done), str(training)]
    assert main(["report", str(tmp_path / "all"), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert f"note: left out 1 unfinished run(s) (no summary.json yet): {training}" in err
    assert main(["report", str(training), "--out", str(tmp_path / "out2")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"semilearn report: error: {training}: the run is not finished (no summary.json yet): let it "
                   "finish or resume it (--resume True), or leave it out"]
