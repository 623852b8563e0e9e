"""Reading run folders: ``summary.json`` and ``eval_history.jsonl`` into :class:`Run`, and
grouping runs by ``(setting, method)`` (see :mod:`semi_usb.report` for the definitions)."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple

import yaml

from semi_usb.errors import ReportError
from semi_usb.layout import (HistoryLineError, config_path, find_runs, is_finished, is_run, read_history,
                             summary_path)
from semi_usb.naming import summary_method, summary_setting

#: Methods listed first, in this order; others follow alphabetically.
METHOD_ORDER: Tuple[str, ...] = ("fixmatch", "fixmatch+daso", "fixmatch+abc", "fixmatch+acr", "fixmatch+semi",
                                 "fixmatch+cpe", "fixmatch+cdmad", "fixmatch+simpro", "fixmatch+bacon")


@dataclass
class Run:
    """One training run: its summary, evaluation history, configuration and identity."""

    path: Path
    summary: Dict[str, Any]
    history: List[Dict[str, Any]]
    setting: str
    method: str
    seed: Any
    config: Dict[str, Any] = field(default_factory=dict)  # its config.yaml (load_config)

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


def load_config(path: Path) -> Dict[str, Any]:
    """Read a run's ``config.yaml`` (empty when absent or unreadable: the protocol keys then
    fall back to ``summary.json`` and their defaults)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def load_history(run_dir: Path | str) -> List[Dict[str, Any]]:
    """The evaluations of a finished run (its ``eval_history.jsonl``, every line a row with
    ``it`` and ``top1``), sorted by iteration ``it``; when an iteration occurs more than once
    (a resumed run) the last record wins. A missing file gives an empty list."""
    try:
        rows = read_history(str(run_dir), strict=True, need=("it", "top1"))
    except HistoryLineError as exc:
        raise ReportError(str(exc)) from None
    except OSError as exc:
        raise ReportError(f"{Path(run_dir) / 'eval_history.jsonl'}: cannot read ({exc.strerror})") from None
    for row in rows:
        check_finite(row, f"{Path(run_dir) / 'eval_history.jsonl'} (it {row['it']})")
    by_it: Dict[int, Dict[str, Any]] = {row["it"]: row for row in rows}
    return [by_it[it] for it in sorted(by_it)]


def check_finite(record: Any, where: str) -> None:
    """Refuse an evaluation whose numbers are not finite (NaN, inf: the model diverged):
    a median or mean over them would be a number that no model reached."""
    bad = [k for k in ("top1", "balanced_acc") if isinstance(record.get(k), float) and not math.isfinite(record[k])]
    pca = record.get("per_class_acc")
    if isinstance(pca, list) and any(isinstance(a, float) and not math.isfinite(a) for a in pca):
        bad.append("per_class_acc")
    if bad:
        raise ReportError(f"{where}: non-finite {', '.join(bad)} (NaN or inf): the run diverged; "
                          "leave it out of the report")


def load_run(run_dir: Path | str) -> Run:
    """Load one run directory; raise :class:`ReportError` if it is not one."""
    path = Path(run_dir)
    summary_file = Path(summary_path(str(path)))
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory (expected a training run directory)")
    if not summary_file.is_file():
        if Path(config_path(str(path))).is_file():
            raise ReportError(f"{path}: the run is not finished (no summary.json yet): let it finish or resume it "
                              "(--resume True), or leave it out")
        raise ReportError(f"{path}: no summary.json (not a training run directory)")
    summary = _read_json(summary_file)
    if not isinstance(summary, dict):
        raise ReportError(f"{summary_file}: expected a JSON object")
    method = summary_method(summary)
    if method is None:
        raise ReportError(f"{summary_file}: missing 'method' (and 'algorithm')")
    setting = summary.get("setting") or summary_setting(summary)
    if not setting:
        raise ReportError(f"{summary_file}: missing 'setting'")
    try:
        num_classes = int(summary["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise ReportError(f"{summary_file}: missing or invalid 'num_classes'")
    if num_classes < 1:
        raise ReportError(f"{summary_file}: 'num_classes' must be positive")
    history = load_history(path)
    final = summary.get("final")
    if isinstance(final, dict):
        check_finite(final, f"{summary_file} 'final'")
    if not history and not (isinstance(final, dict) and final.get("top1") is not None):
        raise ReportError(f"{path}: neither eval_history.jsonl nor summary.json 'final.top1'")
    for rec in history + ([final] if isinstance(final, dict) else []):
        pca = rec.get("per_class_acc")
        if pca is not None and len(pca) != num_classes:
            raise ReportError(f"{path}: per_class_acc has {len(pca)} entries, "
                              f"num_classes is {num_classes}")
    return Run(path=path, summary=summary, history=history, setting=str(setting),
               method=method, seed=summary.get("seed"), config=load_config(Path(config_path(str(path)))))


def load_runs(run_dirs: Iterable[Path | str]) -> List[Run]:
    """Load several run directories (duplicates, by resolved path, once)."""
    runs: List[Run] = []
    seen = set()
    unfinished: List[str] = []
    named = {Path(d).resolve() for d in run_dirs}
    for d in run_dirs:
        inner = runs_inside(Path(d))
        if inner:
            raise ReportError(f"{d} is a run (it has summary.json or config.yaml) and also holds runs ({inner[0]}"
                              f"{f' and {len(inner) - 1} more' if len(inner) > 1 else ''}): name the runs one by one, "
                              "or move the outer run into a folder of its own")
    for d in find_runs(run_dirs):  # a compare --save_dir stands for its runs
        key = Path(d).resolve()
        if key in seen:
            continue
        seen.add(key)
        if key not in named and not is_finished(str(key)):
            unfinished.append(str(d))  # a run of a folder of runs still training: left out, said below
            continue
        runs.append(load_run(d))
    if unfinished:
        print(f"note: left out {len(unfinished)} unfinished run(s) (no summary.json yet): "
              + ", ".join(unfinished), file=sys.stderr)
    if not runs:
        raise ReportError("no finished run in " + ", ".join(map(str, run_dirs)) if unfinished
                          else "no run directories given")
    return runs


def runs_inside(path: Path) -> List[str]:
    """The run folders below ``path`` when ``path`` is itself a run (a run whose
    ``save_name`` put it in its ``save_dir``, beside other runs); empty otherwise."""
    import os

    if not is_run(str(path)):
        return []
    found = []
    for root, dirs, _ in os.walk(path):
        dirs.sort()
        if Path(root) != path and is_run(root):
            found.append(root)
    return found


def drop_repeated_runs(runs: Iterable[Run]) -> List[Run]:
    """One run per (setting, method, seed): a run given twice (through two paths, a copy)
    or a second run of the same method and seed would count as another seed. The first (in
    the order given) is kept; a note on stderr names each one left out."""
    kept: Dict[Tuple[str, str, str], Run] = {}
    for run in runs:
        key = (run.setting, run.method, str(run.seed))
        if key in kept:
            print(f"note: left out {run.path}: {run.method} seed {run.seed} on {run.setting} is already "
                  f"{kept[key].path} (a (method, seed) counts once)", file=sys.stderr)
            continue
        kept[key] = run
    return list(kept.values())


def method_sort_key(method: str) -> Tuple[int, str, str]:
    """Sort key: :data:`METHOD_ORDER` first, then alphabetical; a method's variants
    (``fixmatch+semi (p_cutoff 0.7)``, :mod:`semi_usb.report.variants`) after it."""
    base, _, variant = method.partition(" (")
    if base in METHOD_ORDER:
        return (METHOD_ORDER.index(base), "", variant)
    return (len(METHOD_ORDER), base, variant)


def seed_key(seed: Any) -> Tuple[int, Any]:
    """Sort key of a seed: numbers in order, then anything else as text."""
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
    return {k: sorted(groups[k], key=lambda r: (seed_key(r.seed), str(r.path)))
            for k in ordered}
