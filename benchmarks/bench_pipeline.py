"""Iterations per second of USB's stock data pipeline vs ``data_pipeline: gpu``.

Same algorithm, same config, same process: each pipeline trains ``--steps`` iterations
(data loading, augmentation, step, hooks; no evaluation) after a warm-up, and the full
protocol's wall time (``--protocol_iters``, 262,144 by default) is extrapolated from the
measured rate (evaluation time not included).

    python benchmarks/bench_pipeline.py --algorithm semi --config config/classic_cv_imb/fixmatch_semi/fixmatch_semi_cifar10_lb1500_100_ulb3000_-100_0.yaml --data_dir ./data
    python benchmarks/bench_pipeline.py --algorithm semi --config config/cpu_compare/cifar10_cnn_tiny_short.yaml --steps 60
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _table import emit  # noqa: E402  (this folder is first on sys.path)


def rate(method: str, config: str, pipeline: str, steps: int, warmup: int, overrides: dict) -> float:
    from semi_usb import device_loader
    from semi_usb.compat import model_device
    from semi_usb.config import build_args
    from semi_usb.runner import build_algorithm, place_models, seed_everything, set_cpu_threads

    flags = {"save_dir": "/tmp/semi_usb_bench", "use_tensorboard": "False", "num_eval_iter": "1000000",
             "num_log_iter": "1000000", "resume": "False", "num_train_iter": str(steps + warmup + 1000), "epoch": "1",
             "semi_usb_nonfinite_patience": "0", **overrides}
    args = build_args(method, config, flags, warn=lambda m: None)
    args.distributed = False
    seed_everything(0)
    set_cpu_threads(args)
    alg = build_algorithm(args)
    place_models(args, alg)
    if pipeline == "gpu":
        device_loader.install(alg, model_device(alg))
    alg.call_hook("before_run")
    device = model_device(alg)
    it = zip(alg.loader_dict["train_lb"], alg.loader_dict["train_ulb"])
    t0 = None
    for i, (lb, ulb) in enumerate(it):
        if i == warmup + steps:
            break
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        alg.call_hook("before_train_step")
        alg.out_dict, alg.log_dict = alg.train_step(**alg.process_batch(**lb, **ulb))
        alg.call_hook("after_train_step")
        alg.it += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithm", default="semi")
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--protocol_iters", type=int, default=262144)
    p.add_argument("--out", help="also append the Markdown table here")
    ns, extra = p.parse_known_args(argv)
    overrides = dict(zip([k.lstrip("-") for k in extra[0::2]], extra[1::2]))
    import semi_usb.plugin

    semi_usb.plugin.register()

    rates = {pl: rate(ns.algorithm, ns.config, pl, ns.steps, ns.warmup, overrides) for pl in ("usb", "gpu")}
    hw = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} torch threads"
    lines = [f"### Data pipeline: USB stock vs `data_pipeline: gpu` ({datetime.date.today().isoformat()})", "",
             f"- hardware: {hw}; torch {torch.__version__}; method {ns.algorithm}; config `{ns.config}` {overrides or ''}",
             f"- {ns.steps} timed iterations after {ns.warmup} warm-up, evaluation excluded", "",
             "| pipeline | it/s | extrapolated " + f"{ns.protocol_iters:,} iterations |", "|---|---:|---:|"]
    for pl, r in rates.items():
        lines.append(f"| {pl} | {r:.2f} | {ns.protocol_iters / r / 60:.1f} min |")
    lines += ["", f"- speed-up gpu/usb: **{rates['gpu'] / rates['usb']:.2f}x**", ""]
    emit("\n".join(lines), ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
