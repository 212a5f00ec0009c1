"""Opening the study: directions, sampler, pruner, storage, and the check that a resume fits.

A study records what it searches (space, options, classes, objective); a command that would
resume it with anything else is refused before a trial runs. Each worker that opens a study
samples with its own seed, so workers started with the same command do not propose the same
networks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig

from nas._config import ConfigError, to_dict
from nas._search.samplers import make_sampler
from nas._spaces.base import SearchSpace
from nas._storage.gate import make_gate
from nas._storage.storage import make_storage

OBJECTIVES = {"pareto": ["maximize", "minimize"], "mnas": ["maximize"]}


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


def _plain(value: Any) -> Any:
    """``value`` as the study stores it (JSON values)."""
    return json.loads(json.dumps(value))


#: Study attribute: the table column a table-backed study's latency comes from.
LATENCY_TABLE = "latency_table"


def _latency_table(cfg: DictConfig) -> str | None:
    """The latency column of a table-backed search (``lat_ms_raspi4``), else None."""
    lat = cfg.latency
    if lat.get("source") != "table":
        return None
    return str(lat.column).replace("{device}", str(lat.device))  # TableLatency.column_name


def open_study(
    cfg: DictConfig, *, run_dir: Path, space: SearchSpace, num_classes: int
) -> tuple[optuna.Study, Any]:
    """Create the study, or load it when ``search.study_name`` exists; returns it and its storage.

    Raises:
        ConfigError: a bad objective, pruner, sampler or storage, or a study of that name that
            searches something else (another space, options, classes or objective).
    """
    s = cfg.search
    if s.objective not in OBJECTIVES:
        raise ConfigError(
            f"search.objective must be one of {list(OBJECTIVES)}, got {s.objective!r}"
        )
    c = s.constraints
    constrained = any(v is not None for v in (c.max_latency_ms, c.max_params, c.max_macs))
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
    identity = _plain(
        {
            "space": space.name,
            "space_options": space.options(),
            "num_classes": num_classes,
            "objective": s.objective,
        }
    )
    # A table's latency column (one device's figures): a resume with another device would mix
    # two devices' milliseconds in one front. Measured latency has its own check per trial
    # (the study's latency_scale). Kept apart from the identity so that studies recorded
    # before it still resume; such a study records it at its next start.
    table = _latency_table(cfg)
    # Under the gate: workers started together would otherwise read each other's half-written
    # identity and refuse the study, and could draw the same worker number.
    starts = 0
    with make_gate(storage, url=cfg.storage.url, run_dir=run_dir, study_name=s.study_name)():
        recorded = {k: study.user_attrs.get(k) for k in identity}
        if all(v is None for v in recorded.values()):
            for k, v in identity.items():
                study.set_user_attr(k, v)
            recorded = identity
        recorded_table = study.user_attrs.get(LATENCY_TABLE)
        if recorded == identity and recorded_table in (None, table):
            if table is not None and recorded_table is None:
                study.set_user_attr(LATENCY_TABLE, table)
            starts = int(study.user_attrs.get("worker_starts", 0))
            study.set_user_attr("worker_starts", starts + 1)
    if recorded != identity:
        changed = next(k for k in identity if recorded[k] != identity[k])
        raise ConfigError(
            f"search.study_name {s.study_name!r} exists with a different {changed}; resume it with "
            "the same space and data, or choose another study_name"
        )
    if recorded_table not in (None, table):
        raise ConfigError(
            f"search.study_name {s.study_name!r} exists with latency from table column "
            f"{recorded_table!r}, not {table!r}; resume it with the same latency.device, or "
            "choose another study_name"
        )
    if starts:
        # Each worker that ever opened the study samples with its own seed: workers started with
        # the same command (or a resumed run) would otherwise propose the same networks in the
        # same order and spend the budget on duplicates. The first worker keeps search.seed.
        study.sampler = make_sampler(
            to_dict(cfg.sampler), seed=s.seed + starts, constrained=constrained
        )
    return study, storage
