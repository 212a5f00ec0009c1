"""The search: an Optuna study over a space, each trial measured on both objectives.

Per trial (DESIGN.md's data flow): sample a genotype; reuse the result of an identical genotype
evaluated before in the study; build; check params/MACs constraints (infeasible trials cost a
profile only); measure latency; check the latency constraint; train the proxy with a hook that
stops dominated trials; record everything as user attributes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from nas._config import (
    ConfigError,
    EarlyStopConfig,
    call_with_options,
    check_options,
    to_dict,
)
from nas._profile import profile
from nas._space import Genotype, SearchSpace, make_space
from nas._workers import (
    MAX_RETRIES,
    GridOrder,
    JournalFile,
    budget_used,
    make_gate,
    quiet_heartbeat_warnings,
    run_trials,
    sqlalchemy_url,
    worker_alive,
)

ACCURACY = "accuracy"
LATENCY = "latency_ms"


def _space_from(options: Mapping[str, Any]) -> SearchSpace:
    options = dict(options)
    name = options.pop("name", None)
    if not name:
        raise ConfigError("space.name is missing (the space module in search_spaces/)")
    try:
        return make_space(name, **options)
    except ValueError as err:
        raise ConfigError(f"space: {err}") from None


def make_space_from_config(cfg: DictConfig | Mapping[str, Any]) -> SearchSpace:
    """The search space of a composed config's ``space`` group."""
    return _space_from(to_dict(cfg))


def _constraint_values(user_attrs: Mapping[str, Any]) -> list[float]:
    return list(user_attrs.get("constraints", [0.0, 0.0, 0.0]))


def constraints_of(trial: FrozenTrial) -> list[float]:
    """Optuna constraints function: values <= 0 are satisfied."""
    return _constraint_values(trial.user_attrs)


def is_feasible(trial: FrozenTrial) -> bool:
    return all(c <= 0 for c in constraints_of(trial))


def make_sampler(
    options: Mapping[str, Any], *, space: SearchSpace, seed: int, constrained: bool
) -> optuna.samplers.BaseSampler:
    """Optuna sampler from the ``sampler`` group (nsga2, tpe, nsga3, random, grid)."""
    options = dict(options)
    name = options.pop("name", None)
    cf = {"constraints_func": constraints_of} if constrained else {}
    factories: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
        "nsga2": optuna.samplers.NSGAIISampler,
        "tpe": optuna.samplers.TPESampler,
        "nsga3": optuna.samplers.NSGAIIISampler,
        "random": optuna.samplers.RandomSampler,
    }
    if name == "grid":
        # Grid points are enqueued one by one (nas._workers.GridOrder) and waiting trials carry
        # their parameters, so the sampler fills in nothing. Optuna's GridSampler is not
        # used: it races between workers and calls study.stop(), which ask/tell forbids.
        check_options(lambda: None, options, group="sampler")
        return optuna.samplers.RandomSampler(seed=seed)
    if name not in factories:
        raise ConfigError(f"sampler.name {name!r} is not known; choose from {[*factories, 'grid']}")
    extra: dict[str, Any] = {"seed": seed}
    if name != "random":
        extra.update(cf)
    return call_with_options(factories[name], options, group="sampler", **extra)


class DominanceStopper:
    """Early stopping of dominated trials for multi-objective studies.

    Optuna refuses ``trial.report`` in multi-objective studies, so its pruners cannot help. At
    epoch k a trial is stopped when enough finished trials that are at least as fast were
    clearly more accurate at the same epoch k (their recorded accuracy curves).
    """

    def __init__(self, cfg: EarlyStopConfig) -> None:
        self.cfg = cfg

    def hook(self, trial: optuna.Trial, latency_ms: float) -> Callable[[int, float], bool] | None:
        cfg = self.cfg
        if not cfg.enabled:
            return None
        finished = [
            t
            for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("curve") and is_feasible(t) and LATENCY in t.user_attrs
        ]
        if len(finished) < cfg.min_finished:
            return None
        faster = [t for t in finished if t.user_attrs[LATENCY] <= latency_ms]

        def on_epoch(epoch: int, accuracy: float) -> bool:
            if epoch < cfg.min_epoch:
                return False
            better = [
                t.number
                for t in faster
                if len(t.user_attrs["curve"]) >= epoch
                and t.user_attrs["curve"][epoch - 1] >= accuracy + cfg.margin
            ]
            if len(better) >= cfg.min_dominators:
                trial.set_user_attr(
                    "pruned",
                    f"dominated at epoch {epoch}: accuracy {accuracy:.4f} below trials "
                    f"{better[:5]} at equal or lower latency",
                )
                return True
            return False

        return on_epoch


@dataclass
class Objective:
    """The per-trial evaluation; see the module docstring for the order of the steps."""

    space: SearchSpace
    data_options: dict[str, Any]
    evaluator: Callable[..., Any]
    latency_options: dict[str, Any]
    num_classes: int
    device: str = "cpu"
    objective: str = "pareto"
    constraints: dict[str, float | None] = field(default_factory=dict)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    mnas_target_ms: float = 5.0
    mnas_w: float = -0.07

    def __post_init__(self) -> None:
        self._stopper = DominanceStopper(self.early_stop)

    def data_for(self, resolution: int) -> Any:
        from nas._data import load_data

        return call_with_options(load_data, self.data_options, group="data", resolution=resolution)

    def _values(self, accuracy: float, latency_ms: float) -> float | tuple[float, float]:
        if self.objective == "mnas":
            return mnas_reward(accuracy, latency_ms, self.mnas_target_ms, self.mnas_w)
        return accuracy, latency_ms

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        try:
            return self._evaluate(trial)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            first = str(err).splitlines()[0] if str(err) else ""
            trial.set_user_attr("failure", f"{type(err).__name__}: {first}"[:500])
            raise

    def _evaluate(self, trial: optuna.Trial) -> float | tuple[float, float]:
        start = time.perf_counter()
        genotype: Genotype = self.space.sample(trial)
        key = self.space.identity(genotype)
        trial.set_user_attr("genotype", genotype)
        trial.set_user_attr("genotype_key", key)
        previous = self._previous(trial, key)
        if previous is not None:
            return self._reuse(trial, previous)

        arch = self.space.arch(genotype, num_classes=self.num_classes)
        model = self.space.build(genotype, num_classes=self.num_classes)
        prof = profile(model, resolution=arch.resolution)
        trial.set_user_attr("arch", self.space.describe(genotype))
        trial.set_user_attr("resolution", arch.resolution)
        trial.set_user_attr("params", prof.params)
        trial.set_user_attr("macs", prof.macs)
        trial.set_user_attr("conv_linear_macs", prof.conv_linear_macs)
        t_profile = time.perf_counter()

        c = self.constraints
        over = [
            ("params", prof.params, c.get("max_params")),
            ("macs", prof.macs, c.get("max_macs")),
        ]
        cons = [
            0.0,
            _excess(prof.params, c.get("max_params")),
            _excess(prof.macs, c.get("max_macs")),
        ]
        violated = [
            f"{name} {value:,} > {limit:,}"
            for name, value, limit in over
            if limit and value > limit
        ]
        if violated:
            trial.set_user_attr("constraints", cons)
            trial.set_user_attr("infeasible", "; ".join(violated))
            trial.set_user_attr(ACCURACY, 0.0)
            trial.set_user_attr(LATENCY, math.inf)
            trial.set_user_attr("seconds", {"total": time.perf_counter() - start})
            return self._values(0.0, math.inf)

        from nas._latency import measure_latency

        lat = call_with_options(
            measure_latency,
            self.latency_options,
            group="latency",
            model=model,
            resolution=arch.resolution,
        )
        t_latency = time.perf_counter()
        trial.set_user_attr("latency", lat.to_dict())
        trial.set_user_attr(LATENCY, lat.median_ms)
        cons[0] = _excess(lat.median_ms, c.get("max_latency_ms"))
        trial.set_user_attr("constraints", cons)
        if cons[0] > 0:
            trial.set_user_attr(
                "infeasible", f"latency {lat.median_ms:.3f} ms > {c['max_latency_ms']} ms"
            )
            trial.set_user_attr(ACCURACY, 0.0)
            trial.set_user_attr(
                "seconds",
                {
                    "profile": t_profile - start,
                    "latency": t_latency - t_profile,
                    "total": time.perf_counter() - start,
                },
            )
            return self._values(0.0, lat.median_ms)

        data = self.data_for(arch.resolution)
        hook = self._hook(trial, lat.median_ms)
        result = self.evaluator(model, data, device=self.device, on_epoch=hook)
        end = time.perf_counter()
        trial.set_user_attr(ACCURACY, result.accuracy)
        trial.set_user_attr("curve", list(result.curve))
        trial.set_user_attr("evaluator", result.evaluator)
        trial.set_user_attr(
            "seconds",
            {
                "profile": t_profile - start,
                "latency": t_latency - t_profile,
                "train": result.seconds,
                "total": end - start,
            },
        )
        if result.stopped:
            raise optuna.TrialPruned(trial.user_attrs.get("pruned", "stopped early"))
        return self._values(result.accuracy, lat.median_ms)

    def _hook(self, trial: optuna.Trial, latency_ms: float) -> Callable[[int, float], bool] | None:
        if self.objective != "mnas":
            return self._stopper.hook(trial, latency_ms)

        def on_epoch(epoch: int, accuracy: float) -> bool:
            trial.report(mnas_reward(accuracy, latency_ms, self.mnas_target_ms, self.mnas_w), epoch)
            if trial.should_prune():
                trial.set_user_attr("pruned", f"pruned by the study's pruner at epoch {epoch}")
                return True
            return False

        return on_epoch

    @staticmethod
    def _previous(trial: optuna.Trial, key: str, poll: float = 0.5) -> FrozenTrial | None:
        """A finished trial of the same network; waits for an earlier one still running.

        Waiting only on lower-numbered trials means two workers never wait on each other.
        """
        while True:
            running = False
            for t in trial.study.get_trials(deepcopy=False):
                if t.number == trial.number or t.user_attrs.get("genotype_key") != key:
                    continue
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
                    return t
                running |= (
                    t.state == TrialState.RUNNING and t.number < trial.number and worker_alive(t)
                )
            if not running:
                return None
            # A twin whose worker on another machine died is only failed through heartbeats.
            with quiet_heartbeat_warnings():
                optuna.storages.fail_stale_trials(trial.study)
            time.sleep(poll)

    def _reuse(self, trial: optuna.Trial, previous: FrozenTrial) -> float | tuple[float, float]:
        """Copy a previous identical trial's record instead of evaluating again."""
        origin = previous.user_attrs.get("duplicate_of", previous.number)
        for name, value in previous.user_attrs.items():
            # "worker" stays this trial's own: dead-worker recovery reads it.
            if name not in ("genotype", "genotype_key", "duplicate_of", "worker", "retry_of"):
                trial.set_user_attr(name, value)
        trial.set_user_attr("duplicate_of", origin)
        if previous.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"same genotype as pruned trial {origin}")
        return self._values(previous.user_attrs[ACCURACY], previous.user_attrs[LATENCY])


def _excess(value: float, limit: float | None) -> float:
    """Constraint value for Optuna: <= 0 when satisfied (relative excess otherwise)."""
    if limit is None:
        return 0.0
    return (value - limit) / max(abs(limit), 1e-12)


def mnas_reward(accuracy: float, latency_ms: float, target_ms: float, w: float) -> float:
    """MnasNet's reward ACC·(LAT/T)^w (Tan et al. 2019, eq. 2 with a soft constraint)."""
    if not math.isfinite(latency_ms) or latency_ms <= 0:
        return 0.0
    return accuracy * (latency_ms / target_ms) ** w


def _redact(url: str) -> str:
    """A storage URL with its password hidden (for messages and files)."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def make_storage(
    url: str | None,
    *,
    run_dir: Path,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
) -> optuna.storages.BaseStorage | None:
    """Optuna storage for ``storage.url``.

    ``None`` is the embedded default, Optuna's journal file ``study.journal`` in the run
    directory (:class:`nas._workers.JournalFile`): measured here it costs far less per trial
    than SQLite (see ``experiments/throughput``) and is safe for several processes on one
    machine. A path
    is a journal file elsewhere; ``sqlite:///``, ``postgresql://`` and ``mysql://`` URLs use
    Optuna's RDB storage (with heartbeats when ``heartbeat_interval`` is set); ``:memory:``
    keeps the study in memory.
    """
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback

    if url == ":memory:":
        return None
    if url is None or "://" not in url:
        path = Path(url) if url else run_dir / "study.journal"
        if url and not path.parent.is_dir():
            raise ConfigError(
                f"storage.url: folder {path.parent} of journal file {path} does not exist"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        _check_journal_file(path)
        try:
            return JournalStorage(JournalFile(str(path)))
        except OSError as err:
            raise ConfigError(
                f"storage.url: cannot open journal file {path} ({err.strerror})"
            ) from None
        except ValueError as err:  # a damaged record in the middle of the file
            raise ConfigError(
                f"storage.url: journal file {path} is damaged ({_first_line(err)})"
            ) from None
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme not in ("sqlite", "postgresql", "postgres", "mysql"):
        raise ConfigError(
            f"storage.url: unsupported scheme {scheme!r} in {_redact(url)}; use a journal file path, "
            "sqlite:///FILE, postgresql://USER:PASSWORD@HOST/DB or :memory:"
        )
    kwargs: dict[str, Any] = {}
    try:
        with quiet_heartbeat_warnings():
            if heartbeat_interval:
                kwargs.update(
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                        max_retry=MAX_RETRIES
                    ),
                )
            return RDBStorage(sqlalchemy_url(url), engine_kwargs=_engine_kwargs(scheme), **kwargs)
    except ImportError:  # Optuna re-raises the driver's ModuleNotFoundError as ImportError
        hint = "pip install 'nas[postgres]'" if scheme.startswith("postgres") else "install one"
        raise ConfigError(
            f"storage.url: no {scheme} driver is installed for {_redact(url)}; {hint}"
        ) from None
    except Exception as err:  # SQLAlchemy raises many types for unreachable servers
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"storage.url: cannot open {_redact(url)} ({first})") from None


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _check_journal_file(path: Path) -> None:
    """Refuse an existing file that is not an Optuna journal before the storage appends to it.

    Optuna writes its first record and only then reads the file back, so a mistyped
    ``storage.url`` pointing at, say, a notes file would get a JSON line appended.
    """
    try:
        with open(path, "rb") as fh:
            first = fh.readline(1 << 20)
    except FileNotFoundError:
        return
    except OSError as err:
        raise ConfigError(
            f"storage.url: cannot open journal file {path} ({err.strerror})"
        ) from None
    if not first:
        return
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "op_code" not in record:
        raise ConfigError(
            f"storage.url: {path} is not an Optuna journal file (left unchanged); "
            "give a new file name or an existing study.journal"
        )


def _engine_kwargs(scheme: str) -> dict[str, Any]:
    if scheme in ("postgresql", "postgres"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


@dataclass
class SearchResult:
    """What :func:`run_search` returns: the study, its results and where they were written."""

    study: optuna.Study
    run_dir: Path
    results: Any
    interrupted: bool = False


class _Progress:
    """tqdm bar over the study's trial budget (all workers), showing the best trade-offs."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.total = total
        self.bar = tqdm(total=total, unit="trial", disable=not enabled, dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial | None) -> None:
        from nas._report import pareto_front, rows_of

        trials = study.get_trials(deepcopy=False)
        front = pareto_front(rows_of(trials))
        if front:
            best = max(front, key=lambda r: r.accuracy or 0.0)
            fast = front[0]
            self.bar.set_postfix_str(
                f"front={len(front)} best={100 * (best.accuracy or 0):.1f}%@{best.latency_ms:.2f}ms "
                f"fastest={fast.latency_ms:.2f}ms@{100 * (fast.accuracy or 0):.1f}%",
                refresh=False,
            )
        finished = [t for t in trials if t.state != TrialState.RUNNING]
        self.bar.n = min(self.total, budget_used(finished))
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".nas-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"output directory {run_dir} is not writable ({err.strerror})") from None


def open_study(
    cfg: DictConfig, *, run_dir: Path, space: SearchSpace, num_classes: int
) -> tuple[optuna.Study, Any]:
    """Create the study, or load it when ``search.study_name`` exists; returns it and its storage."""
    s = cfg.search
    if s.objective not in ("pareto", "mnas"):
        raise ConfigError(f"search.objective must be 'pareto' or 'mnas', got {s.objective!r}")
    c = s.constraints
    constrained = any(v is not None for v in (c.max_latency_ms, c.max_params, c.max_macs))
    sampler = make_sampler(to_dict(cfg.sampler), space=space, seed=s.seed, constrained=constrained)
    pruner: optuna.pruners.BasePruner | None = None
    if s.objective == "mnas":
        pruners = {
            "median": optuna.pruners.MedianPruner(n_startup_trials=4),
            "none": optuna.pruners.NopPruner(),
        }
        if s.mnas.pruner not in pruners:
            raise ConfigError(
                f"search.mnas.pruner must be one of {list(pruners)}, got {s.mnas.pruner!r}"
            )
        pruner = pruners[s.mnas.pruner]
    storage = make_storage(
        cfg.storage.url,
        run_dir=run_dir,
        heartbeat_interval=cfg.storage.heartbeat_interval,
        grace_period=cfg.storage.grace_period,
    )
    directions = ["maximize", "minimize"] if s.objective == "pareto" else ["maximize"]
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
            f"search.study_name {s.study_name!r} exists with directions {existing}, not {directions}; "
            "choose another study_name"
        )
    identity = {
        "space": space.name,
        "space_options": space.options(),
        "num_classes": num_classes,
        "objective": s.objective,
    }
    # Under the gate: workers started together would otherwise read each other's half-written
    # identity and refuse the study, and could draw the same worker number.
    with make_gate(storage, url=cfg.storage.url, run_dir=run_dir, study_name=s.study_name)():
        recorded = {k: study.user_attrs.get(k) for k in identity}
        if all(v is None for v in recorded.values()):
            for k, v in identity.items():
                study.set_user_attr(k, json.loads(json.dumps(v)))
            recorded = json.loads(json.dumps(identity))
        if recorded == json.loads(json.dumps(identity)):
            starts = int(study.user_attrs.get("worker_starts", 0))
            study.set_user_attr("worker_starts", starts + 1)
    if recorded != json.loads(json.dumps(identity)):
        changed = next(k for k in identity if recorded[k] != json.loads(json.dumps(identity[k])))
        raise ConfigError(
            f"search.study_name {s.study_name!r} exists with a different {changed}; resume it with "
            "the same space and data, or choose another study_name"
        )
    if starts:
        # Each worker that ever opened the study samples with its own seed: workers started with
        # the same command (or a resumed run) would otherwise propose the same networks in the
        # same order and spend the budget on duplicates. The first worker keeps search.seed.
        study.sampler = make_sampler(
            to_dict(cfg.sampler), space=space, seed=s.seed + starts, constrained=constrained
        )
    return study, storage


def run_search(cfg: DictConfig, *, run_dir: str | Path | None = None) -> SearchResult:
    """Run (or resume) the search a composed config describes and write its results.

    ``search.n_trials`` is the study's total budget: a resumed study runs only the trials it is
    missing. Results files are (re)written at the end, also after Ctrl-C.

    Example:
        >>> from nas import compose, run_search
        >>> cfg = compose(["conf=mbconv_pareto", "search.n_trials=2", "data=synthetic"])
        >>> result = run_search(cfg, run_dir="/tmp/nas-doc-run")  # doctest: +SKIP
    """
    run_dir = Path(run_dir) if run_dir is not None else _hydra_run_dir()
    _check_writable(run_dir)
    s = cfg.search
    if s.n_trials < 1:
        raise ConfigError(f"search.n_trials must be >= 1, got {s.n_trials}")
    if s.threads is not None and s.threads < 1:
        raise ConfigError(f"search.threads must be >= 1 or null, got {s.threads}")
    if s.timeout is not None and not s.timeout > 0:
        raise ConfigError(f"search.timeout must be > 0 seconds or null, got {s.timeout}")
    # Checked before the study is opened: a failed command must leave a resumed run untouched.
    if s.n_workers < 1:
        raise ConfigError(f"search.n_workers must be >= 1, got {s.n_workers}")
    if s.n_workers > 1 and cfg.storage.url == ":memory:":
        raise ConfigError("search.n_workers > 1 needs a shared storage, not storage.url=:memory:")
    threads = torch.get_num_threads()
    if s.threads is not None:
        torch.set_num_threads(s.threads)
    try:
        return _run_search(cfg, run_dir)
    finally:
        torch.set_num_threads(threads)


def _prepare(cfg: DictConfig, run_dir: Path) -> tuple[SearchSpace, Objective, optuna.Study, Any]:
    """Space, objective, study and storage of a config (the same in every worker)."""
    from nas._latency import measure_latency
    from nas._proxy import make_evaluator

    s = cfg.search
    space = make_space_from_config(cfg.space)
    objective = Objective(
        space=space,
        data_options=to_dict(cfg.data),
        evaluator=call_with_options(make_evaluator, to_dict(cfg.evaluator), group="evaluator"),
        latency_options=to_dict(cfg.latency),
        num_classes=0,
        device=s.device,
        objective=s.objective,
        constraints=to_dict(s.constraints),
        early_stop=EarlyStopConfig(**to_dict(s.early_stop)),
        mnas_target_ms=s.mnas.target_ms,
        mnas_w=s.mnas.w,
    )
    check_options(
        measure_latency, objective.latency_options, group="latency", exclude=("model", "resolution")
    )
    if cfg.sampler.name == "grid":
        GridOrder(space.grid(), seed=s.seed)  # a grid too large fails here, before the study
    data = objective.data_for(space.resolution)
    objective.num_classes = data.num_classes
    _check_space_fits(space, data)
    study, storage = open_study(
        cfg, run_dir=run_dir, space=space, num_classes=objective.num_classes
    )
    return space, objective, study, storage


def _check_space_fits(space: SearchSpace, data: Any) -> None:
    """Fail before the study when the space's networks cannot take the data's resolution."""
    from nas._data import check_resolution

    genotype = space.random_genotype(0)
    model = space.build(genotype, num_classes=data.num_classes)
    try:
        check_resolution(model, space.resolution_of(genotype))
    except ValueError as err:
        raise ConfigError(f"space.resolution: {err}") from None


def _trial_loop(
    cfg: DictConfig,
    run_dir: Path,
    study: optuna.Study,
    storage: Any,
    objective: Objective,
    callbacks: list[Any],
) -> None:
    s = cfg.search
    gate = make_gate(storage, url=cfg.storage.url, run_dir=run_dir, study_name=s.study_name)
    grid = GridOrder(objective.space.grid(), seed=s.seed) if cfg.sampler.name == "grid" else None
    run_trials(
        study,
        objective,
        storage=storage,
        gate=gate,
        n_trials=s.n_trials,
        timeout=s.timeout,
        callbacks=callbacks,
        grid=grid,
    )


def _worker_process(container: dict[str, Any], run_dir: str, index: int) -> None:
    """Entry point of an extra worker process (``search.n_workers`` > 1)."""
    import sys

    from omegaconf import OmegaConf

    cfg = OmegaConf.create(container)
    if cfg.search.threads is not None:
        torch.set_num_threads(cfg.search.threads)
    try:
        _, objective, study, storage = _prepare(cfg, Path(run_dir))
        _trial_loop(cfg, Path(run_dir), study, storage, objective, [])
    except KeyboardInterrupt:
        sys.exit(130)
    except ValueError as err:
        print(f"nas search worker {index}: error: {err}", file=sys.stderr)
        sys.exit(2)


def _start_workers(cfg: DictConfig, run_dir: Path, study: optuna.Study) -> list[Any]:
    import multiprocessing

    n = cfg.search.n_workers  # checked by run_search
    if n == 1:
        return []
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=True)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker_process, args=(container, str(run_dir), i), daemon=False)
        for i in range(1, n)
    ]
    for w in workers:
        w.start()
    return workers


def _run_search(cfg: DictConfig, run_dir: Path) -> SearchResult:
    from nas._logging import make_logger
    from nas._report import write_results

    s = cfg.search
    space, objective, study, storage = _prepare(cfg, run_dir)
    logger = make_logger(
        to_dict(cfg.logger), run_dir=run_dir, config=to_dict(cfg), study_name=s.study_name
    )
    progress = _Progress(s.n_trials, s.progress)
    progress(study, None)
    interrupted = False
    workers = []
    try:
        workers = _start_workers(cfg, run_dir, study)
        _trial_loop(cfg, run_dir, study, storage, objective, [progress, logger.on_trial])
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
            remeasure_front(study, objective)
            if cfg.report.remeasure_front and not interrupted
            else {}
        )
        results = write_results(
            study,
            space=space,
            num_classes=objective.num_classes,
            run_dir=run_dir,
            plots=cfg.report.plots,
            hv_reference_latency_ms=cfg.report.hv_reference_latency_ms,
            extra={"objective": s.objective, "sampler": cfg.sampler.name},
            remeasured=remeasured,
        )
        logger.on_results(study, results)
        logger.finish()
    return SearchResult(study=study, run_dir=run_dir, results=results, interrupted=interrupted)


def remeasure_front(study: optuna.Study, objective: Objective) -> dict[int, dict[str, Any]]:
    """Measure the Pareto front's networks again, side by side in the same rounds.

    During the search each network was timed in its own minute, and this machine's speed drifts
    between minutes; timing the front together makes its latencies comparable with each other.
    """
    from nas._latency import measure_latencies
    from nas._report import pareto_front, rows_of

    front = pareto_front(rows_of(study.get_trials(deepcopy=False)))
    if len(front) < 2:
        return {}
    space, n = objective.space, objective.num_classes
    models = [space.build(r.genotype, num_classes=n) for r in front]
    resolutions = [space.resolution_of(r.genotype) for r in front]
    results = measure_latencies(models, resolution=resolutions, **objective.latency_options)
    return {r.trial: res.to_dict() for r, res in zip(front, results, strict=True)}


def _hydra_run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)
