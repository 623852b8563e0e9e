"""``semilearn compare ... --status``: where every run of a grid stands.

Read from the run folders (``summary.json``: finished; the run lock held: running here;
``latest_model.pth``: the iteration a resume starts from; ``eval_history.jsonl``: the last
evaluation) and, for runs submitted with ``--launcher slurm``, from the scheduler
(``squeue``: pending or running, with the job id recorded at submission). A run that was
started (it has a folder or a job) but is neither finished nor queued nor running has
failed or was stopped: the last lines of its log (``<save_dir>/logs/<run>.log``) say which.
No accounting database (``sacct``) is needed.
"""
from __future__ import annotations

import os
from typing import Mapping, NamedTuple

from .layout import (HistoryLineError, checkpoint_path, console_log_path, is_finished, lock_held, logs_dir,
                     read_history)

STATES = ("finished", "running", "pending", "failed", "not started")


class RunStatus(NamedTuple):
    name: str
    state: str
    job: str | None
    it: int | None  # iterations saved in latest_model.pth
    last_eval: tuple | None  # (it, top1)
    log_tail: list


def status_of(finished: bool, job_state: str | None, locked: bool, started: bool) -> str:
    """One of :data:`STATES` from what the folder and the scheduler say (``job_state``:
    squeue's state of the run's job, None when it is not in the queue)."""
    from .launchers.slurm import PENDING_STATES

    if finished:
        return "finished"
    if job_state is not None:
        return "pending" if job_state in PENDING_STATES else "running"
    if locked:
        return "running"
    return "failed" if started else "not started"


def saved_iteration(run_dir: str) -> int | None:
    """Completed iterations in ``latest_model.pth`` (None without one, or unreadable)."""
    path = checkpoint_path(run_dir)
    if not os.path.isfile(path):
        return None
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # being replaced, truncated: no number rather than no status
        return None
    return int(ckpt.get("it", 0))  # completed iterations (semi_usb.compat stores them, not USB's it + 1)


def last_evaluation(run_dir: str) -> tuple | None:
    """(it, top1) of the last row of ``eval_history.jsonl`` (None without one, or unreadable;
    a torn last line, a row being appended, is passed over)."""
    try:
        rows = read_history(run_dir, strict=False, need=("it", "top1"))
    except (OSError, HistoryLineError):
        return None
    return (int(rows[-1]["it"]), float(rows[-1]["top1"])) if rows else None


def collect(runs: list, save_dir: str, jobs: Mapping[str, str], queue: Mapping[str, tuple]) -> list:
    """A :class:`RunStatus` per run; ``jobs``: {run: job id}, ``queue``: {job id: (state, reason)}."""
    from .launchers.slurm import tail

    out = []
    for r in runs:
        job = jobs.get(r["name"])
        job_state = queue[job][0] if job in queue else None
        started = os.path.isdir(r["dir"]) or job is not None
        state = status_of(is_finished(r["dir"]), job_state, lock_held(r["dir"]) if os.path.isdir(r["dir"]) else False,
                          started)
        log = tail(console_log_path(logs_dir(save_dir), r["name"]), 5) if state == "failed" else []
        out.append(RunStatus(r["name"], state, job, saved_iteration(r["dir"]), last_evaluation(r["dir"]), log))
    return out


def render(statuses: list) -> str:
    """A table of the runs and a count per state; each failed run's log tail under it."""
    width = max([len(s.name) for s in statuses] + [3])
    lines = [f"{'run':<{width}}  {'state':<11}  {'job':<12}  {'saved it':>8}  last eval"]
    for s in statuses:
        ev = f"it {s.last_eval[0]}: top-1 {100 * s.last_eval[1]:.2f}%" if s.last_eval else "-"
        it = "-" if s.it is None else str(s.it)
        lines.append(f"{s.name:<{width}}  {s.state:<11}  {s.job or '-':<12}  {it:>8}  {ev}")
        lines.extend(f"    | {line}" for line in s.log_tail)
    counts = {k: sum(s.state == k for s in statuses) for k in STATES}
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items() if n) + f" ({len(statuses)} runs)")
    return "\n".join(lines)


def main(runs: list, save_dir: str) -> int:
    """Print the status of ``runs``; exit status 0 (even with failed runs: it is a report)."""
    from .launchers.slurm import queued, read_jobs

    recorded = read_jobs(save_dir)
    jobs = {r["name"]: recorded[r["name"]] for r in runs if r["name"] in recorded}
    print(render(collect(runs, save_dir, jobs, queued(jobs.values()) if jobs else {})))
    return 0
