#!/usr/bin/env bash
# Keeps the finished runs of this comparison in git, so that it survives a lost machine.
#   sync.sh collect [RUNS]   copy each finished run (it has summary.json) of RUNS into runs/:
#                            config.yaml, summary.json, eval_history.jsonl, versions.json, log.txt
#                            (no checkpoints; the t-SNE features stay in RUNS)
#   sync.sh restore [RUNS]   copy runs/ into RUNS where RUNS lacks a run, so that reproduce.sh
#                            skips what is finished (compare skips a folder with summary.json
#                            whose config.yaml matches) and trains only the rest
# RUNS defaults to saved_models/cpu_compare_10k_cosine (reproduce.sh's). `semilearn report
# runs/*` (or over RUNS) writes the tables.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE/../../.."
mode=${1:?usage: sync.sh collect|restore [RUNS]}
RUNS=${2:-saved_models/cpu_compare_10k_cosine}
case $mode in
  collect)
    find "$RUNS" -name summary.json -not -path '*/logs/*' | sort | while read -r s; do
      run=$(dirname "$s"); rel=${run#"$RUNS"/}
      mkdir -p "$HERE/runs/$rel"
      for f in config.yaml summary.json eval_history.jsonl versions.json log.txt; do
        [ -f "$run/$f" ] && cp "$run/$f" "$HERE/runs/$rel/$f"
      done
      echo "collected $rel"
    done ;;
  restore)
    [ -d "$HERE/runs" ] || exit 0
    find "$HERE/runs" -name summary.json | sort | while read -r s; do
      run=$(dirname "$s"); rel=${run#"$HERE/runs"/}
      if [ ! -e "$RUNS/$rel" ]; then mkdir -p "$RUNS/$rel" && cp "$run"/* "$RUNS/$rel/" && echo "restored $rel"; fi
    done ;;
  *) echo "sync.sh: error: unknown mode $mode (collect or restore)" >&2; exit 2 ;;
esac
