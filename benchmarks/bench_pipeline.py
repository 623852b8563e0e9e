"""Iterations per second of USB's stock data pipeline vs ``data_pipeline: gpu``.

Same config, same process: each (algorithm, pipeline) trains up to ``--steps`` iterations
(data loading, augmentation, step, hooks; no evaluation) after a warm-up, or stops at
``--seconds`` of timed training, and the full protocol's wall time (``--protocol_iters``,
262,144 by default) is extrapolated from the measured rate. With ``--eval`` one evaluation
pass is timed as well and the protocol's evaluations (one every ``--protocol_eval_every``
iterations) are added to the extrapolation.

Pipelines: ``usb`` (USB's loaders, as configured), ``gpu`` (``data_pipeline: gpu``),
``fast`` (``data_pipeline: gpu`` with ``semi_usb_bf16`` and ``semi_usb_channels_last``):
the config keys, applied as training applies them.

    python benchmarks/bench_pipeline.py --algorithm semi --config config/classic_cv_imb/fixmatch_semi/fixmatch_semi_cifar10_lb1500_100_ulb3000_-100_0.yaml --data_dir ./data
    python benchmarks/bench_pipeline.py --algorithms semi,fixmatch --pipelines usb,fast --seconds 5 --eval --config ...
    python benchmarks/bench_pipeline.py --algorithm semi --config config/cpu_compare/cifar10_cnn_tiny_short.yaml --steps 60
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _table import emit, emit_json  # noqa: E402  (this folder is first on sys.path)

PIPELINES = {"usb": {"data_pipeline": "usb"}, "gpu": {"data_pipeline": "gpu"},
             "fast": {"data_pipeline": "gpu", "semi_usb_bf16": "True", "semi_usb_channels_last": "True"}}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(method: str, config: str, pipeline: str, steps: int, warmup: int, overrides: dict,
         seconds: float = 0.0, with_eval: bool = False) -> dict:
    """Train ``method`` with one pipeline; it/s (and the time of one evaluation pass)."""
    from semi_usb.imb_algorithms.device import model_device
    from semi_usb.config import build_args
    from semi_usb.runner import build_algorithm, fast_step, place_models, seed_everything, set_cpu_threads

    flags = {"save_dir": "/tmp/semi_usb_bench", "use_tensorboard": "False", "num_eval_iter": "1000000",
             "num_log_iter": "1000000", "resume": "False", "num_train_iter": str(steps + warmup + 1000), "epoch": "1",
             "semi_usb_nonfinite_patience": "0", **overrides, **PIPELINES[pipeline]}
    args = build_args(method, config, flags, warn=lambda m: None)
    args.distributed = False
    seed_everything(0)
    set_cpu_threads(args)
    alg = build_algorithm(args)
    place_models(args, alg)
    fast_step(args, alg)
    alg.call_hook("before_run")
    device = model_device(alg)
    it = zip(alg.loader_dict["train_lb"], alg.loader_dict["train_ulb"])
    t0, done = None, 0
    for i, (lb, ulb) in enumerate(it):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        if t0 is not None and (done == steps or (seconds and done >= 3 and time.perf_counter() - t0 >= seconds)):
            break
        alg.call_hook("before_train_step")
        alg.out_dict, alg.log_dict = alg.train_step(**alg.process_batch(**lb, **ulb))
        alg.call_hook("after_train_step")
        alg.it += 1
        done += i >= warmup
    _sync(device)
    elapsed = time.perf_counter() - t0
    out = {"it_s": done / elapsed, "steps": done, "seconds": elapsed, "eval_s": None, "device": device.type,
           "num_workers": args.num_workers, "net": args.net, "batch_size": args.batch_size, "uratio": args.uratio}
    if with_eval:
        t = time.perf_counter()
        alg.evaluate("eval")
        _sync(device)
        out["eval_s"] = time.perf_counter() - t
    return out


def extrapolate(r: dict, iters: int, eval_every: int) -> tuple[float, float | None]:
    """Minutes of training and of evaluation for ``iters`` iterations at the measured rates."""
    train = iters / r["it_s"] / 60
    return train, (iters // eval_every) * r["eval_s"] / 60 if r.get("eval_s") is not None else None


def to_markdown(ns, records: list, overrides: dict) -> str:
    hw = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} torch threads"
    r0 = records[0]
    lines = [f"### Data pipeline: USB stock vs `data_pipeline: gpu` ({datetime.date.today().isoformat()})", "",
             f"- hardware: {hw}; torch {torch.__version__}; config `{ns.config}` {overrides or ''}",
             f"- net {r0['net']}, batch {r0['batch_size']} + {r0['batch_size'] * r0['uratio']} (x2 views); USB loader workers:"
             f" {r0['num_workers']}; fast = gpu + semi_usb_bf16 + semi_usb_channels_last",
             f"- timed iterations after {ns.warmup} warm-up (at most {ns.steps}" + (f" or {ns.seconds:g} s" if ns.seconds else "")
             + f"); evaluation {'timed once, one every ' + format(ns.protocol_eval_every, ',') + ' iterations added' if ns.eval else 'excluded'}",
             "", f"| method | pipeline | it/s | iterations timed | one evaluation (s) | extrapolated {ns.protocol_iters:,} iterations |",
             "|---|---|---:|---:|---:|---:|"]
    for r in records:
        train, ev = extrapolate(r, ns.protocol_iters, ns.protocol_eval_every)
        total = f"{train:.1f} min" + (f" + {ev:.1f} min evaluation" if ev is not None else "")
        eval_s = f"{r['eval_s']:.2f}" if r["eval_s"] is not None else "-"
        lines.append(f"| {r['method']} | {r['pipeline']} | {r['it_s']:.2f} | {r['steps']} | {eval_s} | {total} |")
    lines.append("")
    by = {(r["method"], r["pipeline"]): r for r in records}
    for m in dict.fromkeys(r["method"] for r in records):
        base = by.get((m, "usb"))
        for pl in ("gpu", "fast"):
            if base and (m, pl) in by:
                lines.append(f"- {m}: speed-up {pl}/usb: **{by[(m, pl)]['it_s'] / base['it_s']:.2f}x**")
    return "\n".join([*lines, ""])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithm", default="semi")
    p.add_argument("--algorithms", help="comma list (instead of --algorithm), e.g. semi,fixmatch,acr")
    p.add_argument("--pipelines", default="usb,gpu", help=f"comma list of {', '.join(PIPELINES)}")
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seconds", type=float, default=0.0, help="stop timing after this long (0: --steps only)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--eval", action="store_true", help="time one evaluation pass too")
    p.add_argument("--protocol_iters", type=int, default=262144)
    p.add_argument("--protocol_eval_every", type=int, default=1024)
    p.add_argument("--out", help="also append the Markdown table here")
    p.add_argument("--json", help="append one JSON line per (algorithm, pipeline) here, as each finishes")
    ns, extra = p.parse_known_args(argv)
    overrides = dict(zip([k.lstrip("-") for k in extra[0::2]], extra[1::2]))
    pipelines = ns.pipelines.split(",")
    unknown = sorted(set(pipelines) - set(PIPELINES))
    if unknown:
        p.error(f"unknown pipeline {', '.join(unknown)} (use {', '.join(PIPELINES)})")
    import semi_usb.plugin

    semi_usb.plugin.register()

    records, failed = [], []
    for method in (ns.algorithms or ns.algorithm).split(","):
        for pl in pipelines:
            try:
                r = {"bench": "pipeline", "method": method, "pipeline": pl,
                     **rate(method, ns.config, pl, ns.steps, ns.warmup, overrides, ns.seconds, ns.eval)}
            except Exception:  # noqa: BLE001  (the other combinations still run; exit status 1 at the end)
                traceback.print_exc()
                failed.append(f"{method}/{pl}")
                emit_json({"bench": "pipeline", "method": method, "pipeline": pl,
                           "error": traceback.format_exc().strip().splitlines()[-1]}, ns.json)
                continue
            r["extrapolated_train_min"], r["extrapolated_eval_min"] = extrapolate(r, ns.protocol_iters, ns.protocol_eval_every)
            r["protocol_iters"] = ns.protocol_iters
            records.append(r)
            emit_json(r, ns.json)
            print(f"# {method} {pl}: {r['it_s']:.2f} it/s", file=sys.stderr, flush=True)
    if records:
        emit(to_markdown(ns, records, overrides), ns.out)
    if failed:
        print(f"bench_pipeline: {', '.join(failed)} failed (tracebacks above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
