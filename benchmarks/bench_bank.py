"""Micro-benchmark of the SeMi memory bank operations (SEMI_METHOD.md, SeMi §1-2, deviation 5).

Times the vectorised operations of :class:`semi_usb.imb_algorithms.semi.memory_bank.ConfidenceDecayMemoryBank`
(``push`` of N candidates, ``decay``, ``prototypes``) and :func:`semi_usb.imb_algorithms.semi.plce.semantic_label`
(``q``) against the per-sample reference that the tests check it with (``tests/reference_bank.py``,
in the style of the authors' script: a Python loop over the samples with a sort of the class's
confidences per sample, and Python loops over classes / samples for decay, prototypes and ``q``).

Both banks start from the same full random state and receive the same candidate batches; at
the end their per-class confidences are compared (``match`` column). On CUDA the vectorised
``push``, ``decay``, ``prototypes`` and ``q`` are also run under
``torch.cuda.set_sync_debug_mode("error")`` to check that they never synchronise with the host.

Usage::

    python benchmarks/bench_bank.py                 # CPU (and CUDA when available)
    python benchmarks/bench_bank.py --device cuda --out results/bench_bank.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from _table import emit, emit_json  # noqa: E402  (this folder is first on sys.path)
from reference_bank import ReferenceBank, reference_q  # noqa: E402  (tests/, last on sys.path: the tests' reference)

from semi_usb.imb_algorithms.semi.memory_bank import ConfidenceDecayMemoryBank  # noqa: E402
from semi_usb.imb_algorithms.semi.plce import semantic_label  # noqa: E402


# --------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_op(fn: Callable[[], object], device: torch.device, reps: int, warmup: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def adaptive_reps(fn: Callable[[], object], device: torch.device, budget_s: float, lo: int, hi: int) -> int:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    one = max(time.perf_counter() - t0, 1e-6)
    return max(lo, min(hi, int(budget_s / one)))


def check_no_sync(bank, batch, feats_s) -> str:
    """Run the vectorised per-step ops with CUDA sync debug mode 'error'."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        bank.push(*batch)
        bank.decay()
        protos, has = bank.prototypes()
        semantic_label(feats_s, protos, has)
        return "ok"
    except RuntimeError as exc:  # raised by the sync debug mode
        return f"SYNC: {str(exc).splitlines()[0][:60]}"
    finally:
        torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- main
def bench_config(C: int, K: int, d: int, n: int, device: torch.device, reps: int, warmup: int,
                 ref_budget_s: float, seed: int = 0) -> List[Dict[str, object]]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    feats0 = torch.randn(C, K, d, generator=g).to(device)
    conf0 = torch.rand(C, K, generator=g).to(device)
    filled0 = torch.ones(C, K, dtype=torch.bool, device=device)

    bank = ConfidenceDecayMemoryBank(C, d, size=K, device=device)
    bank.load_state_dict({"feats": feats0, "conf": conf0, "filled": filled0,
                          "fresh": torch.zeros_like(filled0)})
    ref = ReferenceBank(feats0, conf0, filled0, bank.decay_beta)

    n_batches = warmup + reps + 1
    batches = []
    for _ in range(n_batches):
        batches.append((
            torch.randn(n, d, generator=g).to(device),
            torch.randint(0, C, (n,), generator=g).to(device),
            torch.rand(n, generator=g).to(device),
            (torch.rand(n, generator=g) < 0.7).to(device),
        ))
    feats_s = torch.randn(n, d, generator=g).to(device)

    rows = []

    def row(op, t_vec, t_ref):
        rows.append({"device": device.type, "C": C, "K": K, "op": op, "vec_ms": t_vec, "ref_ms": t_ref})

    # push: both banks see the same batch sequence (the reference may see fewer of them).
    it_v = iter(batches)
    t_vec = time_op(lambda: bank.push(*next(it_v)), device, reps, warmup)
    it_r = iter(batches)
    ref_reps = adaptive_reps(lambda: ref.push(*next(it_r)), device, ref_budget_s, 2, reps)
    ref_warm = min(1, warmup)
    t_ref = time_op(lambda: ref.push(*next(it_r)), device, ref_reps, ref_warm)
    row("push", t_vec, t_ref)
    # bring both banks to the same state (untimed): whichever saw fewer batches catches up.
    used_vec, used_ref = warmup + reps, 1 + ref_warm + ref_reps
    for b in batches[used_ref:used_vec]:
        ref.push(*b)
    for b in batches[used_vec:used_ref]:
        bank.push(*b)
    match = torch.allclose(bank.conf.sort(dim=1).values, ref.conf.sort(dim=1).values)

    # decay (stale and fresh entries mixed after the pushes); same number of calls on both
    t_vec = time_op(bank.decay, device, reps, warmup)
    ref_reps = adaptive_reps(ref.decay, device, ref_budget_s, 2, reps)
    t_ref = time_op(ref.decay, device, ref_reps, 0)
    row("decay", t_vec, t_ref)

    t_vec = time_op(bank.prototypes, device, reps, warmup)
    ref_reps = adaptive_reps(ref.prototypes, device, ref_budget_s, 2, reps)
    t_ref = time_op(ref.prototypes, device, ref_reps, 0)
    row("prototypes", t_vec, t_ref)
    pv, hv = bank.prototypes()
    pr, hr = ref.prototypes()
    match = match and torch.equal(hv, hr)

    t_vec = time_op(lambda: semantic_label(feats_s, pv, hv), device, reps, warmup)
    ref_reps = adaptive_reps(lambda: reference_q(feats_s, pr, hr), device, ref_budget_s, 2, reps)
    t_ref = time_op(lambda: reference_q(feats_s, pr, hr), device, ref_reps, 0)
    row("q", t_vec, t_ref)
    match = match and torch.allclose(semantic_label(feats_s, pv, hv), reference_q(feats_s, pr, hr), atol=1e-4)

    sync = "n/a"
    if device.type == "cuda":
        sync = check_no_sync(bank, batches[-1], feats_s)
    for r in rows:
        r["match"] = "yes" if match else "NO"
        r["no_sync"] = sync
    return rows


def to_markdown(rows: List[Dict[str, object]], header: str) -> str:
    lines = [header, "",
             "| device | C | K | op | vectorised (ms) | reference (ms) | speed-up | match | no sync |",
             "|---|---:|---:|---|---:|---:|---:|---|---|"]
    for r in rows:
        speed = r["ref_ms"] / r["vec_ms"] if r["vec_ms"] > 0 else float("inf")
        lines.append(f"| {r['device']} | {r['C']} | {r['K']} | {r['op']} | {r['vec_ms']:.3f} | "
                     f"{r['ref_ms']:.3f} | {speed:.1f}x | {r['match']} | {r['no_sync']} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: CPU, plus CUDA when available")
    ap.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512], help="K (slots per class)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--n", type=int, default=256, help="candidates per push")
    ap.add_argument("--reps", type=int, default=15, help="timed repetitions (vectorised)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ref-budget", type=float, default=0.6,
                    help="seconds per op for the slow reference (it gets fewer repetitions)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (0: leave torch's default). Default 1: on a small "
                         "shared machine multi-threaded CPU timings are dominated by scheduling noise")
    ap.add_argument("--out", type=str, default=None, help="also write the Markdown table here")
    ap.add_argument("--json", type=str, default=None, help="append one JSON line per row here (as measured)")
    args = ap.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = []
    if args.device in ("auto", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SystemExit("CUDA requested but not available")
        devices.append(torch.device("cuda"))

    rows: List[Dict[str, object]] = []
    for device in devices:
        for C in args.classes:
            for K in args.sizes:
                t0 = time.perf_counter()
                new = bench_config(C, K, args.dim, args.n, device, args.reps, args.warmup, args.ref_budget)
                for r in new:
                    emit_json({"bench": "bank", "dim": args.dim, "n": args.n, "torch": torch.__version__, **r}, args.json)
                rows.extend(new)
                print(f"# {device.type} C={C} K={K} done in {time.perf_counter() - t0:.1f}s",
                      file=sys.stderr, flush=True)

    gpu = f", {torch.cuda.get_device_name()}" if any(d.type == "cuda" for d in devices) else ""
    header = (f"Memory bank micro-benchmark: d={args.dim}, N={args.n} candidates per push "
              f"(~70% masked in), median ms; torch {torch.__version__}, "
              f"{torch.get_num_threads()} CPU threads{gpu}.")
    emit("\n### Memory bank operations\n\n" + to_markdown(rows, header), args.out)


if __name__ == "__main__":
    main()
