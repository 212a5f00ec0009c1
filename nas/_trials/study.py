"""The study record: what a study searches and how its trials' numbers are measured.

Two trials compare on one front only if they were measured the same way: the same space and
classes, objective, seed, evaluator, data and latency settings. A study records this protocol
when it is created (:class:`StudyProtocol`, one user attribute); a resume compares its own
protocol with the recorded one and names the first setting that differs
(:meth:`StudyProtocol.changes`). What does not change a trial's numbers (workers, ``n_trials``,
timeout, logger, output, progress, reports, storage, sampler, early stopping) is not recorded.

Studies created before the record hold only their space, options, classes and objective (and a
table's latency column) as separate attributes; :func:`legacy_settings` reads those, so such a
study is still checked for what it recorded, and then gets the whole record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Study attribute: the protocol (:meth:`StudyProtocol.to_attrs`).
PROTOCOL = "protocol"
#: Study attribute: the protocol changes accepted with ``search.allow_protocol_change``.
PROTOCOL_CHANGES = "protocol_changes"
#: Study attributes of studies created before the protocol was recorded; still written, so that
#: earlier versions (and readers of ``study.user_attrs``) find them.
LEGACY = ("space", "space_options", "num_classes", "objective")
#: Study attribute: a table-backed study's latency column, written by earlier versions.
LATENCY_TABLE = "latency_table"
#: Study attribute: the scale of a measured study's latency objective, ``{"ms": ...}`` set by its
#: first measurement (``nas._search.objective``; ``None`` for a study begun before the normalised
#: objective: it keeps raw milliseconds); its figures are relative to that reference.
LATENCY_SCALE = "latency_scale"
#: Study attribute: how many workers have opened the study (each samples with its own seed).
WORKER_STARTS = "worker_starts"
#: Study attribute: the evaluator's once-per-study state (an ensemble's reference population,
#: ``nas._search.run.evaluator_state``), computed by the first worker and read by the others.
EVALUATOR_STATE = "evaluator_state"
#: How a setting that one protocol has and the other lacks is shown.
UNSET = "(not set)"

#: The group each setting belongs to, by key prefix (first match), for messages.
_GROUPS = (
    ("space.name", "space"),
    ("space.", "space_options"),
    ("num_classes", "num_classes"),
    ("search.seed", "seed"),
    ("search.constraints.", "constraints"),
    ("search.", "objective"),
    ("evaluator.", "evaluator"),
    ("data.", "data"),
    ("latency.", "latency"),
)


def plain(value: Any) -> Any:
    """``value`` as a study stores it: JSON values (anything else as its ``str``)."""
    return json.loads(json.dumps(value, default=str))


def show(value: Any) -> str:
    """A setting's value as an override would spell it (``3``, ``torch``, ``[3, 5]``, ``null``)."""
    if value is UNSET or isinstance(value, str):
        return str(value)
    return json.dumps(value)


def group_of(key: str) -> str:
    """The part of the protocol a setting belongs to (``evaluator`` for ``evaluator.epochs``)."""
    return next(name for prefix, name in _GROUPS if key.startswith(prefix))


def _flat(prefix: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` under ``prefix``, nested groups by their dotted keys (``evaluator.train.lr``),
    as a command-line override would name them."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            out.update(_flat(f"{prefix}.{key}", value))
        else:
            out[f"{prefix}.{key}"] = value
    return out


@dataclass(frozen=True)
class Change:
    """One setting that differs between a study's protocol and a run's."""

    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}={show(self.old)} -> {show(self.new)}"


@dataclass(frozen=True)
class StudyProtocol:
    """Everything that changes what a trial's numbers mean, recorded when the study is created.

    Attributes:
        space: the search space's name.
        space_options: its options, defaults included (``SearchSpace.options()``).
        num_classes: the data's classes (the networks' outputs).
        objective: ``search.objective``.
        objective_options: the objective's own settings (``mnas.target_ms``, ``mnas.w``) and the
            constraints (``constraints.max_params``, ...), which set what is infeasible.
        seed: ``search.seed``: every network's evaluation is seeded from it.
        evaluator: the evaluator's name and all its options, defaults included.
        data: the dataset's name, split and options, defaults included.
        latency: ``source`` (``measured`` or ``table``) and the settings of that source,
            defaults included (backend, device, clock, reference, rounds; a table's column).

    Example:
        >>> p = StudyProtocol(space="mbconv", num_classes=10, objective="pareto", seed=0,
        ...                   evaluator={"name": "proxy", "epochs": 1})
        >>> q = StudyProtocol.from_attrs(p.to_attrs())
        >>> q == p, [str(c) for c in p.changes(q)]
        (True, [])
        >>> r = StudyProtocol(space="mbconv", num_classes=10, objective="pareto", seed=0,
        ...                   evaluator={"name": "proxy", "epochs": 2})
        >>> [str(c) for c in r.changes(p)]
        ['evaluator.epochs=1 -> 2']
    """

    space: str
    num_classes: int
    objective: str
    seed: int
    space_options: Mapping[str, Any] = field(default_factory=dict)
    objective_options: Mapping[str, Any] = field(default_factory=dict)
    evaluator: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    latency: Mapping[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """Every setting under its config key, in the order differences are reported."""
        out: dict[str, Any] = {"space.name": self.space}
        out.update({f"space.{k}": v for k, v in self.space_options.items()})
        out["num_classes"] = self.num_classes
        out["search.objective"] = self.objective
        out.update({f"search.{k}": v for k, v in self.objective_options.items()})
        out["search.seed"] = self.seed
        for group in ("evaluator", "data", "latency"):
            out.update(_flat(group, getattr(self, group)))
        return plain(out)

    def changes(self, recorded: StudyProtocol | Mapping[str, Any]) -> list[Change]:
        """The settings whose value in ``recorded`` (a protocol, or settings as
        :meth:`settings` names them) differs from this one's, in reporting order."""
        old = recorded.settings() if isinstance(recorded, StudyProtocol) else plain(recorded)
        new = self.settings()
        keys = [*new, *(k for k in old if k not in new)]
        return [
            Change(k, old.get(k, UNSET), new.get(k, UNSET))
            for k in keys
            if old.get(k, UNSET) != new.get(k, UNSET)
        ]

    def to_attrs(self) -> dict[str, Any]:
        """The study's user attributes that record it (the record, and :data:`LEGACY`)."""
        return {
            PROTOCOL: plain(asdict(self)),
            "space": self.space,
            "space_options": plain(dict(self.space_options)),
            "num_classes": self.num_classes,
            "objective": self.objective,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> StudyProtocol | None:
        """The protocol a study recorded; ``None`` when it has none (created before records).

        Keys this version does not know are ignored; a key it added later reads as unset.
        """
        data = attrs.get(PROTOCOL)
        if not isinstance(data, Mapping):
            return None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        required = ("space", "num_classes", "objective", "seed")
        if any(k not in values for k in required):
            return None
        return cls(**values)


def legacy_settings(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What a study created before the protocol record recorded, as protocol settings.

    Empty for a new study. A table-backed study's latency column (``latency_table``) reads as
    ``latency.source=table`` and ``latency.column``.
    """
    out: dict[str, Any] = {}
    if attrs.get("space") is not None:
        out["space.name"] = attrs["space"]
    options = attrs.get("space_options")
    if isinstance(options, Mapping):
        out.update({f"space.{k}": v for k, v in options.items()})
    if attrs.get("num_classes") is not None:
        out["num_classes"] = attrs["num_classes"]
    if attrs.get("objective") is not None:
        out["search.objective"] = attrs["objective"]
    if attrs.get(LATENCY_TABLE) is not None:
        out["latency.source"] = "table"
        out["latency.column"] = attrs[LATENCY_TABLE]
    return plain(out)
