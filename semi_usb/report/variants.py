"""Variants of one method: runs of the same method whose configurations differ (say SeMi at
``p_cutoff`` 0.7 beside SeMi at 0.95, or SeMi with a part switched off) are reported as
separate rows, each named by what sets it apart.

For each method, over all its runs (every setting), the keys whose values differ between its
runs name the variants. A run's label is the method followed by those keys where its value
is not the *usual* one, ``fixmatch+semi (p_cutoff 0.7)``; a run with the usual values keeps
the plain method name. The usual value of one of the method's own keys (its algorithms'
``SSL_Argument`` keys) is its declared default, which each run's ``summary.json`` records
(``method_defaults``), so that SeMi with every default is ``fixmatch+semi`` whatever else
was run beside it. For the other keys (the protocol and trainer keys), and for runs from
before the record, it is the value most of the method's runs have; a key without a majority
(two values, as many runs each) names every run. The setting's own keys (dataset, sizes,
ratios), the seed, names, paths and runtime keys (:data:`semi_usb.config.RUNTIME_KEYS`)
never make a variant.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any, Callable, Dict, List, Sequence

from .protocol import IDENTITY_KEYS, protocol_values
from .runs import Run

#: Keys that define the setting (its name shows them) rather than the method's variant.
SETTING_KEYS = frozenset({"dataset", "data_dir", "num_classes", "num_labels", "lb_imb_ratio",
                          "ulb_num_labels", "ulb_imb_ratio", "ulb_distribution", "img_size"})


def _comparable_config(run: Run) -> Dict[str, str]:
    from semi_usb.config import RUNTIME_KEYS

    config = {**run.config, **protocol_values(run)}
    skip = RUNTIME_KEYS | IDENTITY_KEYS | SETTING_KEYS
    return {k: str(v) for k, v in config.items() if k not in skip}


def _same(value: Any, default: Any) -> bool:
    """Whether a configuration value (as text) is the declared default (1 is 1.0)."""
    if value == str(default):
        return True
    try:
        return not isinstance(default, bool) and float(value) == float(default)
    except (TypeError, ValueError):
        return False


def declared_defaults(runs: Sequence[Run]) -> Dict[str, Any]:
    """The keys whose declared default every run of ``runs`` records, alike: key -> default."""
    records = [r.summary.get("method_defaults") for r in runs]
    if not records or not all(isinstance(d, dict) for d in records):
        return {}
    return {k: v for k, v in records[0].items() if all(k in d and d[k] == v for d in records[1:])}


def variant_labels(runs: Sequence[Run]) -> List[str]:
    """The label of each run (in order): its method, plus ``(key value, ...)`` for the keys
    in which its configuration differs from the usual values of its method's runs."""
    configs = [_comparable_config(r) for r in runs]
    labels = [r.method for r in runs]
    by_method: Dict[str, List[int]] = {}
    for i, run in enumerate(runs):
        by_method.setdefault(run.method, []).append(i)
    for method, idx in by_method.items():
        defaults = declared_defaults([runs[i] for i in idx])
        keys = sorted({k for i in idx for k in configs[i]})
        usual: Dict[str, Callable[[Any], bool]] = {}
        for key in keys:
            counts = Counter(configs[i].get(key) for i in idx).most_common()
            if len(counts) < 2:
                continue
            if key in defaults:
                usual[key] = lambda v, d=defaults[key]: _same(v, d)
            else:
                top = counts[0][1]
                majority = counts[0][0] if sum(c == top for _, c in counts) == 1 else None
                usual[key] = lambda v, m=majority: m is not None and v == m
        for i in idx:
            diff = [f"{k} {configs[i].get(k)}" for k, is_usual in usual.items() if not is_usual(configs[i].get(k))]
            if diff:
                labels[i] = f"{method} ({', '.join(diff)})"
    return labels


def label_variants(runs: Sequence[Run]) -> List[Run]:
    """``runs`` with each ``method`` replaced by its :func:`variant_labels` label."""
    return [replace(run, method=label) for run, label in zip(runs, variant_labels(runs))]
