"""Config schema (Hydra structured configs) and helpers to call code with config options.

The fixed parts of the config (search, storage, logger, report, scaling) are dataclasses, so a
misspelt key fails when Hydra composes the config. The groups whose keys depend on the chosen
implementation (space, sampler, data, evaluator, latency) are mappings whose keys are checked
against the keyword arguments of the function they configure (:func:`call_with_options`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key."""


@dataclass
class ConstraintsConfig:
    """Hard limits; a trial over any of them is infeasible and never trained."""

    max_latency_ms: float | None = None
    max_params: int | None = None
    max_macs: int | None = None


@dataclass
class EarlyStopConfig:
    """Stop a trial during proxy training when it is clearly dominated.

    At epoch k (>= ``min_epoch``), once ``min_finished`` trials have finished, a trial whose
    accuracy at epoch k is below ``acc_k - margin`` of at least ``min_dominators`` finished
    trials that are at least as fast is stopped and recorded as pruned.
    """

    enabled: bool = True
    min_epoch: int = 1
    min_finished: int = 4
    min_dominators: int = 2
    margin: float = 0.02


@dataclass
class PromoteConfig:
    """More trainings for the networks that may reach the front (multi-fidelity promotion).

    After its first training, a trial none of whose front's members at equal or lower latency
    is more accurate by ``margin`` or more is trained again from a fresh initialisation (the
    next seed), up to ``seeds`` trainings, the rule checked again after each; its accuracy is
    the mean over its trainings (``budget`` in its record: how many). Early-stopped, screened
    and infeasible trials are never promoted. ``seeds: 1``: off.
    """

    seeds: int = 1
    margin: float = 0.0


@dataclass
class MnasConfig:
    """MnasNet's single objective ACC·(LAT/T)^w, used when ``search.objective=mnas``.

    ``pruner``: ``median`` (Optuna's MedianPruner on the reward after each epoch, from trial
    ``startup_trials`` on) or ``none``.
    """

    target_ms: float = 5.0
    w: float = -0.07
    pruner: str = "median"
    startup_trials: int = 4


@dataclass
class SearchConfig:
    study_name: str = "search"
    n_trials: int = 20
    timeout: float | None = None
    seed: int = 0
    objective: str = "pareto"
    device: str = "cpu"
    # Intra-op threads for the whole search (null: torch's default). One thread by default: the
    # small proxy networks gain little from two, and on a loaded 2-core machine two threads
    # trained 7x slower than one (OpenMP threads spinning on oversubscribed cores).
    threads: int | None = 1
    n_workers: int = 1
    progress: bool = True
    # Resume a study whose recorded protocol (evaluator, data, latency, seed, objective, space)
    # differs from this run's; the change is recorded on the study (user attribute
    # protocol_changes). Without it such a resume is refused before anything is written.
    allow_protocol_change: bool = False
    constraints: ConstraintsConfig = field(default_factory=ConstraintsConfig)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    mnas: MnasConfig = field(default_factory=MnasConfig)


@dataclass
class StorageConfig:
    url: str | None = None
    heartbeat_interval: int | None = None
    grace_period: int | None = None


@dataclass
class LoggerConfig:
    name: str = "none"
    project: str = "nas"
    entity: str | None = None
    mode: str = "offline"
    group: str | None = None
    dir: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class ReportConfig:
    """Result files; ``hv_reference_latency_ms`` fixes the hypervolume reference point."""

    plots: bool = True
    hv_reference_latency_ms: float | None = None
    remeasure_front: bool = True


@dataclass
class ConfirmConfig:
    """Re-evaluation of step 1's leading networks before one is crowned (successive halving).

    The ``top`` most accurate distinct networks (within the rule's budget) are trained again
    with one more seed each round, and the better half by mean accuracy goes on; after
    ``rounds`` rounds (or with one left) the best mean wins. ``top: 0`` crowns step 1's single
    evaluation, as the paper's procedure does.
    """

    top: int = 4
    rounds: int = 2


@dataclass
class WinnerConfig:
    """How step 1 of compound scaling picks (α, β, γ).

    ``accuracy``: the highest proxy accuracy (the paper's rule); ``latency_budget``: the
    highest accuracy with latency <= ``max_latency_ms``; ``macs_budget``: the highest accuracy
    with MACs <= ``max_macs``. Ties go to fewer MACs, then to α·β²·γ² closest to the target.
    """

    rule: str = "accuracy"
    max_latency_ms: float | None = None
    max_macs: int | None = None
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)


@dataclass
class ScalingConfig:
    """EfficientNet's two-step compound scaling (``nas.run_scaling``); set by ``conf=effnet_grid``.

    ``mode``: ``search`` (step 1 grid over the space's admissible points, then step 2 from the
    winner) or ``official`` (no step 1: the published B0..B7 multipliers, whatever ``max_phi``).
    ``max_phi``: step 2 builds φ = 0..max_phi. ``family``: ``proxy`` builds, measures, trains
    and exports step 2's members at the searched scale (the space's ``resolution`` /
    ``base_width``), with params and MACs at full scale beside them; ``full`` does all of it at
    the base's own scale.
    ``accuracy``: proxy-train every member of step 2 with the ``evaluator``;
    ``accuracy_max_phi``: only those up to this φ (the largest cost the most; the others are
    still built, profiled and timed).
    """

    mode: str = "search"
    max_phi: int = 7
    family: str = "proxy"
    accuracy: bool = True
    accuracy_max_phi: int | None = None
    winner: WinnerConfig = field(default_factory=WinnerConfig)


@dataclass
class Config:
    space: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    evaluator: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    storage: StorageConfig = field(default_factory=StorageConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    scaling: ScalingConfig | None = None


def register_configs() -> None:
    """Register the schema with Hydra's ConfigStore (``defaults: [schema, ...]``)."""
    ConfigStore.instance().store(name="schema", node=Config)


register_configs()


def to_dict(node: Any) -> dict[str, Any]:
    """A resolved plain dict of a config node (or a mapping)."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    return dict(node or {})


def check_options(
    fn: Callable[..., Any], options: Mapping[str, Any], *, group: str, exclude: tuple[str, ...] = ()
) -> None:
    """Raise :class:`ConfigError` naming the first key of ``options`` that ``fn`` does not take."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    allowed = [n for n, p in params.items() if p.kind in kinds and n != "self" and n not in exclude]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{group}.{unknown[0]} is not an option of {group}; allowed: {', '.join(allowed)}"
        )


def call_with_options(
    fn: Callable[..., T], options: Mapping[str, Any], *, group: str, **extra: Any
) -> T:
    """Call ``fn(**options, **extra)``, naming any option ``fn`` does not take.

    Example:
        >>> call_with_options(lambda *, a=1: a, {"a": 2}, group="demo")
        2
    """
    check_options(fn, options, group=group, exclude=tuple(extra))
    return fn(**options, **extra)


def compose(
    overrides: list[str] | None = None,
    *,
    config_name: str = "config",
    return_hydra_config: bool = False,
) -> DictConfig:
    """Compose the search config as ``python -m nas search`` would, without running it.

    Hydra's ``hydra:`` interpolations are not available outside a run; the run directory must
    then be passed to :func:`nas.run_search` explicitly.

    Example:
        >>> cfg = compose(["conf=mbconv_pareto", "search.n_trials=3"])
        >>> cfg.search.n_trials
        3
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(
            config_name=config_name,
            overrides=list(overrides or []),
            return_hydra_config=return_hydra_config,
        )
