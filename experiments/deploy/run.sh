#!/usr/bin/env bash
# Every run of experiments/deploy/README.md, one after another on one thread (about 15
# CPU-minutes; more wall time on a busy machine). Run from the project root:
#   bash experiments/deploy/run.sh
# Each command's output goes to experiments/deploy/runs/<name>.log; its files to runs/<name>/.
set -euo pipefail
export OMP_NUM_THREADS=1
D=experiments/deploy/runs
mkdir -p "$D"
EFFNET=experiments/effnet_two_step/results/cifar/archs/trial_64.yaml   # conf=effnet_grid's step-1 winner
TEACHER=$D/nb201_search/archs/trial_0.yaml                             # the front's most accurate
SMALL=$D/nb201_search/archs/trial_5.yaml                               # the front's fastest
# The CIFAR-10 subset: 5,000 of its training images, 2,000 of its test images for validation.
COMMON=(data=cifar10_subset data.train_size=5000 train.threads=1 train.progress=false train.lr=0.1)

run() {  # run NAME ARGS...: one `python -m nas train`, logged
  local name=$1; shift
  echo "== $name: python -m nas train $*" | tee "$D/$name.log"
  /usr/bin/time -f "cpu %U s user, %e s wall" python -m nas train "$@" "hydra.run.dir=$D/$name" \
    2>&1 | tee -a "$D/$name.log"
}

# 0. Architectures: a shortened conf=nb201_proxy search as it ran for the figures below (6 trials,
#    the proxy training of 1 epoch on 2,000 images on the reduced network; the preset now
#    estimates accuracy with a training-free ensemble instead).
if [ ! -d "$D/nb201_search/archs" ]; then
  python -m nas search conf=nb201_proxy evaluator=proxy_cifar space.channels=8 space.resolution=16 \
    search.n_trials=6 search.n_workers=1 search.progress=false evaluator.epochs=1 data.train_size=2000 report.plots=false "hydra.run.dir=$D/nb201_search" \
    2>&1 | tee "$D/nb201_search.log"
fi

# 1. Train, with the full report (fp32 and int8 accuracy, params, MACs, latency on this CPU).
run effnet_winner "$EFFNET" "${COMMON[@]}" train.epochs=3
run nb201_teacher "$TEACHER" "${COMMON[@]}" train.epochs=5
run nb201_small "$SMALL" "${COMMON[@]}" train.epochs=4

# 2. Killed mid-epoch (SIGKILL once epoch 1's checkpoint is written and epoch 2 is under way),
#    then the same command again: it resumes and must end with nb201_small's weights.
KILLED=(${SMALL} "${COMMON[@]}" train.epochs=4 train.report.onnx=false train.report.int8=false
        train.report.latency=false "hydra.run.dir=$D/nb201_small_killed")
rm -rf "$D/nb201_small_killed"
python -m nas train "${KILLED[@]}" > "$D/nb201_small_killed.log" 2>&1 &
pid=$!
until [ -f "$D/nb201_small_killed/checkpoint.pt" ] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
sleep 3
kill -9 "$pid"; wait "$pid" || echo "killed: exit $?" | tee -a "$D/nb201_small_killed.log"
python -m nas train "${KILLED[@]}" 2>&1 | tee -a "$D/nb201_small_killed.log"
python experiments/deploy/same_weights.py "$D/nb201_small" "$D/nb201_small_killed" \
  | tee -a "$D/nb201_small_killed.log"

# 3. Distillation from the trained teacher into the small network, two seeds, with and without.
QUIET=(train.report.onnx=false train.report.int8=false train.report.latency=false)
run small_seed1 "$SMALL" "${COMMON[@]}" train.epochs=4 train.seed=1 "${QUIET[@]}"
for seed in 0 1; do
  run "small_kd_seed$seed" "$SMALL" "${COMMON[@]}" train.epochs=4 "train.seed=$seed" "${QUIET[@]}" \
    "train.teacher.arch=$TEACHER" "train.teacher.weights=$D/nb201_teacher/weights.pt"
done

# 4. Pruning the trained small network (no retraining: train.epochs=0 from its weights), one
#    fine-tuning epoch; dense and pruned timed side by side, eager PyTorch and ONNX Runtime.
for method in unstructured structured; do
  for amount in 0.3 0.5 0.7; do
    run "prune_${method}_${amount}" "$SMALL" "${COMMON[@]}" train.epochs=0 \
      "train.weights=$D/nb201_small/weights.pt" "train.prune.method=$method" \
      "train.prune.amount=$amount" train.prune.finetune_epochs=1 train.report.onnx=false \
      train.report.int8=false latency.reference=null latency.max_seconds=1.0
  done
done
python experiments/deploy/summarise.py | tee "$D/summary.md"
