"""The protocol each compared method ran under (docs/protocols.md): its learning-rate
schedule, strong-view count, threshold (a method's own, where it has one) and
``include_lb_to_ulb``, and the shared keys in which the methods of one setting differ.

Read from each run's ``summary.json`` and, for what the summary lacks, its ``config.yaml``.
A key is the method's own when it is not one of the trainer's base keys
(:data:`semi_usb.config.BASE_KEYS`: the algorithms' ``SSL_Argument`` keys, ``semi_*``,
``acr_*``, ``abc_*``, ``daso_*``, ...); runtime keys (:data:`semi_usb.config.RUNTIME_KEYS`)
and the run's identity (seed, names, paths) are never compared.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

from .runs import Run

#: Shown for every method; a run from before a key existed ran with its default.
PROTOCOL_KEYS = {"lr_schedule": "usb", "num_strong_views": 1, "p_cutoff": None, "include_lb_to_ulb": None}
IDENTITY_KEYS = frozenset({"seed", "save_name", "load_path", "algorithm", "imb_algorithm"})


def protocol_values(run: Run) -> Dict[str, Any]:
    """``PROTOCOL_KEYS`` of one run: summary, else config.yaml, else the key's default."""
    return {k: run.summary.get(k, run.config.get(k, default)) for k, default in PROTOCOL_KEYS.items()}


def protocol_with_uratio(run: Run) -> Dict[str, Any]:
    """:func:`protocol_values` and the run's ``uratio``: what two runs must share to have
    trained under one protocol (the leaderboard's protocol name, the paired tables' mark)."""
    return {**protocol_values(run), "uratio": run.summary.get("uratio", run.config.get("uratio"))}


def shown_values(run: Run) -> Dict[str, Any]:
    """:func:`protocol_values` as the protocol table shows them: a method with a threshold of
    its own (``<method>_p_cutoff``: CDMAD's ``cdmad_p_cutoff``) ran with that one, not with
    FixMatch's ``p_cutoff``, so the table shows it, named."""
    values = protocol_values(run)
    own = f"{run.config.get('imb_algorithm')}_p_cutoff"
    if own in run.config:
        values["p_cutoff"] = f"{run.config[own]} ({own})"
    return values


def shared_keys() -> List[str]:
    """Base keys that the methods of one comparison should share."""
    from semi_usb.config import BASE_KEYS, RUNTIME_KEYS

    return [k.name for k in BASE_KEYS if k.name not in RUNTIME_KEYS and k.name not in IDENTITY_KEYS]


def differing_keys(runs: Sequence[Run]) -> Dict[str, Dict[str, List[str]]]:
    """Shared keys whose values differ between the methods: key -> method -> its values."""
    values: Dict[str, Dict[str, set]] = {}
    for run in runs:
        config = {**run.config, **shown_values(run)}
        for key in shared_keys():
            if key in config:
                values.setdefault(key, {}).setdefault(run.method, set()).add(str(config[key]))
    return {key: {m: sorted(v) for m, v in by_method.items()} for key, by_method in values.items()
            if len(by_method) > 1 and len({x for v in by_method.values() for x in v}) > 1}


def protocol_table(runs_by_method: Dict[str, Sequence[Run]]) -> List[str]:
    """Markdown: one row per method with its protocol keys, then a warning per differing key."""
    out = ["| method | " + " | ".join(PROTOCOL_KEYS) + " |", "|---|" + "---|" * len(PROTOCOL_KEYS)]
    for method, runs in runs_by_method.items():
        cells = ["/".join(sorted({str(shown_values(r)[k]) for r in runs})) for k in PROTOCOL_KEYS]
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    out.append("")
    diff = differing_keys([r for runs in runs_by_method.values() for r in runs])
    for key, by_method in diff.items():
        detail = "; ".join(f"{m}: {', '.join(v)}" for m, v in by_method.items())
        out.append(f"- warning: the methods compared differ in {key} ({detail})")
    if diff:
        out.append("")
    return out
