#!/usr/bin/env bash
# Keeps the finished runs of this comparison in git, so that it survives a lost machine.
#   sync.sh collect [RUNS]   copy each finished run (it has summary.json) of RUNS into runs/:
#                            config.yaml, summary.json, eval_history.jsonl, versions.json, log.txt
#                            (no checkpoints; the t-SNE features stay in RUNS)
#   sync.sh restore [RUNS]   copy runs/ into RUNS where RUNS lacks a run, so that reproduce.sh
#                            skips what is finished (compare skips a folder with summary.json
#                            whose config.yaml matches) and trains only the rest
# RUNS defaults to saved_models/cpu_compare_10k_cosine (reproduce.sh's); a relative RUNS is
# taken from the repository root. A third argument names the folder kept in git instead of
# this folder's runs/ (another experiment's sync.sh passes its own). `semilearn report runs/*`
# (or over RUNS) writes the tables.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE/../../.."
[ $# -ge 1 ] || { echo "usage: sync.sh collect|restore [RUNS [KEPT]]" >&2; exit 2; }
mode=$1
RUNS=${2:-saved_models/cpu_compare_10k_cosine}
KEPT=${3:-$HERE/runs}
case $mode in
  collect)
    find "$RUNS" -name summary.json -not -path '*/logs/*' | sort | while read -r s; do
      run=$(dirname "$s"); rel=${run#"$RUNS"/}
      mkdir -p "$KEPT/$rel"
      for f in config.yaml summary.json eval_history.jsonl versions.json log.txt; do
        [ -f "$run/$f" ] && cp "$run/$f" "$KEPT/$rel/$f"
      done
      echo "collected $rel"
    done ;;
  restore)
    [ -d "$KEPT" ] || exit 0
    find "$KEPT" -name summary.json | sort | while read -r s; do
      run=$(dirname "$s"); rel=${run#"$KEPT"/}
      if [ ! -e "$RUNS/$rel" ]; then mkdir -p "$RUNS/$rel" && cp "$run"/* "$RUNS/$rel/" && echo "restored $rel"; fi
    done ;;
  *) echo "sync.sh: error: unknown mode $mode (collect or restore)" >&2; exit 2 ;;
esac
