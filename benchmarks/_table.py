"""Output shared by the benchmark scripts: print a Markdown section and append it to
``--out`` (``benchmarks/performance.sh`` collects several sections in one file)."""
from __future__ import annotations

import os


def emit(text: str, out: str | None) -> None:
    print(text)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "a", encoding="utf-8") as f:
            f.write(text + "\n")
