#!/usr/bin/env bash
# Reproduces results/cpu_compare/fmnist_10k/: the five methods, seeds 0-2, on Fashion-MNIST-LT,
# consistent and reversed (N1=1500, M1=3000, gamma 100), at 10,000 iterations of cnn_mid
# (config/cpu_compare/fmnist_cnn_mid_10k.yaml), the budget at which FixMatch has stopped rising.
# Needs the data prepared as the config's header says. Finished runs are skipped, interrupted
# ones resume (this comparison was itself resumed across sessions). On a 2-core CPU: about
# 5 hours (30 runs, two at a time).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=saved_models/cpu_compare_10k
for s in fmnist_lb1500_100_ulb3000_-100 fmnist_lb1500_100_ulb3000_100; do
  semilearn compare --algorithms fixmatch,daso,abc,acr,semi --seeds 0,1,2 --jobs 2 --setting $s \
    --save_dir $RUNS --config config/cpu_compare/fmnist_cnn_mid_10k.yaml
done
semilearn report $RUNS/*_fmnist_lb1500_* --out results/cpu_compare/fmnist_10k
