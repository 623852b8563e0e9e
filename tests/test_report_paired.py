"""``semilearn report --reference``: paired differences (mean, 95 % t-interval, pairs, word)
recomputed here from the committed runs' histories (results/cpu_compare/fmnist_10k_cosine/),
and the mechanism table from the runs' ``summary.json`` ``mechanism`` sections."""
from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest

from conftest import REPO
from semi_usb.report import main
from semi_usb.report.paired import Paired, paired_difference, t975

RUNS = Path(REPO) / "results" / "cpu_compare" / "fmnist_10k_cosine" / "runs" / "main"
REV = "fmnist_lb1500_100_ulb3000_-100"


def final_top1(run: Path) -> float:
    """Median top-1 of the last 5 evaluations (the report's ``final``), from the history."""
    rows = [json.loads(line) for line in (run / "eval_history.jsonl").read_text().splitlines() if line.strip()]
    return statistics.median(r["top1"] for r in rows[-5:])


def test_t_quantiles():
    assert t975(1) == 12.706 and t975(2) == 4.303 and t975(4) == 2.776 and t975(30) == 2.042
    assert abs(t975(31) - 2.0395) < 2e-4 and abs(t975(120) - 1.9799) < 2e-4


def test_words_and_intervals_by_hand():
    ahead = paired_difference({0: 0.82, 1: 0.83, 2: 0.84}, {0: 0.80, 1: 0.80, 2: 0.80})
    d = [2.0, 3.0, 4.0]
    assert ahead.n == 3 and abs(ahead.mean - 3.0) < 1e-9
    assert abs(ahead.half_width - 4.303 * statistics.stdev(d) / math.sqrt(3)) < 1e-9 and ahead.word == "ahead"
    assert paired_difference({0: 0.7, 1: 0.7}, {0: 0.8, 1: 0.81}).word == "behind"
    mixed = paired_difference({0: 0.81, 1: 0.79, 5: 0.9}, {0: 0.80, 1: 0.80, 2: 0.5})  # seeds 0, 1 only
    assert mixed.n == 2 and mixed.word == "not separated" and mixed.text().endswith("not separated")
    one = paired_difference({0: 0.9}, {0: 0.8})
    assert one.n == 1 and one.half_width is None and one.word == "not separated"
    assert Paired(0, None, None).text() == "—"


def test_paired_table_of_the_committed_runs(tmp_path, capsys):
    """SeMi against ACR (reference ``acr``) on the reversed split: the mean of the three
    per-seed differences of final top-1, its t-interval with t(0.975, 2) = 4.303, n = 3; the
    same table printed and written to paired.md; the default reference is the first method."""
    dirs = [RUNS / f"fixmatch_{m}_{REV}_{s}" for m in ("acr", "semi") for s in range(3)]
    assert main([str(d) for d in dirs] + ["--out", str(tmp_path / "a"), "--no-plots", "--reference", "acr"]) == 0
    printed = capsys.readouterr().out
    text = (tmp_path / "a" / "paired.md").read_text()
    assert text in printed
    diffs = [100 * (final_top1(RUNS / f"fixmatch_semi_{REV}_{s}") - final_top1(RUNS / f"fixmatch_acr_{REV}_{s}"))
             for s in range(3)]
    mean, half = statistics.mean(diffs), 4.303 * statistics.stdev(diffs) / math.sqrt(3)
    word = "ahead" if mean - half > 0 else "behind" if mean + half < 0 else "not separated"
    assert f"## {REV}: against fixmatch+acr" in text
    row = next(line for line in text.splitlines() if line.startswith("| fixmatch+semi |"))
    assert row.startswith(f"| fixmatch+semi | 3 | {mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] {word} |")
    assert main([str(d) for d in dirs] + ["--out", str(tmp_path / "b"), "--no-plots"]) == 0
    default = (tmp_path / "b" / "paired.md").read_text()
    assert f"## {REV}: against fixmatch+acr" in default and "| fixmatch+semi | 3 |" in default


def test_unknown_reference_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(RUNS / f"fixmatch_acr_{REV}_0"), "--out", str(out), "--reference", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--reference nosuch" in err[0] and "fixmatch+acr" in err[0]
    assert not out.exists() or not any(out.iterdir())


def test_mechanism_table_from_the_summaries(tmp_path):
    """Runs with a ``mechanism`` section (copied committed runs given one): the per-method
    mean over seeds; runs without one (earlier versions) give no table."""
    runs = []
    for s, scale in enumerate((0.30, 0.32, 0.34)):
        d = tmp_path / "runs" / f"semi_{s}"
        shutil.copytree(RUNS / f"fixmatch_semi_{REV}_{s}", d)
        summary = json.loads((d / "summary.json").read_text())
        summary["mechanism"] = {"from_it": 500, "logged_steps": 190,
                                "mean": {"tau1": 0.0, "oheml_scale": scale, "plce_changed": 0.0},
                                "last": {"tau1": 0.0, "oheml_scale": scale, "plce_changed": 0.0}}
        (d / "summary.json").write_text(json.dumps(summary))
        runs.append(d)
    assert main([str(d) for d in runs] + ["--out", str(tmp_path / "out"), "--no-plots"]) == 0
    table = (tmp_path / "out" / "mechanism.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| fixmatch+semi |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == ["fixmatch+semi", "3", "0.000", "—", "0.000"] and cells[7] == "0.320"
    assert main([str(RUNS / f"fixmatch_acr_{REV}_0"), "--out", str(tmp_path / "old"), "--no-plots"]) == 0
    assert not (tmp_path / "old" / "mechanism.md").exists()


@pytest.mark.parametrize("name", ["fixmatch+semi", "semi", "folder"])
def test_reference_by_label_short_name_or_folder(tmp_path, name):
    """The reference by its label, without ``fixmatch+``, or by the folder of its runs (here
    the ablation's ``no_plce/``, whose label is a variant's)."""
    dirs = [RUNS / f"fixmatch_{m}_{REV}_{s}" for m in ("acr", "semi") for s in range(3)]
    ablation = RUNS.parent / "ablation" / "no_plce"  # three runs beside SeMi's three: both are variants
    if name == "folder":
        dirs.append(ablation)
        name, label = str(ablation), "fixmatch+semi (semi_use_plce False)"
    else:
        label = "fixmatch+semi"
    assert main([str(d) for d in dirs] + ["--out", str(tmp_path), "--no-plots", "--reference", name]) == 0
    text = (tmp_path / "paired.md").read_text()
    assert f"## {REV}: against {label}\n" in text and "| fixmatch+acr | 3 |" in text


def test_a_method_of_another_protocol_is_marked(tmp_path):
    """ACR in the authors' protocol (``authors/``: two strong views, uratio 1, labeled images in
    the unlabeled set) as the reference: SeMi and ACR of ``main/`` are marked, with the keys in
    which they differ; against SeMi of ``main/``, ACR of ``main/`` (the same protocol) is not."""
    dirs = [RUNS / f"fixmatch_{m}_{REV}_{s}" for m in ("acr", "semi") for s in range(3)]
    authors = RUNS.parent / "authors"
    dirs += [authors / f"fixmatch_acr_{REV}_{s}" for s in range(3)]
    assert main([str(d) for d in dirs] + ["--out", str(tmp_path), "--no-plots", "--reference", str(authors)]) == 0
    text = (tmp_path / "paired.md").read_text()
    assert "| fixmatch+semi ‡ | 3 |" in text
    assert "| fixmatch+acr (include_lb_to_ulb False, num_strong_views 1, uratio 2) ‡ | 3 |" in text
    note = next(line for line in text.splitlines() if line.startswith("- ‡ fixmatch+semi:"))
    assert note == ("- ‡ fixmatch+semi: num_strong_views 1 (reference 2), include_lb_to_ulb False (reference True), "
                    "uratio 2 (reference 1)")
    assert main([str(d) for d in dirs[:6]] + ["--out", str(tmp_path / "same"), "--no-plots", "--reference", "semi"]) == 0
    same = (tmp_path / "same" / "paired.md").read_text()
    assert "| fixmatch+acr | 3 |" in same and "‡ fixmatch" not in same
