#!/usr/bin/env bash
# Reproduces results/cpu_compare/: the five methods, seeds 0-2, on Fashion-MNIST-LT and
# (short) CIFAR-10-LT, consistent and reversed (N1=1500, M1=3000, gamma 100), on a CPU.
# Needs the data prepared as the two configs' headers say. Finished runs are skipped,
# interrupted ones resume. On a 2-core CPU: about 2 h 45 min for Fashion-MNIST (30 runs of
# 5,000 iterations on cnn_mid, 550-660 s each, two at a time) and 11 min for CIFAR-10 (30 runs
# of 300).
set -euo pipefail
cd "$(dirname "$0")/../.."
ALGS=fixmatch,daso,abc,acr,semi
RUNS=saved_models/cpu_compare
for s in fmnist_lb1500_100_ulb3000_-100 fmnist_lb1500_100_ulb3000_100; do
  semilearn compare --algorithms $ALGS --seeds 0,1,2 --jobs 2 --setting $s --save_dir $RUNS \
    --config config/cpu_compare/fmnist_cnn_mid.yaml
done
for s in cifar10_lb1500_100_ulb3000_-100 cifar10_lb1500_100_ulb3000_100; do
  semilearn compare --algorithms $ALGS --seeds 0,1,2 --jobs 2 --setting $s --save_dir $RUNS \
    --config config/cpu_compare/cifar10_cnn_tiny_short.yaml
done
semilearn report $RUNS/*_fmnist_lb1500_* --out results/cpu_compare/fmnist
semilearn report $RUNS/*_cifar10_lb1500_* --out results/cpu_compare/cifar10
