#!/usr/bin/env bash
# Does FixMatch still gain from a longer budget? FixMatch alone, seed 0, at twice the
# comparison's budget (config/cpu_compare/fmnist_cnn_mid_10k.yaml: 10,000 iterations, all else
# as in fmnist_cnn_mid.yaml), on both Fashion-MNIST-LT splits; compared with seed 0 of the
# 5,000-iteration comparison in README.md. These are also the 10,000-iteration comparison's
# FixMatch seed-0 runs (same folder). On a 2-core CPU: about 25 min, the two runs at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=saved_models/cpu_compare_10k
pids=()
for s in fmnist_lb1500_100_ulb3000_-100 fmnist_lb1500_100_ulb3000_100; do
  semilearn compare --algorithms fixmatch --seeds 0 --setting $s --save_dir $RUNS \
    --config config/cpu_compare/fmnist_cnn_mid_10k.yaml &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done  # fails if either failed
semilearn report $RUNS/fixmatch_fmnist_lb1500_100_ulb3000_{-100,100}_0 --out results/cpu_compare/fmnist_fixmatch_10k
