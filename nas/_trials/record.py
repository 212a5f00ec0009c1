"""The trial record: what one trial of a search measured, typed, in one place.

The objective fills a :class:`TrialRecord` as the trial runs and writes it once; every consumer
(results files, CSV, wandb, early stopping, duplicate reuse, worker recovery) reads it back with
:meth:`TrialRecord.of`. Optuna's user attributes are only its storage format: one attribute per
field, under the field's name, so studies written by earlier versions read back unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas._trials.latency import LatencyResult

#: Fields the worker loop writes (who ran the trial, and whether it retries another one);
#: everything else is the objective's.
BOOKKEEPING = ("worker", "retry_of", "retries")
#: Fields that identify the network: written as soon as the trial has sampled it, so that
#: concurrent twins and crash recovery see them while the trial runs.
IDENTITY = ("genotype", "genotype_key")


@dataclass
class TrialRecord:
    """One trial: its network, its measurements, and what became of it.

    Attributes:
        trial: the trial's number in the study.
        state: Optuna's state name (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ...).
        genotype: the sampled genotype (label -> value).
        genotype_key: the network's identity in its space (equal for genotypes that build the
            same network).
        arch: the genotype in the space's compact notation.
        resolution: input resolution of the network.
        params, macs, conv_linear_macs: size and cost (see :func:`nas.profile`).
        constraints: Optuna constraint values (latency, params, MACs): > 0 means violated,
            by that fraction of the limit.
        infeasible: why the trial violates a constraint (``None`` when feasible).
        latency: the full latency measurement (``None`` before or without one).
        latency_ms: the latency objective: ``latency.relative * latency_scale_ms``, the
            reference-normalised figure in milliseconds of the study's reference; the raw
            median ms when there is no scale (no reference, a benchmark's table, a study of an
            earlier version); infinite for infeasible by size. The raw median is
            ``latency.median_ms``.
        latency_scale_ms: the study's latency scale this trial used (``None``: raw ms).
        accuracy: the accuracy objective (0 for infeasible trials).
        curve: accuracy after each epoch of proxy training.
        evaluator: the evaluator's name.
        screen: the ensemble figure that decided whether it was trained (``evaluator=screen``).
        budget: trainings behind ``accuracy`` when the network was promoted
            (``search.promote``); ``accuracies``: each one's (``accuracy`` is their mean).
        seconds: wall-clock seconds by phase (``profile``, ``latency``, ``train``, ``total``).
        pruned: why the trial was stopped early.
        failure: why the trial failed (first line of the error).
        duplicate_of: the trial whose network this one is (its record was reused).
        worker: the worker process that ran it (``host``, ``pid``).
        retry_of: the failed trial this one runs again.
        retries: how many times the network has been retried after a dead worker.
        fail_reason: Optuna's own reason for a failure (system attribute).
    """

    trial: int = -1
    state: str = "RUNNING"
    genotype: dict[str, Any] = field(default_factory=dict)
    genotype_key: str | None = None
    arch: str = ""
    resolution: int | None = None
    params: int | None = None
    macs: int | None = None
    conv_linear_macs: int | None = None
    constraints: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    infeasible: str | None = None
    latency: LatencyResult | None = None
    latency_ms: float | None = None
    latency_scale_ms: float | None = None
    accuracy: float | None = None
    curve: list[float] = field(default_factory=list)
    evaluator: str | None = None
    screen: float | None = None
    budget: int | None = None
    accuracies: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    pruned: str | None = None
    failure: str | None = None
    duplicate_of: int | None = None
    worker: dict[str, Any] | None = None
    retry_of: int | None = None
    retries: int = 0
    fail_reason: str | None = None

    # ---- reading

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of a trial as stored in the study."""
        values = dict(trial.user_attrs)
        latency = values.get("latency")
        record = cls(
            trial=trial.number,
            state=trial.state.name,
            fail_reason=trial.system_attrs.get("fail_reason"),
            **{k: v for k, v in values.items() if k in _STORED and k != "latency"},
        )
        if isinstance(latency, Mapping):
            record.latency = LatencyResult.from_dict(latency)
        return record

    @classmethod
    def all_of(cls, trials: list[FrozenTrial]) -> list[TrialRecord]:
        """Records of a study's trials, in trial order."""
        return [cls.of(t) for t in sorted(trials, key=lambda t: t.number)]

    @property
    def feasible(self) -> bool:
        """Whether every constraint is satisfied."""
        return all(c <= 0 for c in self.constraints)

    @property
    def evaluated(self) -> bool:
        """Complete, feasible and with both objectives."""
        return (
            self.state == TrialState.COMPLETE.name
            and self.feasible
            and self.accuracy is not None
            and self.latency_ms is not None
            and math.isfinite(self.latency_ms)
        )

    @property
    def origin(self) -> int:
        """The trial whose evaluation this record holds (its own number unless a duplicate)."""
        return self.trial if self.duplicate_of is None else self.duplicate_of

    @property
    def total_seconds(self) -> float | None:
        return self.seconds.get("total")

    @property
    def note(self) -> str:
        """One line on what happened: infeasible, pruned or failed, and why."""
        note = self.infeasible or self.pruned or self.failure or ""
        if self.state == TrialState.FAIL.name and not note:
            note = self.fail_reason or "failed"
        return str(note).splitlines()[0] if note else ""

    # ---- writing

    def take_measurements(self, other: TrialRecord) -> None:
        """Copy another record's measurements (a duplicate reuses its twin's evaluation)."""
        for f in fields(self):
            if f.name in _STORED and f.name not in (*IDENTITY, *BOOKKEEPING):
                setattr(self, f.name, copy.deepcopy(getattr(other, f.name)))

    def measured(self) -> dict[str, Any]:
        """The objective's fields as stored (user attributes), without the identity fields."""
        out = {}
        for f in fields(self):
            if f.name in _STORED and f.name not in (*IDENTITY, *BOOKKEEPING):
                value = getattr(self, f.name)
                if value is not None and value != f.default and value not in ({}, []):
                    out[f.name] = value.to_dict() if f.name == "latency" else value
        return out

    def write(self, trial: optuna.Trial) -> None:
        """Store the objective's fields on a running trial, once, at its end."""
        for key, value in self.measured().items():
            trial.set_user_attr(key, value)


#: Fields stored as user attributes (the others come from the trial itself).
_STORED = frozenset(f.name for f in fields(TrialRecord)) - {"trial", "state", "fail_reason"}


def write_identity(trial: optuna.Trial, genotype: Mapping[str, Any], key: str) -> None:
    """Store what network a running trial evaluates (see :data:`IDENTITY`)."""
    trial.set_user_attr("genotype", dict(genotype))
    trial.set_user_attr("genotype_key", key)


def write_worker(trial: optuna.Trial, *, host: str, pid: int) -> None:
    """Store which worker runs a trial (dead-worker recovery reads it)."""
    trial.set_user_attr("worker", {"host": host, "pid": pid})


def retry_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a retry of ``trial`` is enqueued with: its network, once it is known.

    A trial stopped while its network was being sampled has only some choices made; fixing
    those would make the retry another network, so it samples afresh (``{}``). A grid point
    (enqueued with all its choices) is retried as that point.
    """
    fixed = trial.system_attrs.get("fixed_params")
    if fixed:
        return dict(fixed)
    return dict(trial.params) if "genotype" in trial.user_attrs else {}


def retry_attrs(of: int, *, retries: int | None = None) -> dict[str, Any]:
    """User attributes of a trial enqueued to run a failed one again."""
    attrs: dict[str, Any] = {"retry_of": of}
    if retries is not None:
        attrs["retries"] = retries
    return attrs


#: The attribute that holds a failure's reason (set through the storage by recovery).
FAILURE = "failure"
#: The attribute that holds an early stop's reason.
PRUNED = "pruned"


def genotype_json(genotype: Mapping[str, Any]) -> str:
    """A genotype as one line of JSON with sorted keys (CSV and tables)."""
    return json.dumps(dict(genotype), sort_keys=True)


def network_seed(seed: int, identity: str) -> int:
    """The seed of one network's evaluation: a hash of the search's seed and its identity.

    Example:
        >>> network_seed(0, "a") == network_seed(0, "a") != network_seed(1, "a")
        True
    """
    digest = hashlib.sha256(f"{seed}\0{identity}".encode()).digest()
    return int.from_bytes(digest[:4], "big")
