"""A real one-node SLURM cluster for the tests: munged, slurmctld and slurmd of this machine.

Everything lives in one folder (key, sockets, state, spool, logs, ``slurm.conf``); the
daemons listen on free ports and run in the foreground as children of the test process,
so that they end with it and never touch a system-wide installation. No cgroups, no
accounting database: ``squeue``/``scontrol`` and the run folders are what the project
reads. ``AuthInfo=cred_expire=5`` lets a requeued job start again after 5 s (SLURM's
default holds it for 120 s).
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "srun", "sinfo")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])


def missing_binaries() -> list:
    return [b for b in DAEMONS + CLIENTS if shutil.which(b, path=SEARCH_PATH) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(root: str, host: str, cpus: int, user: str, ports: tuple) -> str:
    return f"""\
ClusterName=semiusbtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket,cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """``start()`` the three daemons under ``root``; ``env`` is what a client needs
    (``SLURM_CONF``); ``stop()`` ends them."""

    def __init__(self, root: str, cpus: int | None = None):
        self.root = str(root)
        self.cpus = cpus or os.cpu_count() or 1
        self.host = socket.gethostname().split(".")[0]
        self.conf = os.path.join(self.root, "slurm.conf")
        self.env = {"SLURM_CONF": self.conf, "PATH": SEARCH_PATH}
        self.procs: list = []

    def _daemon(self, *argv) -> None:
        log = open(os.path.join(self.root, argv[0] + ".out"), "w")
        self.procs.append(subprocess.Popen([shutil.which(argv[0], path=SEARCH_PATH), *argv[1:]], stdout=log,
                                           stderr=subprocess.STDOUT, env={**os.environ, **self.env}))

    def start(self, timeout_s: float = 60) -> "SlurmCluster":
        for d in ("state", "spool"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        key = os.path.join(self.root, "munge.key")
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o400), "wb") as f:
            f.write(os.urandom(1024))
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(slurm_conf(self.root, self.host, self.cpus, getpass.getuser(), (_free_port(), _free_port())))
        self._daemon("munged", "-F", "--force", f"--socket={self.root}/munge.socket", f"--key-file={key}",
                     f"--pid-file={self.root}/munged.pid", f"--log-file={self.root}/munged.log",
                     f"--seed-file={self.root}/munged.seed")
        self._wait(lambda: os.path.exists(f"{self.root}/munge.socket"), timeout_s, "munged")
        self._daemon("slurmctld", "-D", "-f", self.conf)
        self._daemon("slurmd", "-D", "-f", self.conf, "-N", self.host)
        self._wait(lambda: self.run("sinfo", "-h", "-o", "%T").stdout.strip() == "idle", timeout_s, "slurmd")
        return self

    def run(self, *argv) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **self.env})

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.time() + timeout_s
        while not ready():
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.time() > deadline:
                self.stop()
                logs = "".join(f"\n--- {n}\n" + _tail(os.path.join(self.root, n))
                               for n in ("munged.out", "munged.log", "slurmctld.out", "slurmctld.log", "slurmd.out",
                                         "slurmd.log"))
                raise RuntimeError(f"{what} did not come up" + logs)
            time.sleep(0.3)

    def stop(self) -> None:
        if self.procs and shutil.which("scancel", path=SEARCH_PATH):
            self.run("scancel", "--full", "-u", getpass.getuser())
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def _tail(path: str, n: int = 15) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(none)\n"


if __name__ == "__main__":  # a cluster to try the README's SLURM section on: python3 tests/slurm_cluster.py DIR
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "slurm_test_cluster")
    os.makedirs(root, exist_ok=True)
    cluster = SlurmCluster(root).start()
    print(f"one-node SLURM cluster up ({cluster.cpus} CPUs); in another shell:\n  export SLURM_CONF={cluster.conf}\n"
          "Ctrl-C (or kill PID) stops it.", flush=True)
    try:
        while all(p.poll() is None for p in cluster.procs):
            time.sleep(1)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        cluster.stop()
