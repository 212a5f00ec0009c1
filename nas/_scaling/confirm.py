"""A noise-aware step-1 winner: the leading networks trained again, crowned by their mean.

One short proxy run per network is noisy (a seed moves it by points), so step 1's single best
is often a lucky draw. Successive halving re-evaluates the ``top`` leading distinct networks:
each round trains every remaining one once more with a new seed (its weights, random layers and
the data's order all change), and keeps the better half by mean accuracy. The winner is the
best mean; the margin to the runner-up says how clear the choice was.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from nas._data.data import Dataset
from nas._scaling.compound import CompoundScalingSpace, Point
from nas._trials.record import TrialRecord, network_seed


@dataclass
class Finalist:
    """A leading step-1 network and every accuracy it got (step 1's first)."""

    record: TrialRecord
    point: Point
    accuracies: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def spread(self) -> float:
        """Sample standard deviation of the accuracies (0 with one)."""
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def describe(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.spread:.2f}% (n={len(self.accuracies)})"


@dataclass
class Confirmation:
    """The finalists in their final order (best mean first) and the rounds they ran."""

    finalists: list[Finalist]
    rounds: int

    @property
    def winner(self) -> Finalist:
        return self.finalists[0]

    @property
    def margin(self) -> float | None:
        """Winner's mean minus the runner-up's (accuracy units), ``None`` without a runner-up."""
        if len(self.finalists) < 2:
            return None
        return self.finalists[0].mean - self.finalists[1].mean

    def by_trial(self) -> dict[int, Finalist]:
        """Finalists by the trial that evaluated their network (as the step-1 table lists it)."""
        return {f.record.origin: f for f in self.finalists}


def confirm(
    ranked: Sequence[TrialRecord],
    space: CompoundScalingSpace,
    *,
    top: int,
    rounds: int,
    seed: int,
    target: float,
    evaluate: Callable[[torch.nn.Module, Dataset, int, int], float],
    data: Callable[[int], Dataset],
    num_classes: int,
) -> Confirmation:
    """Successive halving over the ``top`` first of ``ranked`` (distinct networks, best first).

    ``evaluate(model, data, evaluator_seed, network_seed)`` trains and returns an accuracy;
    round r uses evaluator seed ``seed + r`` and builds each network under
    :func:`nas.search.network_seed` of that seed and the network's identity, as the search would.
    """
    finalists = [
        Finalist(record=r, point=space.point(r.genotype), accuracies=[r.accuracy], seeds=[seed])  # type: ignore[list-item]
        for r in ranked[: max(1, top)]
    ]
    alive = list(finalists)
    done = 0
    for r in range(1, rounds + 1):
        if len(alive) < 2 or top < 2:
            break
        for f in alive:
            net_seed = network_seed(seed + r, str(f.record.genotype_key))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(net_seed)
                model = space.build(f.record.genotype, num_classes=num_classes)
            resolution = space.resolution_of(f.record.genotype)
            f.accuracies.append(evaluate(model, data(resolution), seed + r, net_seed))
            f.seeds.append(seed + r)
        done = r
        alive.sort(key=lambda f: _key(f, target))
        alive = alive[: math.ceil(len(alive) / 2)]
    order = sorted(finalists, key=lambda f: (f not in alive, *_key(f, target)))
    return Confirmation(finalists=order, rounds=done)


def _key(f: Finalist, target: float) -> tuple[float, ...]:
    p = f.point
    return (-f.mean, f.record.macs or 0, abs(p.product - target), p.alpha, p.beta, p.gamma)


def ranked_networks(
    candidates: Sequence[TrialRecord], winner_key: Callable[[TrialRecord], Any]
) -> list[TrialRecord]:
    """Distinct step-1 networks among ``candidates``, best first by ``winner_key``.

    Points that build one network share one entry: the one ``winner_key`` prefers.
    """
    best: dict[str, TrialRecord] = {}
    for r in sorted(candidates, key=winner_key):
        best.setdefault(str(r.genotype_key), r)
    return sorted(best.values(), key=winner_key)


def as_mapping(c: Confirmation) -> Mapping[str, Any]:
    """The confirmation as ``scaling.json`` records it."""
    return {
        "rounds": c.rounds,
        "margin": c.margin,
        "finalists": [
            {
                "trial": f.record.trial,
                "point": f.point.key,
                "accuracies": f.accuracies,
                "seeds": f.seeds,
                "mean": f.mean,
                "spread": f.spread,
            }
            for f in c.finalists
        ],
    }
