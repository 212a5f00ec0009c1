"""Opening the study: directions, sampler, pruner, storage, and the check that a resume fits.

A study records its protocol when it is created: everything that changes what a trial's
numbers mean (:class:`nas._trials.study.StudyProtocol`). A command that would resume it with
another protocol is refused before anything is written, naming the first setting that differs,
unless ``search.allow_protocol_change`` is set, which records the change on the study. Each
worker that opens a study samples with its own seed, so workers started with the same command
do not propose the same networks.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig

from nas._accuracy.evaluators import make_evaluator
from nas._config import ConfigError, to_dict
from nas._data.data import load_data
from nas._latency.source import latency_source
from nas._latency.table import BenchmarkLatency
from nas._search.samplers import make_sampler
from nas._spaces.base import SearchSpace
from nas._storage.gate import make_gate
from nas._storage.storage import make_storage
from nas._trials.metric import evaluator_name, first_objective
from nas._trials.study import (
    LATENCY_SCALE,
    PROTOCOL_CHANGES,
    UNSET,
    WORKER_STARTS,
    Change,
    StudyProtocol,
    group_of,
    legacy_settings,
    plain,
    show,
)

OBJECTIVES = {"pareto": ["maximize", "minimize"], "mnas": ["maximize"]}


def metric_names(objective: str, evaluator: Mapping[str, Any]) -> list[str]:
    """Optuna's names of the study's values (optuna-dashboard shows them), by ``search.objective``:
    the first objective's (``accuracy``, ``ensemble_score``) and ``latency_ms``, or MnasNet's
    ``reward``.

    Example:
        >>> metric_names("pareto", {"name": "ensemble"}), metric_names("mnas", {"name": "proxy"})
        (['ensemble_score', 'latency_ms'], ['reward'])
    """
    if objective == "mnas":
        return ["reward"]
    return [first_objective([evaluator_name(evaluator)]).name, "latency_ms"]


def _pruner(cfg: DictConfig) -> optuna.pruners.BasePruner | None:
    s = cfg.search
    if s.objective != "mnas":
        return None
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=s.mnas.startup_trials),
        "none": optuna.pruners.NopPruner,
    }
    if s.mnas.pruner not in pruners:
        raise ConfigError(
            f"search.mnas.pruner must be one of {list(pruners)}, got {s.mnas.pruner!r}"
        )
    return pruners[s.mnas.pruner]()


def study_protocol(
    cfg: DictConfig,
    *,
    space: SearchSpace,
    num_classes: int,
    evaluator: Any = None,
    latency: Any = None,
) -> StudyProtocol:
    """The protocol of the search ``cfg`` describes, every group with its defaults filled in.

    ``evaluator`` and ``latency``: the objects made from ``cfg`` (made here when not given), so
    that a setting left to its default and the same value written out are one protocol.
    """
    s = cfg.search
    if evaluator is None:
        evaluator = make_evaluator(**to_dict(cfg.evaluator))
    options = to_dict(cfg.latency)
    source = str(options.pop("source", "measured"))
    if latency is None:
        latency = latency_source({"source": source, **options})
    objective_options: dict[str, Any] = {
        f"constraints.{k}": v for k, v in to_dict(s.constraints).items()
    }
    if s.promote.seeds > 1:  # a promoted network's accuracy is a mean over its trainings
        objective_options.update(
            {"promote.seeds": s.promote.seeds, "promote.margin": s.promote.margin}
        )
    if s.objective == "mnas":  # the reward's target and exponent; the pruner changes no number
        objective_options.update({"mnas.target_ms": s.mnas.target_ms, "mnas.w": s.mnas.w})
    return StudyProtocol(
        space=space.name,
        space_options=space.options(),
        num_classes=num_classes,
        objective=s.objective,
        objective_options=objective_options,
        seed=s.seed,
        evaluator=_evaluator_settings(evaluator, to_dict(cfg.evaluator)),
        data=_data_settings(to_dict(cfg.data)),
        latency=_latency_settings(latency, source),
    )


def _evaluator_settings(evaluator: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    name = getattr(evaluator, "name", options.get("name"))
    if is_dataclass(evaluator) and not isinstance(evaluator, type):
        return plain({"name": name, **asdict(evaluator)})
    return plain({"name": name, **options})


def _data_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """``load_data``'s keywords with their defaults, the resolution (the space's) left out."""
    params = inspect.signature(load_data).parameters
    settings = {
        n: p.default
        for n, p in params.items()
        if n != "resolution" and p.default is not inspect.Parameter.empty
    }
    settings.update(options)
    return plain({"name": settings.pop("name"), **settings})


def _latency_settings(latency: Any, source: str) -> dict[str, Any]:
    """A latency source's settings as the ``latency`` group names them, ``source`` first.

    Settings nested in the source (a predictor's measuring settings) are its group's keys too.
    """
    if not is_dataclass(latency) or isinstance(latency, type):
        return plain({"source": source, **dict(latency)})
    settings: dict[str, Any] = {}
    for key, value in asdict(latency).items():
        if isinstance(value, Mapping):
            settings.update(value)
        elif key != "source":
            settings[key] = value
    if isinstance(latency, BenchmarkLatency):
        settings["column"] = latency.column_name  # the column read: one device's figures
    return plain({"source": source, **settings})


#: Latency settings a measured study's latency objective is relative to (the objective's
#: ``latency_scale``): figures of another reference or runtime cannot join its front at all.
_SCALE_KEYS = ("reference", "reference_resolution", "backend", "batch_size")


def _refusal(
    study_name: str, change: Change, old: Mapping[str, Any], new: Mapping[str, Any]
) -> str:
    """The one line that refuses a resume: the first changed setting, and what to do."""
    why = f"different {group_of(change.key)}"
    columns = (old.get("latency.column"), new.get("latency.column"))
    if old.get("latency.source") == new.get("latency.source") == "table" and len(set(columns)) == 2:
        why = f"latency from table column {columns[0]!r}, not {columns[1]!r}"
    return (
        f"the study {study_name!r} was created with {change.key}={show(change.old)}; this run has "
        f"{change.key}={show(change.new)} ({why}). Use a new search.study_name, or pass "
        "search.allow_protocol_change=true to resume anyway (recorded on the study)"
    )


def _check_scale(study: optuna.Study, changes: list[Change]) -> None:
    """Refuse, even when allowed, a change of what the latency objective is relative to."""
    scale = study.user_attrs.get(LATENCY_SCALE)
    if not isinstance(scale, Mapping) or scale.get("ms") is None:
        return
    for c in changes:
        if c.key in {f"latency.{k}" for k in _SCALE_KEYS} and UNSET not in (c.old, c.new):
            raise ConfigError(
                f"the study {study.study_name!r} measures latency relative to its reference with "
                f"{c.key}={show(c.old)}; this run has {c.key}={show(c.new)}, whose figures "
                "cannot join its front even with search.allow_protocol_change: use a new "
                "search.study_name"
            )


def open_study(
    cfg: DictConfig,
    *,
    run_dir: Path,
    space: SearchSpace,
    num_classes: int,
    evaluator: Any = None,
    latency: Any = None,
) -> tuple[optuna.Study, Any]:
    """Create the study, or load it when ``search.study_name`` exists; returns it and its storage.

    ``evaluator`` and ``latency``: the run's (see :func:`study_protocol`).

    Raises:
        ConfigError: a bad objective, pruner, sampler or storage, or a study of that name whose
            protocol differs (another space, classes, objective, seed, evaluator, data or
            latency setting) without ``search.allow_protocol_change``; nothing is written then.
    """
    s = cfg.search
    if s.objective not in OBJECTIVES:
        raise ConfigError(
            f"search.objective must be one of {list(OBJECTIVES)}, got {s.objective!r}"
        )
    protocol = study_protocol(
        cfg, space=space, num_classes=num_classes, evaluator=evaluator, latency=latency
    )
    c = s.constraints
    constrained = any(v is not None for v in (c.max_latency_ms, c.max_params, c.max_macs))
    # Built before the storage is opened, so that a bad sampler option fails with nothing
    # written; a worker that is not the study's first gets it again below with its own seed
    # (known only under the gate).
    sampler = make_sampler(to_dict(cfg.sampler), seed=s.seed, constrained=constrained)
    pruner = _pruner(cfg)
    storage = make_storage(
        cfg.storage.url,
        run_dir=run_dir,
        heartbeat_interval=cfg.storage.heartbeat_interval,
        grace_period=cfg.storage.grace_period,
    )
    directions = OBJECTIVES[s.objective]
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar reports trials
    try:
        # Loading first: create_study(load_if_exists=True) appends a record to a journal on
        # every resume, so a resume refused below would still have changed the file.
        study = optuna.load_study(
            study_name=s.study_name, storage=storage, sampler=sampler, pruner=pruner
        )
    except KeyError:  # no such study yet
        study = optuna.create_study(
            study_name=s.study_name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=directions,
            load_if_exists=True,
        )
    existing = [d.name.lower() for d in study.directions]
    if existing != directions:
        raise ConfigError(
            f"search.study_name {s.study_name!r} exists with directions {existing}, not "
            f"{directions}; choose another study_name"
        )
    # Under the gate: workers started together would otherwise read each other's half-written
    # record and refuse the study, and could draw the same worker number.
    with make_gate(storage, url=cfg.storage.url, run_dir=run_dir, study_name=s.study_name)():
        starts = _check_protocol(study, protocol, allow=bool(s.allow_protocol_change))
        if study.metric_names is None:  # named once; a resume keeps the names the study has
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(metric_names(s.objective, protocol.evaluator))
    if starts:
        # Each worker that ever opened the study samples with its own seed: workers started with
        # the same command (or a resumed run) would otherwise propose the same networks in the
        # same order and spend the budget on duplicates. The first worker keeps search.seed.
        study.sampler = make_sampler(
            to_dict(cfg.sampler), seed=s.seed + starts, constrained=constrained
        )
    return study, storage


def _check_protocol(study: optuna.Study, protocol: StudyProtocol, *, allow: bool) -> int:
    """Compare the run's protocol with the study's, record it, count the start (under the gate).

    Returns how many workers opened the study before this one. Raises before writing anything
    when the protocols differ and ``allow`` is false.
    """
    attrs = study.user_attrs
    recorded = StudyProtocol.from_attrs(attrs)
    legacy = legacy_settings(attrs) if recorded is None else {}
    old = recorded.settings() if recorded is not None else legacy
    changes = protocol.changes(old)
    if recorded is None:  # a new study, or one of an earlier version: only what it recorded
        changes = [c for c in changes if c.key in legacy]
    if changes and not allow:
        raise ConfigError(_refusal(study.study_name, changes[0], old, protocol.settings()))
    if changes:
        _check_scale(study, changes)
        history = list(attrs.get(PROTOCOL_CHANGES) or [])
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        history.append({"at": at, "changes": [[c.key, c.old, c.new] for c in changes]})
        study.set_user_attr(PROTOCOL_CHANGES, plain(history))
        listed = ", ".join(map(str, changes[:3])) + (", ..." if len(changes) > 3 else "")
        print(
            f"nas search: the study {study.study_name!r} resumes with a changed protocol "
            f"({listed}); recorded on the study ({PROTOCOL_CHANGES})",
            file=sys.stderr,
        )
    elif recorded is None and legacy:
        print(
            f"nas search: the study {study.study_name!r} was created by an earlier nas without "
            "a protocol record; recorded this run's (evaluator, data, latency, seed): later "
            "resumes must match it",
            file=sys.stderr,
        )
    if recorded != protocol:
        for key, value in protocol.to_attrs().items():
            study.set_user_attr(key, value)
    starts = int(attrs.get(WORKER_STARTS, 0))
    study.set_user_attr(WORKER_STARTS, starts + 1)
    return starts
