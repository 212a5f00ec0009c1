"""End to end on NAS-Bench-201: real evaluation, the found front judged by full training.

    python experiments/end_to_end/bench.py --methods default nsga2 --devices raspi4 pixel3 \\
        --seeds 0 1 2 --budget 3600

Each run is an Optuna ask/tell loop over the ``nb201`` space, as ``python -m nas search`` runs
it, with *real* evaluation on this CPU and the benchmark's measured latency of ``--device``
(``latency=table``). It stops when the CPU-seconds it paid reach ``--budget``. After every
evaluation it records the CPU-seconds paid so far and the hypervolume of the front it found
(the non-dominated networks by *its own* figure and latency: what the search reports), with
each member's **true** 200-epoch CIFAR-10 accuracy, divided by the true front's (every network
of the table); the reference point is ``search_efficiency``'s headline one (accuracy floor 90%,
the slowest network above it). Methods:

- ``default``: the project's default sampler (``conf/sampler``) with ``conf=nb201_proxy``'s
  evaluator: the label-free ensemble (``conf/evaluator/ensemble.yaml``) of the benchmark's
  full-size network at initialisation, ranked against its 32-network reference population.
- ``screen``: the default sampler with ``evaluator=screen``: the ensemble first, and the
  preset's proxy training (below) only for a network that reaches the reference's top
  ``keep`` (0.25); the others are told to the sampler as pruned.
- ``nsga2``: plain Optuna NSGA-II (Optuna's defaults) with the preset's proxy training on every
  sampled network: ``evaluator=proxy_cifar`` on the reduced network ``space.channels=8
  space.resolution=16`` (``experiments/proxy_ground_truth``'s ``nb201-deep16``: 71 CPU-s a
  network there, Spearman 0.57 against full training on 30 networks).
- ``nsga2_ensemble``: plain Optuna NSGA-II with the default's evaluator (the ensemble on every
  sampled network): the sampler's share of the difference.

What is paid: the CPU-seconds (``time.process_time``) of every evaluation (the score passes
and the training; building a network is not counted), the sampler's own asks and tells, and
for ``default``/``screen`` the reference population's scores once at the start. A network
evaluated before in the same run (or an isomorph) costs nothing and is told as pruned, as
``python -m nas search`` does.

Every evaluation uses evaluation seed 0 (weights ``network_seed(0, identity)``, the scores'
batch, the training order, the reference population) whatever the run's seed, which only
seeds the sampler: so every method and seed sees the same figure for the same network, and the
figures are cached (``results/cache-*.jsonl``, keyed by identity and every setting that
decides the figure) and charged at the CPU-seconds they cost when they were computed. The
ensemble's components also come from ``experiments/proxy_ground_truth/results/scores-nb201.jsonl``
when its settings are these (they are: same images, batch, seed and network), charged at the
seconds of the passes the ensemble needs. One JSON line per (method, device, seed) in
``results/runs.jsonl``; a rerun skips those done. ``summary.py`` makes the table and plot.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments" / "search_efficiency"))

import bench as tables  # noqa: E402  (experiments/search_efficiency/bench.py)
from ensemble_scores import SEED, Cache, EnsembleScores, build  # noqa: E402

import nas  # noqa: E402
from nas.space import make_space  # noqa: E402

CIFAR = ROOT.parent / "shared" / "data" / "cifar10_subset.npz"
RESULTS = HERE / "results"
#: The preset's proxy training (proxy_ground_truth's nb201-deep16; conf/evaluator/proxy_cifar).
PROXY_SPACE = {"channels": 8, "cells": 5, "resolution": 16}
PROXY_OPTIONS = {
    k: v
    for k, v in nas.compose(
        ["conf=nb201_proxy", "evaluator=proxy_cifar", "space.channels=8", "space.resolution=16"]
    ).evaluator.items()
    if k != "name"
} | {"seed": SEED}
METHODS = ("default", "screen", "nsga2", "nsga2_ensemble")
PROXY_SETTINGS = {"space": PROXY_SPACE, "evaluator": PROXY_OPTIONS, "val_fraction": 0.2}


class Evaluation:
    """The real figures of NAS-Bench-201 networks: the ensemble's and the proxy training's."""

    def __init__(self) -> None:
        self.ensemble = EnsembleScores("nb201", "ensemble")  # conf=nb201_proxy's evaluator
        self.small = make_space("nb201", **PROXY_SPACE)
        self.small_data = nas.load_data(
            name="npz", path=str(CIFAR), resolution=PROXY_SPACE["resolution"], val_fraction=0.2
        )
        self.proxy = Cache(RESULTS / "cache-proxy.jsonl", PROXY_SETTINGS)
        self.evaluator = nas.measure.make_evaluator(name="proxy", **PROXY_OPTIONS)

    def trained(self, identity: str, genotype: dict[str, Any]) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            model = build(self.small, genotype, identity)
            start = time.process_time()
            try:
                accuracy = self.evaluator(
                    model, self.small_data, seed=nas.search.network_seed(SEED, identity)
                ).accuracy
            except nas.measure.NonFiniteLossError:
                accuracy = None
            return {"accuracy": accuracy, "cpu_seconds": time.process_time() - start}

        return self.proxy.get(identity, compute)


def run(
    method: str,
    device: str,
    seed: int,
    evaluation: Evaluation,
    table: dict[str, tuple[float, float]],
    *,
    budget: float,
    keep: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    space = make_space("nb201")
    refs = tables.references(table, 90.0)
    truth = tables.true_areas(table, refs)["headline"]
    ref = refs["headline"]
    options = tables.sampler_options("nsga2" if method.startswith("nsga2") else "default")
    sampler = nas.search.make_sampler(options, seed=seed, constrained=False)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    paid = 0.0
    ensemble = evaluation.ensemble
    threshold = ensemble.threshold(keep)
    if method in ("default", "screen", "nsga2_ensemble"):
        paid = ensemble.reference()[1]  # the study's reference population, scored once
    seen: set[str] = set()
    found: list[tuple[float, float, float]] = []  # (figure, latency, true accuracy)
    front: list[tuple[float, float, float]] = []  # the found front, by figure and latency
    points: list[dict[str, float]] = []
    trained = screened = failed = trials = 0
    while paid < budget:
        start = time.process_time()
        trial = study.ask()
        genotype = space.sample(trial)
        paid += time.process_time() - start
        trials += 1
        identity = space.identity(genotype)
        if identity in seen:
            start = time.process_time()
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            paid += time.process_time() - start
            continue
        seen.add(identity)
        accuracy, latency = table[identity]
        figure: float | None = None
        if method in ("default", "screen", "nsga2_ensemble"):
            row = ensemble.row(identity, genotype)
            paid += row["cpu_seconds"]
            figure = ensemble.figure(row["values"])
            if method == "screen" and figure is not None:
                if figure < threshold:
                    screened += 1
                    figure = math.nan  # pruned: not trained, not on the front
                else:
                    trained_row = evaluation.trained(identity, genotype)
                    paid += trained_row["cpu_seconds"]
                    trained += 1
                    figure = trained_row["accuracy"]
        else:
            trained_row = evaluation.trained(identity, genotype)
            paid += trained_row["cpu_seconds"]
            trained += 1
            figure = trained_row["accuracy"]
        start = time.process_time()
        if figure is None:
            failed += 1
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif math.isnan(figure):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, [figure, latency])
            found.append((figure, latency, accuracy))
            if not _dominated(figure, latency, front):
                front = [m for m in front if not _dominated(m[0], m[1], [found[-1]])]
                front.append(found[-1])
        paid += time.process_time() - start
        points.append(
            {
                "cpu_s": round(paid, 2),
                "ratio": tables.area([(acc, lat) for _, lat, acc in front], ref) / truth,
                "trained_ratio": tables.area([(a, lat) for _, lat, a in found], ref) / truth,
                "distinct": len(seen),
            }
        )
        if len(seen) % 25 == 0:
            log(
                f"{method} {device} seed {seed}: {len(seen)} distinct, {paid / 3600:.2f} CPU-h, "
                f"ratio {points[-1]['ratio']:.3f}"
            )
    return {
        "method": method,
        "device": device,
        "seed": seed,
        "budget": budget,
        "keep": keep if method == "screen" else None,
        "sampler": options,
        "distinct": len(seen),
        "trials": trials,
        "trained": trained,
        "screened": screened,
        "failed": failed,
        "points": points,
        "front": sorted(
            ({"latency_ms": lat, "figure": f, "truth": acc} for f, lat, acc in front),
            key=lambda m: m["latency_ms"],
        ),
    }


def _dominated(figure: float, latency: float, found: list[tuple[float, float, float]]) -> bool:
    """Whether another found network is at least as good on both and better on one."""
    return any(
        f >= figure and lat <= latency and (f > figure or lat < latency) for f, lat, _ in found
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["default", "nsga2"])
    parser.add_argument("--devices", nargs="+", default=["raspi4", "pixel3"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=3600.0, help="CPU-seconds a run")
    parser.add_argument("--keep", type=float, default=0.25, help="screen: the share trained")
    parser.add_argument("--out", type=Path, default=RESULTS / "runs.jsonl")
    args = parser.parse_args()
    for method in args.methods:
        if method not in METHODS:
            raise SystemExit(f"bench.py: unknown method {method!r} ({', '.join(METHODS)})")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["method"], r["device"], r["seed"], r["budget"]))
    evaluation = Evaluation()

    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    # Seed-major, so that every method and device has a result before any has three.
    for seed in args.seeds:
        for device in args.devices:
            table = tables.nb201(device).values
            for method in args.methods:
                if (method, device, seed, args.budget) in done:
                    continue
                row = run(
                    method,
                    device,
                    seed,
                    evaluation,
                    table,
                    budget=args.budget,
                    keep=args.keep,
                    log=log,
                )
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                last = row["points"][-1]
                log(
                    f"done {method} {device} seed {seed}: {row['distinct']} distinct, "
                    f"{row['trained']} trained, ratio {last['ratio']:.3f}"
                )


if __name__ == "__main__":
    main()
