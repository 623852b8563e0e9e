"""Output shared by the benchmark scripts: print a Markdown section and append it to
``--out`` (``benchmarks/performance.sh`` collects several sections in one file); append
machine-readable records to ``--json`` (one JSON object a line, written as measured, so
that a run stopped early keeps what it had: ``benchmarks/gpu_check.py`` reads them)."""
from __future__ import annotations

import json
import os


def _append(text: str, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text + "\n")


def emit(text: str, out: str | None) -> None:
    print(text)
    if out:
        _append(text, out)


def emit_json(record: dict, path: str | None) -> None:
    if path:
        _append(json.dumps(record, sort_keys=True), path)
