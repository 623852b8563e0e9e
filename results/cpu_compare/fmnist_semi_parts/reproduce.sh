#!/usr/bin/env bash
# The experiment of results/cpu_compare/fmnist_semi_parts/ (README.md): what each part of SeMi
# does, on fmnist_10k_cosine's configuration (config/cpu_compare/fmnist_cnn_mid_10k_cosine.yaml:
# Fashion-MNIST-LT, N1=1500, M1=3000, reversed, gamma 100, cnn_mid, 10,000 iterations, cosine;
# prepare the data as its header says), paired seeds 0-4, every run at one commit. Arms, each a
# `semilearn compare` into its own folder of runs:
#   semi/              SeMi as it is (p_cutoff 0.95, one strong view)
#   all_off/           SeMi with every part off (bank, PLCE, OHEML, Embedding Align): ACR with tau1 0
#   oheml_only/        OHEML alone (no bank, no PLCE, no Embedding Align)
#   ealign_only/       Embedding Align alone (no bank, no PLCE, no OHEML)
#   scaled_lu/         no OHEML, but the standard branch's L_u weighted by OHEML's measured scale
#                      (semi_ulb_std_weight = the mean over semi/'s five runs of summary.json's
#                      mechanism.mean.oheml_scale; so it runs after semi/, in the same lane)
#   released_pairing/  SeMi with semi_feature_pairing: released (the authors' script's features)
#   acr_authors/       ACR in the authors' protocol (uratio 1, two strong views, labeled images
#                      in the unlabeled set) with ACR's released mask_l (acr_mask_l, the default)
#   acr_authors_count_lb/  the same with acr_mask_l False (the labeled images counted in the
#                      estimate, as fmnist_10k_cosine's authors/ and probe/ ACR rows were run):
#                      its paired partner
# 40 runs as two lanes of 20 side by side, one run (one torch thread) at a time each. Finished
# runs are skipped and interrupted ones resume: run it again after any interruption. LANE=A or
# LANE=B runs one lane (e.g. one per machine sharing RUNS; B does not need A), LANE=report only
# the report. WT, if set, is the absolute path of a git worktree whose code trains the runs (one
# commit for all; write it in the README); RUNS (default saved_models/fmnist_semi_parts, under WT
# if set) holds the run folders. On a 2-core CPU: 900-2,000 s a run, about 6-11 hours in all.
# Then `semilearn report` writes results.md, paired.md (against semi/: what removing parts
# does; against all_off/: what one part added to none does; against acr_authors_count_lb/)
# and mechanism.md into this folder; per_seed.py writes per_seed.md (final top-1, spread of the
# last five evaluations and the two head classes' recall, per arm and seed).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "${WT:-$HERE/../../..}"
RUNS=${RUNS:-saved_models/fmnist_semi_parts}
CFG=config/cpu_compare/fmnist_cnn_mid_10k_cosine.yaml
REV=fmnist_lb1500_100_ulb3000_-100
run() { semilearn compare --seeds 0,1,2,3,4 --jobs 1 --config $CFG --setting $REV "$@"; }
semi() { local arm=$1; shift; run --algorithms semi --save_dir $RUNS/$arm "$@"; }
oheml_scale() {  # the mean OHEML scale of semi/'s five runs (their summary.json, mechanism section)
  python3 - "$RUNS/semi" <<'PY'
import json, pathlib, sys
runs = [p for p in sorted(pathlib.Path(sys.argv[1]).rglob("summary.json")) if "logs" not in p.parts]
if len(runs) != 5:
    sys.exit(f"reproduce.sh: error: {len(runs)} of semi/'s 5 runs have finished; scaled_lu needs all five")
scales = [json.loads(p.read_text())["mechanism"]["mean"]["oheml_scale"] for p in runs]
print(f"{sum(scales) / len(scales):.3f}")
PY
}
lane_A() {
  semi semi
  semi oheml_only --semi_use_bank False --semi_use_plce False --semi_use_ealign False
  semi ealign_only --semi_use_bank False --semi_use_plce False --semi_use_oheml False
  semi scaled_lu --semi_use_oheml False --semi_ulb_std_weight "$(oheml_scale)"
}
lane_B() {
  semi all_off --semi_use_bank False --semi_use_plce False --semi_use_oheml False --semi_use_ealign False
  semi released_pairing --semi_feature_pairing released
  run --algorithms acr --save_dir $RUNS/acr_authors --uratio 1 --num_strong_views 2 --include_lb_to_ulb True
  run --algorithms acr --save_dir $RUNS/acr_authors_count_lb --uratio 1 --num_strong_views 2 \
    --include_lb_to_ulb True --acr_mask_l False
}
report() {
  semilearn report $RUNS --out $HERE --reference $RUNS/semi --reference $RUNS/all_off \
    --reference $RUNS/acr_authors_count_lb
  python3 "$HERE/per_seed.py" "$RUNS"
}
later="once the other lane is done too: LANE=report $0"
case ${LANE:-both} in
  A) lane_A; echo "lane A done; $later" ;;
  B) lane_B; echo "lane B done; $later" ;;
  report) report ;;
  both) lane_A & a=$!; lane_B & b=$!; rc=0; wait $a || rc=1; wait $b || rc=1; [ $rc = 0 ] || exit 1
        report ;;
  *) echo "reproduce.sh: error: LANE must be A, B, report or unset (both), not '$LANE'" >&2; exit 2 ;;
esac
