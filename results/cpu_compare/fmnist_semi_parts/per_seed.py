"""Writes per_seed.md: per arm and seed, the final top-1 (the report's definition: median of
the last 5 evaluations), the spread of those 5 top-1 evaluations (max minus min), and the final
recall of the two largest labeled classes (T-shirt, trouser), from the runs in runs/.

    python per_seed.py [RUNS]     (RUNS: the folder of arms, default runs/ here)
"""
import sys
from pathlib import Path

from semi_usb.report.runs import load_run
from semi_usb.report.scores import FINAL_WINDOW, compute_run_metrics

HERE = Path(__file__).resolve().parent


def main(runs: Path) -> None:
    lines = ["# Per seed", "",
             "Written by `python per_seed.py` from the runs of each arm. Final = median of the last "
             f"{FINAL_WINDOW} evaluations (as in `results.md`); spread = max minus min top-1 of those "
             "evaluations; class recalls are final per-class recalls. All in %.", "",
             "| arm | seed | top-1 final | spread of the last 5 | T-shirt (0) | trouser (1) |",
             "|---|---|---|---|---|---|"]
    for arm in sorted(p for p in runs.iterdir() if p.is_dir()):
        for run_dir in sorted(arm.iterdir()):
            run = load_run(run_dir)
            metrics = compute_run_metrics(run)
            last = [top1 for _, top1 in metrics.curve[-FINAL_WINDOW:]]
            pc = metrics.final_per_class
            lines.append(f"| `{arm.name}/` | {run.seed} | {100 * metrics.final['top1']:.1f} | "
                         f"{100 * (max(last) - min(last)):.1f} | {100 * pc[0]:.0f} | {100 * pc[1]:.0f} |")
    (HERE / "per_seed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "runs")
