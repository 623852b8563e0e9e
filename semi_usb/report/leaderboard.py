"""The leaderboard: one table of a grid, methods as rows, settings as columns.

Each cell is the top-1 accuracy (final, as ``semilearn report`` defines it: the median of
the last evaluations) as mean ± sample std over seeds, and, where ``semi_usb.published``
has a number for the same method, setting and network, that number and our difference to
it (ours minus published, in points). ``semilearn report`` writes it as ``leaderboard.md``.
Pure functions: no I/O, no torch.
"""
from __future__ import annotations

import statistics
from typing import Callable, NamedTuple, Sequence

from semi_usb.published import USB_TABLE_COLUMNS


class Cell(NamedTuple):
    """One (method, setting) of the grid: its per-seed top-1 (%) and the published value (%)."""

    method: str
    setting: str
    top1: tuple
    published: float | None = None
    source: str | None = None


def mean_std(values: Sequence[float]) -> tuple:
    """(mean, sample std with ddof 1; 0.0 for one value)."""
    vals = [float(v) for v in values]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def format_cell(cell: Cell | None) -> str:
    """``76.12 ± 0.30`` (``(n=1)`` for one seed), then ``/ 76.69 published, Δ -0.57``."""
    if cell is None or not cell.top1:
        return "—"
    mean, std = mean_std(cell.top1)
    text = f"{mean:.2f} ± {std:.2f}" + (" (n=1)" if len(cell.top1) == 1 else "")
    if cell.published is not None:
        text += f" / {cell.published:.2f}, Δ {mean - cell.published:+.2f}"
    return text


def setting_order(settings) -> list:
    """USB's table order (``USB_TABLE_COLUMNS``) first, the other settings after, sorted."""
    known = [s for s in USB_TABLE_COLUMNS if s in settings]
    return known + sorted(set(settings) - set(known))


def render(cells: Sequence[Cell], method_key: Callable[[str], object] = str) -> str:
    """The Markdown leaderboard of ``cells`` (methods sorted by ``method_key``)."""
    settings = setting_order({c.setting for c in cells})
    methods = sorted({c.method for c in cells}, key=method_key)
    by_key = {(c.method, c.setting): c for c in cells}
    seeds = sorted({len(c.top1) for c in cells})
    out = ["# Leaderboard", "",
           "Top-1 accuracy (%, final: the median of the last evaluations) on the test set, mean ± "
           f"sample std over {'/'.join(map(str, seeds))} seed(s). Where a published number exists for the "
           "same method, setting and network: `ours / published, Δ ours - published` (points).", "",
           "| method | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for m in methods:
        out.append(f"| {m} | " + " | ".join(format_cell(by_key.get((m, s))) for s in settings) + " |")
    sources = sorted({c.source for c in cells if c.published is not None and c.source})
    if sources:
        out += ["", "Published numbers: " + "; ".join(sources) + "."]
    return "\n".join(out) + "\n"


def cells_from_groups(groups) -> list:
    """Cells from ``semilearn report``'s group results (``GroupResult``: setting, method,
    per-run metrics with ``final['top1']`` as a fraction, ``published``)."""
    cells = []
    for g in groups:
        top1 = tuple(100.0 * m.final["top1"] for m in g.metrics if m.final.get("top1") is not None)
        pub = g.published
        cells.append(Cell(g.method, g.setting, top1, pub.value if pub else None, pub.source if pub else None))
    return cells
