#!/usr/bin/env bash
# The GPU check: every GPU measurement of the project in one offline command, at most 8 minutes
# on one H100/H200 (start-up included), writing what it has even when a step is slow.
#
#   bash benchmarks/gpu_check.sh --prepare           # here, with network: fill .carry/ (see below)
#   bash benchmarks/gpu_check.sh OUT                 # on the GPU machine: results in OUT
#   bash benchmarks/gpu_check.sh --cpu --tiny OUT    # CPU rehearsal of every step (a few minutes)
#
# --prepare fills the ignored folder .carry/ (about 25 MiB; the tree travels with it, 64 MiB at
# most): wheels/ (semilearn 0.3.2 and what the GPU machine lacks, for its Python 3.12, by
# ../shared/tools/gpu-wheels.sh), cifar10-jpeg.tar.gz (copied from ../shared/data or
# $SEMI_USB_CIFAR_TAR) and source.txt (the commit). The run installs the wheels into a temporary
# --target folder (a missing wheel folder is fine where semilearn is installed, e.g. --cpu here),
# then benchmarks/gpu_check.py runs the steps, each in its own time slice: the CUDA-only tests,
# the memory-bank operations, step time of fixmatch / acr / semi (fp32, bf16, channels_last,
# torch.compile), the data pipelines (USB's, `data_pipeline: gpu`, the fast path), and short
# training runs of SeMi and FixMatch with evaluation. OUT gets summary.md, performance_lines.md
# (the lines for results/performance.md, also printed at the end), results.json and log.txt.
# Options after the mode: --carry DIR (default .carry), --budget SECONDS (default 480; --tiny
# 300), --data ARCHIVE|digits, --work DIR and --keep_work (scratch: data, runs), --python PY.
# Environment: PYTHON (default python3), GPU_WHEELS_SH, SEMI_USB_CIFAR_TAR.
set -uo pipefail
t0=$(date +%s.%N)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
carry=.carry
prepare=0
cpu=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) prepare=1 ;;
    --carry) carry=${2:?--carry needs a folder}; shift ;;
    --python) PY=${2:?--python needs a command}; shift ;;
    --cpu) cpu=1; args+=(--cpu) ;;
    *) args+=("$1") ;;
  esac
  shift
done

if [ "$prepare" = 1 ]; then
  set -e
  wheels_sh=$(readlink -f "${GPU_WHEELS_SH:-../shared/tools/gpu-wheels.sh}")
  tar_src=${SEMI_USB_CIFAR_TAR:-../shared/data/cifar10-jpeg.tar.gz}
  [ -f "$wheels_sh" ] || { echo "gpu_check: $wheels_sh not found (set GPU_WHEELS_SH)" >&2; exit 2; }
  [ -f "$tar_src" ] || { echo "gpu_check: CIFAR-10 archive $tar_src not found (set SEMI_USB_CIFAR_TAR)" >&2; exit 2; }
  mkdir -p "$carry/wheels"
  abs=$(cd "$carry" && pwd)
  # gpu-wheels.sh notes its folder in ./.git/info/exclude: run it where that is harmless
  # (.carry/ is in .gitignore; a worktree's .git is a file).
  tmp=$(mktemp -d)
  mkdir -p "$tmp/.git/info"
  (cd "$tmp" && bash "$wheels_sh" "$abs/wheels")
  rm -rf "$tmp"
  install -m 644 "$tar_src" "$carry/cifar10-jpeg.tar.gz"
  { git describe --always --dirty 2>/dev/null || echo unknown; } > "$carry/source.txt"
  tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  extra=$(du -sb "$carry" | cut -f1)
  total=$(( (tree + extra) / 1048576 ))
  echo "gpu_check: $carry holds $(( extra / 1048576 )) MiB; with the tree $total MiB (limit 64 MiB)"
  [ "$total" -lt 64 ] || { echo "gpu_check: too large to travel" >&2; exit 2; }
  echo "On the GPU machine (carry $carry), from the repository root:"
  echo "  bash benchmarks/gpu_check.sh \"\$OUT/gpu_check\""
  exit 0
fi

[ ${#args[@]} -gt 0 ] || { echo "usage: bash benchmarks/gpu_check.sh [--prepare | [--cpu --tiny] OUT]" >&2; exit 2; }
note=""
if ls "$carry"/wheels/*.whl >/dev/null 2>&1; then
  site=$(mktemp -d "${TMPDIR:-/tmp}/semi_usb_site.XXXXXX")
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      "$carry"/wheels/*.whl; then
    note="installed $(ls "$carry"/wheels/*.whl | wc -l) wheels from $carry/wheels into $site"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  elif [ "$cpu" = 1 ]; then
    note="the wheels in $carry/wheels do not install with $PY (built for the GPU machine's Python): this environment's packages used"
  else
    echo "gpu_check: the wheels in $carry/wheels did not install" >&2
    exit 2
  fi
else
  note="no wheels in $carry/wheels: this environment's packages used"
fi
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('semilearn') is None)"; then
  echo "gpu_check: semilearn is not importable with $PY: run bash benchmarks/gpu_check.sh --prepare and carry $carry" >&2
  exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
echo "gpu_check: $note"
exec "$PY" benchmarks/gpu_check.py --t0 "$t0" --carry "$carry" --python "$PY" --wheels_note "$note" "${args[@]}"
