"""Hold ``conf=effnet_grid`` winners against the step-1 ground truth of ``ground_truth.py``.

    python experiments/effnet_two_step/regret.py results/ground_truth.jsonl RUN_DIR [RUN_DIR ...]

Prints the ground truth's ranking (mean over seeds, best first, with the points of each network
and whether α = 1), then for each run directory (a finished ``python -m nas search
conf=effnet_grid``) its winner, the winner's rank in the ground truth and its regret: the best
ground-truth mean minus the winner's, in accuracy points. Also, over the run's own step 1, the
Spearman correlation of its accuracies with the ground truth.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf
from scipy import stats

from nas.space import make_space


def main(truth_file: str, runs: list[str]) -> None:
    by_net: dict[str, list[float]] = defaultdict(list)
    points: dict[str, list[str]] = {}
    for line in Path(truth_file).read_text().splitlines():
        row = json.loads(line)
        by_net[row["identity"]].append(row["accuracy"])
        points[row["identity"]] = row["points"]
    mean = {k: statistics.fmean(v) for k, v in by_net.items()}
    order = sorted(mean, key=lambda k: -mean[k])
    rank = {k: i + 1 for i, k in enumerate(order)}
    best = mean[order[0]]
    print(f"ground truth: {len(order)} networks, seeds per network {len(by_net[order[0]])}")
    print("| rank | mean % | sd | points | α = 1 |\n|---:|---:|---:|---|---|")
    for k in order[:10]:
        sd = statistics.stdev(by_net[k]) if len(by_net[k]) > 1 else 0.0
        alpha_one = all(p.startswith("a1_") for p in points[k])
        print(
            f"| {rank[k]} | {100 * mean[k]:.2f} | {100 * sd:.2f} | {', '.join(points[k])} | {alpha_one} |"
        )
    print("\n| run | winner | its ground-truth rank | regret (points) | Spearman step 1 vs truth |")
    print("|---|---|---:|---:|---:|")
    for run in runs:
        run_dir = Path(run)
        doc = json.loads((run_dir / "scaling.json").read_text())
        cfg = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
        space = make_space(**cfg["space"])
        winner = doc["step1"]["winner"]["point"]
        key = space.identity({"point": winner})
        seen = {}
        with (run_dir / "trials.csv").open() as fh:
            for r in csv.DictReader(fh):
                if r["state"] == "COMPLETE" and not r["duplicate_of"] and r["accuracy"]:
                    point = json.loads(r["genotype"])["point"]
                    seen[space.identity({"point": point})] = float(r["accuracy"])
        common = [k for k in seen if k in mean]
        rho = stats.spearmanr([seen[k] for k in common], [mean[k] for k in common]).statistic
        print(
            f"| {run_dir.name} | {winner} | {rank.get(key, '?')} | "
            f"{100 * (best - mean.get(key, float('nan'))):.2f} | {rho:.3f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
