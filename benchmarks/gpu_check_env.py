"""What ``benchmarks/gpu_check.py`` records about the machine: one line ``ENV {json}``.

    python benchmarks/gpu_check_env.py [--carry .carry]

Versions (Python, torch, CUDA, cuDNN, semilearn, torchvision, numpy, Pillow, semi_usb), the
GPU (name, memory, ``nvidia-smi``), the CPU, and the commit of the tree: git where there is
one, else what ``gpu_check.sh --prepare`` wrote into the carry folder (the GPU machine
receives the files, not the repository).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
from importlib import metadata

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
        return m.group(1).strip() if m else ""
    except OSError:
        return ""


def _source(carry: str) -> str:
    try:
        r = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    path = os.path.join(carry, "source.txt")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read().strip() + " (recorded by --prepare)"
    return "unknown"


def environment(carry: str) -> dict:
    with open(os.path.join(REPO, "semi_usb", "__init__.py"), encoding="utf-8") as f:
        v = re.search(r'__version__\s*=\s*"([^"]+)"', f.read())  # without importing the package
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "cuda_available": torch.cuda.is_available(),
           "semilearn": _version("semilearn"), "torchvision": _version("torchvision"), "numpy": _version("numpy"),
           "pillow": _version("pillow"), "semi_usb": v.group(1) if v else None, "cpus": os.cpu_count(),
           "cpu_model": _cpu_model(), "source": _source(carry)}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    try:
        env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                            "--format=csv,noheader"], capture_output=True, text=True,
                                           timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return env


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--carry", default=os.path.join(REPO, ".carry"))
    print("ENV " + json.dumps(environment(p.parse_args().carry)))
