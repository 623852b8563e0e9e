"""The leaderboard: methods as rows, settings as columns, one table per statistic.

Like is compared with like. The **best** table puts our best top-1 (the highest evaluation
of each run: optimistic, USB selects it on the test set) beside published numbers that are
best accuracies; the **final** table puts our final top-1 (the median of the last
evaluations) beside published numbers taken at the end of training (``last``). A cell is our
mean ± sample std over seeds, then, where :mod:`semi_usb.published` has an entry of that
statistic for the same method, setting (unlabeled distribution included) and network,
``/ <published><mark>, Δ <ours - published>``. The entry of the run's own protocol is taken
when there is one; a published number of another protocol is marked in the cell
(:data:`MARKS`) and the legend under the tables says what each mark means. Settings of one
unlabeled distribution are grouped together. ``semilearn report`` writes it as
``leaderboard.md``. Pure functions: no I/O, no torch.
"""
from __future__ import annotations

import statistics
from typing import Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from semi_usb.published import USB_TABLE_COLUMNS, PublishedEntry, choose

from .protocol import protocol_with_uratio

#: The mark of a published number measured under another protocol than the run's.
MARKS: Dict[str, str] = {"acr": "ᵃ", "usb": "ᵘ", "simpro": "ˢ"}
OTHER_MARK = "ᵒ"
PROTOCOL_NAMES: Dict[str, str] = {
    "usb": "USB's classic_cv_imb (one strong view, uratio 2, labeled images kept out of the "
           "unlabeled set, USB's schedule)",
    "acr": "the ACR / SeMi authors' (two strong views, uratio 1, labeled images in the "
           "unlabeled set, cosine schedule)",
    "simpro": "SimPro's authors' (two strong views, uratio 8, labeled images kept out of the "
              "unlabeled set, cosine schedule, lr 0.17, 43,000 iterations)",
}
#: Our statistic and the published statistic it is compared with, with the table's title.
STATISTICS: Tuple[Tuple[str, str, str], ...] = (
    ("best", "best", "Best top-1 (highest evaluation; optimistic) against published best"),
    ("final", "last", "Final top-1 (median of the last evaluations) against published last"),
)


class Cell(NamedTuple):
    """One (method, setting) of the grid: per-seed top-1 (%) final and best, the published
    entries for it (any statistic and protocol), and the protocol our runs trained under."""

    method: str
    setting: str
    final: tuple
    best: tuple = ()
    published: Tuple[PublishedEntry, ...] = ()
    protocol: str = "other"
    distribution: str = "usb"


def mean_std(values: Sequence[float]) -> tuple:
    """(mean, sample std with ddof 1; 0.0 for one value)."""
    vals = [float(v) for v in values]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def run_protocol(values: Iterable[Mapping[str, object]]) -> str:
    """``usb``, ``acr``, ``simpro`` or ``other`` for runs' protocol keys (``lr_schedule``,
    ``num_strong_views``, ``uratio``, ``include_lb_to_ulb``); runs that differ are ``other``."""
    names = set()
    for v in values:
        key = (str(v.get("lr_schedule")), str(v.get("num_strong_views")), str(v.get("uratio")),
               str(v.get("include_lb_to_ulb")))
        names.add({("usb", "1", "2", "False"): "usb", ("cosine", "2", "1", "True"): "acr",
                   ("cosine", "2", "8", "False"): "simpro", ("cosine", "2", "16", "False"): "simpro"
                   }.get(key, "other"))
    return names.pop() if len(names) == 1 else "other"


def runs_protocol(runs: Sequence) -> str:
    """The protocol of report runs (:func:`run_protocol` of their protocol keys and uratio)."""
    return run_protocol(protocol_with_uratio(r) for r in runs)


def mark(entry: PublishedEntry, protocol: str) -> str:
    """The mark of ``entry`` in a cell of runs trained under ``protocol`` ('' when the same)."""
    return "" if entry.protocol == protocol else MARKS.get(entry.protocol, OTHER_MARK)


def format_cell(values: Sequence[float], entry: Optional[PublishedEntry] = None,
                protocol: str = "other") -> str:
    """``76.12 ± 0.30`` (``(n=1)`` for one seed), then ``/ 76.69ᵃ, Δ -0.57`` when ``entry``."""
    if not values:
        return "—"
    mean, std = mean_std(values)
    text = f"{mean:.2f} ± {std:.2f}" + (" (n=1)" if len(values) == 1 else "")
    if entry is not None:
        text += f" / {entry.value:.2f}{mark(entry, protocol)}, Δ {mean - entry.value:+.2f}"
    return text


def cell_entry(cell: Cell, published_statistic: str) -> Optional[PublishedEntry]:
    """The published entry a cell compares with: that statistic, the run's protocol first."""
    return choose(cell.published, published_statistic, cell.protocol)


def setting_order(settings) -> list:
    """USB's table order (``USB_TABLE_COLUMNS``) first, the other settings after, sorted."""
    known = [s for s in USB_TABLE_COLUMNS if s in settings]
    return known + sorted(set(settings) - set(known))


def _table(cells: Sequence[Cell], methods: List[str], ours: str, published: str) -> List[str]:
    settings = setting_order({c.setting for c in cells})
    by_key = {(c.method, c.setting): c for c in cells}
    out = ["| method | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for m in methods:
        row = []
        for s in settings:
            c = by_key.get((m, s))
            row.append("—" if c is None else
                       format_cell(getattr(c, ours), cell_entry(c, published), c.protocol))
        out.append(f"| {m} | " + " | ".join(row) + " |")
    return out


def _legend(cells: Sequence[Cell]) -> List[str]:
    used = [(c, e) for c in cells for _, pub, _ in STATISTICS
            for e in [cell_entry(c, pub)] if e is not None]
    if not used:
        return []
    out = ["", "Legend: a published number without a mark was measured under the protocol our runs "
               "of that cell trained under; a mark says it was not:"]
    marks = sorted({(mark(e, c.protocol), e.protocol) for c, e in used if mark(e, c.protocol)})
    for m, p in marks:
        out.append(f"- `{m}`: published under {PROTOCOL_NAMES.get(p, f'another protocol ({p})')}")
    protocols = sorted({c.protocol for c, _ in used})
    out.append("- our runs' protocol: " + "; ".join(
        f"{p} ({PROTOCOL_NAMES.get(p, 'neither of the named protocols: see results.md')})" for p in protocols)
        + ". The training budget is not part of the protocol: see the iterations in results.md.")
    sources = sorted({f"{e.source} ({e.statistic}, {e.protocol} protocol, {e.network})"
                      + (f"; {e.note}" if e.note else "") for _, e in used})
    out += ["", "Published numbers: " + "; ".join(sources) + "."]
    return out


def render(cells: Sequence[Cell], method_key: Callable[[str], object] = str) -> str:
    """The Markdown leaderboard of ``cells`` (methods sorted by ``method_key``)."""
    methods = sorted({c.method for c in cells}, key=method_key)
    seeds = sorted({len(c.final) for c in cells})
    out = ["# Leaderboard", "",
           f"Top-1 accuracy (%) on the test set, mean ± sample std over {'/'.join(map(str, seeds))} "
           "seed(s). Each table compares one statistic with the same statistic of the published "
           "numbers: where one exists for the same method, setting and network, "
           "`ours / published, Δ ours - published` (points); a mark after the published number "
           "says it was measured under another protocol (legend below)."]
    distributions = sorted({c.distribution for c in cells}, key=lambda d: (d != "usb", d))
    for ours, published, title in STATISTICS:
        out += ["", f"## {title}"]
        for dist in distributions:
            group = [c for c in cells if c.distribution == dist]
            if len(distributions) > 1:
                out += ["", f"### unlabeled distribution: {dist}"]
            out += [""] + _table(group, [m for m in methods if any(c.method == m for c in group)],
                                 ours, published)
    out += _legend(cells)
    return "\n".join(out) + "\n"


def cells_from_groups(groups, protocol_of: Callable[[Sequence], str] = runs_protocol) -> list:
    """Cells from ``semilearn report``'s group results (``GroupResult``: setting, method,
    per-run metrics with ``final['top1']`` / ``best['top1']`` as fractions,
    ``published_entries``); ``protocol_of(runs)`` names the runs' protocol."""
    cells = []
    for g in groups:
        final = tuple(100.0 * m.final["top1"] for m in g.metrics if m.final.get("top1") is not None)
        best = tuple(100.0 * m.best["top1"] for m in g.metrics if m.best.get("top1") is not None)
        dist = {str(r.summary.get("ulb_distribution") or "usb") for r in g.runs}
        cells.append(Cell(g.method, g.setting, final, best, tuple(g.published_entries), protocol_of(g.runs),
                          dist.pop() if len(dist) == 1 else "mixed"))
    return cells
