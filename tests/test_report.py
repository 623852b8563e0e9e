"""Tests for ``semilearn report`` (semi_usb.report); semi_usb.published has tests/test_published.py.

The run directories built here are synthetic: their numbers are inputs to the
reporting code, not results.  Expected outputs are worked out by hand in the
comments next to them.
"""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import pytest

from conftest import BASE, C, LB_COUNTS, SETTING_A, SETTING_B, pair, report_summary, table_rows, write_run
from semi_usb.errors import ReportError
from semi_usb.report import (aggregate, format_pm, geometric_mean_recall, head_medium_tail_split, late_gain,
                             load_run, main)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = [write_run(root, m, s) for m in ("fixmatch+semi", "fixmatch") for s in (1, 0)]
    # One run of a non-published setting, without history (summary fallback, n=1).
    dirs.append(write_run(root, "fixmatch", 0, with_history=False, ulb_imb_ratio=50,
                           final={"it": 7168, "top1": 0.5, "balanced_acc": 0.5,
                                  "per_class_acc": [0.5] * C, "class_names": None},
                           best={"it": 5120, "top1": 0.6}))
    out = root / "out"
    rc = main([str(d) for d in dirs] + ["--out", str(out)])
    assert rc == 0
    return {"root": root, "dirs": dirs, "out": out}


def test_main_table_numbers(report):
    md = (report["out"] / "results.md").read_text()
    rows = table_rows(md, SETTING_A, "| method | seeds | top-1 final")
    assert list(rows) == ["fixmatch", "fixmatch+semi"]  # fixed method order
    fm, semi = rows["fixmatch"], rows["fixmatch+semi"]
    # columns: method, seeds, top1 final, top1 best, published, bal, head, med, tail, gmean, late gain
    assert fm[1] == "0, 1 (n=2)"
    assert fm[2] == "67.50 ± 3.54"          # median of last 5: .65 and .70
    assert fm[3] == "82.50 ± 3.54"          # best: .80 and .85
    assert semi[2] == pair(0.78, 0.76) == "77.00 ± 1.41"
    assert semi[3] == pair(0.82, 0.90) == "86.00 ± 5.66"
    # per-class metrics: per-class = BASE * factor; median factor .95 (seed 0), .90 (seed 1)
    b = BASE["fixmatch"]
    bal = sum(b) / C                                        # 0.58
    head, med, tail = (b[1] + b[2] + b[3]) / 3, (b[4] + b[5] + b[6] + b[7]) / 4, \
        (b[8] + b[9] + b[0]) / 3
    gm = math.prod(b) ** (1 / C)
    assert fm[5] == pair(bal * 0.95, bal * 0.90) == "53.65 ± 2.05"
    assert fm[6] == pair(head * 0.95, head * 0.90) == "80.17 ± 3.06"
    assert fm[7] == pair(med * 0.95, med * 0.90)
    assert fm[8] == pair(tail * 0.95, tail * 0.90) == "30.83 ± 1.18"
    assert fm[9] == pair(gm * 0.95, gm * 0.90)
    # SeMi base has a zero-recall class -> G-mean exactly 0
    assert semi[9] == "0.00 ± 0.00"
    assert fm[10] == semi[10] == "—"  # 7 evaluations: too few for a late gain
    sb = BASE["fixmatch+semi"]
    assert semi[6] == pair((sb[1] + sb[2] + sb[3]) / 3 * 0.9, (sb[1] + sb[2] + sb[3]) / 3 * 0.9)

    # Metrics at the best evaluation: factors 1.1 (seed 0, it 6144) and 1.05 (seed 1, it 7168)
    best = table_rows(md, SETTING_A, "| method | seeds | best it")
    assert best["fixmatch"][2] == "6144, 7168"
    assert best["fixmatch"][3] == "82.50 ± 3.54"
    assert best["fixmatch"][5] == pair(head * 1.1, head * 1.05)
    assert best["fixmatch+semi"][2] == "7168, 5120"  # seeds 0, 1


def test_published_column_and_header(report):
    md = (report["out"] / "results.md").read_text()
    a = table_rows(md, SETTING_A, "| method | seeds | top-1 final")
    assert "published top-1 (not ours)" in md
    assert a["fixmatch"][4] == "76.69"       # USB's table, C10 1500/3000 g100 consistent
    assert a["fixmatch+semi"][4] == ""       # no published SeMi number
    b = table_rows(md, SETTING_B, "| method | seeds | top-1 final")
    assert b["fixmatch"][4] == ""            # gamma_u = 50: no published number
    # n=1 fallback to summary.final, best from summary.best
    assert b["fixmatch"][1] == "0 (n=1)"
    assert b["fixmatch"][2] == "50.00 ± 0.00 (n=1)"
    assert b["fixmatch"][3] == "60.00 ± 0.00 (n=1)"
    assert "microsoft/Semi-supervised-learning results/classic_cv_imb.csv" in md
    # header block
    for text in ("hardware: cpu, CPU test cpu, 2 threads", "network: wrn_28_2",
                 "iterations (done / planned): 7168 / 7168", "64 labeled, uratio 2",
                 "run dates: 2026-11-20T10:00:00 to 2026-11-21T10:00:00",
                 "fixmatch: model ema, head standard", "fixmatch+semi: model ema, head balanced",
                 "on the *test* set"):
        assert text in md, text
    assert md.index(f"## {SETTING_A}") < md.index(f"## {SETTING_B}")


def test_csv(report):
    with (report["out"] / "results.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["setting"], r["method"]) for r in rows] == [
        (SETTING_A, "fixmatch"), (SETTING_A, "fixmatch+semi"), (SETTING_B, "fixmatch")]
    r = rows[0]
    assert float(r["top1_final_mean"]) == pytest.approx(67.5)
    assert float(r["top1_final_std"]) == pytest.approx(5 / math.sqrt(2), abs=1e-4)
    assert float(r["top1_best_mean"]) == pytest.approx(82.5)
    assert r["n_seeds"] == "2" and r["seeds"] == "0 1"
    assert r["published_top1"] == "76.69"
    assert float(rows[1]["gmean_final_mean"]) == 0.0
    assert rows[2]["published_top1"] == "" and rows[2]["top1_final_std"] == "0.0000"
    # no history: only best top-1 is known
    assert rows[2]["head_acc_best_n"] == "0" and rows[2]["head_acc_best_mean"] == ""


def _png_size(path: Path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24]), len(data)


KINDS = ("per_class_acc", "group_acc", "confusion", "acc_curve")


def test_pngs(report):
    out = report["out"]
    for setting in (SETTING_A, SETTING_B):
        for kind in KINDS:
            (w, h), n = _png_size(out / f"{kind}_{setting}.png")
            assert w >= 300 and h >= 200 and n > 5000, (kind, setting, w, h, n)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["results.md", "results.csv", "leaderboard.md", "paired.md"] + [f"{k}_{s}.png" for s in (SETTING_A, SETTING_B)
                                         for k in KINDS])


@pytest.mark.parametrize("n", [3, 10, 12, 20, 25])
def test_every_method_has_its_own_colour(n):
    """A report of 12 variants (results/cpu_compare/fmnist_10k_cosine) drew two pairs of
    methods in one colour when the colours cycled tab10."""
    from semi_usb.report.figures import _colors

    colors = _colors([f"method{i}" for i in range(n)])
    assert len(colors) == n and len({tuple(round(v, 6) for v in c) for c in colors.values()}) == n


def test_grid_methods_sort_in_the_grid_order():
    """The report lists the classic_cv_imb grid's methods in the grid's order, before any
    other method (alphabetically fixmatch+bacon would come before fixmatch+cdmad)."""
    from semi_usb.grid import GRIDS
    from semi_usb.report.runs import method_sort_key

    grid = [a if a == "fixmatch" else f"fixmatch+{a}" for a in GRIDS["classic_cv_imb"]["algorithms"]]
    assert len(grid) == 9
    assert sorted(["fixmatch+aaa"] + grid[::-1], key=method_sort_key) == grid + ["fixmatch+aaa"]


def test_deterministic(report, tmp_path):
    out2 = tmp_path / "again"
    assert main([str(d) for d in reversed(report["dirs"])] + ["--out", str(out2)]) == 0
    for name in ("results.md", "results.csv", "leaderboard.md", f"acc_curve_{SETTING_A}.png"):
        assert (out2 / name).read_bytes() == (report["out"] / name).read_bytes(), name


def test_error_missingreport_summary(tmp_path, capsys):
    bad = tmp_path / "not_a_run"
    bad.mkdir()
    rc = main([str(bad), "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("semilearn report: error: ")
    assert str(bad) in err and "summary.json" in err
    with pytest.raises(ReportError):
        load_run(bad)
    assert issubclass(ReportError, ValueError)


def test_error_bad_history(tmp_path, capsys):
    d = write_run(tmp_path, "fixmatch", 0)
    with (d / "eval_history.jsonl").open("a") as fh:
        fh.write("{not json\n")
    assert main([str(d), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "eval_history.jsonl:8" in err


def test_split_gmean_aggregate():
    assert head_medium_tail_split(10, LB_COUNTS) == ([1, 2, 3], [4, 5, 6, 7], [8, 9, 0])
    assert head_medium_tail_split(10) == ([0, 1, 2], [3, 4, 5, 6], [7, 8, 9])
    # ties keep class-index order
    assert head_medium_tail_split(4, [5, 5, 5, 5]) == ([0, 1], [], [2, 3])
    assert [len(x) for x in head_medium_tail_split(100)] == [30, 40, 30]
    assert [len(x) for x in head_medium_tail_split(127)] == [39, 49, 39]
    assert geometric_mean_recall([0.5, 0.5]) == pytest.approx(0.5)
    assert geometric_mean_recall([0.25, 1.0]) == pytest.approx(0.5)
    assert geometric_mean_recall([0.9, 0.0, 0.9]) == 0.0
    assert format_pm(aggregate([0.5])) == "50.00 ± 0.00 (n=1)"
    assert format_pm(aggregate([0.5, 0.7, None])) == "60.00 ± 14.14"
    assert format_pm(aggregate([])) == "—"


def test_late_gain():
    curve = list(enumerate([0.1, 0.2, 0.3, 0.60, 0.62, 0.58, 0.61, 0.70,   # previous window: .61
                            0.69, 0.71, 0.66, 0.72, 0.68]))                # last 5: median .69
    assert late_gain(curve) == pytest.approx(0.08)
    assert late_gain(curve[:9]) is None                                    # fewer than 2 x 5
    assert late_gain([(i, 0.5) for i in range(10)]) == 0.0                 # flat


def test_late_gain_column(tmp_path):
    top1 = {0: [0.3, 0.4, 0.5, 0.5, 0.6, 0.6, 0.7, 0.7, 0.7, 0.8],   # windows .5 -> .7
            1: [0.3, 0.4, 0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.6, 0.6]}   # windows .5 -> .6
    dirs = []
    for seed, curve in top1.items():
        d = tmp_path / f"run{seed}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(report_summary("fixmatch", seed)))
        (d / "eval_history.jsonl").write_text("".join(
            json.dumps({"it": 100 * (k + 1), "top1": t, "per_class_acc": [t] * C}) + "\n"
            for k, t in enumerate(curve)))
        dirs.append(str(d))
    assert main(dirs + ["--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "results.md").read_text()
    assert table_rows(md, SETTING_A, "| method | seeds | top-1 final")["fixmatch"][10] == pair(0.2, 0.1)
    with (tmp_path / "out" / "results.csv").open(newline="") as fh:
        (row,) = csv.DictReader(fh)
    assert float(row["top1_late_gain_mean"]) == pytest.approx(15.0) and row["top1_late_gain_n"] == "2"


def test_header_names_the_cpu_model_and_cores(tmp_path):
    """Runs that recorded the CPU's model and logical CPU count (semi_usb.summary.hardware)
    show them in the header; runs of two machines list both."""
    dirs = []
    for seed, model in ((0, "AMD EPYC"), (1, "Intel Xeon")):
        d = write_run(tmp_path / "runs", "fixmatch", seed)
        summary = json.loads((d / "summary.json").read_text())
        summary["hardware"] = {"device": "cpu", "cpu": "x86_64", "cpu_model": model, "cpu_count": 2, "num_threads": 1}
        (d / "summary.json").write_text(json.dumps(summary))
        dirs.append(str(d))
    assert main(dirs + ["--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "results.md").read_text()
    assert "hardware: cpu, CPU x86_64 AMD EPYC (2 logical CPUs), 1 threads; cpu, CPU x86_64 Intel Xeon " \
           "(2 logical CPUs), 1 threads" in md


def test_protocol_columns_and_warning_on_shared_keys(tmp_path):
    """Each method's lr_schedule, strong views, p_cutoff and include_lb_to_ulb (summary, else
    config.yaml, else the old default); a warning when a shared (non-method) key differs."""
    import yaml

    configs = {"fixmatch": {"lr_schedule": "usb", "p_cutoff": 0.95, "include_lb_to_ulb": False, "lr": 0.03,
                            "save_dir": "a"},
               "fixmatch+semi": {"lr_schedule": "cosine", "num_strong_views": 2, "p_cutoff": 0.7,
                                 "include_lb_to_ulb": True, "lr": 0.03, "save_dir": "b", "semi_bank_size": 128}}
    dirs = []
    for method, config in configs.items():
        d = write_run(tmp_path, method, 0)
        (d / "config.yaml").write_text(yaml.safe_dump(config))
        dirs.append(str(d))
    assert main(dirs + ["--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "results.md").read_text()
    rows = table_rows(md, SETTING_A, "| method | lr_schedule")
    assert rows["fixmatch"][1:] == ["usb", "1", "0.95", "False"]
    assert rows["fixmatch+semi"][1:] == ["cosine", "2", "0.7", "True"]
    warnings = [line for line in md.splitlines() if "the methods compared differ" in line]
    keys = sorted(line.split(" differ in ")[1].split(" ")[0] for line in warnings)
    # lr (same), save_dir (runtime), semi_bank_size and p_cutoff (SSL_Argument keys, the
    # method's own; p_cutoff is shown in its column) are not warned about
    assert keys == ["include_lb_to_ulb", "lr_schedule", "num_strong_views"]


def test_a_method_with_its_own_threshold_shows_it_in_the_protocol_table(tmp_path):
    """CDMAD thresholds with ``cdmad_p_cutoff`` (0: every sample), not FixMatch's
    ``p_cutoff``, which its config.yaml still holds: the table shows the threshold it ran with."""
    import yaml

    configs = {"fixmatch": {"p_cutoff": 0.95},
               "fixmatch+cdmad": {"imb_algorithm": "cdmad", "p_cutoff": 0.95, "cdmad_p_cutoff": 0.0}}
    dirs = []
    for method, config in configs.items():
        d = write_run(tmp_path, method, 0, with_history=False)
        (d / "config.yaml").write_text(yaml.safe_dump(config))
        dirs.append(str(d))
    assert main(dirs + ["--out", str(tmp_path / "out")]) == 0
    rows = table_rows((tmp_path / "out" / "results.md").read_text(), SETTING_A, "| method | lr_schedule")
    assert rows["fixmatch"][3] == "0.95"
    assert rows["fixmatch+cdmad"][3] == "0.0 (cdmad_p_cutoff)"


def test_variants_of_one_method_are_separate_rows(tmp_path):
    """SeMi at p_cutoff 0.7 and SeMi without PLCE beside SeMi as usual (two seeds each): three
    rows, each variant named by the keys in which it differs from most of SeMi's runs; the
    seed and runtime keys (save_dir) never make a variant."""
    import yaml

    from semi_usb.report.runs import load_run
    from semi_usb.report.variants import variant_labels

    base = {"p_cutoff": 0.95, "semi_use_plce": True, "lr_schedule": "cosine"}
    variants = {"main": {}, "p07": {"p_cutoff": 0.7}, "noplce": {"semi_use_plce": False}}
    usual = ["main"] * 2  # a third run of the usual configuration makes it the majority
    dirs = []
    for name in list(variants) + usual:
        for seed in (0, 1):
            d = write_run(tmp_path / f"{name}_{len(dirs)}", "fixmatch+semi", seed)
            config = {**base, **variants[name], "seed": seed, "save_dir": str(d.parent)}
            (d / "config.yaml").write_text(yaml.safe_dump(config))
            dirs.append(d)
    labels = variant_labels([load_run(d) for d in dirs])
    assert labels[:6] == ["fixmatch+semi"] * 2 + ["fixmatch+semi (p_cutoff 0.7)"] * 2 \
        + ["fixmatch+semi (semi_use_plce False)"] * 2
    assert main([str(d) for d in dirs] + ["--out", str(tmp_path / "out"), "--no-plots"]) == 0
    rows = table_rows((tmp_path / "out" / "results.md").read_text(), SETTING_A, "| method | lr_schedule")
    assert list(rows) == ["fixmatch+semi", "fixmatch+semi (p_cutoff 0.7)", "fixmatch+semi (semi_use_plce False)"]
    assert rows["fixmatch+semi (p_cutoff 0.7)"][3] == "0.7"


def test_variants_are_named_against_the_declared_defaults(tmp_path):
    """Runs that record their method's declared defaults (``method_defaults``): SeMi with every
    default is ``fixmatch+semi`` even where most runs switch parts off (as in an ablation), and
    1 is the default 1.0; without the record the majority names the variants, as before."""
    import yaml

    from semi_usb.report.runs import load_run
    from semi_usb.report.variants import variant_labels

    declared = {"semi_use_bank": True, "semi_use_plce": True, "semi_ulb_std_weight": 1.0, "p_cutoff": 0.95}
    off = {"semi_use_bank": False, "semi_use_plce": False}
    arms = {"semi": {}, "scaled": {"semi_ulb_std_weight": 0.3}, "one": {"semi_ulb_std_weight": 1},
            **{f"off_{k}": off for k in range(4)}}  # four of seven runs with the parts off

    def labels(record: bool) -> dict:
        runs = []
        for name, changed in arms.items():
            d = write_run(tmp_path / f"{record}_{name}", "fixmatch+semi", 0)
            (d / "config.yaml").write_text(yaml.safe_dump({**declared, **changed, "seed": 0}))
            if record:
                summary = json.loads((d / "summary.json").read_text())
                (d / "summary.json").write_text(json.dumps({**summary, "method_defaults": declared}))
            runs.append(load_run(d))
        return dict(zip(arms, variant_labels(runs)))

    named = labels(record=True)
    assert named["semi"] == named["one"] == "fixmatch+semi"
    assert {named[f"off_{k}"] for k in range(4)} == {"fixmatch+semi (semi_use_bank False, semi_use_plce False)"}
    assert named["scaled"] == "fixmatch+semi (semi_ulb_std_weight 0.3)"
    majority = labels(record=False)  # the parts off are the majority: the run with every default is the variant
    assert majority["semi"] == "fixmatch+semi (semi_use_bank True, semi_use_plce True)"
    assert majority["off_0"] == "fixmatch+semi" and majority["one"] == "fixmatch+semi (semi_ulb_std_weight 1, semi_use_bank True, semi_use_plce True)"


def test_resumed_runs_are_named_under_their_method(tmp_path):
    """A run whose summary says it was resumed from a checkpoint (resumed_from_it > 0) is named,
    with the iteration, on its method's line; runs that went in one go (0, or an older summary
    without the key) are not."""
    dirs = []
    for method, seed, resumed in (("fixmatch", 0, 3750), ("fixmatch", 1, 0), ("fixmatch+semi", 0, None)):
        d = write_run(tmp_path / "runs", method, seed)
        summary = json.loads((d / "summary.json").read_text())
        if resumed is not None:
            summary["resumed_from_it"] = resumed
        (d / "summary.json").write_text(json.dumps(summary))
        dirs.append(str(d))
    assert main(dirs + ["--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "results.md").read_text()
    lines = [line for line in md.splitlines() if "resumed from a checkpoint" in line]
    assert lines == ["  - resumed from a checkpoint (exact resume; last start): seed 0 at it 3750"]
