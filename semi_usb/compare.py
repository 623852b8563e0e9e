"""``semilearn compare``: several algorithms on the same splits, seeds and budget.

Each (algorithm, seed) is one ``semilearn train`` process. Its configuration is ``--config``
(a base file: network, budget, data) with the setting's keys parsed from its name when it is
given, or else the protocol file ``<config_dir>/<method>/<method>_<setting>_<seed>.yaml``;
the same overrides apply to every run. Finished runs (with ``summary.json``) are skipped
and interrupted ones resume from their checkpoint; a run folder that holds another
configuration (say, an earlier budget) is an error before anything runs. Runs go one after
another, or ``--jobs N`` at a time (one GPU each when GPUs are visible). Stopping compare
(Ctrl-C, SIGTERM) stops its runs; the same command resumes them.

Several settings (a comma list) or a named grid (``--grid classic_cv_imb``) make a grid of
methods x settings x seeds; ``--launcher slurm`` runs each as a SLURM job
(semi_usb/launchers/slurm.py), ``--status`` shows where each run stands.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

from .grid import axes, check_existing, check_overrides, plan_grid
from .layout import console_log_path, has_checkpoint, is_finished, lock_held, logs_dir


def _launch(run: dict, gpu: int | None, log_dir: str) -> subprocess.Popen:
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    os.makedirs(log_dir, exist_ok=True)
    log = open(console_log_path(log_dir, run["name"]), "a", encoding="utf-8")
    argv = ["train", "--algorithm", run["algorithm"], "--config", run["config"]] + run["flags"]
    return subprocess.Popen([sys.executable, "-m", "semi_usb.cli"] + argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def run_all(runs: list, jobs: int = 1, log_dir: str = "compare_logs", echo=print) -> int:
    """Run what is not finished; returns the number of failed runs. Stopped (Ctrl-C,
    SIGTERM), it stops the runs it started, which the same command then resumes."""
    pending = [r for r in runs if not is_finished(r["dir"])]
    for r in runs:
        if r not in pending:
            echo(f"skip {r['name']} (finished)")
    try:
        import torch

        gpus = list(range(torch.cuda.device_count()))
    except ImportError:  # pragma: no cover
        gpus = []
    active = {}
    on_term = _exit_on_sigterm()
    try:
        failed = _run_pending(pending, active, jobs, gpus, log_dir, echo)
    finally:  # Ctrl-C, SIGTERM or an error: stop the runs too, none trains on unwatched
        _stop(active, echo)
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
    return failed


def _run_pending(pending: list, active: dict, jobs: int, gpus: list, log_dir: str, echo) -> int:
    """Launch and watch the runs; a run whose folder another process holds (a second compare
    sharing the folders, a hand-started run) waits at the back of the queue until it is let
    go: then it is skipped if finished, else started or resumed here. Before, it was launched,
    refused the lock and counted as failed, and the run was nobody's once the holder died."""
    failed, waiting = 0, set()
    while pending or active:
        deferred = []
        while pending and len(active) < max(jobs, 1):
            run = pending.pop(0)
            if is_finished(run["dir"]):  # by another process meanwhile
                echo(f"skip {run['name']} (finished meanwhile)")
                continue
            if lock_held(run["dir"]):
                if run["name"] not in waiting:
                    echo(f"wait {run['name']} (in use by another process: taken over or skipped when it lets go)")
                    waiting.add(run["name"])
                deferred.append(run)
                continue
            free = [g for g in gpus if g not in {a[1] for a in active.values()}]
            gpu = free[0] if free else None
            state = "resume" if has_checkpoint(run["dir"]) else "start"
            echo(f"{state} {run['name']}" + (f" on GPU {gpu}" if gpu is not None else ""))
            active[run["name"]] = (_launch(run, gpu, log_dir), gpu, time.time(), run)
        pending.extend(deferred)
        time.sleep(0.5)
        for name, (proc, _, t0, run) in list(active.items()):
            if proc.poll() is None:
                continue
            del active[name]
            if proc.returncode == 2 and lock_held(run["dir"]):  # another process took it first
                waiting.discard(name)
                pending.append(run)
                continue
            ok = proc.returncode == 0
            failed += not ok
            echo(f"{'done' if ok else 'FAILED'} {name} ({time.time() - t0:.0f} s)"
                 + ("" if ok else f": see {console_log_path(log_dir, name)}"))
    return failed


def _exit_on_sigterm():
    """Make SIGTERM end compare like Ctrl-C does (through ``finally``); returns the previous
    handler, or None where none can be set (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, handler)


def _stop(active: dict, echo, grace_s: float = 30.0) -> None:
    """Terminate the runs still going (their last checkpoint is complete: they resume)."""
    for proc, *_ in active.values():
        if proc.poll() is None:
            proc.terminate()
    for name, (proc, *_) in active.items():
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        echo(f"stopped {name}: the same command resumes it")


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="run several algorithms on the same settings and seeds",
                       description=__doc__, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Any further --key value is passed to every run (e.g. --num_train_iter 2000).")
    p.add_argument("--algorithms", help="comma list of methods, e.g. fixmatch,abc,acr,semi,cpe,simpro")
    p.add_argument("--setting", help="USB setting name(s), comma list, e.g. cifar10_lb1500_100_ulb3000_-100")
    p.add_argument("--grid", help="a named grid of methods x settings x seeds (semi_usb/grid.py): classic_cv_imb")
    p.add_argument("--seeds", help="comma list (default 0,1,2)")
    p.add_argument("--config_dir", help="protocol files (default config/classic_cv_imb)")
    p.add_argument("--config", help="base YAML for settings without a protocol file")
    p.add_argument("--save_dir", default="./saved_models/compare")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (one GPU each when GPUs are visible)")
    p.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="local: a process pool here (--jobs); slurm: one SLURM job per run (semi_usb/launchers/slurm.py)")
    p.add_argument("--status", action="store_true", help="show every run's state (finished / running / pending / "
                   "failed / not started) instead of running anything")
    p.add_argument("--debug", action="store_true")
    from .launchers.slurm import add_arguments

    add_arguments(p)
    p.set_defaults(func=main, takes_extra=True)


def main(ns, extra: list | None = None) -> int:
    check_overrides(list(extra or []))
    algorithms, settings, seeds, config_dir = axes(ns.grid, ns.algorithms, ns.setting, ns.seeds, ns.config_dir)
    runs = plan_grid(algorithms, settings, seeds, config_dir, ns.config, ns.save_dir, list(extra or []))
    if ns.status:
        from .run_status import main as status

        return status(runs, ns.save_dir)
    check_existing(runs)
    if ns.launcher == "slurm":
        from .launchers import slurm

        return slurm.main(runs, ns)
    failed = run_all(runs, ns.jobs, logs_dir(ns.save_dir))
    print(f"{len(runs) - failed}/{len(runs)} runs finished; report with: semilearn report {ns.save_dir} "
          "--out results/<name>/")
    return 1 if failed else 0
