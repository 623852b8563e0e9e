"""A scheduler's signal to `semilearn train` (SIGTERM on preemption, SIGUSR2 before a time
limit): the run saves latest_model.pth at the next step boundary and exits with 75; resumed,
it ends exactly where an uninterrupted run ends. Real digits runs, real processes."""
from __future__ import annotations

import re
import signal
import subprocess
import time

from conftest import REPO, cli
from semi_usb.cli import main
from run_helpers import SEMI, assert_same_final_state, digits_cfg, digits_yaml, flags, load  # noqa: F401


def test_sigterm_saves_at_a_step_boundary_and_resume_is_bitwise(digits_yaml, tmp_path):  # noqa: F811
    """SIGTERM (preemption; SIGUSR2, the time-limit warning, takes the same path end to end
    in tests/test_slurm.py)."""
    sig = signal.SIGTERM
    run_flags = dict(SEMI, num_train_iter=100, epoch=1, num_eval_iter=50, num_log_iter=10)
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cli("train", "--algorithm", "semi", "--resume", "True",
                                    *flags(digits_yaml, tmp_path / "a", **run_flags)),
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + 120
        while not re.search(r"it [2-9]0/100", err_path.read_text()) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 75
    text = err_path.read_text()
    stopped = int(re.search(rf"stopped by {sig.name} after iteration (\d+): checkpoint saved", text)[1])
    assert 20 <= stopped < 100, text[-1000:]
    ckpt = load(tmp_path / "a" / "run" / "latest_model.pth")
    assert ckpt["it"] == stopped and not (tmp_path / "a" / "run" / "summary.json").exists()

    assert main(["train", "--algorithm", "semi", "--resume", "True"] + flags(digits_yaml, tmp_path / "a", **run_flags)) == 0
    assert main(["train", "--algorithm", "semi"] + flags(digits_yaml, tmp_path / "b", **run_flags)) == 0
    assert_same_final_state(load(tmp_path / "b" / "run" / "latest_model.pth"),
                            load(tmp_path / "a" / "run" / "latest_model.pth"))
    assert (tmp_path / "a" / "run" / "eval_history.jsonl").read_text() == (
        tmp_path / "b" / "run" / "eval_history.jsonl").read_text()
