#!/usr/bin/env bash
# Keeps this experiment's finished runs in git, in runs/ beside this script, so that it
# survives a lost machine: fmnist_10k_cosine/sync.sh's `collect` and `restore`, with RUNS
# defaulting to reproduce.sh's saved_models/fmnist_semi_parts (relative to the repository root;
# with WT, pass WT's absolute RUNS).
#   sync.sh collect [RUNS]   copy each finished run of RUNS into runs/ (no checkpoints)
#   sync.sh restore [RUNS]   copy runs/ into RUNS where RUNS lacks a run, so that reproduce.sh
#                            skips what is finished
HERE="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 1 ] || { echo "usage: sync.sh collect|restore [RUNS]" >&2; exit 2; }
exec bash "$HERE/../fmnist_10k_cosine/sync.sh" "$1" \
  "${2:-saved_models/fmnist_semi_parts}" "$HERE/runs"
