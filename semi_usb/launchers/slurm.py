"""``semilearn compare --launcher slurm``: one SLURM job per run, as a job array, through submitit.

Each job runs the same ``semilearn train`` command as a local run, into the same run folder
(its output goes to ``<save_dir>/logs/<run>.log``, submitit's own files to
``<save_dir>/logs/slurm/``; the job id of each run is recorded in
``<save_dir>/logs/slurm_jobs.json``). Runs that are finished, or whose job is still queued
or running, are not submitted again: the same command submits what is left.

Time limits and preemption follow submitit's checkpoint protocol: SLURM sends ``USR2``
``signal_delay_s`` before the time limit (``--signal``); submitit then calls
:meth:`TrainJob.checkpoint`, which passes the signal on to ``semilearn train`` (that saves
``latest_model.pth`` at the next step boundary and exits with status 75,
:mod:`semi_usb.preempt`) and requeues the job; the requeued job resumes the run exactly
(``--resume True``). The run lock (``<run>/.lock``) keeps two jobs from training one run.

A job with several GPUs trains with DDP on its node, one process per GPU, the rendezvous
taken from SLURM's environment (:func:`rendezvous`).

Options, lowest precedence first: :data:`DEFAULTS`, the config file (``--slurm_config``,
else ``$XDG_CONFIG_HOME/semi_usb/slurm.yaml``, i.e. ``~/.config/semi_usb/slurm.yaml``, if it
exists), the ``--slurm_*`` flags. The file holds the same keys as :data:`DEFAULTS`.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Mapping

from ..errors import ConfigError
from ..layout import console_log_path, is_finished, lock_held, logs_dir, slurm_jobs_path

#: sbatch settings of every job; ``time`` in minutes; ``sbatch``: extra sbatch flags
#: (``--constraint=a100``); ``setup``: shell lines run before the job (``module load cuda``).
DEFAULTS = {"partition": None, "account": None, "qos": None, "time": 24 * 60, "gpus": 1, "cpus": 4,
            "mem_gb": None, "array_parallelism": 64, "signal_delay_s": 120, "max_requeues": 20,
            "sbatch": [], "setup": []}
PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD",
                            "SUSPENDED", "RESIZING"})


# ----------------------------------------------------------------------------- options

def parse_minutes(text) -> int:
    """SLURM's time formats (``90``, ``1:30:00``, ``2-00:00:00``, ``2-12``) -> minutes."""
    s = str(text).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
    if not m:
        raise ConfigError(f"time {text!r} is not minutes, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = m.groups()
    if days is None:  # minutes | minutes:seconds | hours:minutes:seconds
        parts = [int(a)] + [int(x) for x in (b, c) if x is not None]
        h, mi, sec = (0, parts[0], 0) if len(parts) == 1 else (0, *parts) if len(parts) == 2 else parts
    else:  # days-hours[:minutes[:seconds]]
        h, mi, sec = int(a), int(b or 0), int(c or 0)
    total = int(days or 0) * 1440 + h * 60 + mi + (1 if sec else 0)
    if total < 1:
        raise ConfigError(f"time {text!r} must be at least one minute")
    return total


def config_path(explicit: str | None, env: Mapping[str, str] = os.environ) -> str | None:
    """The config file to read: ``explicit`` (must exist), else the user's default if present."""
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigError(f"SLURM config file not found: {explicit}")
        return explicit
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    default = os.path.join(base, "semi_usb", "slurm.yaml")
    return default if os.path.isfile(default) else None


def load_config(path: str | None) -> dict:
    """The keys of a SLURM config file (YAML mapping of :data:`DEFAULTS`' keys); {} without one."""
    if path is None:
        return {}
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"SLURM config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"SLURM config file {path} must be a mapping of {', '.join(DEFAULTS)}")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in SLURM config file {path} (known: {', '.join(DEFAULTS)})")
    return data


def resolve_options(file_values: Mapping, flags: Mapping) -> dict:
    """DEFAULTS < config file < command line (flags that are None are not given); checked."""
    opts = dict(DEFAULTS)
    opts.update(file_values)
    opts.update({k: v for k, v in flags.items() if v is not None})
    opts["time"] = parse_minutes(opts["time"])
    for key in ("gpus", "cpus", "array_parallelism", "signal_delay_s", "max_requeues"):
        try:
            opts[key] = int(opts[key])
        except (TypeError, ValueError):
            raise ConfigError(f"SLURM option {key} must be an integer, got {opts[key]!r}") from None
        if opts[key] < (0 if key in ("gpus", "max_requeues") else 1):
            raise ConfigError(f"SLURM option {key} must be {'>= 0' if key in ('gpus', 'max_requeues') else '>= 1'}, "
                              f"got {opts[key]}")
    for key in ("sbatch", "setup"):
        if isinstance(opts[key], str):
            opts[key] = shlex.split(opts[key]) if key == "sbatch" else [opts[key]]
    return opts


def executor_parameters(opts: Mapping, job_name: str) -> dict:
    """submitit ``SlurmExecutor.update_parameters`` keywords for these options."""
    params = {"job_name": job_name, "time": opts["time"], "nodes": 1, "ntasks_per_node": 1,
              "cpus_per_task": opts["cpus"], "array_parallelism": opts["array_parallelism"],
              "signal_delay_s": opts["signal_delay_s"], "stderr_to_stdout": True}
    for key in ("partition", "account", "qos"):
        if opts.get(key):
            params[key] = opts[key]
    if opts.get("gpus"):
        params["gpus_per_node"] = opts["gpus"]
    if opts.get("mem_gb"):
        params["mem"] = f"{opts['mem_gb']}GB"
    if opts.get("setup"):
        params["setup"] = list(opts["setup"])
    extra = {}
    for flag in opts.get("sbatch") or []:
        key, _, value = flag.lstrip("-").partition("=")
        extra[key] = value if value else True
    if extra:
        params["additional_parameters"] = extra
    return params


def add_arguments(p) -> None:
    """The ``--slurm_*`` flags of ``semilearn compare`` (None: from the config file or DEFAULTS)."""
    g = p.add_argument_group("SLURM (--launcher slurm)", "defaults: --slurm_config FILE, else "
                             "~/.config/semi_usb/slurm.yaml; a flag overrides the file")
    g.add_argument("--slurm_config", metavar="FILE", help="YAML file with the keys below (without slurm_)")
    g.add_argument("--slurm_partition")
    g.add_argument("--slurm_account")
    g.add_argument("--slurm_qos")
    g.add_argument("--slurm_time", help="time limit of a job: minutes or [D-]HH:MM:SS (default 24:00:00); "
                   "a job that reaches it saves, requeues and resumes")
    g.add_argument("--slurm_gpus", type=int, help="GPUs per job (default 1; >1: DDP on one node)")
    g.add_argument("--slurm_cpus", type=int, help="CPUs per job (default 4)")
    g.add_argument("--slurm_mem_gb", type=float, help="memory per job (default: the partition's)")
    g.add_argument("--slurm_array_parallelism", type=int, help="jobs of the array running at once (default 64)")
    g.add_argument("--slurm_signal_delay_s", type=int, help="seconds between the warning signal and the "
                   "time limit (default 120)")
    g.add_argument("--slurm_sbatch", action="append", metavar="FLAGS",
                   help="extra sbatch flags, e.g. '--constraint=a100 --exclude=node3' (repeatable)")
    g.add_argument("--wait", action="store_true", help="wait until every submitted job has left the queue")


def options(ns) -> dict:
    flags = {k[len("slurm_"):]: v for k, v in vars(ns).items() if k.startswith("slurm_") and k != "slurm_config"}
    if flags.get("sbatch"):
        flags["sbatch"] = [f for chunk in flags["sbatch"] for f in shlex.split(chunk)]
    return resolve_options(load_config(config_path(ns.slurm_config)), flags)


# ----------------------------------------------------------------------------- in the job

def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[03-05,07],cpu1`` -> ``gpu03``."""
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ValueError(f"cannot read SLURM node list {nodelist!r}")
    prefix, ranges = m.groups()
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "")


def job_gpus(env: Mapping[str, str]) -> int:
    """GPUs of this job on its node (SLURM_GPUS_ON_NODE, else CUDA_VISIBLE_DEVICES)."""
    if env.get("SLURM_GPUS_ON_NODE", "").isdigit():
        return int(env["SLURM_GPUS_ON_NODE"])
    visible = env.get("CUDA_VISIBLE_DEVICES", "")
    return len([d for d in visible.split(",") if d.strip()]) if visible else 0


def rendezvous(env: Mapping[str, str]) -> dict:
    """USB's DDP keys for a job with more than one GPU on its node, from SLURM's environment:
    one process per GPU (``multiprocessing_distributed``; ``semilearn train`` multiplies
    ``world_size`` by the GPUs and numbers the ranks), the master at ``MASTER_ADDR`` (else the
    first host of ``SLURM_JOB_NODELIST``) on ``MASTER_PORT`` (else a port from the job id, so
    that jobs sharing a node do not collide). {} for a job with one GPU or none."""
    if job_gpus(env) <= 1:
        return {}
    host = env.get("MASTER_ADDR") or first_host(env["SLURM_JOB_NODELIST"])
    port = int(env.get("MASTER_PORT") or 15000 + int(env["SLURM_JOB_ID"]) % 20000)
    return {"multiprocessing_distributed": True, "world_size": int(env.get("SLURM_JOB_NUM_NODES", 1)),
            "rank": int(env.get("SLURM_NODEID", 0)), "dist_url": f"tcp://{host}:{port}", "dist_backend": "nccl"}


def tail(path: str, lines: int = 5) -> list:
    """The last ``lines`` lines of a text file ([] if it does not exist)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in f.readlines()[-lines:]]
    except OSError:
        return []


class TrainJob:
    """The callable a job runs: ``semilearn train`` for one run, as a child process.

    ``checkpoint`` is submitit's hook, called (in this process) when SLURM signals the job:
    it passes the signal on, waits for the run to save and exit, and returns the same job
    to requeue (the run folder holds the state; the requeued job resumes it)."""

    def __init__(self, run: dict, log: str, grace_s: float):
        self.run, self.log, self.grace_s = run, log, grace_s

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_proc"}

    def argv(self, env: Mapping[str, str]) -> list:
        run = self.run
        ddp = [f"--{k}={v}" for k, v in rendezvous(env).items()]
        if env.get("SLURM_CPUS_PER_TASK", "").isdigit() and not any("semi_usb_num_threads" in f for f in run["flags"]):
            ddp.append(f"--semi_usb_num_threads={env['SLURM_CPUS_PER_TASK']}")  # the job's CPUs, not the node's
        return [sys.executable, "-m", "semi_usb.cli", "train", "--algorithm", run["algorithm"],
                "--config", run["config"]] + run["flags"] + ddp

    def __call__(self) -> str:
        from ..preempt import PREEMPTED

        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        with open(self.log, "a", encoding="utf-8") as log:
            env = os.environ
            job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if env.get("SLURM_ARRAY_JOB_ID")
                   else env.get("SLURM_JOB_ID"))
            log.write(f"== SLURM job {job} on {os.uname().nodename} "
                      f"(restart {os.environ.get('SLURM_RESTART_COUNT', 0)})\n")
            log.flush()
            self._proc = subprocess.Popen(self.argv(os.environ), stdout=log, stderr=subprocess.STDOUT)
        while self._proc.poll() is None:  # not wait(): checkpoint() may run in a signal handler meanwhile
            time.sleep(1)
        code = self._proc.returncode
        if code == 0:
            return self.run["name"]
        why = ("stopped by a signal (checkpoint saved): run the same compare command to resume it"
               if code == PREEMPTED else f"semilearn train exited with status {code}")
        raise RuntimeError(f"{self.run['name']}: {why}; see {self.log}:\n" + "\n".join(tail(self.log, 10)))

    def checkpoint(self):
        import submitit

        proc = getattr(self, "_proc", None)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGUSR2)
            _wait_exit(proc, self.grace_s)
        if is_finished(self.run["dir"]):
            return None  # finished meanwhile: nothing to requeue
        return submitit.helpers.DelayedSubmission(self)


def _wait_exit(proc, timeout: float) -> None:
    """Wait for ``proc`` to end, then kill it if it has not (its last complete checkpoint
    stays); by ``waitpid``, as ``Popen.wait`` may be blocked in the interrupted frame."""
    deadline = time.time() + timeout
    while True:
        try:
            pid, _ = os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already
            return
        if pid:
            return
        if time.time() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.2)


# ----------------------------------------------------------------------------- scheduler

def parse_squeue(text: str) -> dict:
    """``squeue -h -r -o '%i|%T|%r'`` output -> {job id: (state, reason)}."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0]:
            out[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return out


def queued(job_ids) -> dict:
    """{job id: (state, reason)} of those of ``job_ids`` that SLURM still has queued or running."""
    job_ids = [str(j) for j in job_ids if j]
    ids = sorted({j.split("_")[0] for j in job_ids})
    if not ids:
        return {}
    if shutil.which("squeue") is None:
        raise ConfigError("squeue not found: the SLURM client commands are needed to follow SLURM jobs")
    proc = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", ",".join(ids)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:  # every one of them has left the queue
            return {}
        raise ConfigError(f"squeue failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    wanted = set(job_ids)
    return {j: s for j, s in parse_squeue(proc.stdout).items() if j in wanted}


def read_jobs(save_dir: str) -> dict:
    """{run name: job id} recorded by earlier submissions into ``save_dir``."""
    path = slurm_jobs_path(save_dir)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _record_jobs(save_dir: str, jobs: dict) -> None:
    from ..checkpoint import atomic_json_dump

    recorded = read_jobs(save_dir)
    recorded.update(jobs)
    atomic_json_dump(recorded, slurm_jobs_path(save_dir))


# ----------------------------------------------------------------------------- submit

def to_submit(runs: list, save_dir: str, echo=print) -> list:
    """The runs that are neither finished nor held by a job SLURM still has (or by a process
    here: the run lock)."""
    recorded = read_jobs(save_dir)
    active = queued(recorded[r["name"]] for r in runs if r["name"] in recorded)
    out = []
    for r in runs:
        job = recorded.get(r["name"])
        if is_finished(r["dir"]):
            echo(f"skip {r['name']} (finished)")
        elif job in active:
            echo(f"skip {r['name']} (job {job} {active[job][0].lower()})")
        elif os.path.isdir(r["dir"]) and lock_held(r["dir"]):
            echo(f"skip {r['name']} (a process is training it: its lock is held)")
        else:
            out.append(r)
    return out


def submit(runs: list, opts: Mapping, save_dir: str, echo=print) -> dict:
    """Submit one job per run (an array when there are several); returns {run name: job id}."""
    if not runs:
        return {}
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install -e '.[slurm]'") from None
    missing = [c for c in ("sbatch", "srun", "squeue", "scontrol") if shutil.which(c) is None]
    if missing:
        raise ConfigError(f"--launcher slurm needs the SLURM commands, and {', '.join(missing)} is not on PATH")
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    log_dir = logs_dir(save_dir)
    slurm_dir = os.path.join(log_dir, "slurm")
    before = {d: set(os.listdir(d)) if os.path.isdir(d) else None for d in (save_dir, log_dir, slurm_dir)}
    executor = submitit.SlurmExecutor(folder=os.path.join(slurm_dir, "%j"), max_num_timeout=opts["max_requeues"])
    executor.update_parameters(**executor_parameters(opts, job_name=f"semilearn:{os.path.basename(os.path.abspath(save_dir))}"))
    grace = max(opts["signal_delay_s"] - 15, 10)
    calls = [TrainJob(r, console_log_path(log_dir, r["name"]), grace) for r in runs]
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's stderr: one line below
            with executor.batch():
                jobs = [executor.submit(c) for c in calls]
    except (FailedJobError, FailedSubmissionError) as exc:
        _remove_new(before)
        raise ConfigError(f"sbatch refused the jobs: {_sbatch_error(exc)}") from None
    ids = {r["name"]: j.job_id for r, j in zip(runs, jobs)}
    _record_jobs(save_dir, ids)
    for name, job_id in ids.items():
        echo(f"submitted {name} as job {job_id}")
    return ids


def _remove_new(before: dict) -> None:
    """Remove what a refused submission left (submitit writes its files before sbatch runs):
    ``before`` maps each folder to its entries then (None: it did not exist)."""
    for folder, entries in reversed(list(before.items())):
        if not os.path.isdir(folder):
            continue
        if entries is None:
            shutil.rmtree(folder)
        else:
            for new in set(os.listdir(folder)) - entries:
                path = os.path.join(folder, new)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def _sbatch_error(exc) -> str:
    text = getattr(exc, "stderr", None) or getattr(exc, "output", None) or str(exc)
    text = text.decode() if isinstance(text, bytes) else str(text)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(exc)


def wait(job_ids, poll_s: float = 5.0) -> None:
    """Until none of ``job_ids`` is queued or running (requeued jobs count as queued)."""
    job_ids = list(job_ids)
    while queued(job_ids):
        time.sleep(poll_s)


def main(runs: list, ns) -> int:
    """``compare --launcher slurm``: submit what is left; with ``--wait``, wait and count."""
    opts = options(ns)
    ids = submit(to_submit(runs, ns.save_dir), opts, ns.save_dir)
    if not ns.wait:
        print(f"{len(ids)} job(s) submitted; follow them with the same command and --status")
        return 0
    wait(read_jobs(ns.save_dir).get(r["name"]) for r in runs)
    done = sum(is_finished(r["dir"]) for r in runs)
    print(f"{done}/{len(runs)} runs finished; see them with the same command and --status")
    return 0 if done == len(runs) else 1
