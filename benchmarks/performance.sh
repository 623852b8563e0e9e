#!/usr/bin/env bash
# One command for the performance results: step cost of fixmatch / acr / semi (interleaved,
# same batches), the memory-bank operations against a per-sample reference, and the data
# pipelines' it/s. Writes results/performance.md (previous file kept as .prev).
# On a GPU machine it measures wrn_28_2 at the protocol batch (64 labeled, uratio 2).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/performance.md}
[ -f "$out" ] && mv "$out" "$out.prev"
{
  echo "# Performance (produced by benchmarks/performance.sh on $(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "Host: $(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
} > "$out"
PY=${PYTHON:-python}
if $PY -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  PROTO=config/classic_cv_imb/fixmatch_semi/fixmatch_semi_cifar10_lb1500_100_ulb3000_-100_0.yaml
  $PY benchmarks/bench_steps.py --config $PROTO --out "$out"
  $PY benchmarks/bench_bank.py --out "$out"
  $PY benchmarks/bench_pipeline.py --algorithm semi --config $PROTO --steps 300 --out "$out" --multiprocessing_distributed False --gpu 0
else
  $PY benchmarks/bench_steps.py --threads 2 --out "$out"
  $PY benchmarks/bench_bank.py --out "$out"
  $PY benchmarks/bench_pipeline.py --algorithm semi --config config/cpu_compare/cifar10_cnn_tiny_short.yaml --steps 60 --out "$out"
fi
echo "wrote $out"
