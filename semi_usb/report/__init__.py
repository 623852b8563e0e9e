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
* ``reliability_<setting>.png`` -- reliability diagram of the final evaluation, one panel per
  method, for settings whose runs recorded the ECE bins (:mod:`~semi_usb.report.reliability`).
* ``embedding_<setting>.png`` -- t-SNE of the EMA model's test features, one panel per
  method, for settings whose runs saved ``test_features.npz`` (:mod:`~semi_usb.report.embedding`).
* ``paired.md`` -- each method against a reference (``--reference NAME``, repeatable; default
  the first method of each setting), seed by seed: mean difference, 95 % t-interval, pairs,
  and ahead / behind / not separated (:mod:`~semi_usb.report.paired`); also printed.
* ``mechanism.md`` -- per method, the means of the runs' mechanism metrics (what SeMi's parts
  and ACR's tau1 did; :mod:`~semi_usb.report.mechanism`), when runs recorded them.

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
ECE
    Expected calibration error of an evaluation (:mod:`semi_usb.calibration`): 15 equal-width
    bins of the top-1 softmax confidence of the head the method predicts with, the mean over
    bins of ``|accuracy - confidence|`` weighted by the bin's share of the test images.
    Recorded per evaluation (``eval_history.jsonl``'s ``ece``) and with its bins in
    ``summary.json``'s final block; ``final`` and ``best`` as for the other metrics.
leaderboard
    ``leaderboard.md`` (:mod:`~semi_usb.report.leaderboard`): best top-1 against published
    best numbers, final top-1 against published last numbers, a published number of another
    protocol than the runs' marked in the cell.
mean ± std
    Over seeds, sample standard deviation (ddof = 1); a single seed shows
    ``± 0.00`` and is marked ``(n=1)``.

Modules: :mod:`~semi_usb.report.runs` (reading run folders, grouping),
:mod:`~semi_usb.report.scores` (metrics, aggregation over seeds),
:mod:`~semi_usb.report.tables` (Markdown, CSV), :mod:`~semi_usb.report.figures` (PNG);
this module is the command. None of them imports torch or semilearn; matplotlib is
imported only when figures are drawn, and only its Agg canvas is used.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

from semi_usb.errors import ReportError

from ..checkpoint import atomic_write
from .leaderboard import cells_from_groups, render as render_leaderboard
from .mechanism import render_mechanism
from .paired import render_paired
from .embedding import write_embeddings
from .reliability import write_reliability
from .figures import plot_confusion, plot_curves, plot_groups, plot_per_class, write_figures
from .runs import (METHOD_ORDER, Run, drop_repeated_runs, group_runs, load_history, load_run, load_runs,
                   method_sort_key)
from .scores import (FINAL_WINDOW, GMEAN_FLOOR, HEAD_FRACTION, METRICS, Aggregate, GroupResult,
                     RunMetrics, aggregate, balanced_accuracy, compute_run_metrics,
                     evaluation_metrics, format_pm, geometric_mean_recall,
                     head_medium_tail_split, late_gain, published_for_group, summarize_groups)
from .tables import PROG, csv_columns, csv_rows, render_markdown
from .variants import label_variants

__all__ = [
    "FINAL_WINDOW",
    "GMEAN_FLOOR",
    "HEAD_FRACTION",
    "METHOD_ORDER",
    "METRICS",
    "Aggregate",
    "GroupResult",
    "Run",
    "RunMetrics",
    "add_arguments",
    "add_parser",
    "aggregate",
    "balanced_accuracy",
    "build_parser",
    "compute_run_metrics",
    "csv_columns",
    "csv_rows",
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
    "plot_confusion",
    "plot_curves",
    "plot_groups",
    "plot_per_class",
    "published_for_group",
    "render_markdown",
    "run_from_args",
    "summarize_groups",
    "write_report",
]


def write_report(run_dirs: Sequence[Path | str], out_dir: Path | str,
                 plots: bool = True, references: Sequence[Optional[str]] = (None,)) -> List[Path]:
    """Load the runs, write every output file to ``out_dir``, return their paths."""
    runs = drop_repeated_runs(label_variants(load_runs(run_dirs)))
    results = summarize_groups(group_runs(runs))
    paired, mechanism = render_paired(results, references), render_mechanism(results)  # errors before writing
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out}: cannot create output directory ({exc.strerror})")
    md, csv_path = out / "results.md", out / "results.csv"

    def write_csv(fh) -> None:
        writer = csv.DictWriter(fh, fieldnames=csv_columns(), lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_rows(results))

    try:  # each file atomically (temporary file, fsync, rename): a kill leaves no partial table
        atomic_write(str(md), lambda fh: fh.write(render_markdown(results)), mode="w")
        atomic_write(str(csv_path), write_csv, mode="w")
        board = out / "leaderboard.md"  # methods x settings, one table (leaderboard.py)
        atomic_write(str(board), lambda fh: fh.write(render_leaderboard(cells_from_groups(results), method_sort_key)),
                     mode="w")
        extra = {"paired.md": paired, "mechanism.md": mechanism}
        for name, text in extra.items():
            if text is not None:
                atomic_write(str(out / name), lambda fh, text=text: fh.write(text), mode="w")
        written = [md, csv_path, board] + [out / name for name, text in extra.items() if text is not None]
        if not plots:
            return written
        return written + write_figures(results, out) + write_embeddings(results, out) + write_reliability(results, out)
    except OSError as exc:
        raise ReportError(f"{out}: cannot write the report ({exc.strerror or exc}): choose a writable --out")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``report`` arguments to ``parser``."""
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="training run directories (save_dir/save_name) with summary.json")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory, e.g. results/<name>/ (created if needed)")
    parser.add_argument("--no-plots", action="store_true", help="write only results.md/.csv")
    parser.add_argument("--reference", action="append", metavar="NAME",
                        help="method the others are compared with seed by seed in paired.md (its label, e.g. "
                             "'fixmatch+semi' or 'semi', a variant's full label, or a folder holding its runs); "
                             "repeatable; default: the first method of each setting")
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


@contextlib.contextmanager
def matplotlib_config_outside_home():
    """matplotlib's configuration and font cache in a temporary folder, removed afterwards,
    unless ``MPLCONFIGDIR`` says where they go: by default matplotlib writes
    ``~/.config/matplotlib`` and ``~/.cache/matplotlib``, and no command writes into HOME."""
    import os
    import shutil
    import tempfile

    if os.environ.get("MPLCONFIGDIR") or "matplotlib" in sys.modules:
        yield
        return
    folder = tempfile.mkdtemp(prefix="semi_usb_mpl_")
    os.environ["MPLCONFIGDIR"] = folder
    try:
        yield
    finally:
        os.environ.pop("MPLCONFIGDIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the report for parsed arguments; print a one-line error and return 2 on failure."""
    try:
        with matplotlib_config_outside_home():
            written = write_report(args.run_dirs, args.out, plots=not args.no_plots,
                                   references=getattr(args, "reference", None) or (None,))
    except ReportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for p in written:
        print(f"wrote {p}")
    paired = [p for p in written if p.name == "paired.md"]
    if paired:
        print(paired[0].read_text(encoding="utf-8"))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point for ``semilearn report``; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse usage errors / --help
        return int(exc.code) if isinstance(exc.code, int) else 2
    return run_from_args(args)
