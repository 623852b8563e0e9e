#!/usr/bin/env bash
# Reproduces results/cpu_compare/fmnist_10k_cosine/ (issue 16): every method on one learning-rate
# schedule (cosine), Fashion-MNIST-LT (N1=1500, M1=3000, gamma 100), seeds 0-2, 10,000 iterations
# of cnn_mid (config/cpu_compare/fmnist_cnn_mid_10k_cosine.yaml; prepare the data as its header
# says). In this order, each block a `semilearn compare` into its own folder of runs:
#   main/       fixmatch, daso, abc, acr, semi at p_cutoff 0.95, reversed then consistent
#   semi_p07/   semi at p_cutoff 0.7 (the authors' README command), reversed then consistent
#   ablation/   reversed only: semi with PLCE, OHEML, Embedding Align switched off in turn
#   authors/    reversed only: fixmatch, acr, semi in the authors' protocol (uratio 1 with two
#               strong views, labeled images in the unlabeled set)
# Finished runs are skipped and interrupted ones resume, so the script can be run again after
# any interruption. RUNS (default saved_models/cpu_compare_10k_cosine) holds the run folders;
# `semilearn report` over them writes the tables. On a 2-core CPU: about 20 min a run, two at a
# time; 54 runs.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${RUNS:-saved_models/cpu_compare_10k_cosine}
CFG=config/cpu_compare/fmnist_cnn_mid_10k_cosine.yaml
REV=fmnist_lb1500_100_ulb3000_-100
CON=fmnist_lb1500_100_ulb3000_100
run() { semilearn compare --seeds 0,1,2 --jobs 2 --config $CFG "$@"; }
for s in $REV $CON; do
  run --algorithms fixmatch,daso,abc,acr,semi --setting $s --save_dir $RUNS/main
  run --algorithms semi --setting $s --save_dir $RUNS/semi_p07 --p_cutoff 0.7
done
for part in plce oheml ealign; do
  run --algorithms semi --setting $REV --save_dir $RUNS/ablation/no_$part --semi_use_$part False
done
run --algorithms fixmatch,acr,semi --setting $REV --save_dir $RUNS/authors \
  --uratio 1 --num_strong_views 2 --include_lb_to_ulb True
semilearn report $RUNS/main $RUNS/semi_p07 $RUNS/ablation/* $RUNS/authors \
  --out results/cpu_compare/fmnist_10k_cosine
