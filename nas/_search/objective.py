"""The objective: one trial, from a sampled genotype to a written record.

The flow reads top to bottom in :meth:`Objective._evaluate`: sample, identity, reuse, build,
profile, constraints, latency, accuracy; :meth:`Objective.__call__` writes the record once at
the end, whatever happened.

The latency objective is the reference-normalised figure in milliseconds of the reference:
``latency.relative * scale``, where the scale is the reference's median in the study's first
latency measurement, fixed for the study's life and stored on it (:data:`LATENCY_SCALE`). A
trial timed minutes or machines later is divided by the reference timed in the same rounds,
so the machine's drift cancels; the raw median stays in the record (``latency.median_ms``).
Latency without a reference (``reference: null``, a benchmark's table) stays raw
milliseconds, and so does a study begun before this objective existed.

Every random choice of an evaluation is seeded from ``search.seed`` and the network's identity
(:func:`network_seed`): the weights it is built with and its random layers during training.
The data's order and subsets come from the evaluator's seed, the same for every network. So a
network gets the same accuracy whatever ran before it in the process, in which worker, and
across a resume (on CPU, with a fixed thread count).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from nas._accuracy.proxy import Evaluator
from nas._config import ConstraintsConfig, EarlyStopConfig, MnasConfig, PromoteConfig
from nas._data.data import Dataset
from nas._latency.latency import LatencySettings
from nas._latency.profile import profile
from nas._latency.source import LatencySource, latency_of
from nas._search.early_stop import DominanceStopper, StopRule
from nas._spaces.base import SearchSpace
from nas._storage.recovery import fail_stale_twins, worker_alive
from nas._trials.index import StudyIndex
from nas._trials.latency import LatencyResult
from nas._trials.record import TrialRecord, network_seed, write_identity
from nas._trials.study import LATENCY_SCALE

Values = float | tuple[float, float]
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def objective_latency_ms(latency: LatencyResult, scale_ms: float | None) -> float:
    """The latency objective: ``relative * scale_ms``, or raw ms without a reference or scale.

    Example:
        >>> from nas import LatencyResult
        >>> r = LatencyResult(median_ms=12.0, iqr_ms=0.1, runs=20, relative=1.1, reference_ms=11.0,
        ...                   device="cpu", threads=1, torch_version="2", batch_size=1,
        ...                   resolution=32)
        >>> objective_latency_ms(r, 10.0), objective_latency_ms(r, None)
        (11.0, 12.0)
    """
    if scale_ms is None or latency.relative is None:
        return latency.median_ms
    return latency.relative * scale_ms


def mnas_reward(accuracy: float, latency_ms: float, target_ms: float, w: float) -> float:
    """MnasNet's reward ACC·(LAT/T)^w (Tan et al. 2019, eq. 2 with a soft constraint).

    Example:
        >>> round(mnas_reward(0.8, 10.0, 5.0, -0.07), 4)
        0.7621
    """
    if not math.isfinite(latency_ms) or latency_ms <= 0:
        return 0.0
    return accuracy * (latency_ms / target_ms) ** w


def excess(value: float, limit: float | None) -> float:
    """Constraint value for Optuna: <= 0 when satisfied (relative excess otherwise)."""
    if limit is None:
        return 0.0
    return (value - limit) / max(abs(limit), 1e-12)


@dataclass
class Objective:
    """The per-trial evaluation of a search (see the module docstring for its steps).

    Args:
        space: the search space.
        data: loads the data at a resolution (cached by the loader).
        evaluator: the accuracy evaluator (``nas.measure.make_evaluator``).
        latency: how latency is measured, or the benchmark table it is read from.
        num_classes: classes of the data (the networks' outputs).
        device: where the evaluator trains.
        objective: ``pareto`` (accuracy, latency) or ``mnas`` (one reward).
        constraints: hard limits; a trial over one is infeasible and never trained.
        early_stop: stopping of dominated trials (``pareto``).
        promote: more trainings for networks that may reach the front (``pareto``).
        mnas: the reward's settings (``mnas``).
        seed: ``search.seed``; with a network's identity it seeds that network's evaluation.
        prune_duplicates: tell the sampler a network evaluated before as pruned (its record
            still holds the earlier result); off for a grid, where every point's result counts.
    """

    space: SearchSpace
    data: Callable[[int], Dataset]
    evaluator: Evaluator
    latency: LatencySource | LatencySettings
    num_classes: int
    device: str = "cpu"
    objective: str = "pareto"
    constraints: ConstraintsConfig = field(default_factory=ConstraintsConfig)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    mnas: MnasConfig = field(default_factory=MnasConfig)
    seed: int = 0
    prune_duplicates: bool = True

    def __post_init__(self) -> None:
        self._stopper = DominanceStopper(self.early_stop)

    def __call__(self, trial: optuna.Trial) -> Values:
        record = TrialRecord(trial=trial.number)
        try:
            return self._evaluate(trial, record)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            first = str(err).splitlines()[0] if str(err) else ""
            record.failure = f"{type(err).__name__}: {first}"[:500]
            raise
        finally:
            record.write(trial)

    def _evaluate(self, trial: optuna.Trial, record: TrialRecord) -> Values:
        start = time.perf_counter()
        genotype = self.space.sample(trial)
        key = self.space.identity(genotype)
        record.genotype, record.genotype_key = genotype, key
        write_identity(trial, genotype, key)  # now: twins in other workers look for it
        previous = self._previous(trial, key)
        if previous is not None:
            return self._reuse(trial, record, previous)

        arch = self.space.arch(genotype, num_classes=self.num_classes)
        seed = network_seed(self.seed, key)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.space.build(genotype, num_classes=self.num_classes)
        prof = profile(model, resolution=arch.resolution)
        record.arch = self.space.describe(genotype)
        record.resolution = arch.resolution
        record.params, record.macs = prof.params, prof.macs
        record.conv_linear_macs = prof.conv_linear_macs
        t_profile = time.perf_counter()

        c = self.constraints
        record.constraints = [
            0.0,
            excess(prof.params, c.max_params),
            excess(prof.macs, c.max_macs),
        ]
        violated = [
            f"{name} {value:,} > {limit:,}"
            for name, value, limit in (
                ("params", prof.params, c.max_params),
                ("macs", prof.macs, c.max_macs),
            )
            if limit and value > limit
        ]
        if violated:
            record.infeasible = "; ".join(violated)
            record.accuracy, record.latency_ms = 0.0, math.inf
            record.seconds = {"total": time.perf_counter() - start}
            return self._values(0.0, math.inf)

        lat = self._latency(model, key, arch.resolution)
        t_latency = time.perf_counter()
        record.latency = lat
        record.latency_scale_ms = self._latency_scale(trial, lat)
        record.latency_ms = latency_ms = objective_latency_ms(lat, record.latency_scale_ms)
        record.constraints[0] = excess(latency_ms, c.max_latency_ms)
        if record.constraints[0] > 0:
            record.infeasible = f"latency {latency_ms:.3f} ms > {c.max_latency_ms} ms"
            record.accuracy = 0.0
            record.seconds = {
                "profile": t_profile - start,
                "latency": t_latency - t_profile,
                "total": time.perf_counter() - start,
            }
            return self._values(0.0, latency_ms)

        stop = self._stop_rule(trial, latency_ms)

        def on_epoch(epoch: int, accuracy: float) -> bool:
            if stop is not None:
                record.pruned = stop(epoch, accuracy)
            return record.pruned is not None

        result = self.evaluator(
            model,
            self.data(arch.resolution),
            device=self.device,
            on_epoch=on_epoch,
            seed=seed,
            identity=key,
        )
        record.accuracy, record.curve = result.accuracy, list(result.curve)
        record.evaluator, record.screen = result.evaluator, result.screen
        if result.screened:  # never trained: no accuracy, and why
            record.accuracy, record.pruned = None, result.screened
        record.seconds = {
            "profile": t_profile - start,
            "latency": t_latency - t_profile,
            "train": result.seconds,
            "total": time.perf_counter() - start,
        }
        if result.stopped:
            raise optuna.TrialPruned(record.pruned or "stopped early")
        if self.promote.seeds > 1 and self.objective == "pareto":
            self._promote(trial, record, genotype, key, arch.resolution)
            record.seconds["total"] = time.perf_counter() - start
        return self._values(record.accuracy, latency_ms)  # type: ignore[arg-type]

    def _promote(
        self, trial: optuna.Trial, record: TrialRecord, genotype: Any, key: str, resolution: int
    ) -> None:
        """Train again, from the next seeds, while the network may reach the front."""
        accuracies = [float(record.accuracy)]  # type: ignore[arg-type]
        trainer = getattr(self.evaluator, "trainer", self.evaluator)  # a screen's training
        index = StudyIndex.of(trial.study)
        while len(accuracies) < self.promote.seeds:
            index.refresh()
            mean = sum(accuracies) / len(accuracies)
            if any(
                r.latency_ms <= record.latency_ms  # type: ignore[operator]
                and r.accuracy >= mean + self.promote.margin  # type: ignore[operator]
                for r in index.front.records
                if r.trial != trial.number
            ):
                break
            seed = network_seed(self.seed + len(accuracies), key)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = self.space.build(genotype, num_classes=self.num_classes)
            result = trainer(
                model, self.data(resolution), device=self.device, seed=seed, identity=key
            )
            accuracies.append(float(result.accuracy))
            record.seconds["train"] = record.seconds.get("train", 0.0) + result.seconds
        record.accuracy = sum(accuracies) / len(accuracies)
        record.budget, record.accuracies = len(accuracies), accuracies

    def _latency(self, model: torch.nn.Module, key: str, resolution: int) -> LatencyResult:
        """Measured on this device, or read from a benchmark's table."""
        return latency_of(
            self.latency,
            model,
            identity=key,
            resolution=resolution,
            images=lambda r: self.data(r).x_train,
        )

    @staticmethod
    def _latency_scale(trial: optuna.Trial, lat: LatencyResult) -> float | None:
        """The study's latency scale (see the module docstring), set by its first measurement.

        Read at every trial rather than kept: workers that start together may both set it,
        and the last write is the one every later trial uses.

        Raises:
            ValueError: the study's scale is of another reference or backend (its figures
                would not compare with this run's).
        """
        if lat.relative is None or lat.reference_ms is None:
            return None
        study = trial.study
        what = {
            "reference": lat.reference,
            "reference_resolution": lat.reference_resolution,
            "backend": lat.backend,
            "batch_size": lat.batch_size,
        }
        scale = study.user_attrs.get(LATENCY_SCALE)
        if scale is None:
            begun = any(
                "latency" in t.user_attrs
                for t in study.get_trials(deepcopy=False, states=_FINISHED)
                if t.number != trial.number
            )
            # A study begun with raw milliseconds keeps them: its figures must stay comparable.
            scale = {**what, "ms": None if begun else lat.reference_ms, "trial": trial.number}
            study.set_user_attr(LATENCY_SCALE, scale)
        if scale["ms"] is None:
            return None
        mismatch = {k: (scale.get(k), v) for k, v in what.items() if scale.get(k) != v}
        if mismatch:
            found = ", ".join(f"{k} {a!r} (this run: {b!r})" for k, (a, b) in mismatch.items())
            raise ValueError(
                f"this study's latency objective is relative to {found}; its figures would "
                "not compare: measure with the study's settings or start a new study"
            )
        return float(scale["ms"])

    def _values(self, accuracy: float, latency_ms: float) -> Values:
        if self.objective == "mnas":
            return mnas_reward(accuracy, latency_ms, self.mnas.target_ms, self.mnas.w)
        return accuracy, latency_ms

    def _stop_rule(self, trial: optuna.Trial, latency_ms: float) -> StopRule | None:
        """Dominance early stopping (pareto), or Optuna's pruner on the reward (mnas)."""
        if self.objective != "mnas":
            return self._stopper.for_trial(trial, latency_ms)

        def rule(epoch: int, accuracy: float) -> str | None:
            trial.report(mnas_reward(accuracy, latency_ms, self.mnas.target_ms, self.mnas.w), epoch)
            if trial.should_prune():
                return f"pruned by the study's pruner at epoch {epoch}"
            return None

        return rule

    @staticmethod
    def _previous(trial: optuna.Trial, key: str, poll: float = 0.5) -> TrialRecord | None:
        """A finished trial of the same network; waits for an earlier one still running.

        Waiting only on lower-numbered trials means two workers never wait on each other.
        """
        index = StudyIndex.of(trial.study)
        while True:
            index.refresh()
            first = index.first_of(key)
            if first is not None:
                return first
            running = any(
                t.state == TrialState.RUNNING
                and t.number < trial.number
                and TrialRecord.of(t).genotype_key == key
                and worker_alive(t)
                for t in index.open
            )
            if not running:
                return None
            # A twin whose worker on another machine died is only failed through heartbeats.
            fail_stale_twins(trial.study)
            time.sleep(poll)

    def _reuse(self, trial: optuna.Trial, record: TrialRecord, earlier: TrialRecord) -> Values:
        """Take a previous identical trial's measurements instead of evaluating again."""
        origin = earlier.origin
        record.take_measurements(earlier)
        record.duplicate_of = origin
        if earlier.state == TrialState.PRUNED.name:
            raise optuna.TrialPruned(f"same genotype as pruned trial {origin}")
        if self.prune_duplicates:
            # Told again as a result, a known network weighs on the sampler's model like a new
            # one and is proposed again and again: multivariate TPE asked 5 trials per distinct
            # network late in a NAS-Bench-201 search. Told as pruned, it marks the point as
            # known: 1.9 asks per network, the same hypervolume (experiments/search_efficiency).
            record.pruned = f"duplicate of trial {origin} (its result; pruned for the sampler)"
            raise optuna.TrialPruned(record.pruned)
        return self._values(earlier.accuracy, earlier.latency_ms)  # type: ignore[arg-type]
