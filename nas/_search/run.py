"""``run_search``: a composed config in, a finished (or resumed) study and its results out.

The set-up is the same in every worker process (:func:`prepare`): the space, the objective with
its data, evaluator and latency settings, the study, and the gate. Then the trial loop
(:func:`nas._storage.workers.run_trials`) runs in this process and in ``search.n_workers - 1``
more, and the results are written once they all stop, also after Ctrl-C.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import optuna
import torch
from omegaconf import DictConfig, OmegaConf

from nas._accuracy.evaluators import make_evaluator
from nas._accuracy.proxy import Evaluator
from nas._config import (
    ConfigError,
    ConstraintsConfig,
    EarlyStopConfig,
    MnasConfig,
    PromoteConfig,
    call_with_options,
    to_dict,
)
from nas._data.data import Dataset, check_resolution, load_data
from nas._latency.latency import LatencySettings, measure_latencies
from nas._latency.source import LatencySource, calibration_images, latency_source
from nas._logging.logger import make_logger
from nas._report.results import Results, write_results
from nas._search.objective import Objective
from nas._search.progress import Progress
from nas._search.samplers import GridOrder
from nas._search.study import open_study
from nas._spaces.base import SearchSpace
from nas._spaces.registry import make_space
from nas._storage.gate import Gate, make_gate
from nas._storage.workers import run_trials
from nas._trials.latency import LatencyResult
from nas._trials.pareto import pareto_front
from nas._trials.record import TrialRecord
from nas._trials.study import EVALUATOR_STATE


@dataclass
class SearchResult:
    """What :func:`run_search` returns: the study, its results and where they were written."""

    study: optuna.Study
    run_dir: Path
    results: Results
    interrupted: bool = False


def space_from_config(options: Mapping[str, Any]) -> SearchSpace:
    """The search space of a config's ``space`` group (``name`` and the space's options).

    Raises:
        ConfigError: no ``space.name``, an unknown space, or an option it refuses.
    """
    options = to_dict(options)
    if not options.get("name"):
        raise ConfigError("space.name is missing (the space module in search_spaces/)")
    try:
        return make_space(**options)
    except ValueError as err:
        raise ConfigError(f"space: {err}") from None


def latency_from_config(options: Mapping[str, Any]) -> LatencySource | LatencySettings:
    """The latency source of a config's ``latency`` group (``source``: measured, table,
    predictor).

    Raises:
        ConfigError: an unknown key or a bad value, named; or a backend whose package is not
            installed (one line naming the extra to install).
    """
    try:
        return latency_source(options)
    except ConfigError:
        raise
    except (ValueError, ImportError) as err:
        raise ConfigError(f"latency: {err}") from None


@dataclass
class Prepared:
    """Everything a worker needs to run trials of one search."""

    space: SearchSpace
    objective: Objective
    study: optuna.Study
    storage: Any
    gate: Gate
    grid: GridOrder | None


def prepare(cfg: DictConfig, run_dir: Path) -> Prepared:
    """Space, objective, study and gate of a config (the same in every worker).

    Everything that can be wrong with the config fails here, before the study is opened, so a
    failed command leaves a resumed run untouched.
    """
    s = cfg.search
    space = space_from_config(to_dict(cfg.space))
    evaluator = call_with_options(make_evaluator, to_dict(cfg.evaluator), group="evaluator")
    latency = latency_from_config(to_dict(cfg.latency))
    data_options = to_dict(cfg.data)

    def data(resolution: int) -> Dataset:
        return call_with_options(load_data, data_options, group="data", resolution=resolution)

    grid = GridOrder(space.grid(), seed=s.seed) if cfg.sampler.name == "grid" else None
    first = data(space.resolution)
    _check_space_fits(space, first)
    _check_tables(space, evaluator, latency)
    objective = Objective(
        space=space,
        data=data,
        evaluator=evaluator,
        latency=latency,
        num_classes=first.num_classes,
        device=s.device,
        objective=s.objective,
        constraints=ConstraintsConfig(**to_dict(s.constraints)),
        early_stop=EarlyStopConfig(**to_dict(s.early_stop)),
        promote=PromoteConfig(**to_dict(s.promote)),
        mnas=MnasConfig(**to_dict(s.mnas)),
        seed=s.seed,
        prune_duplicates=cfg.sampler.name != "grid",
    )
    study, storage = open_study(
        cfg,
        run_dir=run_dir,
        space=space,
        num_classes=first.num_classes,
        evaluator=evaluator,
        latency=latency,
    )
    gate = make_gate(storage, url=cfg.storage.url, run_dir=run_dir, study_name=s.study_name)
    state = evaluator_state(study, gate, objective, progress=s.progress)
    if state is not None:
        objective.evaluator = evaluator.with_state(state)
    return Prepared(space, objective, study, storage, gate, grid)


def evaluator_state(
    study: optuna.Study, gate: Gate, objective: Objective, *, progress: bool = False
) -> dict[str, Any] | None:
    """The evaluator's once-per-study state (an ensemble's reference population): read from
    the study, or computed and stored by the first worker to get here (under the gate, so that
    every worker and every resume uses the one stored)."""
    evaluator = objective.evaluator
    if getattr(type(evaluator), "study_state", Evaluator.study_state) is Evaluator.study_state:
        return None  # the evaluator keeps no study state (or is a plain function)
    with gate():
        state = study.user_attrs.get(EVALUATOR_STATE)
        if state is not None:
            return state
        from tqdm.auto import tqdm

        bar = tqdm(total=0, unit="net", desc="reference population", disable=not progress)

        def advance(done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()

        try:
            state = evaluator.study_state(
                objective.space,
                objective.data,
                num_classes=objective.num_classes,
                seed=objective.seed,
                progress=advance,
            )
        finally:
            bar.close()
        if state is not None:
            study.set_user_attr(EVALUATOR_STATE, state)
        return state


def _check_space_fits(space: SearchSpace, data: Dataset) -> None:
    """Fail before the study when the space's networks cannot take the data's resolution."""
    genotype = space.random_genotype(0)
    model = space.build(genotype, num_classes=data.num_classes)
    try:
        check_resolution(model, space.resolution_of(genotype))
    except ValueError as err:
        raise ConfigError(f"space.resolution: {err}") from None


def _check_tables(space: SearchSpace, evaluator: Any, latency: object) -> None:
    """Fail before the study when a benchmark table does not hold the space's networks."""
    identity = space.identity(space.random_genotype(0))
    for group, source in (("evaluator", evaluator), ("latency", latency)):
        check = getattr(source, "check", None)
        if check is None:
            continue
        try:
            check(identity)
        except ValueError as err:
            raise ConfigError(f"{group}: {err}") from None


def _check_search(cfg: DictConfig) -> None:
    s = cfg.search
    if s.n_trials < 1:
        raise ConfigError(f"search.n_trials must be >= 1, got {s.n_trials}")
    if s.threads is not None and s.threads < 1:
        raise ConfigError(f"search.threads must be >= 1 or null, got {s.threads}")
    if s.timeout is not None and not s.timeout > 0:
        raise ConfigError(f"search.timeout must be > 0 seconds or null, got {s.timeout}")
    if s.n_workers < 1:
        raise ConfigError(f"search.n_workers must be >= 1, got {s.n_workers}")
    if s.promote.seeds < 1:
        raise ConfigError(f"search.promote.seeds must be >= 1, got {s.promote.seeds}")
    if not s.promote.margin >= 0:
        raise ConfigError(f"search.promote.margin must be >= 0, got {s.promote.margin}")
    if s.n_workers > 1 and cfg.storage.url == ":memory:":
        raise ConfigError("search.n_workers > 1 needs a shared storage, not storage.url=:memory:")


def run_search(cfg: DictConfig, *, run_dir: str | Path | None = None) -> SearchResult:
    """Run (or resume) the search a composed config describes and write its results.

    ``search.n_trials`` is the study's total budget: a resumed study runs only the trials it is
    missing. Results files are (re)written at the end, also after Ctrl-C.

    Raises:
        ConfigError: a bad config value (the message names the key).

    Example:
        >>> from nas import compose, run_search
        >>> cfg = compose(["conf=mbconv_pareto", "search.n_trials=2", "data=synthetic"])
        >>> result = run_search(cfg, run_dir="/tmp/nas-doc-run")  # doctest: +SKIP
    """
    run_dir = Path(run_dir) if run_dir is not None else hydra_run_dir()
    check_writable(run_dir)
    _check_search(cfg)  # before the study is opened: a failed command leaves a run untouched
    threads = torch.get_num_threads()
    if cfg.search.threads is not None:
        torch.set_num_threads(cfg.search.threads)
    try:
        return _run(cfg, run_dir)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: DictConfig, run_dir: Path) -> SearchResult:
    s = cfg.search
    search = prepare(cfg, run_dir)
    study = search.study
    logger = make_logger(
        to_dict(cfg.logger), run_dir=run_dir, config=to_dict(cfg), study_name=s.study_name
    )
    progress = Progress(s.n_trials, s.progress)
    progress(study, None)
    interrupted = False
    workers: list[Any] = []
    try:
        workers = _start_workers(cfg, run_dir)
        _trial_loop(cfg, search, [progress, logger.on_trial])
        for w in workers:
            w.join()
        progress(study, None)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
                w.join()
        progress.close()
        remeasured = (
            remeasure_front(study, search.objective)
            if cfg.report.remeasure_front and not interrupted
            else {}
        )
        results = write_results(
            study,
            space=search.space,
            num_classes=search.objective.num_classes,
            run_dir=run_dir,
            plots=cfg.report.plots,
            hv_reference_latency_ms=cfg.report.hv_reference_latency_ms,
            extra={"objective": s.objective, "sampler": cfg.sampler.name},
            remeasured=remeasured,
        )
        logger.on_results(study, results)
        logger.finish()
    return SearchResult(study=study, run_dir=run_dir, results=results, interrupted=interrupted)


def _trial_loop(cfg: DictConfig, search: Prepared, callbacks: list[Any]) -> None:
    run_trials(
        search.study,
        search.objective,
        storage=search.storage,
        gate=search.gate,
        n_trials=cfg.search.n_trials,
        timeout=cfg.search.timeout,
        callbacks=callbacks,
        grid=search.grid,
    )


def _worker_process(container: dict[str, Any], run_dir: str, index: int) -> None:
    """Entry point of an extra worker process (``search.n_workers`` > 1)."""
    cfg = OmegaConf.create(container)
    if cfg.search.threads is not None:
        torch.set_num_threads(cfg.search.threads)
    try:
        _trial_loop(cfg, prepare(cfg, Path(run_dir)), [])
    except KeyboardInterrupt:
        sys.exit(130)
    except ValueError as err:
        print(f"nas search worker {index}: error: {err}", file=sys.stderr)
        sys.exit(2)


def _start_workers(cfg: DictConfig, run_dir: Path) -> list[Any]:
    """Start ``search.n_workers - 1`` more worker processes on the same study."""
    n = cfg.search.n_workers
    if n == 1:
        return []
    container = OmegaConf.to_container(cfg, resolve=True)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker_process, args=(container, str(run_dir), i), daemon=False)
        for i in range(1, n)
    ]
    for w in workers:
        w.start()
    return workers


def remeasure_front(study: optuna.Study, objective: Objective) -> dict[int, LatencyResult]:
    """Measure the Pareto front's networks again, side by side in the same rounds.

    During the search each network was timed in its own minute, and this machine's speed drifts
    between minutes; timing the front together makes its latencies comparable with each other.
    """
    if not objective.latency.measured:
        return {}  # read from a table or predicted: nothing to time again
    front = pareto_front(TrialRecord.all_of(study.get_trials(deepcopy=False)))
    if len(front) < 2:
        return {}
    space, n = objective.space, objective.num_classes
    models = [space.build(r.genotype, num_classes=n) for r in front]
    resolutions = [space.resolution_of(r.genotype) for r in front]
    settings = cast(LatencySettings, objective.latency)  # what is measured here is settings
    calibration = calibration_images(settings, lambda r: objective.data(r).x_train, resolutions)
    results = measure_latencies(
        models, resolution=resolutions, settings=settings, calibration=calibration
    )
    return {r.trial: res for r, res in zip(front, results, strict=True)}


def check_writable(run_dir: Path) -> None:
    """Raise :class:`ConfigError` unless ``run_dir`` exists (or can be made) and takes files."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".nas-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"output directory {run_dir} is not writable ({err.strerror})") from None


def hydra_run_dir() -> Path:
    """The run directory of the Hydra job this process runs."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)
