"""The report's figures (PNG): per-class accuracy, head / medium / tail, confusion matrices
and accuracy curves, one of each per setting.

matplotlib (its Agg canvas only) and numpy are imported inside the drawing functions, so
importing this module costs nothing.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from .runs import Run, method_sort_key
from .scores import FINAL_WINDOW, GroupResult, by_setting


def _safe_name(setting: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", setting)


#: The figures of a setting, in the order they are drawn and listed in ``results.md``.
FIGURE_KINDS: Tuple[str, ...] = ("per_class_acc", "group_acc", "confusion", "acc_curve")


def figure_names(setting: str) -> List[str]:
    """File names of a setting's figures, e.g. ``per_class_acc_<setting>.png``."""
    safe = _safe_name(setting)
    return [f"{kind}_{safe}.png" for kind in FIGURE_KINDS]


def _new_figure(width: float, height: float):  # -> matplotlib.figure.Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")  # titles and tick labels kept inside
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    """Write the PNG atomically (temporary file, fsync, rename)."""
    from ..checkpoint import atomic_write

    atomic_write(str(path), lambda f: fig.savefig(f, format="png", metadata={"Software": None}))


def _colors(methods: Sequence[str]) -> Dict[str, Any]:
    """One colour per method, all distinct: tab10 up to 10 methods, tab20 up to 20 (tab10
    cycled, and a report of 12 variants drew two pairs of methods in one colour), then
    evenly spaced samples of a continuous map."""
    from matplotlib import colormaps
    n = len(methods)
    if n <= 20:
        cmap = colormaps["tab10" if n <= 10 else "tab20"]
        return {m: cmap(i) for i, m in enumerate(methods)}
    cmap = colormaps["turbo"]
    return {m: cmap(i / (n - 1)) for i, m in enumerate(methods)}


def _legend_room(groups: Sequence[GroupResult]) -> float:
    """Inches that the legend beside the axes takes: its longest label at font size 8."""
    return 0.5 + 0.065 * max((len(g.method) + 8 for g in groups), default=0)


def _legend(ax) -> None:
    """The legend, beside the axes (right) so that it covers no bar or line."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _class_labels(runs: Sequence[Run]) -> List[str]:
    c = runs[0].num_classes
    for r in runs:
        names = (r.summary.get("final") or {}).get("class_names")
        if names and len(names) == c:
            return [str(n) for n in names]
    return [str(i) for i in range(c)]


def plot_per_class(groups: Sequence[GroupResult], path: Path, colors: Mapping[str, Any]) -> None:
    """Grouped bars of final per-class accuracy (mean over seeds), one bar per method."""
    import numpy as np
    runs = [r for g in groups for r in g.runs]
    c = runs[0].num_classes
    labels = _class_labels(runs)
    counts = runs[0].summary.get("lb_class_counts")
    if counts is not None and len(counts) == c:
        labels = [f"{n}\n(n_l={int(k)})" for n, k in zip(labels, counts)] if c <= 20 else labels
    width_in = min(20.0, max(7.0, 0.25 * c * max(1, len(groups)) + 2)) + _legend_room(groups)
    fig = _new_figure(width_in, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(c)
    bar_w = 0.8 / max(1, len(groups))
    for i, g in enumerate(groups):
        vecs = [m.final_per_class for m in g.metrics if m.final_per_class is not None]
        if not vecs:
            continue
        mean = np.mean(np.asarray(vecs, dtype=float), axis=0) * 100
        ax.bar(x - 0.4 + bar_w * (i + 0.5), mean, bar_w, label=f"{g.method} (n={len(vecs)})",
               color=colors[g.method])
    _finish_bars(fig, ax, x, labels, "final per-class accuracy (%)", f"{groups[0].setting}: final per-class "
                 f"accuracy\n(median of last {FINAL_WINDOW} evals, mean over seeds)", path,
                 fontsize=7 if c <= 20 else 6, rotation=45 if c <= 20 else 90)


def _finish_bars(fig, ax, x, labels: Sequence[str], ylabel: str, title: str, path: Path, **label_kw) -> None:
    """Axes, legend and grid of a grouped percentage bar chart, then save it. More than
    :data:`MAX_TICKS` labels: every k-th is shown (they would overlap)."""
    step = max(1, -(-len(labels) // MAX_TICKS))
    ax.set_xticks(x[::step])
    ax.set_xticklabels(list(labels)[::step], ha="right" if label_kw.get("rotation") == 45 else "center",
                       rotation_mode="anchor" if label_kw.get("rotation") == 45 else "default", **label_kw)
    ax.set_xlim(x[0] - 0.6, x[-1] + 0.6)
    ax.set_ylim(0, 100)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    _legend(ax)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


MAX_TICKS = 40  # tick labels on a bar chart's class axis

GROUP_BARS = (("head_acc", "head"), ("medium_acc", "medium"), ("tail_acc", "tail"),
              ("balanced_acc", "balanced"), ("gmean", "G-mean"))


def plot_groups(groups: Sequence[GroupResult], path: Path, colors: Mapping[str, Any]) -> None:
    """Grouped bars of the final head / medium / tail recall, balanced accuracy and G-mean,
    one bar per method: mean over seeds, error bar = sample std."""
    import numpy as np
    fig = _new_figure(max(7.0, 0.42 * len(GROUP_BARS) * max(1, len(groups)) + 2) + _legend_room(groups), 4.5)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(GROUP_BARS))
    bar_w = 0.8 / max(1, len(groups))
    for i, g in enumerate(groups):
        aggs = [g.final[key] for key, _ in GROUP_BARS]
        mean = [100 * a.mean if a.mean is not None else np.nan for a in aggs]
        err = [100 * (a.std or 0.0) for a in aggs]
        ax.bar(x - 0.4 + bar_w * (i + 0.5), mean, bar_w, yerr=err, capsize=2,
               label=f"{g.method} (n={len(g.runs)})", color=colors[g.method])
    _finish_bars(fig, ax, x, [label for _, label in GROUP_BARS], "final accuracy / recall (%)",
                 f"{groups[0].setting}: head / medium / tail\n(classes sorted by labeled count; "
                 f"median of last {FINAL_WINDOW} evals, mean ± std over seeds)", path, fontsize=9)


def plot_confusion(groups: Sequence[GroupResult], path: Path) -> None:
    """Row-normalised final confusion matrices, seed-averaged, one panel per method."""
    import numpy as np
    runs = [r for g in groups for r in g.runs]
    c = runs[0].num_classes
    labels = _class_labels(runs)
    n = len(groups)
    fig = _new_figure(4.2 * n + 0.8, 4.6)
    image = None
    for i, g in enumerate(groups):
        ax = fig.add_subplot(1, n, i + 1)
        mats = [m.confusion for m in g.metrics if m.confusion is not None]
        ax.set_title(f"{g.method} (n={len(mats)})", fontsize=9)
        if not mats:
            ax.text(0.5, 0.5, "no confusion matrix", ha="center", va="center")
            ax.set_axis_off()
            continue
        mat = np.mean(np.asarray(mats, dtype=float), axis=0)
        image = ax.imshow(mat, vmin=0.0, vmax=1.0, cmap="Blues", interpolation="nearest")
        if c <= 10:
            for a in range(c):
                for b in range(c):
                    ax.text(b, a, f"{mat[a, b]:.2f}", ha="center", va="center", fontsize=5,
                            color="white" if mat[a, b] > 0.5 else "black")
        if c <= 20:
            ax.set_xticks(range(c))
            ax.set_xticklabels(labels, rotation=90, fontsize=6)
            ax.set_yticks(range(c))
            ax.set_yticklabels(labels if i == 0 else [], fontsize=6)
        ax.set_xlabel("predicted", fontsize=8)
        if i == 0:
            ax.set_ylabel("true", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, fraction=0.02)
    fig.suptitle(f"{groups[0].setting}: confusion at the final evaluation\n"
                 "(row-normalised, mean over seeds)", fontsize=10)
    _save(fig, path)


def plot_curves(groups: Sequence[GroupResult], path: Path, colors: Mapping[str, Any]) -> None:
    """Top-1 vs iteration per method: mean line, min/max band over seeds."""
    fig = _new_figure(7.5 + _legend_room(groups), 4.5)
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    for g in groups:
        by_it: Dict[int, List[float]] = {}
        for m in g.metrics:
            for it, top1 in m.curve:
                by_it.setdefault(it, []).append(top1 * 100)
        if not by_it:
            continue
        its = sorted(by_it)
        mean = [statistics.fmean(by_it[i]) for i in its]
        lo = [min(by_it[i]) for i in its]
        hi = [max(by_it[i]) for i in its]
        ax.plot(its, mean, color=colors[g.method], label=f"{g.method} (n={len(g.runs)})",
                linewidth=1.2)
        ax.fill_between(its, lo, hi, color=colors[g.method], alpha=0.2, linewidth=0)
        drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no eval_history.jsonl", ha="center", va="center",
                transform=ax.transAxes)
    else:
        _legend(ax)
    ax.set_xlabel("iteration")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"{groups[0].setting}: top-1 vs iteration (mean, min/max over seeds)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    _save(fig, path)


def write_figures(results: Sequence[GroupResult], out: Path) -> List[Path]:
    """Draw every setting's figures into ``out``; returns their paths in drawing order."""
    colors = _colors(sorted({g.method for g in results}, key=method_sort_key))
    written: List[Path] = []
    for setting, groups in by_setting(results).items():
        draw = {"per_class_acc": lambda p: plot_per_class(groups, p, colors),
                "group_acc": lambda p: plot_groups(groups, p, colors),
                "confusion": lambda p: plot_confusion(groups, p),
                "acc_curve": lambda p: plot_curves(groups, p, colors)}
        for kind, name in zip(FIGURE_KINDS, figure_names(setting)):
            draw[kind](out / name)
            written.append(out / name)
    return written
