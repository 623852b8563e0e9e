"""A run SIGKILLed after its first checkpoint and resumed ends bitwise equal to an
uninterrupted run (the resume check of each method's test file: test_cpe.py, test_cdmad.py,
test_simpro.py, test_bacon.py). Real digits runs, a real process killed, the real trainer
resumed in-process."""
from __future__ import annotations

import subprocess
import time
from typing import Callable, Optional

from conftest import REPO, cli
from run_helpers import assert_same_final_state, flags, load
from semi_usb.cli import main


def kill_then_resume(method: str, method_flags: dict, digits_yaml: str, tmp_path,
                     at_kill: Optional[Callable[[dict], None]] = None) -> dict:
    """Train ``method`` uninterrupted, then again in a process SIGKILLed as soon as its first
    checkpoint is on disk, resume that run to the end, and assert both final checkpoints
    equal bitwise. Returns the final checkpoint.

    The runs are :func:`run_helpers.flags`' (12 iterations, 6 an epoch, a checkpoint every 4)
    with ``method_flags`` over them. ``at_kill`` receives the checkpoint the resume starts
    from, to assert that the method's own state had moved by then (else the resume would
    prove nothing about saving it)."""
    assert main(["train", "--algorithm", method] + flags(digits_yaml, tmp_path / "ref", **method_flags)) == 0
    ref = load(tmp_path / "ref" / "run" / "latest_model.pth")

    save_dir = tmp_path / "killed"
    checkpoint = save_dir / "run" / "latest_model.pth"
    proc = subprocess.Popen(cli("train", "--algorithm", method, *flags(digits_yaml, save_dir, **method_flags)),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        killed = proc.poll() is None
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed and checkpoint.exists(), "the run ended (or never wrote a checkpoint) before the kill"
    assert not (save_dir / "run" / "summary.json").exists()
    if at_kill is not None:
        at_kill(load(checkpoint))
    resume = ["train", "--algorithm", method, "--resume", "True"]
    assert main(resume + flags(digits_yaml, save_dir, **method_flags)) == 0
    assert "resumed from" in (save_dir / "run" / "log.txt").read_text()
    out = load(checkpoint)
    assert_same_final_state(ref, out)
    return out
