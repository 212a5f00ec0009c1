#!/usr/bin/env bash
# The default MBConv preset twice with the same seed: early stopping of dominated trials on (the
# default) and off. Writes the run directories under experiments/mbconv_pareto/runs/ and prints
# the comparison (python experiments/mbconv_pareto/compare.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/mbconv_pareto/runs
rm -rf "$out"
for mode in on off; do
  enabled=true; [ "$mode" = off ] && enabled=false
  start=$(date +%s)
  python -m nas search conf=mbconv_pareto search.study_name="mbconv_pareto_es_$mode" \
    search.early_stop.enabled=$enabled hydra.run.dir="$out/$mode"
  echo $(( $(date +%s) - start )) > "$out/$mode/wall_seconds"
done
python experiments/mbconv_pareto/compare.py
