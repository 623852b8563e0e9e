"""Training-step cost of fixmatch, fixmatch+acr and fixmatch+semi on the same batches.

One process; the three algorithms are built on the same data and config, each gets the
same pre-loaded batches (already on the device: data loading is not timed), and their
steps (forward, losses, backward, the optimizer behind the non-finite guard as training
registers it, EMA, and each algorithm's after-step hooks:
bank push/decay, tau1 estimate, ...) are timed interleaved, round-robin, after a warm-up.
Reports median step time (it/s), the ratios semi/acr and semi/fixmatch, peak memory on
CUDA, and, on CUDA, host-device synchronisations per step and the GPU-busy fraction.

Variants (``--variants``, comma-separated; each one parts joined by ``+``): ``fp32`` (none),
``bf16`` and ``channels_last`` (the config keys ``semi_usb_bf16``, ``semi_usb_channels_last``,
applied as training applies them), ``compile``: ``torch.compile`` of the network's forward,
done here by the benchmark (the project has no switch for it; ``--compile_backend``).

Synchronisations: counted twice on CUDA, by ``torch.cuda.set_sync_debug_mode("warn")``
(its warnings, per step) and by the blocking CUDA runtime calls (``cuda*Synchronize``) in a
``torch.profiler`` trace of ``--profile_steps`` steps. GPU-busy fraction: the union of the
kernel, memcpy and memset intervals of that trace per step, over the unprofiled median step.

    python benchmarks/bench_steps.py                      # CPU: small net (config below)
    python benchmarks/bench_steps.py --config config/classic_cv_imb/fixmatch_semi/fixmatch_semi_cifar10_lb1500_100_ulb3000_-100_0.yaml \
        --variants fp32,bf16+channels_last --json steps.jsonl
    python benchmarks/bench_steps.py --out results/performance_steps_cpu.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _table import emit, emit_json  # noqa: E402  (this folder is first on sys.path)

METHODS = ("fixmatch", "acr", "semi")
SWITCHES = {"bf16": "semi_usb_bf16", "channels_last": "semi_usb_channels_last"}  # variant part -> config key
DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset", "memcpy", "memset")  # chrome-trace "cat" of GPU work
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def parse_variant(text: str) -> tuple[dict, bool]:
    """``"bf16+channels_last"`` -> ({config key: "True", ...}, compile?)."""
    parts = [p for p in text.split("+") if p and p != "fp32"]
    unknown = sorted(set(parts) - set(SWITCHES) - {"compile"})
    if unknown:
        raise SystemExit(f"bench_steps: unknown variant part {', '.join(unknown)} in {text!r} "
                         f"(use fp32, {', '.join(SWITCHES)}, compile, joined by '+')")
    return {SWITCHES[p]: "True" for p in parts if p in SWITCHES}, "compile" in parts


def build(method: str, config: str, overrides: dict, compile_backend: str | None = None):
    from semi_usb.config import build_args
    from semi_usb.monitor import GuardedParamUpdateHook
    from semi_usb.runner import build_algorithm, fast_step, place_models, seed_everything

    flags = {"save_dir": "/tmp/semi_usb_bench", "use_tensorboard": "False", "num_eval_iter": "1000000",
             "num_log_iter": "1000000", "semi_warmup_iter": "0", "daso_num_pretrain_iter": "0", **overrides}
    args = build_args(method, config, flags, warn=lambda m: None)
    args.distributed = False
    seed_everything(0)
    alg = build_algorithm(args)
    place_models(args, alg)
    fast_step(args, alg)  # data_pipeline, bf16, channels_last: as training applies them
    # the parameter update as training registers it (runner._run): the non-finite guard's
    # checks and its copies of the weights and optimizer state are part of every step
    alg.register_hook(GuardedParamUpdateHook(args.semi_usb_nonfinite_patience), "ParamUpdateHook", "HIGHEST")
    if compile_backend:
        net = getattr(alg.model, "module", alg.model)  # place_models wraps the net in DataParallel
        net.forward = torch.compile(net.forward, backend=compile_backend)  # parameter names unchanged (EMA)
    alg.call_hook("before_run")
    return alg


def step(alg, batch) -> None:
    alg.call_hook("before_train_step")
    alg.out_dict, alg.log_dict = alg.train_step(**batch)
    alg.call_hook("after_train_step")
    alg.it += 1


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def union_ms(intervals: list) -> float:
    """Total length (ms) of the union of ``(start_us, duration_us)`` intervals."""
    total, end = 0.0, float("-inf")
    for start, dur in sorted(intervals):
        stop = start + dur
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total / 1000.0


def trace_counts(events: list) -> dict:
    """GPU-busy time (ms) and blocking runtime calls in a chrome trace's ``traceEvents``."""
    device = [(float(e["ts"]), float(e.get("dur", 0))) for e in events
              if e.get("ph") == "X" and str(e.get("cat", "")).lower() in DEVICE_CATEGORIES]
    syncs = sum(1 for e in events if e.get("ph") == "X" and e.get("name") in SYNC_CALLS)
    return {"events": len(events), "device_events": len(device), "busy_ms": union_ms(device), "sync_calls": syncs}


def profile_steps(alg, batches, n: int, device) -> dict:
    """Trace ``n`` steps with torch.profiler (CPU, and CUDA when present); per-step counts."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    with profile(activities=activities) as prof:
        for k in range(n):
            step(alg, batches[k % len(batches)])
        sync(device)  # one cudaDeviceSynchronize of our own, not counted below
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path, encoding="utf-8") as f:
            counts = trace_counts(json.load(f).get("traceEvents", []))
    own = 1 if device.type == "cuda" else 0
    return {"events": counts["events"], "device_events": counts["device_events"],
            "kernel_ms_per_step": counts["busy_ms"] / n if counts["device_events"] else None,
            "sync_calls_per_step": max(counts["sync_calls"] - own, 0) / n if device.type == "cuda" else None}


def sync_debug_count(alg, batches, n: int, device) -> float | None:
    """Warnings of ``torch.cuda.set_sync_debug_mode("warn")`` per step (None off CUDA)."""
    if device.type != "cuda":
        return None
    sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for k in range(n):
                step(alg, batches[k % len(batches)])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sync(device)
    return sum("synchroniz" in str(w.message) for w in caught) / n


def measure(ns, variant: str, config: str, overrides: dict) -> dict:
    """Build the three algorithms for one variant and time them; a JSON-able record."""
    switches, compiled = parse_variant(variant)
    backend = ns.compile_backend if compiled else None
    t0 = time.perf_counter()
    algs = {m: build(m, config, {**overrides, **switches}, backend) for m in METHODS}
    build_s = time.perf_counter() - t0
    first = algs["fixmatch"]
    device = next(first.model.parameters()).device
    from semi_usb.runner import seed_everything

    seed_everything(1)
    batches = []
    for lb, ulb in zip(first.loader_dict["train_lb"], first.loader_dict["train_ulb"]):
        batches.append(first.process_batch(**lb, **ulb))
        if len(batches) == ns.batches:
            break
    args = first.args

    first_step = {}
    for m, alg in algs.items():  # the first step compiles (torch.compile) or warms up kernels
        sync(device)
        t = time.perf_counter()
        step(alg, batches[0])
        sync(device)
        first_step[m] = time.perf_counter() - t
    times = {m: [] for m in METHODS}
    mem = {}
    for i in range(1, ns.warmup):
        for m, alg in algs.items():
            step(alg, batches[i % len(batches)])
    for r in range(ns.rounds):
        for m, alg in algs.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync(device)
            t = time.perf_counter()
            for k in range(ns.steps):
                step(alg, batches[(r * ns.steps + k) % len(batches)])
            sync(device)
            times[m].append((time.perf_counter() - t) / ns.steps)
            if device.type == "cuda":
                mem[m] = max(mem.get(m, 0), torch.cuda.max_memory_allocated())

    rows = {}
    for m, alg in algs.items():
        med = statistics.median(times[m])
        prof, syncs, errors = {}, None, []
        try:  # a profiler (CUPTI) or sync-debug failure leaves the timings standing
            prof = profile_steps(alg, batches, ns.profile_steps, device) if ns.profile_steps else {}
        except Exception as exc:  # noqa: BLE001
            errors.append(f"profile: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        try:
            syncs = sync_debug_count(alg, batches, ns.sync_steps, device) if ns.sync_steps else None
        except Exception as exc:  # noqa: BLE001
            errors.append(f"sync debug: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        kernel = prof.get("kernel_ms_per_step")
        rows[m] = {"errors": errors, "median_ms": 1000 * med, "min_ms": 1000 * min(times[m]), "it_s": 1 / med,
                   "first_step_s": first_step[m], "peak_mib": mem[m] / 2**20 if m in mem else None,
                   "kernel_ms_per_step": kernel,
                   "gpu_busy": min(kernel / (1000 * med), 1.0) if kernel is not None else None,
                   "syncs_per_step": syncs,
                   "sync_calls_per_step": prof.get("sync_calls_per_step"),
                   "profiled_events": prof.get("events")}
    hw = torch.cuda.get_device_name(0) if device.type == "cuda" else \
        f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return {"bench": "steps", "variant": variant, "switches": switches, "compile_backend": backend,
            "device": device.type, "hardware": hw, "torch": torch.__version__, "net": args.net,
            "dataset": args.dataset, "batch_size": args.batch_size, "uratio": args.uratio, "use_cat": args.use_cat,
            "bank_size": algs["semi"].bank.size, "warmup": ns.warmup, "rounds": ns.rounds, "steps": ns.steps,
            "build_s": build_s, "methods": rows,
            "ratio_semi_acr": rows["semi"]["median_ms"] / rows["acr"]["median_ms"],
            "ratio_semi_fixmatch": rows["semi"]["median_ms"] / rows["fixmatch"]["median_ms"],
            "ratio_acr_fixmatch": rows["acr"]["median_ms"] / rows["fixmatch"]["median_ms"]}


def _fmt(v, spec: str, none: str = "n/a") -> str:
    return none if v is None else format(v, spec)


def to_markdown(records: list) -> str:
    r0 = records[0]
    lines = [
        f"### Step time: fixmatch vs fixmatch+acr vs fixmatch+semi ({datetime.date.today().isoformat()})",
        "",
        f"- hardware: {r0['hardware']}; torch {r0['torch']}",
        f"- net {r0['net']}, dataset {r0['dataset']}, batch {r0['batch_size']} labeled + {r0['batch_size'] * r0['uratio']}"
        f" unlabeled (x2 views), use_cat {r0['use_cat']}",
        f"- {r0['rounds']} interleaved rounds x {r0['steps']} steps after {r0['warmup']} warm-up steps each; batches"
        f" pre-loaded on the device; SeMi with all parts active (warm-up 0), bank K={r0['bank_size']}",
        "- variant: bf16 / channels_last = the config keys semi_usb_bf16 / semi_usb_channels_last; compile ="
        " torch.compile of the net's forward by this benchmark (no config key); first step includes compilation",
        "- syncs/step: sync-debug-mode warnings per step / blocking cuda*Synchronize calls per step in a profiler"
        " trace; GPU busy: kernel+copy time per step (union, from the trace) over the median step",
        "",
        "| method | variant | median step (ms) | it/s | min (ms) | first step (s) | peak memory | GPU busy | syncs/step |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in records:
        for m in METHODS:
            x = r["methods"][m]
            peak = _fmt(x["peak_mib"], ".0f", "n/a (CPU)") + (" MiB" if x["peak_mib"] is not None else "")
            syncs = "n/a (CPU)" if r["device"] != "cuda" else \
                f"{_fmt(x['syncs_per_step'], '.1f')} / {_fmt(x['sync_calls_per_step'], '.1f')}"
            busy = _fmt(x["gpu_busy"], ".0%", "n/a (CPU)" if r["device"] != "cuda" else "n/a")
            lines.append(f"| fixmatch{'' if m == 'fixmatch' else '+' + m} | {r['variant']} | {x['median_ms']:.2f} |"
                         f" {x['it_s']:.1f} | {x['min_ms']:.2f} | {x['first_step_s']:.2f} | {peak} | {busy} | {syncs} |")
    lines.append("")
    for r in records:
        lines.append(f"- {r['variant']}: ratio semi/acr **{r['ratio_semi_acr']:.3f}** (target <= 1.02); semi/fixmatch"
                     f" {r['ratio_semi_fixmatch']:.3f}; acr/fixmatch {r['ratio_acr_fixmatch']:.3f}")
        if r["device"] == "cuda":
            s, a = r["methods"]["semi"]["syncs_per_step"], r["methods"]["acr"]["syncs_per_step"]
            if s is not None and a is not None:
                lines.append(f"  host-device synchronisations added by SeMi's parts (semi - acr): {s - a:+.1f} per step (target 0)")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/cpu_compare/cifar10_cnn_tiny_short.yaml")
    p.add_argument("--net", default=None, help="override the config's network (CPU default: cnn_small)")
    p.add_argument("--variants", default="fp32", help="comma list, e.g. fp32,bf16,channels_last,bf16+channels_last,compile")
    p.add_argument("--compile_backend", default="inductor", help="torch.compile backend of the compile variant")
    p.add_argument("--batches", type=int, default=8, help="distinct batches cycled through")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=4, help="steps per algorithm per round")
    p.add_argument("--profile_steps", type=int, default=0, help="steps traced by torch.profiler per method (0: none)")
    p.add_argument("--sync_steps", type=int, default=0, help="CUDA: steps run under sync debug mode 'warn' (0: none)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--out", help="also write the Markdown table here")
    p.add_argument("--json", help="append one JSON line per variant here (as each variant finishes)")
    ns, extra = p.parse_known_args(argv)
    overrides = dict(zip([k.lstrip("-") for k in extra[0::2]], extra[1::2]))
    for v in ns.variants.split(","):
        parse_variant(v)  # fail before any work
    if ns.threads:
        torch.set_num_threads(ns.threads)
    if ns.net or not torch.cuda.is_available():
        overrides.setdefault("net", ns.net or "cnn_small")
    overrides.setdefault("num_workers", "0")
    overrides.setdefault("semi_usb_num_threads", str(ns.threads or os.cpu_count()))

    import semi_usb.plugin

    semi_usb.plugin.register()  # acr, semi

    records, failed = [], []
    for variant in ns.variants.split(","):
        try:
            records.append(measure(ns, variant, ns.config, overrides))
        except Exception:  # noqa: BLE001  (the other variants still run; exit status 1 at the end)
            traceback.print_exc()
            failed.append(variant)
            emit_json({"bench": "steps", "variant": variant, "error": traceback.format_exc().strip().splitlines()[-1]},
                      ns.json)
            continue
        emit_json(records[-1], ns.json)
        print(f"# variant {variant} done", file=sys.stderr, flush=True)
    if records:
        emit(to_markdown(records), ns.out)
    if failed:
        print(f"bench_steps: variant(s) {', '.join(failed)} failed (tracebacks above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
