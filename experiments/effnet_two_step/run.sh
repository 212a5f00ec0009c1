#!/usr/bin/env bash
# Every run of experiments/effnet_two_step/README.md, from the project root (about 50 minutes on
# 2 CPU cores): the default preset on digits, the published B0..B7, the CIFAR-10 subset twice
# (run A trains step 2 only up to phi = 5), the seed-noise checks, then the results are copied
# into experiments/effnet_two_step/results/ (without the study journals and the HTML plots).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-outputs/effnet_two_step}
RESULTS=experiments/effnet_two_step/results
CIFAR=(data=npz data.path=../shared/data/cifar10_subset.npz data.train_size=1024 data.val_size=1000
       evaluator.train_size=null scaling.accuracy=true search.study_name=effnet_cifar)

run() {  # run NAME OVERRIDES...: one search, timed, its printed tables kept in run.log
  local name=$1; shift
  rm -rf "$OUT/$name"; mkdir -p "$OUT/$name"
  { time python -m nas search conf=effnet_grid search.progress=false "$@" \
      "hydra.run.dir=$OUT/$name"; } > "$OUT/$name.log" 2>&1
  uptime >> "$OUT/$name.log"
}

run digits
run official scaling.mode=official search.study_name=effnet_official
run cifar "${CIFAR[@]}"
run cifar_run_a "${CIFAR[@]}" scaling.accuracy_max_phi=5

python experiments/effnet_two_step/seed_noise.py "$OUT/digits" --top 5 --seeds 3
python experiments/effnet_two_step/seed_noise.py "$OUT/cifar_run_a" --top 5 --seeds 3
winner=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['step1']['winner']['point'])" \
  "$OUT/cifar_run_a/scaling.json")
python experiments/effnet_two_step/seed_noise.py "$OUT/cifar_run_a" --seeds 3 --tag long \
  --points "$winner,a1.2_b1.1_g1.15" --set evaluator.epochs=4 data.train_size=2048

for name in digits official cifar cifar_run_a; do
  src=$OUT/$name dst=$RESULTS/$name
  rm -rf "$dst"; mkdir -p "$dst"
  cp "$src"/scaling.json "$src"/scaling.png "$src"/.hydra/config.yaml "$src"/.hydra/overrides.yaml "$dst"/
  cp -r "$src"/family "$dst"/
  for f in pareto.json pareto.png trials.csv archs seed_noise.json seed_noise-long.json; do
    if [ -e "$src/$f" ]; then cp -r "$src/$f" "$dst"/; fi
  done
  cp "$OUT/$name.log" "$dst"/run.log
done
