"""``semilearn report`` with the ECE (results.md columns, results.csv, the reliability figure)
and the like-for-like leaderboard (best against published best, final against published
last, protocol marks) on hand-made run folders (test_report's builder)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from semi_usb.report import main
from conftest import SETTING_A, SETTING_B, TOP1, pair, table_rows, write_run

ECE = {("fixmatch", 0): [0.30, 0.25, 0.20, 0.10, 0.12, 0.08, 0.11],   # last 5 median .11, @best (6) .08
       ("fixmatch", 1): [0.30, 0.25, 0.20, 0.15, 0.14, 0.13, 0.07],   # last 5 median .14, @best (7) .07
       ("fixmatch+acr", 0): [0.2] * 7, ("fixmatch+acr", 1): [0.3] * 7}
BINS = {"bins": 15, "count": [0] * 12 + [10, 20, 70], "confidence": [None] * 12 + [0.85, 0.9, 0.97],
        "accuracy": [None] * 12 + [0.8, 0.85, 0.9]}
USB_KEYS = {"lr_schedule": "usb", "num_strong_views": 1, "uratio": 2, "include_lb_to_ulb": False}
ACR_KEYS = {"lr_schedule": "cosine", "num_strong_views": 2, "uratio": 1, "include_lb_to_ulb": True}


def _run(root: Path, method: str, seed: int, keys: dict, bins: bool = True) -> Path:
    d = write_run(root / keys["lr_schedule"], method, seed) if method in ("fixmatch", "fixmatch+semi") else None
    if d is None:  # ACR: fixmatch's curve under another method name
        d = write_run(root / "acr_tmp", "fixmatch", seed)
        s = json.loads((d / "summary.json").read_text())
        s.update(method=method, imb_algorithm="acr", head="balanced")
        (d / "summary.json").write_text(json.dumps(s))
    rows = [json.loads(line) for line in (d / "eval_history.jsonl").read_text().splitlines()]
    for row, e in zip(rows, ECE[(method, seed)]):
        row["ece"] = e
    (d / "eval_history.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    s = json.loads((d / "summary.json").read_text())
    s.update({k: v for k, v in keys.items() if k != "uratio"}, uratio=keys["uratio"])
    s["final"]["ece"] = ECE[(method, seed)][-1]
    if bins:
        s["final"]["reliability"] = BINS
    (d / "summary.json").write_text(json.dumps(s))
    (d / "config.yaml").write_text(yaml.safe_dump(keys))
    return d


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = [_run(root, "fixmatch", s, USB_KEYS) for s in (0, 1)]
    dirs += [_run(root / "acr", "fixmatch+acr", s, ACR_KEYS) for s in (0, 1)]
    dirs.append(write_run(root / "old", "fixmatch+semi", 0, ulb_imb_ratio=50))  # recorded before the ECE
    assert main([str(d) for d in dirs] + ["--out", str(root / "out")]) == 0
    return root / "out"


def test_ece_columns_csv_and_reliability_figure(out):
    md = (out / "results.md").read_text()
    final = table_rows(md, SETTING_A, "| method | seeds | top-1 final")
    assert final["fixmatch"][11] == pair(0.11, 0.14)            # the median of the last 5, per run
    assert final["fixmatch+acr"][11] == pair(0.2, 0.3)
    best = table_rows(md, SETTING_A, "| method | seeds | best it")
    assert best["fixmatch"][9] == pair(0.08, 0.07)              # at each run's best top-1
    assert table_rows(md, SETTING_B, "| method | seeds | top-1 final")["fixmatch+semi"][11] == "—"
    assert "**ECE** = expected calibration error" in md
    with (out / "results.csv").open(newline="") as fh:
        rows = {r["method"] + r["setting"]: r for r in csv.DictReader(fh)}
    assert float(rows["fixmatch" + SETTING_A]["ece_final_mean"]) == pytest.approx(12.5)
    assert rows["fixmatch+semi" + SETTING_B]["ece_final_n"] == "0"
    # a figure for the setting whose runs recorded the bins, none for the other; listed in results.md
    assert (out / f"reliability_{SETTING_A}.png").is_file()
    assert not (out / f"reliability_{SETTING_B}.png").exists()
    assert f"`reliability_{SETTING_A}.png`" in md and f"`reliability_{SETTING_B}.png`" not in md


def test_leaderboard_like_for_like_with_marks(out):
    """FixMatch (USB's protocol keys) against USB's table, best with best, unmarked; ACR
    (the authors' protocol keys) against ACR's paper number of its own protocol, unmarked, not
    CPE's USB re-run; no published number is a last, so the final table compares with none."""
    board = (out / "leaderboard.md").read_text()
    best, final = board.split("## Final top-1", 1)
    fm = sum(max(TOP1[("fixmatch", s)]) for s in (0, 1)) * 50    # mean best top-1, %
    assert f"| fixmatch | {pair(0.80, 0.85)} / 76.69, Δ {fm - 76.69:+.2f} |" in best
    assert f"| fixmatch+acr | {pair(0.80, 0.85)} / 84.10, Δ {fm - 84.10:+.2f} |" in best
    assert f"| fixmatch | {pair(0.65, 0.70)} |" in final and "/ 76.69" not in final
    assert "ᵃ" not in board and "ᵘ" not in board
    assert "ACR paper (Wei & Gan, CVPR 2023)" in board and "(best, acr protocol, wrn_28_2)" in board


def test_leaderboard_marks_another_protocol(tmp_path):
    """ACR trained under USB's protocol keys takes CPE's USB re-run (unmarked); trained under
    neither protocol, it takes the first entry and the cell and the legend say which."""
    usb = [_run(tmp_path / "u", "fixmatch+acr", s, USB_KEYS) for s in (0, 1)]
    assert main([str(d) for d in usb] + ["--out", str(tmp_path / "out_u"), "--no-plots"]) == 0
    board = (tmp_path / "out_u" / "leaderboard.md").read_text()
    assert "/ 84.25, Δ" in board and "CPE-LTSSL" in board and "ᵃ" not in board
    md = (tmp_path / "out_u" / "results.md").read_text()  # results.md's column: the same entry
    assert table_rows(md, SETTING_A, "| method | seeds | top-1 final")["fixmatch+acr"][4] == "84.25"
    assert "- fixmatch+acr: 84.25 (best, usb protocol, wrn_28_2) — machengcheng2016/CPE-LTSSL" in md
    other = [_run(tmp_path / "o", "fixmatch+acr", s, {**ACR_KEYS, "lr_schedule": "constant"}) for s in (0, 1)]
    assert main([str(d) for d in other] + ["--out", str(tmp_path / "out_o"), "--no-plots"]) == 0
    board = (tmp_path / "out_o" / "leaderboard.md").read_text()
    assert "/ 84.10ᵃ, Δ" in board
    assert "- `ᵃ`: published under the ACR / SeMi authors' (two strong views" in board
    assert "- our runs' protocol: other (neither of the named protocols" in board
