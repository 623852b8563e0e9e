"""The steps of ``benchmarks/gpu_check.sh`` under one wall-clock budget.

Every step is a separate process with its own time slice (``SLICES``, cut to what is left of
the budget); a step that runs out of time is stopped (its process group) and the next one
starts; what it wrote so far is kept (the benchmarks append JSON lines as they measure).
The output folder is rewritten after every step, so a run stopped from outside still leaves
its report. The check uses the project only through its entry points: ``python -m
semi_usb.cli`` (data import, train, eval), config keys and the scripts beside this one.

Steps, in order (``data`` runs in the background from the start):

=========  ======================================================================================
data       ``semilearn data import`` of the CIFAR-10 JPEG archive (``--tiny``: 100 train and 20 test
           images a class; no archive in ``--tiny`` mode: scikit-learn's digits, nothing to import)
tests      the CUDA-only tests of tests/test_gpu_augment.py (gpu_augment against USB's PIL ops)
bank       bench_bank.py on the training device, C in {10, 100, 1000}
steps      bench_steps.py on wrn_28_2 at the protocol batch: fp32, bf16, channels_last, both, and
           last torch.compile (+ bf16 + channels_last), if it compiles before the slice ends
pipeline   bench_pipeline.py: USB's loaders, ``data_pipeline: gpu``, and the fast path, with one
           evaluation each: it/s, 262,144-iteration time, speed-up
train      ``semilearn train`` of semi and fixmatch side by side on CIFAR-10-LT reversed (N1 1500,
           gamma 100), fast path, as many iterations as the measured rate fits in the time left
           (at most ``TRAIN_SECONDS``), then ``semilearn eval`` of both checkpoints
=========  ======================================================================================

Output folder (few files: the GPU machine returns at most 8): ``summary.md`` (everything),
``performance_lines.md`` (the lines for results/performance.md), ``results.json``, ``log.txt``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

from gpu_check_report import performance_lines, summary_markdown  # this folder is sys.path[0]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "benchmarks")
PROTO = {"semi": "config/classic_cv_imb/fixmatch_semi/fixmatch_semi_cifar10_lb1500_100_ulb3000_-100_0.yaml",
         "fixmatch": "config/classic_cv_imb/fixmatch/fixmatch_cifar10_lb1500_100_ulb3000_-100_0.yaml"}
DIGITS = "config/quickstart/digits_lt.yaml"
PROTOCOL_ITERS = 262144
TRAIN_SECONDS = 180  # each training run, both at once
# seconds per step (cut to the budget left); "train" covers both runs, "eval" both evaluations
SLICES = {"gpu": {"tests": 60, "bank": 40, "data": 150, "steps": 165, "pipeline": 110, "train": TRAIN_SECONDS + 40,
                  "eval": 40},
          "tiny": {"tests": 60, "bank": 40, "data": 60, "steps": 60, "pipeline": 60, "train": 60, "eval": 40}}
DEFAULT_BUDGET = {"gpu": 480.0, "tiny": 300.0}
RESERVE_S = 8  # kept for the final report
EVAL_KEEP_S = 20  # kept after training for the evaluations
TINY_SUBSET = {"train": 100, "test": 20}  # images a class in --tiny mode
# CPU rehearsal: a tiny net and split, few steps; every step still runs
TINY_FLAGS = {"net": "cnn_tiny", "num_labels": 40, "ulb_num_labels": 80, "lb_imb_ratio": 10, "ulb_imb_ratio": -10,
              "batch_size": 4, "uratio": 2, "eval_batch_size": 100, "semi_usb_num_threads": 1}
DIGITS_FLAGS = {"batch_size": 4, "uratio": 2, "semi_usb_num_threads": 1}
TINY_TRAIN_ITERS = 6


class Stopped(Exception):
    """SIGTERM/SIGINT from outside: stop the running step and write the report."""


class Budget:
    def __init__(self, total_s: float, t0: float):
        self.total, self.t0 = total_s, t0

    def elapsed(self) -> float:
        return time.time() - self.t0

    def left(self) -> float:
        return self.total - self.elapsed() - RESERVE_S

    def slice(self, want: float) -> float:
        return max(0.0, min(want, self.left()))


class Check:
    """Runs the steps, keeps the results, writes the output folder."""

    def __init__(self, ns):
        self.ns, self.out, self.work = ns, os.path.abspath(ns.out), os.path.abspath(ns.work)
        self.mode = "tiny" if ns.tiny else "gpu"
        self.parallel = ns.tiny
        self.budget = Budget(ns.budget, ns.t0)
        self.procs: list = []
        self.ended: dict = {}
        self.res = {"mode": "cpu-tiny" if ns.cpu else "gpu", "started": datetime.datetime.fromtimestamp(ns.t0).isoformat(
            timespec="seconds"), "budget_s": ns.budget, "steps": {}, "env": {}, "wheels": ns.wheels_note}
        for d in (self.out, self.work, os.path.join(self.work, "logs")):
            os.makedirs(d, exist_ok=True)
        self.log_path = os.path.join(self.out, "log.txt")
        open(self.log_path, "w", encoding="utf-8").close()
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", SEMI_USB_OFFLINE="1", MPLBACKEND="Agg",
                        TORCHINDUCTOR_CACHE_DIR=os.path.join(self.work, "inductor"))
        if ns.cpu:
            self.env["CUDA_VISIBLE_DEVICES"] = ""
        self.data, self.configs, self.flags = self._plan_data()

    # ------------------------------------------------------------------ plan
    def _plan_data(self):
        """(archive or 'digits', {method: config}, flags for every command)."""
        data = self.ns.data
        if data is None:
            for cand in (os.path.join(self.ns.carry, "cifar10-jpeg.tar.gz"), os.environ.get("SEMI_USB_CIFAR_TAR", ""),
                         os.path.join(REPO, "..", "shared", "data", "cifar10-jpeg.tar.gz")):
                if cand and os.path.isfile(cand):
                    data = os.path.abspath(cand)
                    break
            else:
                data = "digits" if self.ns.tiny else None
        if data is None:
            raise SystemExit("gpu_check: no CIFAR-10 archive (looked in the carry folder, SEMI_USB_CIFAR_TAR, "
                             "../shared/data): run benchmarks/gpu_check.sh --prepare first")
        flags = {"data_dir": os.path.join(self.work, "data"), "save_dir": os.path.join(self.work, "bench_runs"),
                 "use_tensorboard": "False", "multiprocessing_distributed": "False"}
        if not self.ns.cpu:
            flags["gpu"] = "0"
        if data == "digits":
            return data, {"semi": DIGITS, "fixmatch": DIGITS}, {**flags, **DIGITS_FLAGS}
        return data, dict(PROTO), {**flags, **(TINY_FLAGS if self.ns.tiny else {})}

    def _argv_flags(self, extra: dict | None = None) -> list:
        out = []
        for k, v in {**self.flags, **(extra or {})}.items():
            out += [f"--{k}", str(v)]
        return out

    # ------------------------------------------------------------------ processes
    def _start(self, name: str, argv: list) -> tuple:
        log = open(os.path.join(self.work, "logs", f"{name}.log"), "w", encoding="utf-8")
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        proc = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        # the time it ends, also while another one is being waited for (steps run side by side in --tiny)
        threading.Thread(target=lambda: (proc.wait(), self.ended.setdefault(proc.pid, time.time())), daemon=True).start()
        return proc, log, time.time()

    def _stop(self, proc) -> None:
        if proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue

    def _finish(self, name: str, handle: tuple, limit: float) -> dict:
        """Wait for a started process, at most ``limit`` s after its start; its step record."""
        proc, log, t0 = handle
        timed_out = False
        try:
            proc.wait(max(limit - (time.time() - t0), 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            self._stop(proc)
        log.close()
        seconds = self.ended.get(proc.pid, time.time()) - t0
        with open(log.name, encoding="utf-8", errors="replace") as f:
            text = f.read()
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"\n===== {name} (rc {proc.returncode}, {seconds:.1f} s"
                    f"{', stopped at its time limit' if timed_out else ''}) =====\n{text[-300_000:]}")
        status = "timed out" if timed_out else ("ok" if proc.returncode == 0 else f"failed (rc {proc.returncode})")
        return {"status": status, "seconds": round(seconds, 1), "rc": proc.returncode,
                "limit_s": round(limit, 1), "tail": "\n".join(text.strip().splitlines()[-4:])}

    def group(self, jobs: list) -> None:
        """Run ``(name, argv)`` jobs, each within its slice: one after the other on the GPU (they
        are timed), all at once in --tiny mode (single-threaded imports would leave cores idle)."""
        t0, running = time.time(), []
        for name, argv in jobs:
            want = self.slice_s(name) - (time.time() - t0 if self.parallel else 0)
            limit = self.budget.slice(want)
            if limit < 3:
                self.res["steps"][name] = {"status": "skipped (no time left)", "seconds": 0.0}
                continue
            running.append((name, self._start(name, argv), limit))
            if not self.parallel:
                self._done(*running.pop())
        for job in running:
            self._done(*job)

    def _done(self, name: str, handle: tuple, limit: float) -> None:
        rec = self._finish(name, handle, limit)
        if name == "tests":
            rec["counts"] = _pytest_counts(rec.get("tail", ""))
        self.res["steps"][name] = rec
        self.write()

    def slice_s(self, name: str) -> float:
        """The step's slice, scaled with a --budget other than the mode's default."""
        return SLICES[self.mode][name] * self.budget.total / DEFAULT_BUDGET[self.mode]

    def py(self, *args) -> list:
        return [self.ns.python, *args]

    def jsonl(self, name: str) -> str:
        return os.path.join(self.work, f"{name}.jsonl")

    def md(self, name: str) -> str:
        return os.path.join(self.work, f"{name}.md")

    # ------------------------------------------------------------------ steps
    def env_probe(self, handle: tuple) -> None:
        rec = self._finish("env", handle, max(self.budget.slice(60), 1))  # imports torch only
        m = re.search(r"^ENV (.*)$", open(os.path.join(self.work, "logs", "env.log"), encoding="utf-8").read(), re.M)
        env = json.loads(m.group(1)) if m else {}
        self.res["env"], self.res["steps"]["env"] = env, rec
        if not self.ns.cpu and not env.get("cuda_available"):
            raise SystemExit("gpu_check: CUDA is not available here (use --cpu --tiny for the CPU rehearsal)")

    def start_data(self):
        if self.data == "digits":
            self.res["steps"]["data"] = {"status": "ok", "seconds": 0.0, "note": "scikit-learn digits (no CIFAR archive)"}
            return None
        src = self.data
        if self.ns.tiny:
            src = _subset_archive(self.data, os.path.join(self.work, "cifar_subset"), TINY_SUBSET)
        return self._start("data", self.py("-m", "semi_usb.cli", "data", "import", src, "--dataset", "cifar10",
                                           "--data_dir", self.flags["data_dir"]))

    def wait_data(self, handle) -> bool:
        if handle is not None:
            spent = time.time() - handle[2]
            rec = self._finish("data", handle, spent + self.budget.slice(self.slice_s("data") - spent))
            rec["source"] = self.data
            self.res["steps"]["data"] = rec
            self.write()
        return self.res["steps"]["data"]["status"] == "ok"

    def tests(self) -> tuple:
        self.env["SEMI_USB_CIFAR_TAR"] = self.data if self.data != "digits" else ""
        return "tests", self.py("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu_augment.py", "-k", "cuda",
                                "-rfE")

    def bank(self) -> tuple:
        dev = ["--device", "cpu", "--classes", "10", "100", "--sizes", "128", "--reps", "3", "--warmup", "1",
               "--ref-budget", "0.02"] if self.ns.tiny else ["--device", "cuda", "--classes", "10", "100", "1000",
                                                               "--ref-budget", "0.3"]
        return "bank", self.py(os.path.join(BENCH, "bench_bank.py"), *dev, "--json", self.jsonl("bank"),
                               "--out", self.md("bank"))

    def _steps_argv(self, name: str, variants: str, backend: str) -> list:
        size = ["--batches", "1", "--warmup", "1", "--rounds", "2", "--steps", "1", "--profile_steps", "1",
                "--sync_steps", "1"] if self.ns.tiny else ["--batches", "8", "--warmup", "5", "--rounds", "8",
                                                           "--steps", "5", "--profile_steps", "3", "--sync_steps", "5"]
        threads = ["--threads", "1"] if self.ns.cpu else []
        net = ["--net", self.flags.get("net", "cnn_tiny")] if self.ns.cpu else []
        return self.py(os.path.join(BENCH, "bench_steps.py"), "--config", self.configs["semi"], "--variants", variants,
                       "--compile_backend", backend, *size, *threads, *net, "--json", self.jsonl(name),
                       "--out", self.md(name), *self._argv_flags())

    def steps(self) -> tuple:
        """The eager variants, then torch.compile last: if it does not compile within the slice,
        the step is stopped and the eager variants' records (written as measured) remain. CPU
        rehearsal: backend "eager" runs TorchDynamo's capture of the forward, no code generation."""
        if self.ns.tiny:
            return "steps", self._steps_argv("steps", "fp32,bf16+channels_last,compile", "eager")
        return "steps", self._steps_argv("steps", "fp32,bf16,channels_last,bf16+channels_last,compile+bf16+channels_last",
                                         "inductor")

    def pipeline(self) -> tuple:
        size = ["--algorithms", "semi,fixmatch", "--pipelines", "usb,fast", "--steps", "2", "--warmup", "1"] \
            if self.ns.tiny else ["--algorithms", "semi,fixmatch,acr", "--pipelines", "usb,fast,gpu", "--steps", "3000",
                                  "--seconds", "5", "--warmup", "10"]
        return "pipeline", self.py(os.path.join(BENCH, "bench_pipeline.py"), "--config", self.configs["semi"], *size,
                                   "--eval", "--json", self.jsonl("pipeline"), "--out", self.md("pipeline"),
                                   *self._argv_flags())

    def train(self) -> None:
        """Both methods side by side on the fast path, then ``semilearn eval`` of both."""
        limit = max(0.0, min(self.slice_s("train"), self.budget.left() - EVAL_KEEP_S))
        overhead = 20 if self.ns.tiny else 35  # start-up (imports, data, net) and the final evaluation
        window = min(TRAIN_SECONDS, limit - overhead)
        runs, handles = {}, {}
        if window < 10:
            self.res["steps"]["train"] = {"status": "skipped (no time left)", "seconds": 0.0}
            self.write()
            return
        for method in ("semi", "fixmatch"):
            iters, basis = self._iterations(method, window)
            save = os.path.join(self.work, "runs")
            flags = {**self.flags, "save_dir": save, "save_name": method, "resume": "False",
                     **short_schedule(iters), "data_pipeline": "gpu", "semi_usb_bf16": "True",
                     "semi_usb_channels_last": "True", "semi_usb_nonfinite_patience": "0"}
            argv = self.py("-m", "semi_usb.cli", "train", "--algorithm", method, "--config", self.configs[method])
            for k, v in flags.items():
                argv += [f"--{k}", str(v)]
            runs[method] = {"iterations_planned": iters, "basis": basis, "run_dir": os.path.join(save, method),
                            "config": self.configs[method]}
            handles[method] = self._start(f"train_{method}", argv)
        t0 = time.time()
        for method, h in handles.items():
            runs[method]["train"] = self._finish(f"train_{method}", h, limit)
        self.res["train"] = runs
        self.res["steps"]["train"] = {"status": _worst(r["train"]["status"] for r in runs.values()),
                                      "seconds": round(time.time() - t0, 1), "limit_s": round(limit, 1)}
        self.write()
        evals = {}
        for method, r in runs.items():
            ckpt = os.path.join(r["run_dir"], "latest_model.pth")
            summary = os.path.join(r["run_dir"], "summary.json")
            if os.path.isfile(summary):
                with open(summary, encoding="utf-8") as f:
                    s = json.load(f)
                r["summary"] = {k: s.get(k) for k in ("iterations_done", "wall_time_s", "num_train_iter", "head")}
                r["summary"].update(top1=s["final"]["top1"], balanced_acc=s["final"]["balanced_acc"])
            if os.path.isfile(ckpt):
                evals[method] = self._start(f"eval_{method}", self.py(
                    "-m", "semi_usb.cli", "eval", "--checkpoint", ckpt, "--out", os.path.join(self.work, f"eval_{method}.json")))
        t0, eval_limit = time.time(), self.budget.slice(self.slice_s("eval"))
        for method, h in evals.items():
            rec = runs[method]["eval"] = self._finish(f"eval_{method}", h, eval_limit)
            path = os.path.join(self.work, f"eval_{method}.json")
            if rec["status"] == "ok" and os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    e = json.load(f)
                rec.update(it=e["final"]["it"], top1=e["final"]["top1"], balanced_acc=e["final"]["balanced_acc"])
        self.res["steps"]["eval"] = {"status": _worst(runs[m].get("eval", {"status": "skipped (no checkpoint)"})["status"]
                                                      for m in runs), "seconds": round(time.time() - t0, 1)}
        self.write()

    def _iterations(self, method: str, window: float) -> tuple[int, str]:
        """Iterations that fit in ``window`` seconds, from the measured fast-path rate."""
        if self.ns.tiny:
            return TINY_TRAIN_ITERS, "fixed (CPU rehearsal)"
        fast = [r for r in self.records("pipeline") if r["method"] == method and r["pipeline"] == "fast"]
        if fast:
            rate, basis = fast[0]["it_s"], f"{fast[0]['it_s']:.1f} it/s (pipeline, fast path, alone)"
        else:
            steps = [r for r in self.records("steps") if r["variant"] == "bf16+channels_last"]
            rate = 0.5 * steps[0]["methods"][method]["it_s"] if steps else 5.0
            basis = "half the pre-loaded step rate" if steps else "no rate measured: 5 it/s assumed"
        share = 0.6  # two runs share the GPU and the launching CPU threads (a guess; the real count is reported)
        iters = max(52, min(PROTOCOL_ITERS, int(rate * share * window)))
        return iters - iters % 4, f"{basis} x {share} (two runs) x {window:.0f} s"  # the last evaluation at the end

    # ------------------------------------------------------------------ results
    def records(self, name: str) -> list:
        path = self.jsonl(name)
        if not os.path.isfile(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def write(self) -> None:
        self.res["elapsed_s"] = round(self.budget.elapsed(), 1)
        recs = {n: self.records(n) for n in ("bank", "steps", "pipeline")}
        self.res["errors"] = [r for n in recs for r in recs[n] if "error" in r]  # a variant or combination that failed
        recs = {n: [r for r in v if "error" not in r] for n, v in recs.items()}
        self.res["bank"], self.res["pipeline"] = recs["bank"], recs["pipeline"]
        self.res["steps_bench"] = [r for r in recs["steps"] if not r["compile_backend"]]
        self.res["compile"] = [r for r in recs["steps"] if r["compile_backend"]]
        sections = {n: open(self.md(n), encoding="utf-8").read() for n in ("steps", "pipeline", "bank")
                    if os.path.isfile(self.md(n))}
        lines = performance_lines(self.res)
        _atomic(os.path.join(self.out, "results.json"), json.dumps(self.res, indent=1, sort_keys=True))
        _atomic(os.path.join(self.out, "performance_lines.md"), "\n".join(lines) + "\n")
        _atomic(os.path.join(self.out, "summary.md"), summary_markdown(self.res, lines, sections))

    def main(self) -> int:
        try:
            env = self._start("env", self.py(os.path.join(BENCH, "gpu_check_env.py"), "--carry", self.ns.carry))
            data = self.start_data()  # in the background: the tests and the bank need no data set
            self.env_probe(env)
            self.group([self.tests(), self.bank()])
            if self.wait_data(data):
                self.group([self.steps(), self.pipeline()])
                self.train()
        except Stopped:
            self.res["stopped"] = "stopped from outside (signal)"
        finally:
            for p in self.procs:
                self._stop(p)
            self.res["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
            self.write()
            if not self.ns.keep_work and not self.ns.work_given:
                shutil.rmtree(self.work, ignore_errors=True)
        print("\n".join(["", "----- lines for results/performance.md -----",
                         *performance_lines(self.res), "", f"gpu_check: wrote {self.out}"]))
        return 0


def short_schedule(iters: int) -> dict:
    """The protocol's schedule scaled to ``iters`` iterations: ACR's 5 of 256 epochs, SeMi's
    5,120-iteration warm-up (5 epochs of 1,024), four evaluations and checkpoints."""
    epochs = max(1, min(256, iters // 8))
    return {"num_train_iter": iters, "epoch": epochs, "acr_est_epoch": max(1, round(5 * epochs / 256)),
            "semi_warmup_iter": max(1, round(5120 * iters / PROTOCOL_ITERS)), "num_eval_iter": max(1, iters // 4),
            "num_log_iter": max(1, iters // 20)}


def _subset_archive(src: str, dest: str, keep: dict) -> str:
    """The first ``keep[split]`` images of each class of a ``train/<class>/*`` + ``test/<class>/*``
    archive, extracted to ``dest`` (an image folder for ``semilearn data import``)."""
    seen: dict = {}
    with tarfile.open(src) as tar:
        chosen = []
        for m in tar:
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 3 and parts[0] in keep:
                key = (parts[0], parts[1])
                seen[key] = seen.get(key, 0) + 1
                if seen[key] <= keep[parts[0]]:
                    chosen.append(m)
        tar.extractall(dest, members=chosen, filter="data")
    return dest


def _pytest_counts(text: str) -> dict:
    return {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed)", text)}


def _worst(statuses) -> str:
    statuses = list(statuses)
    return next((s for s in statuses if s != "ok"), "ok") if statuses else "skipped"


def _atomic(path: str, text: str) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output folder (created; its files are rewritten)")
    p.add_argument("--cpu", action="store_true", help="run every step on the CPU (CUDA hidden)")
    p.add_argument("--tiny", action="store_true", help="tiny net, split and step counts (the CPU rehearsal)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds in all (default 480; --tiny 300); the steps' slices scale with it")
    p.add_argument("--t0", type=float, default=None, help="start time (epoch s) the budget counts from (default now)")
    p.add_argument("--carry", default=os.path.join(REPO, ".carry"), help="the carried folder (archive, source.txt)")
    p.add_argument("--data", default=None, help="CIFAR-10 JPEG archive (default: from the carry folder), or 'digits'")
    p.add_argument("--work", default=None, help="scratch folder (data, runs; default: a new folder in the temp dir,"
                   " removed at the end); keep it outside OUT, which should hold few files")
    p.add_argument("--keep_work", action="store_true")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--wheels_note", default="", help="what the shell script did about the wheels")
    ns = p.parse_args(argv)
    if ns.tiny and not ns.cpu:
        p.error("--tiny is the CPU rehearsal: give --cpu too")
    ns.budget = ns.budget or DEFAULT_BUDGET["tiny" if ns.tiny else "gpu"]
    ns.t0 = ns.t0 or time.time()
    ns.work_given = ns.work is not None
    ns.work = ns.work or tempfile.mkdtemp(prefix="semi_usb_gpu_check.")
    sys.path.insert(0, BENCH)

    def stop(signum, frame):
        raise Stopped()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return Check(ns).main()


if __name__ == "__main__":
    sys.exit(main())
