"""Scores of runs and groups: per-evaluation metrics (balanced accuracy, head / medium /
tail, G-mean), a run's final / best / late gain, and mean ± std over seeds (definitions in
:mod:`semi_usb.report`)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from semi_usb.naming import summary_setting
from semi_usb.calibration import Reliability, reliability_from_json
from semi_usb.published import PUBLISHED_NET, PublishedEntry, candidates, choose, lookup

from .leaderboard import runs_protocol
from .runs import Run

#: Number of final evaluations whose median is the "final" number.
FINAL_WINDOW = 5
#: Fraction of classes in the head (and in the tail).
HEAD_FRACTION = 0.3
#: Recalls below this count as zero in the G-mean.
GMEAN_FLOOR = 1e-12
#: Metric names, in output order, with their display labels.
METRICS: Tuple[Tuple[str, str], ...] = (
    ("top1", "top-1"),
    ("balanced_acc", "balanced acc"),
    ("head_acc", "head"),
    ("medium_acc", "medium"),
    ("tail_acc", "tail"),
    ("gmean", "G-mean"),
    ("ece", "ECE"),
)
METRIC_KEYS = tuple(k for k, _ in METRICS)


def head_medium_tail_split(num_classes: int, lb_class_counts: Optional[Sequence[float]] = None
                           ) -> Tuple[List[int], List[int], List[int]]:
    """Split class indices into head, medium and tail.

    Classes are sorted by labeled count, descending (stable: ties keep class
    index order; no counts means class-index order).  Head = the first
    ``ceil(HEAD_FRACTION * C)``, tail = the last ``ceil(HEAD_FRACTION * C)``
    of what remains, medium = the rest.  C = 10 gives 3/4/3.
    """
    order = list(range(num_classes))
    if lb_class_counts is not None and len(lb_class_counts) == num_classes:
        order.sort(key=lambda c: -float(lb_class_counts[c]))
    n_head = math.ceil(HEAD_FRACTION * num_classes - 1e-9)
    n_tail = min(n_head, num_classes - n_head)
    head = order[:n_head]
    tail = order[num_classes - n_tail:] if n_tail > 0 else []
    medium = order[n_head:num_classes - n_tail]
    return head, medium, tail


def geometric_mean_recall(recalls: Sequence[float]) -> float:
    """Geometric mean of per-class recalls; any recall < GMEAN_FLOOR gives 0."""
    if len(recalls) == 0:
        return float("nan")
    if any(float(r) < GMEAN_FLOOR for r in recalls):
        return 0.0
    return math.exp(sum(math.log(float(r)) for r in recalls) / len(recalls))


def balanced_accuracy(recalls: Sequence[float]) -> float:
    """Mean per-class recall."""
    return sum(float(r) for r in recalls) / len(recalls) if len(recalls) else float("nan")


def _mean_of(values: Sequence[float], idx: Sequence[int]) -> Optional[float]:
    return sum(float(values[i]) for i in idx) / len(idx) if idx else None


def evaluation_metrics(record: Mapping[str, Any],
                       split: Tuple[List[int], List[int], List[int]]
                       ) -> Dict[str, Optional[float]]:
    """All :data:`METRICS` of one evaluation record (fractions; None if unknown)."""
    out: Dict[str, Optional[float]] = {k: None for k in METRIC_KEYS}
    if record.get("top1") is not None:
        out["top1"] = float(record["top1"])
    pca = record.get("per_class_acc")
    if record.get("balanced_acc") is not None:
        out["balanced_acc"] = float(record["balanced_acc"])
    elif pca:
        out["balanced_acc"] = balanced_accuracy(pca)
    if record.get("ece") is not None:  # expected calibration error (semi_usb.calibration)
        out["ece"] = float(record["ece"])
    if pca:
        head, medium, tail = split
        out["head_acc"] = _mean_of(pca, head)
        out["medium_acc"] = _mean_of(pca, medium)
        out["tail_acc"] = _mean_of(pca, tail)
        out["gmean"] = geometric_mean_recall(pca)
    return out


@dataclass
class RunMetrics:
    """Metrics of one run (fractions)."""

    final: Dict[str, Optional[float]]
    best: Dict[str, Optional[float]]
    best_it: Optional[int]
    final_per_class: Optional[List[float]]
    final_source: str  # "history" or "summary"
    confusion: Optional[List[List[float]]]  # row-normalised final confusion
    curve: List[Tuple[int, float]]  # (it, top1)
    late_gain: Optional[float] = None  # top-1 final minus the previous window's median
    reliability: Optional[Reliability] = None  # ECE bins of summary.json's final evaluation


def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


def _row_normalise(matrix: Sequence[Sequence[float]]) -> List[List[float]]:
    out = []
    for row in matrix:
        s = float(sum(row))
        out.append([float(v) / s if s > 0 else 0.0 for v in row])
    return out


def compute_run_metrics(run: Run) -> RunMetrics:
    """Compute the final and best metrics of a run (see module docstring)."""
    summary = run.summary
    split = head_medium_tail_split(run.num_classes, summary.get("lb_class_counts"))
    final_block = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    if run.history:
        window = run.history[-FINAL_WINDOW:]
        per_eval = [evaluation_metrics(r, split) for r in window]
        final = {k: _median([m[k] for m in per_eval]) for k in METRIC_KEYS}
        vectors = [r["per_class_acc"] for r in window if r.get("per_class_acc")]
        final_pc = ([float(statistics.median(col)) for col in zip(*vectors)]
                    if vectors else None)
        source = "history"
        best_rec = max(run.history, key=lambda r: float(r["top1"]))  # first max
        best = evaluation_metrics(best_rec, split)
        best_it: Optional[int] = int(best_rec["it"])
    else:
        final = evaluation_metrics(final_block, split)
        pca = final_block.get("per_class_acc")
        final_pc = [float(v) for v in pca] if pca else None
        source = "summary"
        best = {k: None for k in METRIC_KEYS}
        best_block = summary.get("best") if isinstance(summary.get("best"), dict) else {}
        if best_block.get("top1") is not None:
            best["top1"] = float(best_block["top1"])
        best_it = int(best_block["it"]) if best_block.get("it") is not None else None
    cm = final_block.get("confusion_matrix")
    confusion = None
    if cm and len(cm) == run.num_classes and all(len(r) == run.num_classes for r in cm):
        confusion = _row_normalise(cm)
    curve = [(int(r["it"]), float(r["top1"])) for r in run.history]
    rel = final_block.get("reliability")
    return RunMetrics(final=final, best=best, best_it=best_it, final_per_class=final_pc,
                      final_source=source, confusion=confusion, curve=curve,
                      late_gain=late_gain(curve),
                      reliability=reliability_from_json(rel) if isinstance(rel, dict) else None)


def late_gain(curve: Sequence[Tuple[int, float]], window: int = FINAL_WINDOW) -> Optional[float]:
    """Median top-1 of the last ``window`` evaluations minus that of the ``window`` before
    them; None when the curve is shorter than ``2 * window``."""
    if len(curve) < 2 * window:
        return None
    top1 = [t for _, t in curve]
    return _median(top1[-window:]) - _median(top1[-2 * window:-window])


@dataclass(frozen=True)
class Aggregate:
    """Mean and sample std (ddof=1; 0.0 when n == 1) of n values."""

    mean: Optional[float]
    std: Optional[float]
    n: int


def aggregate(values: Iterable[Optional[float]]) -> Aggregate:
    """Aggregate values, ignoring ``None``/NaN; empty gives ``Aggregate(None, None, 0)``."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return Aggregate(None, None, 0)
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return Aggregate(statistics.fmean(vals), std, len(vals))


def format_pm(agg: Aggregate, scale: float = 100.0, digits: int = 2) -> str:
    """Format as ``"mean ± std"`` (percent by default); n=1 is marked, n=0 is ``—``."""
    if agg.n == 0 or agg.mean is None:
        return "—"
    text = f"{agg.mean * scale:.{digits}f} ± {(agg.std or 0.0) * scale:.{digits}f}"
    return text + " (n=1)" if agg.n == 1 else text


@dataclass
class GroupResult:
    """Everything reported for one ``(setting, method)`` group."""

    setting: str
    method: str
    runs: List[Run]
    metrics: List[RunMetrics]
    final: Dict[str, Aggregate] = field(default_factory=dict)
    best: Dict[str, Aggregate] = field(default_factory=dict)
    late_gain: Aggregate = Aggregate(None, None, 0)
    published: Optional[PublishedEntry] = None
    #: every published entry of the group's method, setting and network (any statistic, protocol)
    published_entries: Tuple[PublishedEntry, ...] = ()

    @property
    def seeds(self) -> List[Any]:
        """Seeds of the runs, in run order."""
        return [r.seed for r in self.runs]

    def distinct(self, key: str) -> List[str]:
        """Sorted distinct string values of ``summary[key]`` over the runs."""
        return sorted({str(r.summary.get(key)) for r in self.runs})


def _group_key(runs: Sequence[Run]) -> Optional[Tuple[str, str, Optional[str]]]:
    """(method, setting, net) shared by every run of a group, else None. The setting is
    rebuilt from the summary fields (falling back to the ``setting`` string); a missing
    ``net`` is not checked, and then the published network :data:`PUBLISHED_NET` is assumed."""
    settings = {(summary_setting(r.summary) or r.setting) for r in runs}
    methods = {r.method for r in runs}
    nets = {r.summary.get("net") for r in runs} - {None}
    if len(settings) != 1 or len(methods) != 1 or len(nets) > 1:
        return None
    return next(iter(methods)), next(iter(settings)), (next(iter(nets)) if nets else None)


def published_for_group(runs: Sequence[Run]) -> Optional[PublishedEntry]:
    """Published number for a group, if dataset, N1/M1, gammas, unlabeled distribution,
    method and net match (:func:`semi_usb.published.lookup`'s first entry)."""
    key = _group_key(runs)
    return None if key is None else lookup(key[0], key[1], net=key[2])


def published_entries_for_group(runs: Sequence[Run]) -> Tuple[PublishedEntry, ...]:
    """Every published entry for the group's method, setting and network."""
    key = _group_key(runs)
    return () if key is None else candidates(key[0], key[1], net=key[2] or PUBLISHED_NET)


def summarize_groups(groups: Mapping[Tuple[str, str], List[Run]]) -> List[GroupResult]:
    """Compute per-run metrics and their seed aggregates for every group."""
    results = []
    for (setting, method), runs in groups.items():
        metrics = [compute_run_metrics(r) for r in runs]
        g = GroupResult(setting=setting, method=method, runs=list(runs), metrics=metrics)
        g.final = {k: aggregate(m.final[k] for m in metrics) for k in METRIC_KEYS}
        g.best = {k: aggregate(m.best[k] for m in metrics) for k in METRIC_KEYS}
        g.late_gain = aggregate(m.late_gain for m in metrics)
        g.published_entries = published_entries_for_group(runs)
        # results.md's column: the entry of the runs' own protocol first (leaderboard.py)
        g.published = (choose(g.published_entries, None, runs_protocol(runs)) if g.published_entries
                       else published_for_group(runs))
        results.append(g)
    return results


def by_setting(results: Sequence[GroupResult]) -> Dict[str, List[GroupResult]]:
    """The group results of each setting, settings and groups in their given order."""
    by_setting: Dict[str, List[GroupResult]] = {}
    for g in results:
        by_setting.setdefault(g.setting, []).append(g)
    return by_setting


def write_per_setting(results: Sequence[GroupResult], out, name: Callable[[str], str],
                      plot: Callable[[List[GroupResult], Any], bool]) -> list:
    """``plot(groups, out / name(setting))`` for each setting's groups; the paths of the files
    it wrote (where it returned True)."""
    written = []
    for setting, groups in by_setting(results).items():
        path = out / name(setting)
        if plot(groups, path):
            written.append(path)
    return written
