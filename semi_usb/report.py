"""``semilearn report``: tables and figures from finished training runs.

Usage::

    semilearn report RUN_DIR [RUN_DIR ...] --out results/<name>/

Every ``RUN_DIR`` is a training run directory (USB's ``save_dir/save_name``)
holding ``summary.json`` and, normally, ``eval_history.jsonl``.  Runs are
grouped by ``(setting, method)``; each group's seeds are aggregated as
mean ± sample standard deviation.

Files written to ``--out``:

* ``results.md`` -- Markdown tables, one section per setting, with a header
  block (hardware, iterations, network, batch, run dates, model/head per
  method, definitions and the "best is selected on the test set" caveat) and a
  separate, labelled column of *published* numbers (:mod:`semi_usb.published`).
* ``results.csv`` -- the same numbers, one row per ``(setting, method)``.
* ``per_class_acc_<setting>.png``, ``group_acc_<setting>.png`` (head / medium /
  tail, balanced, G-mean), ``confusion_<setting>.png`` and ``acc_curve_<setting>.png``
  for every setting.

Definitions (all accuracies are fractions in the inputs, percentages in the
outputs):

``final``
    For every metric, the median of that metric over the last
    :data:`FINAL_WINDOW` (=5) evaluations of ``eval_history.jsonl`` (fewer if
    the history is shorter).  Per-class-based metrics are computed from each
    evaluation's ``per_class_acc`` first and the median is taken afterwards;
    the per-class vector itself is the element-wise median.  Runs without a
    history fall back to ``summary.json``'s ``final`` block.
``best``
    The evaluation with the highest top-1 in ``eval_history.jsonl`` (earliest
    one on ties) and every metric at that evaluation.  USB selects its best
    model on the *test* set, so ``best`` is optimistic.  Without a history only
    ``summary.json``'s ``best.top1`` is known.
late gain
    Top-1 ``final`` minus the median top-1 of the :data:`FINAL_WINDOW`
    evaluations before the final ones: how much a run still rose at the end of
    its budget (about 0 once it has stopped rising).  Unknown with fewer than
    ``2 * FINAL_WINDOW`` evaluations.
balanced accuracy
    Mean per-class recall (the recorded ``balanced_acc`` when present).
head / medium / tail
    Classes are sorted by *labeled* count (``lb_class_counts``), descending,
    ties broken by class index.  ``head`` = the first ``ceil(0.3 * C)``
    classes, ``tail`` = the last ``ceil(0.3 * C)`` classes (at most the
    classes left after the head), ``medium`` = the rest; e.g. 3/4/3 for
    C = 10, 30/40/30 for C = 100, 39/49/39 for C = 127.  Each group's value is
    the mean recall of its classes.  Without ``lb_class_counts`` class-index
    order is used (USB's long-tailed labeled sets decrease with the index).
G-mean
    Geometric mean of the per-class recalls, ``(prod_c r_c) ** (1 / C)``,
    computed in log space.  Recalls below :data:`GMEAN_FLOOR` (1e-12) count as
    zero and make the G-mean exactly 0: no epsilon smoothing, which would
    hide a dead class (with eps = 1e-6 and C = 10 one zero class would still
    leave a G-mean of about 0.25 x the others').
mean ± std
    Over seeds, sample standard deviation (ddof = 1); a single seed shows
    ``± 0.00`` and is marked ``(n=1)``.

This module imports neither torch nor semilearn; matplotlib is imported only
when figures are drawn, and only its Agg canvas is used.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple)

from semi_usb.published import PUBLISHED_NET, PublishedEntry, lookup, make_setting

__all__ = [
    "FINAL_WINDOW",
    "GMEAN_FLOOR",
    "HEAD_FRACTION",
    "METHOD_ORDER",
    "METRICS",
    "Aggregate",
    "GroupResult",
    "ReportError",
    "Run",
    "RunMetrics",
    "add_arguments",
    "add_parser",
    "aggregate",
    "balanced_accuracy",
    "build_parser",
    "compute_run_metrics",
    "evaluation_metrics",
    "format_pm",
    "geometric_mean_recall",
    "group_runs",
    "head_medium_tail_split",
    "late_gain",
    "load_history",
    "load_run",
    "load_runs",
    "main",
    "method_sort_key",
    "published_for_group",
    "run_from_args",
    "summarize_groups",
    "write_report",
]

#: Number of final evaluations whose median is the "final" number.
FINAL_WINDOW = 5
#: Fraction of classes in the head (and in the tail).
HEAD_FRACTION = 0.3
#: Recalls below this count as zero in the G-mean.
GMEAN_FLOOR = 1e-12
#: Methods listed first, in this order; others follow alphabetically.
METHOD_ORDER: Tuple[str, ...] = ("fixmatch", "fixmatch+daso", "fixmatch+abc",
                                 "fixmatch+acr", "fixmatch+semi")
#: Metric names, in output order, with their display labels.
METRICS: Tuple[Tuple[str, str], ...] = (
    ("top1", "top-1"),
    ("balanced_acc", "balanced acc"),
    ("head_acc", "head"),
    ("medium_acc", "medium"),
    ("tail_acc", "tail"),
    ("gmean", "G-mean"),
)
_METRIC_KEYS = tuple(k for k, _ in METRICS)

PROG = "semilearn report"


class ReportError(ValueError):
    """A problem with the report's inputs; its message is a single line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

@dataclass
class Run:
    """One training run: its summary, evaluation history and identity."""

    path: Path
    summary: Dict[str, Any]
    history: List[Dict[str, Any]]
    setting: str
    method: str
    seed: Any

    @property
    def num_classes(self) -> int:
        """Number of classes (``summary.num_classes``)."""
        return int(self.summary["num_classes"])


def _read_json(path: Path) -> Any:
    try:
        with path.open("r", encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})")
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror})")


def load_history(path: Path) -> List[Dict[str, Any]]:
    """Read an ``eval_history.jsonl`` file.

    Returns the evaluations sorted by iteration ``it``; when an iteration
    occurs more than once (a resumed run) the last record wins.  A missing
    file gives an empty list.
    """
    if not path.is_file():
        return []
    by_it: Dict[int, Dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror})")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path}:{lineno}: invalid JSON ({exc.msg})")
        if not isinstance(rec, dict) or "it" not in rec or "top1" not in rec:
            raise ReportError(f"{path}:{lineno}: evaluation record needs 'it' and 'top1'")
        by_it[int(rec["it"])] = rec
    return [by_it[it] for it in sorted(by_it)]


def _derive_method(summary: Mapping[str, Any]) -> Optional[str]:
    method = summary.get("method")
    if not method:
        algo = summary.get("algorithm")
        if not algo:
            return None
        imb = summary.get("imb_algorithm")
        method = f"{algo}+{imb}" if imb else str(algo)
    return "".join(str(method).lower().split())


def _canonical_setting(summary: Mapping[str, Any]) -> Optional[str]:
    keys = ("dataset", "num_labels", "lb_imb_ratio", "ulb_num_labels", "ulb_imb_ratio")
    if all(summary.get(k) is not None for k in keys):
        try:
            return make_setting(str(summary["dataset"]), int(summary["num_labels"]),
                                float(summary["lb_imb_ratio"]),
                                int(summary["ulb_num_labels"]),
                                float(summary["ulb_imb_ratio"]))
        except (TypeError, ValueError):
            return None
    return None


def load_run(run_dir: Path | str) -> Run:
    """Load one run directory; raise :class:`ReportError` if it is not one."""
    path = Path(run_dir)
    summary_path = path / "summary.json"
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory (expected a training run directory)")
    if not summary_path.is_file():
        raise ReportError(f"{path}: no summary.json (not a training run directory)")
    summary = _read_json(summary_path)
    if not isinstance(summary, dict):
        raise ReportError(f"{summary_path}: expected a JSON object")
    method = _derive_method(summary)
    if method is None:
        raise ReportError(f"{summary_path}: missing 'method' (and 'algorithm')")
    setting = summary.get("setting") or _canonical_setting(summary)
    if not setting:
        raise ReportError(f"{summary_path}: missing 'setting'")
    try:
        num_classes = int(summary["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise ReportError(f"{summary_path}: missing or invalid 'num_classes'")
    if num_classes < 1:
        raise ReportError(f"{summary_path}: 'num_classes' must be positive")
    history = load_history(path / "eval_history.jsonl")
    final = summary.get("final")
    if not history and not (isinstance(final, dict) and final.get("top1") is not None):
        raise ReportError(f"{path}: neither eval_history.jsonl nor summary.json 'final.top1'")
    for rec in history + ([final] if isinstance(final, dict) else []):
        pca = rec.get("per_class_acc")
        if pca is not None and len(pca) != num_classes:
            raise ReportError(f"{path}: per_class_acc has {len(pca)} entries, "
                              f"num_classes is {num_classes}")
    return Run(path=path, summary=summary, history=history, setting=str(setting),
               method=method, seed=summary.get("seed"))


def load_runs(run_dirs: Iterable[Path | str]) -> List[Run]:
    """Load several run directories (duplicates, by resolved path, once)."""
    runs: List[Run] = []
    seen = set()
    from semi_usb.grid import expand_save_dirs  # a compare --save_dir stands for its runs

    for d in expand_save_dirs(run_dirs):
        key = Path(d).resolve()
        if key in seen:
            continue
        seen.add(key)
        runs.append(load_run(d))
    if not runs:
        raise ReportError("no run directories given")
    return runs


# --------------------------------------------------------------------------
# Grouping
# --------------------------------------------------------------------------

def method_sort_key(method: str) -> Tuple[int, str]:
    """Sort key: :data:`METHOD_ORDER` first, then alphabetical."""
    if method in METHOD_ORDER:
        return (METHOD_ORDER.index(method), "")
    return (len(METHOD_ORDER), method)


def _seed_key(seed: Any) -> Tuple[int, Any]:
    return (0, seed) if isinstance(seed, (int, float)) else (1, str(seed))


def group_runs(runs: Iterable[Run]) -> Dict[Tuple[str, str], List[Run]]:
    """Group runs by ``(setting, method)``.

    Returned in deterministic order: settings alphabetically, methods by
    :func:`method_sort_key`, runs by seed then path.
    """
    groups: Dict[Tuple[str, str], List[Run]] = {}
    for run in runs:
        groups.setdefault((run.setting, run.method), []).append(run)
    ordered = sorted(groups, key=lambda k: (k[0], method_sort_key(k[1])))
    return {k: sorted(groups[k], key=lambda r: (_seed_key(r.seed), str(r.path)))
            for k in ordered}


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------

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
    out: Dict[str, Optional[float]] = {k: None for k in _METRIC_KEYS}
    if record.get("top1") is not None:
        out["top1"] = float(record["top1"])
    pca = record.get("per_class_acc")
    if record.get("balanced_acc") is not None:
        out["balanced_acc"] = float(record["balanced_acc"])
    elif pca:
        out["balanced_acc"] = balanced_accuracy(pca)
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
        final = {k: _median([m[k] for m in per_eval]) for k in _METRIC_KEYS}
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
        best = {k: None for k in _METRIC_KEYS}
        best_block = summary.get("best") if isinstance(summary.get("best"), dict) else {}
        if best_block.get("top1") is not None:
            best["top1"] = float(best_block["top1"])
        best_it = int(best_block["it"]) if best_block.get("it") is not None else None
    cm = final_block.get("confusion_matrix")
    confusion = None
    if cm and len(cm) == run.num_classes and all(len(r) == run.num_classes for r in cm):
        confusion = _row_normalise(cm)
    curve = [(int(r["it"]), float(r["top1"])) for r in run.history]
    return RunMetrics(final=final, best=best, best_it=best_it, final_per_class=final_pc,
                      final_source=source, confusion=confusion, curve=curve,
                      late_gain=late_gain(curve))


def late_gain(curve: Sequence[Tuple[int, float]], window: int = FINAL_WINDOW) -> Optional[float]:
    """Median top-1 of the last ``window`` evaluations minus that of the ``window`` before
    them; None when the curve is shorter than ``2 * window``."""
    if len(curve) < 2 * window:
        return None
    top1 = [t for _, t in curve]
    return _median(top1[-window:]) - _median(top1[-2 * window:-window])


# --------------------------------------------------------------------------
# Aggregation over seeds
# --------------------------------------------------------------------------

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

    @property
    def seeds(self) -> List[Any]:
        """Seeds of the runs, in run order."""
        return [r.seed for r in self.runs]

    def distinct(self, key: str) -> List[str]:
        """Sorted distinct string values of ``summary[key]`` over the runs."""
        return sorted({str(r.summary.get(key)) for r in self.runs})


def published_for_group(runs: Sequence[Run]) -> Optional[PublishedEntry]:
    """Published number for a group, if dataset, N1/M1, gammas, method and net match.

    The setting is rebuilt from the summary fields (falling back to the
    ``setting`` string), and every run's ``net`` must be WRN-28-2 (missing
    ``net`` is not checked).
    """
    settings = {(_canonical_setting(r.summary) or r.setting) for r in runs}
    methods = {r.method for r in runs}
    nets = {r.summary.get("net") for r in runs} - {None}
    if len(settings) != 1 or len(methods) != 1 or len(nets) > 1:
        return None
    net = next(iter(nets)) if nets else None
    return lookup(next(iter(methods)), next(iter(settings)), net=net)


def summarize_groups(groups: Mapping[Tuple[str, str], List[Run]]) -> List[GroupResult]:
    """Compute per-run metrics and their seed aggregates for every group."""
    results = []
    for (setting, method), runs in groups.items():
        metrics = [compute_run_metrics(r) for r in runs]
        g = GroupResult(setting=setting, method=method, runs=list(runs), metrics=metrics)
        g.final = {k: aggregate(m.final[k] for m in metrics) for k in _METRIC_KEYS}
        g.best = {k: aggregate(m.best[k] for m in metrics) for k in _METRIC_KEYS}
        g.late_gain = aggregate(m.late_gain for m in metrics)
        g.published = published_for_group(runs)
        results.append(g)
    return results


# --------------------------------------------------------------------------
# Writing: Markdown and CSV
# --------------------------------------------------------------------------

def _settings(results: Sequence[GroupResult]) -> Dict[str, List[GroupResult]]:
    by_setting: Dict[str, List[GroupResult]] = {}
    for g in results:
        by_setting.setdefault(g.setting, []).append(g)
    return by_setting


def _span(values: Sequence[str]) -> str:
    vals = sorted(v for v in values if v and v != "None")
    if not vals:
        return "unknown"
    return vals[0] if vals[0] == vals[-1] else f"{vals[0]} to {vals[-1]}"


def _hardware(run: Run) -> str:
    hw = run.summary.get("hardware") or {}
    if not isinstance(hw, dict):
        return str(hw)
    parts = [str(hw.get("device", "unknown device"))]
    if hw.get("cpu"):
        parts.append(f"CPU {hw['cpu']}")
    if hw.get("num_threads") is not None:
        parts.append(f"{hw['num_threads']} threads")
    return ", ".join(parts)


def _versions(run: Run) -> str:
    v = run.summary.get("versions") or {}
    if not isinstance(v, dict):
        return str(v)
    return ", ".join(f"{k} {v[k]}" for k in sorted(v))


def _iterations(runs: Sequence[Run]) -> str:
    done = sorted({int(r.summary["iterations_done"]) for r in runs
                   if r.summary.get("iterations_done") is not None})
    total = sorted({int(r.summary["num_train_iter"]) for r in runs
                    if r.summary.get("num_train_iter") is not None})
    d = "?" if not done else (str(done[0]) if len(done) == 1 else f"{done[0]}–{done[-1]}")
    t = "?" if not total else "/".join(str(x) for x in total)
    return f"{d} / {t}"


def _seeds_text(g: GroupResult) -> str:
    seeds = sorted(g.seeds, key=_seed_key)
    return f"{', '.join(str(s) for s in seeds)} (n={len(seeds)})"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _setting_description(runs: Sequence[Run]) -> List[str]:
    s = runs[0].summary
    lines = []
    fields = ("dataset", "num_labels", "ulb_num_labels", "lb_imb_ratio", "ulb_imb_ratio")
    if all(s.get(k) is not None for k in fields):
        gl, gu = float(s["lb_imb_ratio"]), float(s["ulb_imb_ratio"])
        kind = ("consistent" if gu == gl else "uniform" if gu == 1
                else "reversed" if gu == -gl else "other")
        lines.append(f"- data: {s['dataset']}, {s.get('num_classes')} classes, "
                     f"N1 = {s['num_labels']}, M1 = {s['ulb_num_labels']}, "
                     f"gamma_l = {s['lb_imb_ratio']}, gamma_u = {s['ulb_imb_ratio']} ({kind})")
    if s.get("lb_class_counts") is not None:
        lines.append(f"- labeled class counts: {list(s['lb_class_counts'])}")
    if s.get("ulb_class_counts") is not None:
        lines.append(f"- unlabeled class counts: {list(s['ulb_class_counts'])}")
    return lines


def _published_note(g: GroupResult) -> str:
    assert g.published is not None
    return f"- {g.method}: {g.published.value:.2f} — {g.published.source}"


def render_markdown(results: Sequence[GroupResult]) -> str:
    """Render ``results.md``."""
    all_runs = [r for g in results for r in g.runs]
    by_setting = _settings(results)
    out: List[str] = []
    out.append("# Results")
    out.append("")
    out.append(f"{len(all_runs)} run(s), {len(by_setting)} setting(s); "
               f"generated by `{PROG}`.")
    out.append("")
    out.append("## Header")
    out.append("")
    out.append("- hardware: " + "; ".join(sorted({_hardware(r) for r in all_runs})))
    out.append("- network: " + ", ".join(sorted({str(r.summary.get('net')) for r in all_runs})))
    out.append("- iterations (done / planned): " + _iterations(all_runs))
    out.append("- batch: " + ", ".join(sorted({
        f"{r.summary.get('batch_size')} labeled, uratio {r.summary.get('uratio')}"
        for r in all_runs})))
    out.append("- run dates: " + _span([str(r.summary.get("date")) for r in all_runs]))
    out.append("- versions: " + "; ".join(sorted({_versions(r) for r in all_runs})))
    out.append("- evaluated model and classifier head per method: " + "; ".join(
        f"{m}: model {'/'.join(sorted({str(r.summary.get('model')) for g in results if g.method == m for r in g.runs}))}"
        f", head {'/'.join(sorted({str(r.summary.get('head')) for g in results if g.method == m for r in g.runs}))}"
        for m in sorted({g.method for g in results}, key=method_sort_key)))
    out.append("")
    out.append("**Caveat:** USB selects its best checkpoint on the *test* set (there is no "
               "separate validation split), so every \"best\" number is optimistic. "
               "Prefer the \"final\" numbers.")
    out.append("")
    out.append("Definitions:")
    out.append("")
    out.append("- All numbers are test-set accuracies in %, mean ± sample std (ddof = 1) over "
               "seeds; `(n=1)` marks a single seed, whose std is shown as 0.00.")
    out.append(f"- **final** = median of each metric over the last {FINAL_WINDOW} evaluations "
               "in `eval_history.jsonl` (per-class metrics computed per evaluation, then the "
               "median); a run without a history uses `summary.json`'s final evaluation.")
    out.append("- **best** = the evaluation with the highest top-1 in `eval_history.jsonl`, "
               "and the other metrics at that evaluation.")
    out.append(f"- **late gain** = top-1 final minus the median top-1 of the {FINAL_WINDOW} "
               f"evaluations before the last {FINAL_WINDOW}, in points: how much a method still "
               f"rose at the end of its budget (about 0 once it has stopped rising; `—` with "
               f"fewer than {2 * FINAL_WINDOW} evaluations).")
    out.append("- **balanced acc** = mean per-class recall.")
    out.append("- **head / medium / tail** = mean recall of the classes sorted by labeled "
               f"count (descending, ties by class index): head = first ceil({HEAD_FRACTION} C), "
               f"tail = last ceil({HEAD_FRACTION} C), medium = the rest (C = 10: 3/4/3, "
               "C = 100: 30/40/30).")
    out.append("- **G-mean** = geometric mean of the per-class recalls; a class with zero "
               "recall makes it 0 (no epsilon smoothing).")
    out.append("- **published (not ours)** = a number from the literature (see "
               "`semi_usb/published.py` and the sources under each table) for the same "
               f"dataset, N1/M1, gamma_l/gamma_u, method and network ({PUBLISHED_NET}); "
               "blank where none matches. Their training budget and protocol may differ.")
    out.append("- Figures per setting: `per_class_acc_*` = final per-class accuracy "
               f"(element-wise median of the last {FINAL_WINDOW} evaluations), mean over seeds; "
               "`group_acc_*` = the final head / medium / tail recall, balanced accuracy and "
               "G-mean, mean ± std over seeds; `confusion_*` = confusion matrix of "
               "`summary.json`'s final evaluation, row-normalised (rows = true class), mean over seeds; `acc_curve_*` = top-1 per "
               "evaluation, mean over seeds with a min/max band.")
    out.append("")

    for setting, groups in by_setting.items():
        runs = [r for g in groups for r in g.runs]
        out.append(f"## {setting}")
        out.append("")
        out.extend(_setting_description(runs))
        out.append("- network: " + ", ".join(sorted({str(r.summary.get('net')) for r in runs})))
        out.append("- batch: " + ", ".join(sorted({
            f"{r.summary.get('batch_size')} labeled + {r.summary.get('uratio')} x "
            f"{r.summary.get('batch_size')} unlabeled" for r in runs})))
        out.append("- hardware: " + "; ".join(sorted({_hardware(r) for r in runs})))
        out.append("- run dates: " + _span([str(r.summary.get("date")) for r in runs]))
        for g in groups:
            src = sorted({m.final_source for m in g.metrics})
            out.append(f"- {g.method}: model {'/'.join(g.distinct('model'))}, "
                       f"head {'/'.join(g.distinct('head'))}, "
                       f"iterations {_iterations(g.runs)}, "
                       f"final from {'/'.join(src)}")
            for key in ("net", "num_train_iter", "model", "head", "batch_size"):
                if len(g.distinct(key)) > 1:
                    out.append(f"  - warning: runs differ in {key}: {', '.join(g.distinct(key))}")
            dup = sorted({str(s) for s in g.seeds if g.seeds.count(s) > 1})
            if dup:
                out.append(f"  - warning: seed(s) {', '.join(dup)} occur more than once")
        out.append("")
        out.append(f"Final (median of the last {FINAL_WINDOW} evaluations); top-1 best is "
                   "optimistic (selected on the test set):")
        out.append("")
        out.append("| method | seeds | top-1 final | top-1 best | published top-1 (not ours) "
                   "| balanced acc | head | medium | tail | G-mean | top-1 late gain |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for g in groups:
            pub = f"{g.published.value:.2f}" if g.published else ""
            cells = [g.method, _seeds_text(g), format_pm(g.final["top1"]),
                     format_pm(g.best["top1"]), pub,
                     format_pm(g.final["balanced_acc"]), format_pm(g.final["head_acc"]),
                     format_pm(g.final["medium_acc"]), format_pm(g.final["tail_acc"]),
                     format_pm(g.final["gmean"]), format_pm(g.late_gain)]
            out.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
        out.append("")
        out.append("At the best-top-1 evaluation (optimistic: selected on the test set):")
        out.append("")
        out.append("| method | seeds | best it | top-1 | balanced acc | head | medium | tail "
                   "| G-mean |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for g in groups:
            its = ", ".join("?" if m.best_it is None else str(m.best_it) for m in g.metrics)
            cells = [g.method, _seeds_text(g), its] + [format_pm(g.best[k])
                                                       for k in _METRIC_KEYS]
            out.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
        out.append("")
        pubs = [g for g in groups if g.published]
        if pubs:
            out.append("Published sources:")
            out.append("")
            out.extend(_published_note(g) for g in pubs)
            out.append("")
        safe = _safe_name(setting)
        out.append(f"Figures: `per_class_acc_{safe}.png`, `group_acc_{safe}.png`, "
                   f"`confusion_{safe}.png`, `acc_curve_{safe}.png`.")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


CSV_ID_COLUMNS: Tuple[str, ...] = (
    "setting", "method", "dataset", "net", "num_classes", "num_labels", "ulb_num_labels",
    "lb_imb_ratio", "ulb_imb_ratio", "n_seeds", "seeds", "iterations_done",
    "num_train_iter", "model", "head",
)


def csv_columns() -> List[str]:
    """Column names of ``results.csv``."""
    cols = list(CSV_ID_COLUMNS)
    for which in ("final", "best"):
        for key in _METRIC_KEYS:
            cols += [f"{key}_{which}_mean", f"{key}_{which}_std", f"{key}_{which}_n"]
    return cols + ["top1_late_gain_mean", "top1_late_gain_std", "top1_late_gain_n",
                   "published_top1", "published_source"]


def _num(x: Optional[float], scale: float = 100.0) -> str:
    return "" if x is None else f"{x * scale:.4f}"


def csv_rows(results: Sequence[GroupResult]) -> List[Dict[str, str]]:
    """Rows of ``results.csv`` (percentages with 4 decimals; blank = unknown)."""
    rows = []
    for g in results:
        row = {c: "" for c in csv_columns()}
        row["setting"], row["method"] = g.setting, g.method
        for key in ("dataset", "net", "num_classes", "num_labels", "ulb_num_labels",
                    "lb_imb_ratio", "ulb_imb_ratio", "iterations_done", "num_train_iter",
                    "model", "head"):
            row[key] = "/".join(g.distinct(key))
        row["n_seeds"] = str(len(g.runs))
        row["seeds"] = " ".join(str(s) for s in sorted(g.seeds, key=_seed_key))
        for which, aggs in (("final", g.final), ("best", g.best)):
            for key in _METRIC_KEYS:
                a = aggs[key]
                row[f"{key}_{which}_mean"] = _num(a.mean)
                row[f"{key}_{which}_std"] = _num(a.std)
                row[f"{key}_{which}_n"] = str(a.n)
        row["top1_late_gain_mean"], row["top1_late_gain_std"] = _num(g.late_gain.mean), _num(g.late_gain.std)
        row["top1_late_gain_n"] = str(g.late_gain.n)
        if g.published:
            row["published_top1"] = f"{g.published.value:.2f}"
            row["published_source"] = g.published.source
        rows.append(row)
    return rows


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------

def _safe_name(setting: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", setting)


def _new_figure(width: float, height: float):  # -> matplotlib.figure.Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    fig.savefig(str(path), format="png", metadata={"Software": None})


def _colors(methods: Sequence[str]) -> Dict[str, Any]:
    from matplotlib import colormaps
    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


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
    width_in = min(40.0, max(6.0, 0.25 * c * max(1, len(groups)) + 2))
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
                 fontsize=8 if c <= 20 else 5, rotation=0 if c <= 20 else 90)


def _finish_bars(fig, ax, x, labels: Sequence[str], ylabel: str, title: str, path: Path, **label_kw) -> None:
    """Axes, legend and grid of a grouped percentage bar chart, then save it."""
    ax.set_xticks(x)
    ax.set_xticklabels(labels, **label_kw)
    ax.set_ylim(0, 100)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


GROUP_BARS = (("head_acc", "head"), ("medium_acc", "medium"), ("tail_acc", "tail"),
              ("balanced_acc", "balanced"), ("gmean", "G-mean"))


def plot_groups(groups: Sequence[GroupResult], path: Path, colors: Mapping[str, Any]) -> None:
    """Grouped bars of the final head / medium / tail recall, balanced accuracy and G-mean,
    one bar per method: mean over seeds, error bar = sample std."""
    import numpy as np
    fig = _new_figure(max(6.0, 0.42 * len(GROUP_BARS) * max(1, len(groups)) + 2), 4.5)
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
                 f"{groups[0].setting}: head / medium / tail (classes by labeled count)\n"
                 f"(median of last {FINAL_WINDOW} evals, mean ± std over seeds)", path)


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
    fig.suptitle(f"{groups[0].setting}: confusion at the final evaluation "
                 "(row-normalised, mean over seeds)", fontsize=10)
    _save(fig, path)


def plot_curves(groups: Sequence[GroupResult], path: Path, colors: Mapping[str, Any]) -> None:
    """Top-1 vs iteration per method: mean line, min/max band over seeds."""
    fig = _new_figure(7.5, 4.5)
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
        ax.legend(fontsize=8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"{groups[0].setting}: top-1 vs iteration (mean, min/max over seeds)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def write_report(run_dirs: Sequence[Path | str], out_dir: Path | str,
                 plots: bool = True) -> List[Path]:
    """Load the runs, write every output file to ``out_dir``, return their paths."""
    runs = load_runs(run_dirs)
    results = summarize_groups(group_runs(runs))
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out}: cannot create output directory ({exc.strerror})")
    written: List[Path] = []
    md = out / "results.md"
    md.write_text(render_markdown(results), encoding="utf-8")
    written.append(md)
    csv_path = out / "results.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=csv_columns(), lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_rows(results))
    written.append(csv_path)
    from semi_usb.leaderboard import cells_from_groups, render as render_leaderboard

    board = out / "leaderboard.md"  # methods x settings, one table (semi_usb/leaderboard.py)
    board.write_text(render_leaderboard(cells_from_groups(results), method_sort_key), encoding="utf-8")
    written.append(board)
    if plots:
        colors = _colors(sorted({g.method for g in results}, key=method_sort_key))
        for setting, groups in _settings(results).items():
            safe = _safe_name(setting)
            for name, fn in (
                    (f"per_class_acc_{safe}.png", lambda p: plot_per_class(groups, p, colors)),
                    (f"group_acc_{safe}.png", lambda p: plot_groups(groups, p, colors)),
                    (f"confusion_{safe}.png", lambda p: plot_confusion(groups, p)),
                    (f"acc_curve_{safe}.png", lambda p: plot_curves(groups, p, colors))):
                fn(out / name)
                written.append(out / name)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``report`` arguments to ``parser``."""
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="training run directories (save_dir/save_name) with summary.json")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory, e.g. results/<name>/ (created if needed)")
    parser.add_argument("--no-plots", action="store_true", help="write only results.md/.csv")
    return parser


_DESCRIPTION = ("Aggregate training runs into results.md, results.csv and per-setting PNGs "
                "(per-class accuracy, confusion matrices, accuracy curves).")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``report`` sub-command on an ``add_subparsers()`` object.

    The sub-parser gets ``func=run_from_args`` as default, so a dispatcher can
    call ``args.func(args)`` and use the returned exit status.
    """
    parser = subparsers.add_parser("report", help="tables and figures from run directories",
                                   description=_DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=run_from_args)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser for ``semilearn report``."""
    return add_arguments(argparse.ArgumentParser(prog=PROG, description=_DESCRIPTION))


def run_from_args(args: argparse.Namespace) -> int:
    """Run the report for parsed arguments; print a one-line error and return 2 on failure."""
    try:
        written = write_report(args.run_dirs, args.out, plots=not args.no_plots)
    except ReportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for p in written:
        print(f"wrote {p}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point for ``semilearn report``; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse usage errors / --help
        return int(exc.code) if isinstance(exc.code, int) else 2
    return run_from_args(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
