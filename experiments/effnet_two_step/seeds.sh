#!/usr/bin/env bash
# The default command for search.seed 0, 1, 2, timed (wall and CPU time, then the load average),
# then seed 0 again with one worker; the ground truth of step 1 after them. From the project root.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=experiments/effnet_two_step/results/seeds

run() {  # run NAME OVERRIDES...
  local name=$1; shift
  rm -rf "${SEEDS:?}/$name"; mkdir -p "$SEEDS/$name"
  { uptime; time python -m nas search conf=effnet_grid search.progress=false "$@" \
      "hydra.run.dir=$SEEDS/$name"; uptime; } > "$SEEDS/$name.log" 2>&1
}

for job in "$@"; do
  case $job in
    seed[0-9]) run "$job" "search.seed=${job#seed}" "search.study_name=effnet_grid_$job" ;;
    seed0_quiet) run seed0_quiet search.seed=0 search.study_name=effnet_grid_seed0 ;;
    seed0_1worker) run seed0_1worker search.seed=0 search.study_name=effnet_grid_seed0 search.n_workers=1 ;;
    ground_truth)
      python experiments/effnet_two_step/ground_truth.py --factor 10 --seeds 101 102 \
        --runs $SEEDS/seed0 $SEEDS/seed1 $SEEDS/seed2 --top 15 --others 10 \
        --out experiments/effnet_two_step/results/ground_truth.jsonl \
        >> experiments/effnet_two_step/results/ground_truth.log 2>&1 ;;
  esac
done
