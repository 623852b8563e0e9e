"""Training-step cost of fixmatch, fixmatch+acr and fixmatch+semi on the same batches.

One process; the three algorithms are built on the same data and config, each gets the
same pre-loaded batches (already on the device: data loading is not timed), and their
steps (forward, losses, backward, optimizer, EMA, and each algorithm's after-step hooks:
bank push/decay, tau1 estimate, ...) are timed interleaved, round-robin, after a warm-up.
Reports median step time, the ratios semi/acr and semi/fixmatch, peak step memory on CUDA,
and (CUDA) whether SeMi's step performs a host-device synchronisation.

    python benchmarks/bench_steps.py                      # CPU: small net (config below)
    python benchmarks/bench_steps.py --config config/classic_cv_imb/fixmatch_semi/fixmatch_semi_cifar10_lb1500_100_ulb3000_-100_0.yaml
    python benchmarks/bench_steps.py --out results/performance_steps_cpu.md
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _table import emit  # noqa: E402  (this folder is first on sys.path)

METHODS = ("fixmatch", "acr", "semi")


def build(method: str, config: str, overrides: dict):
    from semi_usb.config import build_args
    from semi_usb.runner import build_algorithm, place_models, seed_everything

    flags = {"save_dir": "/tmp/semi_usb_bench", "use_tensorboard": "False", "num_eval_iter": "1000000",
             "num_log_iter": "1000000", "semi_warmup_iter": "0", "daso_num_pretrain_iter": "0", **overrides}
    args = build_args(method, config, flags, warn=lambda m: None)
    args.distributed = False
    seed_everything(0)
    alg = build_algorithm(args)
    place_models(args, alg)
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/cpu_compare/cifar10_cnn_tiny_short.yaml")
    p.add_argument("--net", default=None, help="override the config's network (CPU default: cnn_small)")
    p.add_argument("--batches", type=int, default=8, help="distinct batches cycled through")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=4, help="steps per algorithm per round")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--out", help="also write the Markdown table here")
    ns, extra = p.parse_known_args(argv)
    overrides = dict(zip([k.lstrip("-") for k in extra[0::2]], extra[1::2]))
    if ns.threads:
        torch.set_num_threads(ns.threads)
    if ns.net or not torch.cuda.is_available():
        overrides.setdefault("net", ns.net or "cnn_small")
    overrides.setdefault("num_workers", "0")
    overrides.setdefault("semi_usb_num_threads", str(ns.threads or os.cpu_count()))

    import semi_usb.plugin

    semi_usb.plugin.register()  # acr, semi

    algs = {m: build(m, ns.config, overrides) for m in METHODS}
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

    times = {m: [] for m in METHODS}
    mem = {}
    for i in range(ns.warmup):
        for m, alg in algs.items():
            step(alg, batches[i % len(batches)])
    for r in range(ns.rounds):
        for m, alg in algs.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync(device)
            t0 = time.perf_counter()
            for k in range(ns.steps):
                step(alg, batches[(r * ns.steps + k) % len(batches)])
            sync(device)
            times[m].append((time.perf_counter() - t0) / ns.steps)
            if device.type == "cuda":
                mem[m] = max(mem.get(m, 0), torch.cuda.max_memory_allocated())

    sync_note = "n/a (CPU)"
    if device.type == "cuda":
        try:
            torch.cuda.set_sync_debug_mode("error")
            step(algs["semi"], batches[0])
            sync_note = "none in SeMi's step"
        except RuntimeError as exc:
            sync_note = f"SYNC: {str(exc).splitlines()[0]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")

    med = {m: statistics.median(v) for m, v in times.items()}
    hw = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    lines = [
        f"### Step time: fixmatch vs fixmatch+acr vs fixmatch+semi ({datetime.date.today().isoformat()})",
        "",
        f"- hardware: {hw}; torch {torch.__version__}",
        f"- net {args.net}, dataset {args.dataset}, batch {args.batch_size} labeled + {args.batch_size * args.uratio} unlabeled"
        f" (x2 views), use_cat {args.use_cat}, amp {args.amp}",
        f"- {ns.rounds} interleaved rounds x {ns.steps} steps after {ns.warmup} warm-up steps each; batches pre-loaded on the device;"
        f" SeMi with all parts active (warm-up 0), bank K={algs['semi'].bank.size}",
        "",
        "| method | median step (ms) | min (ms) | peak step memory |",
        "|---|---:|---:|---:|",
    ]
    for m in METHODS:
        peak = f"{mem[m] / 2**20:.0f} MiB" if m in mem else "n/a (CPU)"
        lines.append(f"| fixmatch{'' if m == 'fixmatch' else '+' + m} | {1000 * med[m]:.2f} | {1000 * min(times[m]):.2f} | {peak} |")
    lines += ["", f"- ratio semi/acr: **{med['semi'] / med['acr']:.3f}** (target <= 1.05)",
              f"- ratio semi/fixmatch: {med['semi'] / med['fixmatch']:.3f}; acr/fixmatch: {med['acr'] / med['fixmatch']:.3f}",
              f"- host-device synchronisations: {sync_note}", ""]
    emit("\n".join(lines), ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
