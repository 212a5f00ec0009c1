"""Step 1 of ``conf=effnet_grid`` ranked by training-free evaluators, held against the ground truth.

For each ``search.seed``: every distinct network of the preset's grid scored as a search with
``evaluator=<name>`` would score it (built under ``nas.search.network_seed(seed, identity)``;
the ensemble's reference population drawn from the space with that seed), the winner (the
best score: the ``accuracy`` rule), its rank and regret in ``results/ground_truth.jsonl``
(networks trained 10x longer, 2 seeds), and the Spearman of the scores with the ground truth on
the networks it holds. The proxy's own figures for the same seeds are in ``results/regret.md``.

    python experiments/effnet_two_step/scores_regret.py --seeds 0 1 2 \\
        --evaluators ensemble score:flops score:naswot score:synflow
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from scipy import stats

import nas
from nas.space import make_space

HERE = Path(__file__).resolve().parent


def evaluator_of(spec: str, seed: int) -> nas.measure.Evaluator:
    """``ensemble`` or ``score:<name>`` with its config file's options and ``seed``."""
    name, _, score = spec.partition(":")
    overrides = [f"evaluator={name}", f"search.seed={seed}"]
    overrides += [f"evaluator.score={score}"] if score else []
    cfg = OmegaConf.to_container(nas.compose(overrides), resolve=True)
    return nas.measure.make_evaluator(**cfg["evaluator"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--evaluators", nargs="+", default=["ensemble"])
    parser.add_argument("--truth", type=Path, default=HERE / "results" / "ground_truth.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg: dict[str, Any] = OmegaConf.to_container(nas.compose(["conf=effnet_grid"]), resolve=True)  # type: ignore[assignment]
    space = make_space(**cfg["space"])
    nets: dict[str, dict[str, Any]] = {}
    for point in space.grid_spec.points:
        nets.setdefault(space.identity({"point": point.key}), {"point": point.key})
    by_net: dict[str, list[float]] = defaultdict(list)
    for line in args.truth.read_text().splitlines():
        row = json.loads(line)
        by_net[row["identity"]].append(row["accuracy"])
    truth = {k: 100 * statistics.fmean(v) for k, v in by_net.items()}
    order = sorted(truth, key=lambda k: -truth[k])
    data_cache: dict[int, Any] = {}

    def data(resolution: int) -> Any:
        if resolution not in data_cache:
            data_cache[resolution] = nas.load_data(**cfg["data"], resolution=resolution)
        return data_cache[resolution]

    print(f"{len(nets)} distinct networks; ground truth holds {len(truth)}\n")
    print("| evaluator | search.seed | winner | truth rank | regret (points) | Spearman | CPU s |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for spec in args.evaluators:
        for seed in args.seeds:
            evaluator = evaluator_of(spec, seed)
            cpu = time.process_time()
            num_classes = data(space.resolution).num_classes
            state = evaluator.study_state(space, data, num_classes=num_classes, seed=seed)
            if state is not None:
                evaluator = evaluator.with_state(state)
            scores = {}
            for identity, genotype in nets.items():
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(nas.search.network_seed(seed, identity))
                    model = space.build(genotype, num_classes=num_classes)
                try:
                    images = data(space.resolution_of(genotype))
                    scores[identity] = evaluator(model, images).accuracy
                except nas.measure.NonFiniteLossError:
                    scores[identity] = float("-inf")
            cpu = time.process_time() - cpu
            winner = max(scores, key=scores.__getitem__)
            held = [k for k in truth if k in scores]
            rho = stats.spearmanr([scores[k] for k in held], [truth[k] for k in held]).statistic
            if winner in truth:
                rank, regret = order.index(winner) + 1, truth[order[0]] - truth[winner]
                place = f"{rank} of {len(order)} | {regret:.2f}"
            else:
                place = "not in the ground truth | -"
            print(
                f"| {spec} | {seed} | {nets[winner]['point']} | {place} | {rho:.3f} | {cpu:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
