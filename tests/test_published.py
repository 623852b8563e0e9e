"""``semi_usb.published``: every entry's fields, each number against the source it names
(USB's CSV and CPE's released ACR logs, copied under ``tests/published_sources/``; the project's
protocol notes for the paper numbers), the lookup rules, and no machine path in the package."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from semi_usb.naming import make_setting
from semi_usb.published import (PROTOCOLS, PUBLISHED, STATISTICS, USB_SOURCE, USB_STL_COLUMNS,
                                USB_TABLE_COLUMNS, candidates, canonical_setting, lookup)

SOURCES = Path(__file__).resolve().parent / "published_sources"
PACKAGE = Path(__file__).resolve().parents[1] / "semi_usb"
PROTOCOL = Path(__file__).resolve().parents[2] / "shared" / "docs" / "PROTOCOL.md"
MACHINE_PATH = re.compile(r"/work/|/home/|/Users/|/tmp/|/root/|[A-Z]:\\\\|shared/docs")


def _entries():
    return [(key, e) for key, entries in PUBLISHED.items() for e in entries]


def test_every_entry_has_its_fields():
    assert len(_entries()) > 200
    for (method, setting), e in _entries():
        assert method == "".join(method.lower().split()), method
        assert canonical_setting(setting) == setting, setting
        assert e.statistic in STATISTICS, (method, setting, e)
        assert re.fullmatch(r"[a-z][a-z0-9_-]*", e.protocol), (method, setting, e)
        assert re.fullmatch(r"[a-z]+[a-z0-9_]*", e.network), (method, setting, e)
        assert 0.0 < e.value <= 100.0, (method, setting, e)
        assert len(e.source) > 20 and not MACHINE_PATH.search(e.source + e.note), e
        if e.per_seed:
            assert round(sum(e.per_seed) / len(e.per_seed), 2) == e.value, e
    assert {e.protocol for _, e in _entries()} == set(PROTOCOLS)
    # one key never holds two entries of the same statistic, protocol and network
    for key, entries in PUBLISHED.items():
        kinds = [(e.statistic, e.protocol, e.network) for e in entries]
        assert len(kinds) == len(set(kinds)), key


def _usb_csv():
    """``{(method label, setting): value}`` of USB's CSV; None cells left out."""
    rows = list(csv.reader((SOURCES / "usb_classic_cv_imb.csv").read_text(encoding="utf-8-sig")
                           .splitlines()))
    settings = []
    for data, n, r in zip(rows[0][1:], rows[1][1:], rows[2][1:]):
        nl, nu = re.fullmatch(r"n_lb=lb(\d+), n_ulb=ulb(\d+|None)", n).groups()
        gl, gu = re.fullmatch(r"r_lb=(-?[\d.]+), r_ulb=(-?[\d.]+)", r).groups()
        settings.append(make_setting(data, int(nl), float(gl), None if nu == "None" else int(nu),
                                     float(gu)))
    assert settings == list(USB_TABLE_COLUMNS + USB_STL_COLUMNS)
    table = {}
    for row in rows[3:]:
        if row[0].endswith("+"):  # CREST+ is not a method of its own here
            continue
        label = row[0].replace("_", "+", 1)
        for setting, cell in zip(settings, row[1:]):
            if cell != "None":
                table[(label, setting)] = float(cell.split("±")[0])
    return table


def test_usb_entries_are_usb_csv():
    """Every cell of USB's CSV (best accuracy, USB's protocol) is an entry, and every entry
    credited to USB is a cell of it."""
    table = _usb_csv()
    assert len(table) == 18 * 11 - 1   # 19 rows; remixmatch_adsh all None, one remixmatch_cossl cell None
    usb = {key: e for key, e in _entries() if e.source == USB_SOURCE}
    assert {k: e.value for k, e in usb.items()} == table
    assert {(e.statistic, e.protocol, e.network) for e in usb.values()} == {("best", "usb", "wrn_28_2")}
    assert lookup("fixmatch", "stl10_lb150_10_ulbNone_1.0").value == 67.7   # USB's config naming
    assert lookup("fixmatch+abc", "stl10_lb150_20_ulbNone_1").value == 67.68


def test_acr_in_usb_protocol_is_cpe_logs():
    """ACR re-run in USB by CPE's authors: each seed's last BEST_EVAL_ACC of the released log."""
    text = (SOURCES / "cpe_ltssl_acr_logs.txt").read_text()
    found = re.findall(r"fixmatch_acr_(\S+)_(\d)/log.txt\nBEST_EVAL_ACC: ([0-9.]+)", text)
    assert len(found) == 6
    seeds = {}
    for setting, seed, acc in found:
        seeds.setdefault(setting, {})[int(seed)] = round(100 * float(acc), 2)
    for setting, by_seed in seeds.items():
        e = lookup("fixmatch+acr", setting, protocol="usb")
        assert (e.protocol, e.statistic, e.network) == ("usb", "best", "wrn_28_2")
        assert e.per_seed == tuple(by_seed[s] for s in (0, 1, 2))
        assert "CPE-LTSSL" in e.source
    assert lookup("fixmatch+acr", "cifar10_lb1500_100_ulb3000_100", protocol="usb").value == 84.25
    assert lookup("fixmatch+acr", "cifar10_lb1500_100_ulb3000_-100", protocol="usb").value == 86.31


def test_cpe_in_usb_protocol_is_cpe_logs():
    """CPE's own runs (its authors' fork, USB's protocol): each seed's last BEST_EVAL_ACC of the
    released log, every CIFAR-10-LT log there is."""
    text = (SOURCES / "cpe_ltssl_cpe_logs.txt").read_text()
    found = re.findall(r"fixmatch_cpe_(\S+)_0_2_4_(\d)/log.txt\nBEST_EVAL_ACC: ([0-9.]+)", text)
    assert len(found) == 24
    seeds = {}
    for setting, seed, acc in found:
        seeds.setdefault(setting, {})[int(seed)] = round(100 * float(acc), 2)
    assert len(seeds) == 8
    for setting, by_seed in seeds.items():
        e = lookup("fixmatch+cpe", setting)
        assert (e.protocol, e.statistic, e.network) == ("usb", "best", "wrn_28_2")
        assert e.per_seed == tuple(by_seed[s] for s in (0, 1, 2))
        assert "CPE-LTSSL" in e.source and "fixmatch_cpe_" in e.source
    assert lookup("fixmatch+cpe", "cifar10_lb1500_100_ulb3000_-100").value == 87.09
    assert lookup("fixmatch+cpe", "cifar10_lb500_150_ulb4000_150").value == 76.77


def _protocol_text() -> str:
    if not PROTOCOL.is_file():
        pytest.skip(f"{PROTOCOL} not available")
    return PROTOCOL.read_text()


def test_usb_rows_match_protocol_notes():
    text = _protocol_text()
    lines = [l for l in text.splitlines() if l.startswith("| ")]
    assert lines[0].startswith("| method | C10 1500/3000 g100")
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not re.fullmatch(r"[-]+", cells[0]):
            rows["".join(cells[0].split())] = [float(c) for c in cells[1:]]
    assert set(rows) == {"supervised", "fixmatch", "fixmatch+daso", "fixmatch+abc", "fixmatch+cossl"}
    for method, values in rows.items():
        for setting, v in zip(USB_TABLE_COLUMNS, values):
            assert lookup(method, setting).value == v, (method, setting)


def test_acr_paper_numbers_and_their_credit():
    """ACR's protocol numbers as the protocol notes give them; the CIFAR-100-LT ones are credited
    to CCL (WRN-28-2), not to the ACR paper (whose CIFAR-100-LT numbers are WRN-28-8)."""
    text = " ".join(_protocol_text().split())
    m = re.search(r"N1=1500: consistent (\d+\.\d+), uniform (\d+\.\d+), reversed (\d+\.\d+); "
                  r"N1=500: (\d+\.\d+), (\d+\.\d+), (\d+\.\d+)\. CIFAR-100-LT gamma 10: N1=150: "
                  r"consistent (\d+\.\d+), uniform (\d+\.\d+), reversed (\d+\.\d+)", text)
    assert m, "ACR paragraph not found in PROTOCOL.md"
    keys = [f"cifar10_lb1500_100_ulb3000_{u}" for u in (100, 1, -100)] + \
           [f"cifar10_lb500_100_ulb4000_{u}" for u in (100, 1, -100)] + \
           [f"cifar100_lb150_10_ulb300_{u}" for u in (10, 1, -10)]
    entries = [lookup("fixmatch+acr", k, protocol="acr") for k in keys]
    assert [e.value for e in entries] == [float(x) for x in m.groups()]
    assert all(e.protocol == "acr" and e.network == "wrn_28_2" for e in entries)
    assert all(e.source.startswith("ACR paper") for e in entries[:6])
    assert all(e.source.startswith("CCL paper") and "Tables 2 and 4" in e.source for e in entries[6:])
    m2 = re.search(r"consistent 84\.8/84\.2/83\.8, reversed 86\.1/86\.5/86\.3", text)
    assert m2, "the ACR re-run inside USB is the CPE logs' per-seed best, rounded"
    assert [round(v, 1) for v in lookup("fixmatch+acr", keys[0], protocol="usb").per_seed] == [84.8, 84.2, 83.8]


def test_lookup_rules():
    assert lookup("FixMatch + ABC", "cifar10_lb500_100_ulb4000_-100").value == 80.13
    assert lookup("fixmatch", "cifar10_lb1500_100_ulb3000_100", net="resnet18") is None
    assert lookup("fixmatch+semi", "cifar10_lb1500_100_ulb3000_100") is None
    assert lookup("fixmatch", "cifar10_lb1500_100_ulb3000_100", statistic="last") is None
    acr = "cifar10_lb1500_100_ulb3000_100"
    assert len(candidates("fixmatch+acr", acr)) == 2
    assert lookup("fixmatch+acr", acr, protocol="usb").protocol == "usb"
    assert lookup("fixmatch+acr", acr, protocol="acr").protocol == "acr"
    # no entry of the run's protocol: another protocol's entry, which the report marks
    assert lookup("fixmatch+acr", "cifar10_lb1500_100_ulb3000_1", protocol="usb").protocol == "acr"
    assert make_setting("cifar10", 1500, 100.0, 3000, -100.0) == "cifar10_lb1500_100_ulb3000_-100"
    assert make_setting("stl10", 150, 10, None, 1.0) == "stl10_lb150_10_ulbNone_1"


def test_no_machine_path_in_package():
    hits = [f"{p.relative_to(PACKAGE)}:{i}" for p in sorted(PACKAGE.rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if MACHINE_PATH.search(line)]
    assert hits == []
