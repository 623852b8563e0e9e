#!/usr/bin/env bash
# The blocks of reproduce.sh after main/ reversed, as two lanes of one run at a time, so that
# both cores stay busy: reproduce.sh runs its blocks one after another with --jobs 2, and each
# block of an odd number of runs (all of them here) left one core idle for its last run,
# about 18 minutes a block. The compare commands are reproduce.sh's, with --jobs 1; each
# lane's run folders are its own, so the lanes never share a run.
#   WT=<worktree at 2a9ddd3> bash lanes.sh A   main/ and semi_p07/ consistent (18 runs)
#   WT=<worktree at 2a9ddd3> bash lanes.sh B   semi_p07/ reversed, ablation/, authors/ (21 runs)
#   WT=<worktree at 2a9ddd3> bash lanes.sh C   after A: authors/ semi, acr from seed 2 down, beside B
# Used from 2026-12-02 13:35 UTC on; like reproduce.sh, a lane can be run again after any
# interruption (finished runs are skipped, interrupted ones resume). Then `semilearn report`
# as at the end of reproduce.sh.
set -euo pipefail
cd "${WT:?set WT to the git worktree at commit 2a9ddd3 that trains the runs}"
RUNS=${RUNS:-saved_models/cpu_compare_10k_cosine}
CFG=config/cpu_compare/fmnist_cnn_mid_10k_cosine.yaml
REV=fmnist_lb1500_100_ulb3000_-100
CON=fmnist_lb1500_100_ulb3000_100
run() { semilearn compare --seeds 0,1,2 --jobs 1 --config $CFG "$@"; }
case ${1:-} in
  A)
    run --algorithms fixmatch,daso,abc,acr,semi --setting $CON --save_dir $RUNS/main
    run --algorithms semi --setting $CON --save_dir $RUNS/semi_p07 --p_cutoff 0.7 ;;
  B)
    run --algorithms semi --setting $REV --save_dir $RUNS/semi_p07 --p_cutoff 0.7
    for part in plce oheml ealign; do
      run --algorithms semi --setting $REV --save_dir $RUNS/ablation/no_$part --semi_use_$part False
    done
    run --algorithms fixmatch,acr,semi --setting $REV --save_dir $RUNS/authors \
      --uratio 1 --num_strong_views 2 --include_lb_to_ulb True ;;
  C)
    # from 2026-12-02 22:10 UTC, once lane A is done: lane B's last two methods from the other end
    # (a run the other lane holds is refused its folder's lock and left to it)
    semilearn compare --seeds 2,1,0 --jobs 1 --config $CFG --algorithms semi,acr --setting $REV \
      --save_dir $RUNS/authors --uratio 1 --num_strong_views 2 --include_lb_to_ulb True ;;
  *) echo "lanes.sh: error: name a lane, A, B or C" >&2; exit 2 ;;
esac
