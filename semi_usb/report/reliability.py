"""The reliability diagram of a setting: one panel per method, from the ECE bins of each
run's ``summary.json`` final evaluation (:mod:`semi_usb.calibration`), the seeds' bins pooled
(counts, confidence sums and correct counts added). Bars: accuracy per confidence bin; the
diagonal: perfect calibration; the gap to it shaded; the panel's title gives the ECE of the
pooled bins and the mean ± std of the runs' ECE. Settings whose runs recorded no bins (runs
from before the ECE was measured) get no figure. numpy and matplotlib only, imported when
drawn.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from semi_usb.calibration import Reliability

from .scores import GroupResult, aggregate, format_pm, write_per_setting


def reliability_name(setting: str) -> str:
    from .figures import _safe_name

    return f"reliability_{_safe_name(setting)}.png"


def _pooled(g: GroupResult) -> Optional[Reliability]:
    bins = [m.reliability for m in g.metrics if m.reliability is not None]
    if not bins or len({b.bins for b in bins}) != 1:
        return None
    return Reliability(*([sum(col) for col in zip(*(getattr(b, f) for b in bins))]
                         for f in ("count", "confidence_sum", "correct")))


def reliability_names(setting: str, groups: Sequence[GroupResult]) -> List[str]:
    """``[reliability_<setting>.png]`` when a run of the setting recorded the bins, else []."""
    return [reliability_name(setting)] if any(_pooled(g) for g in groups) else []


def plot_reliability(groups: Sequence[GroupResult], path: Path) -> bool:
    """Draw the setting's reliability diagram to ``path``; False (nothing drawn) without bins."""
    import numpy as np

    from .figures import _new_figure, _save

    pooled = [(g, _pooled(g)) for g in groups]
    pooled = [(g, p) for g, p in pooled if p is not None]
    if not pooled:
        return False
    n = len(pooled)
    fig = _new_figure(3.4 * n + 0.6, 3.9)
    for i, (g, rel) in enumerate(pooled):
        ax = fig.add_subplot(1, n, i + 1)
        k = rel.bins
        edges = np.linspace(0.0, 1.0, k + 1)
        count = np.asarray(rel.count)
        acc = np.divide(rel.correct, count, out=np.zeros(k), where=count > 0)
        conf = np.divide(rel.confidence_sum, count, out=np.zeros(k), where=count > 0)
        filled = count > 0
        ax.bar(edges[:-1][filled], acc[filled], width=1.0 / k, align="edge", color="tab:blue",
               edgecolor="black", linewidth=0.4, label="accuracy")
        ax.bar(edges[:-1][filled], (conf - acc)[filled], bottom=acc[filled], width=1.0 / k, align="edge",
               color="tab:red", alpha=0.3, edgecolor="tab:red", linewidth=0.4, label="gap to confidence")
        ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top-1 softmax)", fontsize=8)
        if i == 0:
            ax.set_ylabel("accuracy", fontsize=8)
            ax.legend(fontsize=7, loc="upper left")
        runs_ece = format_pm(aggregate(m.final.get("ece") for m in g.metrics))
        ax.set_title(f"{g.method} (n={len(g.runs)})\nECE {100 * (rel.ece or 0.0):.2f} of these bins; final "
                     f"{runs_ece}", fontsize=8)
    fig.suptitle(f"{groups[0].setting}: reliability at the final evaluation ({pooled[0][1].bins} bins, "
                 "seeds pooled)", fontsize=10)
    _save(fig, path)
    return True


def write_reliability(results: Sequence[GroupResult], out: Path) -> List[Path]:
    """The reliability diagram of every setting whose runs recorded the ECE bins."""
    return write_per_setting(results, out, reliability_name, plot_reliability)
