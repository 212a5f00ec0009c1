#!/usr/bin/env bash
# Every run of experiments/search_efficiency/README.md, one after another (resumable), from the
# project root; then the summary tables and plots.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=experiments/search_efficiency/results
for device in raspi4 pixel3 fpga gold_6226; do
  python experiments/search_efficiency/bench.py --device $device --seeds 20 --evals 1000 \
    --samplers default nsga2 random --out $R/$device.jsonl
done
python experiments/search_efficiency/bench.py --device raspi4 --seeds 10 --evals 1000 \
  --samplers nsga3 tpe --out $R/raspi4.jsonl
python experiments/search_efficiency/summary.py $R/*.jsonl > $R/summary.md
