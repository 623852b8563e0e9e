"""Writes simpro_pi_ulb.json: SimPro's estimate of the unlabeled class distribution
(``simpro_state.pi_ulb``, in %) at the end of each of its six runs here, read from the runs'
``latest_model.pth`` (not kept in runs/), beside the true shares of the unlabeled set.

    python simpro_pi_ulb.py RUNS_MAIN     (RUNS_MAIN: reproduce.sh's RUNS/main, with checkpoints)
"""
import json
import os
import sys

import torch

CLASSES = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
CONSISTENT = [3000, 1798, 1078, 646, 387, 232, 139, 83, 50, 30]  # M1 = 3000, gamma 100
COUNTS = {"fmnist_lb1500_100_ulb3000_100": CONSISTENT, "fmnist_lb1500_100_ulb3000_-100": CONSISTENT[::-1]}


def main(runs: str) -> None:
    true = {k: [round(100 * x / sum(c), 1) for x in c] for k, c in COUNTS.items()}
    found = {}
    for setting in COUNTS:
        for seed in (0, 1, 2):
            name = f"fixmatch_simpro_{setting}_{seed}"
            ck = torch.load(os.path.join(runs, name, "latest_model.pth"), map_location="cpu", weights_only=False)
            if ck["it"] != 10000:
                sys.exit(f"simpro_pi_ulb.py: error: {name} stopped at iteration {ck['it']}, not 10000")
            found[name] = [round(float(x) * 100, 1) for x in ck["simpro_state"]["pi_ulb"]]
    what = ("SimPro's estimate of the unlabeled class distribution (simpro_state.pi_ulb, in %) at the end of each "
            "run, read from its latest_model.pth (iteration 10,000; not kept in runs/), beside the true shares of "
            "the unlabeled set")
    rows = lambda d: ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in d.items())
    text = (f'{{\n "what": {json.dumps(what)},\n "classes": {json.dumps(CLASSES)},\n "true_share": {{\n{rows(true)}\n }},\n'
            f' "runs": {{\n{rows(found)}\n }}\n}}\n')
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "simpro_pi_ulb.json"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python simpro_pi_ulb.py RUNS_MAIN")
    main(sys.argv[1])
