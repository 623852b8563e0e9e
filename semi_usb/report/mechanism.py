"""The mechanism table of ``semilearn report`` (``mechanism.md``): per setting and method, the
mean over seeds of each run's ``summary.json`` ``mechanism`` means (docs/method.md,
"Mechanism metrics": what SeMi's parts and ACR's tau1 did). Runs of earlier versions have
no such section; the table holds the methods whose runs have one."""
from __future__ import annotations

from typing import List, Optional, Sequence

from .scores import GroupResult, by_setting

#: Columns: summary key, title.
COLUMNS = (("tau1", "tau1"), ("bank_fill", "bank fill"), ("plce_changed", "PLCE changed"),
           ("plce_added", "PLCE added"), ("plce_lambda_max", "max lambda"), ("oheml_scale", "OHEML scale"),
           ("oheml_weight_mean", "w mean"), ("oheml_weight_std", "w std"), ("ealign_share", "EA share"),
           ("ealign_frac", "EA fraction"))


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def render_mechanism(results: Sequence[GroupResult]) -> Optional[str]:
    """The Markdown table, or None when no run recorded mechanism metrics."""
    lines = ["# Mechanism metrics", "",
             "Mean over seeds of each run's means over its logged steps (from the end of SeMi's warm-up; "
             "ACR from the start): `summary.json` `mechanism`. PLCE changed = fraction of masked samples "
             "whose class PLCE changed; PLCE added = samples per step in the mask only because of PLCE; "
             "OHEML scale = weighted over unweighted standard `L_u`; w mean/std = OHEML weights on masked "
             "samples; EA share = Embedding Align's part of the loss; EA fraction = samples it acts on; "
             "— = not recorded (part off, or the method has none). Definitions: docs/method.md, "
             "\"Mechanism metrics\".", ""]
    any_rows = False
    for setting, groups in by_setting(results).items():
        rows = []
        for g in groups:
            sections = [r.summary.get("mechanism") for r in g.runs]
            sections = [s for s in sections if isinstance(s, dict) and isinstance(s.get("mean"), dict)]
            if not sections:
                continue
            cells = []
            for key, _ in COLUMNS:
                value = _mean([float(s["mean"][key]) for s in sections if s["mean"].get(key) is not None])
                cells.append("—" if value is None else f"{value:.3f}")
            rows.append(f"| {g.method.replace('|', chr(92) + '|')} | {len(sections)} | " + " | ".join(cells) + " |")
        if rows:
            any_rows = True
            lines += [f"## {setting}", "", "| method | runs | " + " | ".join(t for _, t in COLUMNS) + " |",
                      "|---|---|" + "---|" * len(COLUMNS), *rows, ""]
    return "\n".join(lines) if any_rows else None
