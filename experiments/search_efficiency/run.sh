#!/usr/bin/env bash
# Every run of experiments/search_efficiency/README.md (resumable: a rerun skips what is done),
# from the project root, then the tables and plots:
#   bash experiments/search_efficiency/run.sh          # both queues in parallel, then summary
#   bash experiments/search_efficiency/run.sh fast     # one queue (fast, tpe or summary)
# The fast queue holds the samplers that cost seconds a run, in the order the README needs
# them; Optuna's default TPE has a queue of its own (about 100 s a run: it re-proposes evaluated
# networks, so its runs stop at 2,000 asks).
set -euo pipefail
cd "$(dirname "$0")/../.."
R=experiments/search_efficiency/results
B="python experiments/search_efficiency/bench.py --seeds 20 --evals 1000"
DEVICES="raspi4 pixel3 fpga gold_6226"
fast() {
  for device in $DEVICES; do
    $B --bench nb201 --device $device --samplers default random nsga2 nsga2:population_size=8 \
      --out $R/nb201_$device.jsonl
  done
  $B --bench macro --samplers default random nsga2 nsga2:population_size=8 \
    --out $R/macro_cpu.jsonl
  for device in $DEVICES; do
    $B --bench nb201 --device $device --samplers nsga3 --out $R/nb201_$device.jsonl
  done
  $B --bench macro --samplers nsga3 --out $R/macro_cpu.jsonl
  for device in raspi4 fpga; do  # 10 seeds: a run with early stopping costs 20 s of CPU here
    $B --bench nb201 --device $device --early-stop on --samplers default random --seeds 10 \
      --out $R/nb201_$device.jsonl
  done
}
tpe() {
  # 20 seeds on raspi4, 5 elsewhere: about a minute of CPU a run (TPE_SEEDS=20 for all).
  T="python experiments/search_efficiency/bench.py --evals 1000 --samplers tpe --max-trials 2000"
  $T --seeds 20 --bench nb201 --device raspi4 --out $R/nb201_raspi4.tpe.jsonl
  for device in ${DEVICES#raspi4 }; do
    $T --seeds ${TPE_SEEDS:-5} --bench nb201 --device $device --out $R/nb201_$device.tpe.jsonl
  done
  $T --seeds ${TPE_SEEDS:-5} --bench macro --out $R/macro_cpu.tpe.jsonl
}
summary() {
  python experiments/search_efficiency/summary.py $R/nb201_*.jsonl $R/macro_cpu*.jsonl \
    > $R/summary.md
}
case "${1:-all}" in
  fast) fast >> $R/run_fast.log 2>&1 ;;
  tpe) tpe >> $R/run_tpe.log 2>&1 ;;
  summary) summary ;;
  all)
    fast >> $R/run_fast.log 2>&1 &
    tpe >> $R/run_tpe.log 2>&1 &
    wait
    summary
    ;;
esac
