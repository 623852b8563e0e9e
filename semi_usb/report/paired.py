"""Paired comparisons against a reference method (``semilearn report --reference NAME``).

Runs of two methods with the same seed share the labeled/unlabeled split and the data order,
so the difference of their final metrics seed by seed removes what the seed does to both.
For each setting, each method against the reference, over the seeds both ran:

* ``n``: the number of pairs (seeds both ran; a seed run twice by one method counts once,
  with the mean of its runs);
* the mean difference ``d = mean_s (m_s - ref_s)`` of the final metric (percentage points);
* its 95 % t-interval ``d ± t(0.975, n - 1) * sd / sqrt(n)`` (``sd``: the sample standard
  deviation of the differences; none with fewer than 2 pairs);
* a word: **ahead** when the whole interval is above 0, **behind** when it is below 0,
  **not separated** when it holds 0 (or with fewer than 2 pairs).

The reference is named by its label (``fixmatch+semi``, ``semi``, a variant's full label) or
by a folder that holds its runs (a ``compare --save_dir``).

A pair compares methods alone only when both trained under one protocol: a method whose
protocol keys (learning-rate schedule, strong views, threshold, ``include_lb_to_ulb``) or
uratio differ from the reference's is marked ``‡`` and the keys are named under the table,
since its difference includes theirs (like for like only where those keys are what is
compared, as in a threshold probe).

Metrics: top-1, balanced accuracy, G-mean and tail recall, each the run's *final* value
(:mod:`semi_usb.report.scores`). No torch, no semilearn, no scipy: the t quantiles are a table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from semi_usb.errors import ReportError

from .protocol import protocol_with_uratio
from .runs import seed_key
from .scores import GroupResult, by_setting

#: The mark of a method trained under another protocol than the reference.
OTHER_PROTOCOL = "‡"

#: The metrics compared (key in RunMetrics.final, column title).
PAIRED_METRICS = (("top1", "top-1"), ("balanced_acc", "balanced"), ("gmean", "G-mean"), ("tail_acc", "tail"))

# t(0.975, df) for df = 1..30 (two-sided 95 %).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
_Z975 = 1.959964


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (a table to 30, then
    the Cornish-Fisher expansion, within 1e-4)."""
    if df < 1:
        raise ValueError("t quantile needs df >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


@dataclass(frozen=True)
class Paired:
    """One metric of one method against the reference (percentage points)."""

    n: int
    mean: Optional[float]
    half_width: Optional[float]  # of the 95 % t-interval; None with fewer than 2 pairs

    @property
    def word(self) -> str:
        if self.half_width is None or self.mean is None:
            return "not separated"
        if self.mean - self.half_width > 0:
            return "ahead"
        if self.mean + self.half_width < 0:
            return "behind"
        return "not separated"

    def text(self) -> str:
        """``+0.40 [-0.85, +1.65] not separated`` (``—`` without a pair)."""
        if self.mean is None:
            return "—"
        if self.half_width is None:
            return f"{self.mean:+.2f} (one pair) not separated"
        return f"{self.mean:+.2f} [{self.mean - self.half_width:+.2f}, {self.mean + self.half_width:+.2f}] {self.word}"


def paired_difference(values: Dict, reference: Dict) -> Paired:
    """:class:`Paired` of ``values[seed] - reference[seed]`` (fractions in, points out) over
    the seeds where both are known."""
    diffs = [100.0 * (values[s] - reference[s]) for s in sorted(values, key=seed_key)
             if s in reference and values[s] is not None and reference[s] is not None]
    n = len(diffs)
    if n == 0:
        return Paired(0, None, None)
    mean = sum(diffs) / n
    if n < 2:
        return Paired(1, mean, None)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    return Paired(n, mean, t975(n - 1) * sd / math.sqrt(n))


def per_seed(group: GroupResult, key: str) -> Dict:
    """``{seed: final metric}`` of a group (the mean where one seed has several runs)."""
    values: Dict = {}
    for run, metrics in zip(group.runs, group.metrics):
        value = metrics.final.get(key)
        if value is not None:
            values.setdefault(run.seed, []).append(value)
    return {s: sum(v) / len(v) for s, v in values.items()}


def group_protocol(group: GroupResult) -> Dict[str, str]:
    """The protocol keys and uratio of a group's runs, each as the sorted set of its values."""
    values: Dict[str, set] = {}
    for run in group.runs:
        for k, v in protocol_with_uratio(run).items():
            values.setdefault(k, set()).add(str(v))
    return {k: "/".join(sorted(v)) for k, v in values.items()}


def protocol_difference(mine: Dict[str, str], theirs: Dict[str, str]) -> str:
    """``key this (reference that), ...`` for the keys of two :func:`group_protocol` results
    that differ; '' when they trained under the same protocol."""
    return ", ".join(f"{k} {mine.get(k)} (reference {theirs.get(k)})" for k in mine if mine.get(k) != theirs.get(k))


def _under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def find_reference(groups: Sequence[GroupResult], name: Optional[str]) -> Optional[GroupResult]:
    """The reference group of one setting: the method labelled ``name`` (or ``fixmatch+name``),
    or, when ``name`` is a folder, the method whose runs all lie under it; the first method
    when ``name`` is None; None when the setting has no such method."""
    if name is None:
        return groups[0] if groups else None
    if Path(name).is_dir():
        folder = Path(name).resolve()
        return next((g for g in groups if all(_under(Path(r.path), folder) for r in g.runs)), None)
    for label in (name, f"fixmatch+{name}"):
        for g in groups:
            if g.method == label:
                return g
    return None


def render_paired(results: Sequence[GroupResult], references: Sequence[Optional[str]]) -> str:
    """The paired tables (Markdown), one per reference and setting. A reference that no
    setting has is an error naming the methods there are."""
    settings = by_setting(results)
    methods = sorted({g.method for g in results})
    lines = ["# Paired differences", "",
             "Each method minus the reference, seed by seed over the seeds both ran (same split and data "
             "order per seed): mean difference of the final metric in points, its 95 % t-interval "
             "`[low, high]` and a word: **ahead** (interval above 0), **behind** (below 0), **not separated** "
             "(it holds 0, or fewer than 2 pairs). `n` = pairs. A method marked " + OTHER_PROTOCOL + " trained with "
             "other protocol keys than the reference (named under the table): its difference includes theirs. "
             "Generated by `semilearn report --reference`.", ""]
    for name in references:
        found = False
        for setting, groups in settings.items():
            ref = find_reference(groups, name)
            if ref is None:
                continue
            found = True
            lines += [f"## {setting}: against {ref.method}", "",
                      "| method | n | " + " | ".join(title for _, title in PAIRED_METRICS) + " |",
                      "|---|---|" + "---|" * len(PAIRED_METRICS)]
            other, ref_protocol = [], group_protocol(ref)
            for g in groups:
                if g is ref:
                    continue
                cells = [paired_difference(per_seed(g, k), per_seed(ref, k)) for k, _ in PAIRED_METRICS]
                n = max(c.n for c in cells)
                differs = protocol_difference(group_protocol(g), ref_protocol)
                if differs:
                    other.append(f"- {OTHER_PROTOCOL} {g.method}: {differs}")
                label = g.method.replace('|', chr(92) + '|') + (f" {OTHER_PROTOCOL}" if differs else "")
                lines.append(f"| {label} | {n} | " + " | ".join(c.text() for c in cells) + " |")
            lines.append("")
            if other:
                lines += ["Trained with other protocol keys than the reference (the difference includes them):"] + other + [""]
        if not found:
            raise ReportError(f"--reference {name}: no setting has that method (methods: {', '.join(methods)})")
    return "\n".join(lines)
