"""Samplers from the ``sampler`` config group, and the grid handed out one point at a time."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nas._config import ConfigError, call_with_options, check_options
from nas._trials.record import TrialRecord

#: Largest grid that ``sampler=grid`` enqueues.
MAX_GRID = 100_000

_FACTORIES: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "nsga2": optuna.samplers.NSGAIISampler,
    "tpe": optuna.samplers.TPESampler,
    "nsga3": optuna.samplers.NSGAIIISampler,
    "random": optuna.samplers.RandomSampler,
    "gp": optuna.samplers.GPSampler,
}


def constraints_of(trial: FrozenTrial) -> list[float]:
    """Optuna's constraints function: the trial's constraint values (<= 0 is satisfied)."""
    return list(TrialRecord.of(trial).constraints)


def make_sampler(
    options: Mapping[str, Any], *, seed: int, constrained: bool
) -> optuna.samplers.BaseSampler:
    """Optuna sampler from the ``sampler`` group (nsga2, tpe, nsga3, random, gp, grid).

    ``constrained`` passes :func:`constraints_of` to the samplers that take constraints, so
    that infeasible trials rank below feasible ones.

    Example:
        >>> type(make_sampler({"name": "tpe"}, seed=0, constrained=False)).__name__
        'TPESampler'
    """
    options = dict(options)
    name = options.pop("name", None)
    if name == "grid":
        # Grid points are enqueued one by one (GridOrder) and waiting trials carry their
        # parameters, so the sampler fills in nothing. Optuna's GridSampler is not used: it
        # races between workers and calls study.stop(), which ask/tell forbids.
        check_options(lambda: None, options, group="sampler")
        return optuna.samplers.RandomSampler(seed=seed)
    if name not in _FACTORIES:
        raise ConfigError(
            f"sampler.name {name!r} is not known; choose from {[*_FACTORIES, 'grid']}"
        )
    extra: dict[str, Any] = {"seed": seed}
    if name != "random" and constrained:
        extra["constraints_func"] = constraints_of
    return call_with_options(_FACTORIES[name], options, group="sampler", **extra)


class GridOrder:
    """The grid's points in a seeded random order; hands out the next point no trial has used.

    Points are enqueued one at a time under the gate, so a budget smaller than the grid leaves
    no waiting trials behind and several workers never take the same point.

    Example:
        >>> order = GridOrder({"k": [3, 5]}, seed=0)
        >>> sorted(p["k"] for p in order.points)
        [3, 5]
    """

    def __init__(self, grid: dict[str, list[Any]], *, seed: int) -> None:
        size = 1
        for values in grid.values():
            size *= len(values)
        if size > MAX_GRID:
            raise ConfigError(
                f"sampler=grid: the space has {size:,} points; grid search takes at most "
                f"{MAX_GRID:,} (narrow the space or use another sampler)"
            )
        self.points = [dict(zip(grid, c, strict=True)) for c in itertools.product(*grid.values())]
        random.Random(seed).shuffle(self.points)

    def next_point(self, trials: Sequence[FrozenTrial]) -> dict[str, Any] | None:
        """The first point no trial has taken (``None`` once the grid is used up)."""
        # A trial another worker is sampling has no or partial params: read its enqueued point.
        used = {_params_key(t.system_attrs.get("fixed_params") or t.params) for t in trials}
        return next((p for p in self.points if _params_key(p) not in used), None)


def _params_key(params: dict[str, Any]) -> str:
    return repr(sorted(params.items()))
