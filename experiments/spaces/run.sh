#!/usr/bin/env bash
# Short searches over the four new spaces on the CIFAR-10 subset, reduced networks at 32 px:
# 8 trials each for resnet, shufflenet_v2 and mobilenet_v1, 48 for mixed. Run it under the CPU
# lock of this machine: flock /tmp/nas-cpu.lock bash experiments/spaces/run.sh [SPACE ...]
# Writes experiments/spaces/runs/<space>/ (study, trials.csv, pareto.json, archs/) and the
# seconds each run took; then summarize.py prints the README's tables and draws mixed_front.png.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/spaces/runs
data=(data=npz data.path=../shared/data/cifar10_subset.npz data.train_size=4000
      data.val_size=1000 evaluator.epochs=2 space.resolution=32)
declare -A space_args=(
  [resnet]="space.stem=cifar space.width_mult=0.25 space.depths=[[1,2],[1,2],[1,2],[1,2]] search.n_trials=8"
  [shufflenet_v2]="space.stem=cifar space.width_mult=0.25 space.repeats=[[1,2],[2,4],[1,2]] search.n_trials=8"
  [mobilenet_v1]="space.stem=cifar space.resolutions=[24,32] space.widths=[0.25,0.5] search.n_trials=8"
  [mixed]="space.stem=imagenet search.n_trials=48"
)
spaces=("$@")
[ ${#spaces[@]} -eq 0 ] && spaces=(resnet shufflenet_v2 mobilenet_v1 mixed)
for space in "${spaces[@]}"; do
  rm -rf "${out:?}/$space"
  start=$(date +%s)
  # shellcheck disable=SC2086  # the overrides are words
  python -m nas search space="$space" "${data[@]}" ${space_args[$space]} \
    search.study_name="spaces_$space" hydra.run.dir="$out/$space"
  echo $(( $(date +%s) - start )) > "$out/$space/wall_seconds"
done
python experiments/spaces/summarize.py
