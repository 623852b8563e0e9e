"""The feature-embedding figure: a t-SNE (scikit-learn) of the EMA model's test features,
one panel per method, coloured by class, head / medium / tail classes marked by the marker.

The features are the run's own ``test_features.npz`` (written at the end of training,
:mod:`semi_usb.features`): backbone ``feat``, float16, at most 2,000 test images. One run per
method and setting is drawn: seed 0, else the smallest seed that has the file. Settings
without any such file get no figure. numpy, scikit-learn and matplotlib only (no torch).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from semi_usb.errors import ReportError
from semi_usb.layout import features_path

from .runs import Run
from .scores import GroupResult, head_medium_tail_split, write_per_setting

MARKERS = (("head", "o"), ("medium", "s"), ("tail", "^"))


def embedding_name(setting: str) -> str:
    from .figures import _safe_name

    return f"embedding_{_safe_name(setting)}.png"


def load_features(run: Run) -> Optional[Dict[str, "object"]]:
    """``feat``, ``labels``, ``preds`` of a run's ``test_features.npz``; None when it has none."""
    import numpy as np

    path = Path(features_path(str(run.path)))
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            out = {k: np.asarray(data[k]) for k in ("feat", "labels", "preds")}
    except (OSError, KeyError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read the test features ({exc})") from None
    if out["feat"].ndim != 2 or not len(out["feat"]) == len(out["labels"]) == len(out["preds"]):
        raise ReportError(f"{path}: feat, labels and preds do not match in length")
    return out


def pick_run(runs: Sequence[Run]) -> Optional[Run]:
    """Seed 0's run, else the smallest seed's, among the runs that have features."""
    have = [r for r in runs if Path(features_path(str(r.path))).is_file()]
    return min(have, key=lambda r: (str(r.seed) != "0", str(r.seed))) if have else None


def _class_names(run: Run) -> List[str]:
    names = (run.summary.get("final") or {}).get("class_names")
    return [str(n) for n in names] if names and len(names) == run.num_classes else [str(k) for k in range(run.num_classes)]


def tsne(feat, seed: int = 0):
    """2-D t-SNE of ``feat`` (float32), PCA-initialised, perplexity 30 (less for few points)."""
    import numpy as np
    from sklearn.manifold import TSNE

    x = np.asarray(feat, dtype=np.float32)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed).fit_transform(x)


def plot_embedding(groups: Sequence[GroupResult], path: Path) -> bool:
    """One t-SNE panel per method of a setting; False (nothing written) without features."""
    import numpy as np
    from matplotlib import colormaps

    from .figures import _new_figure, _save

    chosen = [(g, pick_run(g.runs)) for g in groups]
    chosen = [(g, r) for g, r in chosen if r is not None]
    if not chosen:
        return False
    n = len(chosen)
    fig = _new_figure(4.2 * n + 1.5, 4.6)
    cmap = colormaps["tab20" if chosen[0][1].num_classes > 10 else "tab10"]
    for i, (g, run) in enumerate(chosen):
        data = load_features(run)
        xy = tsne(data["feat"])
        c = run.num_classes
        head, medium, tail = head_medium_tail_split(c, run.summary.get("lb_class_counts"))
        ax = fig.add_subplot(1, n, i + 1)
        acc = float(np.mean(data["labels"] == data["preds"])) * 100
        # a variant's name ("fixmatch+semi (include_lb_to_ulb True, ...)") is wider than a panel: wrapped
        name = "\n".join(textwrap.wrap(g.method, 48))
        ax.set_title(f"{name}\n(seed {run.seed}, {len(xy)} test points, top-1 of these {acc:.1f}%)", fontsize=9)

        for (group, marker), classes in zip(MARKERS, (head, medium, tail)):
            keep = np.isin(data["labels"], classes)
            ax.scatter(xy[keep, 0], xy[keep, 1], c=[cmap(int(k) % cmap.N) for k in data["labels"][keep]],
                       marker=marker, s=6 if group != "tail" else 9, linewidths=0, alpha=0.8, label=group)
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            legend = ax.legend(fontsize=7, loc="best", markerscale=2, title="classes (by labeled count)",
                               title_fontsize=7)
            for handle in legend.legend_handles:
                handle.set_color("0.3")
    if chosen[0][1].num_classes <= 20:
        from matplotlib.lines import Line2D

        names = _class_names(chosen[0][1])
        handles = [Line2D([], [], marker="o", linestyle="", color=cmap(k % cmap.N), markersize=5)
                   for k in range(len(names))]
        fig.legend(handles, names, loc="outside right center", fontsize=7, title="class", title_fontsize=7)
    fig.suptitle(f"{groups[0].setting}: t-SNE of the EMA model's test features\n"
                 "(colour = true class; marker = head / medium / tail)", fontsize=10)
    _save(fig, path)
    return True


def write_embeddings(results: Sequence[GroupResult], out: Path) -> List[Path]:
    """The embedding figure of every setting whose runs saved test features."""
    return write_per_setting(results, out, embedding_name, plot_embedding)
