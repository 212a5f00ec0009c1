"""The label-free ensemble's figure of benchmark networks, computed on the real networks and cached.

A screen (``evaluator=screen``) ranks each candidate by the ensemble of
``conf/evaluator/<ensemble>.yaml`` before anything is trained; simulating it on a benchmark
table, or running it end to end, needs that figure for every candidate the sampler proposes.
:class:`EnsembleScores` computes a network's components as ``python -m nas search`` would
(the benchmark's full-size network at initialisation, weights seeded by
``network_seed(seed, identity)``, the scores' batch of the CIFAR-10 subset's training split),
and caches them in a JSONL file keyed by identity and every setting that decides them, with the
CPU-seconds they cost (what a run that reuses them is charged). The components
``experiments/proxy_ground_truth/scores.py`` computed with the same settings are read too,
charged at the seconds of the passes the ensemble needs.

Evaluation seed 0 everywhere: a run's own seed only seeds its sampler (so every sampler and
seed sees the same figure of the same network).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import nas
from nas.measure import compute_scores
from nas.space import make_space

ROOT = Path(__file__).resolve().parents[2]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10_subset.npz"
GROUND_TRUTH = ROOT / "experiments" / "proxy_ground_truth" / "results"
#: Where each benchmark's components are cached (NAS-Bench-201's began with the end-to-end runs).
CACHES = {
    "nb201": ROOT / "experiments" / "end_to_end" / "results" / "cache-scores.jsonl",
    "nas_bench_macro": ROOT
    / "experiments"
    / "search_efficiency"
    / "results"
    / "cache-scores-macro.jsonl",
}
SCORED = {"nb201": "scores-nb201.jsonl", "nas_bench_macro": "scores-macro.jsonl"}
SEED = 0


def build(space: Any, genotype: dict[str, Any], identity: str) -> torch.nn.Module:
    """The network as a search with evaluation seed 0 builds it (``network_seed(0, identity)``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(nas.search.network_seed(SEED, identity))
        return space.build(genotype, num_classes=10)


class Cache:
    """Rows by identity, appended to a JSONL file; lines with other settings are ignored."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path, self.settings = path, settings
        self.rows: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line) if line.strip() else None
                if row and row.get("settings") == settings:
                    self.rows[row["identity"]] = row

    def get(self, identity: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The cached row of ``identity``, computed and appended first when there is none."""
        if identity not in self.rows:
            row = {"identity": identity, **compute(), "settings": self.settings}
            row["load"] = os.getloadavg()[0]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            self.rows[identity] = row
        return self.rows[identity]


class EnsembleScores:
    """The ensemble ``evaluator`` (``conf/evaluator/<evaluator>.yaml``) on ``bench``'s networks."""

    def __init__(self, bench: str, evaluator: str = "ensemble") -> None:
        torch.set_num_threads(1)
        config = nas.compose([f"evaluator={evaluator}"]).evaluator
        self.bench = bench
        self.components: list[str] = list(config.scores)
        self.aggregate = str(config.aggregate)
        self.size = int(config.reference)
        self.space = make_space(bench)
        self.data = nas.load_data(name="npz", path=str(CIFAR), resolution=32, val_fraction=0.2)
        self.batch_size = int(config.batch_size)
        settings = {
            "scores": self.components,
            "batch_size": self.batch_size,
            "seed": SEED,
            "val_fraction": 0.2,
        }
        self.cache = Cache(CACHES[bench], settings)
        passes = {nas.measure.SCORES[s].group for s in self.components}
        scored = GROUND_TRUTH / SCORED[bench]
        if scored.exists():  # scores.py's rows: the same network, images, batch and seed
            for line in scored.read_text().splitlines():
                row = json.loads(line)
                if row["identity"] not in self.cache.rows and "pass_seconds" in row:
                    self.cache.rows[row["identity"]] = {
                        "identity": row["identity"],
                        "values": {s: row["scores"][s] for s in self.components},
                        "cpu_seconds": sum(row["pass_seconds"][p] for p in passes),
                        "source": "proxy_ground_truth",
                    }
        self._reference: tuple[dict[str, list[float]], float] | None = None

    def row(self, identity: str, genotype: dict[str, Any]) -> dict[str, Any]:
        """``{"values": components, "cpu_seconds": their cost}`` of one network."""

        def compute() -> dict[str, Any]:
            model = build(self.space, genotype, identity)
            start = time.process_time()
            values = compute_scores(
                model, self.data, self.components, batch_size=self.batch_size, seed=SEED
            )
            return {"values": values, "cpu_seconds": time.process_time() - start}

        return self.cache.get(identity, compute)

    def reference(self) -> tuple[dict[str, list[float]], float]:
        """The reference population's components (the networks ``EnsembleEvaluator.study_state``
        draws for seed 0) and the CPU-seconds they cost."""
        if self._reference is None:
            genotypes: dict[str, dict[str, Any]] = {}
            draw = 0
            while len(genotypes) < self.size:
                genotype = self.space.random_genotype(SEED * 100_003 + draw)
                genotypes.setdefault(self.space.identity(genotype), genotype)
                draw += 1
            values: dict[str, list[float]] = {s: [] for s in self.components}
            cost = 0.0
            for identity, genotype in sorted(genotypes.items()):
                row = self.row(identity, genotype)
                cost += row["cpu_seconds"]
                for s in self.components:
                    values[s].append(row["values"][s])
            self._reference = values, cost
        return self._reference

    def figure(self, values: dict[str, float]) -> float | None:
        """The ensemble's figure of a network's components (None: a dead network)."""
        if not all(math.isfinite(values[s]) for s in self.components):
            return None
        reference, _ = self.reference()
        return nas.measure.ensemble_figures(
            {s: [values[s]] for s in self.components}, reference, self.aggregate
        )[0]

    def threshold(self, keep: float) -> float:
        """The figure the best ``keep`` share of the reference reaches (``ScreenEvaluator``'s)."""
        reference, _ = self.reference()
        own = sorted(
            nas.measure.ensemble_figures(reference, reference, self.aggregate), reverse=True
        )
        return own[max(1, math.ceil(keep * len(own))) - 1]


def main() -> None:
    """Score every network of a benchmark not yet cached, in a seeded random order (resumable:
    a run that stops loses at most the network it was scoring)."""
    import argparse
    import random
    import sys

    sys.path.insert(0, str(ROOT / "experiments" / "proxy_ground_truth"))
    from run import ground_truth  # (identity, genotype, truth) of every distinct network

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("bench", choices=sorted(CACHES))
    parser.add_argument("--ensemble", default="ensemble", help="conf/evaluator/<name>.yaml")
    parser.add_argument("--limit", type=int, help="score at most this many networks")
    args = parser.parse_args()
    scores = EnsembleScores(args.bench, args.ensemble)
    todo = [(i, g) for i, g, _ in ground_truth(args.bench) if i not in scores.cache.rows]
    random.Random(0).shuffle(todo)
    todo = todo[: args.limit]
    print(f"{len(scores.cache.rows)} cached, {len(todo)} to score -> {scores.cache.path}")
    spent = 0.0
    for k, (identity, genotype) in enumerate(todo, start=1):
        spent += scores.row(identity, genotype)["cpu_seconds"]
        if k % 50 == 0 or k == len(todo):
            print(f"[{k}/{len(todo)}] {spent / k:.2f} CPU-s a network", flush=True)


if __name__ == "__main__":
    main()
