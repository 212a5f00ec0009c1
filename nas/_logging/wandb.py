"""Weights & Biases logger (``logger=wandb``): one run per study, offline by default.

A thin layer over the public ``wandb`` API (optuna-integration's callback is deprecated and logs
scalars only). Logging is a side channel: the first failure of any kind is reported once on
stderr and the logger goes quiet; the search and its result files are never affected.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.trial import FrozenTrial

from nas._config import ConfigError
from nas._io import finite
from nas._logging.protocol import FamilyLog
from nas._report.results import FRONT_COLUMNS, TRIAL_COLUMNS, Results, trial_rows
from nas._trials.index import StudyIndex
from nas._trials.metric import FirstObjective, study_objective
from nas._trials.pareto import ParetoFront, hypervolume, hypervolume_history
from nas._trials.record import TrialRecord

MODES = ("offline", "online", "disabled")
OPTIONS = ("name", "project", "entity", "mode", "dir", "tags", "group")
#: Metrics logged per trial, all plotted against the ``trial`` number. The first objective is
#: ``accuracy``, or ``score`` in a study of a training-free evaluator (one or the other).
TRIAL_METRICS = (
    "accuracy",
    "score",
    "latency_ms",
    "params",
    "macs",
    "seconds",
    "state",
    "feasible",
    "front_size",
    "hypervolume",
)
#: The trials table's columns: those of trials.csv.
TRIAL_TABLE_COLUMNS = tuple(TRIAL_COLUMNS)
#: The front table's columns.
FRONT_TABLE_COLUMNS = tuple(FRONT_COLUMNS)

F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """Run a public method unless the logger has gone quiet; a failure makes it go quiet."""

    @functools.wraps(method)
    def wrapper(self: WandbLogger, *args: Any, **kwargs: Any) -> None:
        if self._quiet:
            return None
        try:
            method(self, *args, **kwargs)
        except Exception as err:  # any logging failure (wandb, network, disk) must spare the search
            self._fail(method.__name__, err)
        return None

    return wrapper  # type: ignore[return-value]


def _flat_value(value: Any) -> Any:
    """A genotype value as a wandb scalar: primitives as they are, anything else as JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def _env_name(setting: str) -> str:
    """The environment variable wandb reads a setting from (``x_foo`` is ``WANDB__FOO``)."""
    if setting.startswith("x_"):
        return "WANDB__" + setting[2:].upper()
    return "WANDB_" + setting.upper()


def _artifact_name(study_name: str, what: str = "architectures") -> str:
    """wandb artifact names allow letters, digits, ``-``, ``_`` and ``.`` only."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", study_name).strip("-") or "study"
    return f"{stem[:100]}-{what}"


class WandbLogger:
    """Logs a study to one Weights & Biases run: per-trial metrics, then the Pareto results.

    Offline by default: the run is written under ``<dir>/wandb/offline-run-*`` with no account
    or network, and ``wandb sync DIR`` uploads it later (printed once at the end).
    ``mode="online"`` streams to a live dashboard; it needs credentials from ``wandb login`` or
    ``WANDB_API_KEY`` and never prompts for them. ``mode="disabled"`` logs nothing.

    Per trial (:meth:`on_trial`, an Optuna callback) it logs accuracy (``score`` instead when
    the evaluator gives a training-free score, not an accuracy), latency_ms, params, macs,
    seconds, state, feasible, the size of the current front, the running hypervolume and the
    genotype as ``genotype/<label>``, all against the ``trial`` number (a custom x-axis, not
    wandb's ``step``: wandb drops any row logged at a step lower than the last one, which
    trials finishing out of order would hit). The running hypervolume uses the configured
    reference latency, else 1.1x the slowest latency so far; it never decreases, and its last
    value equals the final one. At the end (:meth:`on_results`) it logs a table of all trials
    with a Pareto flag and the genotype, a scatter plot of accuracy against latency over it,
    the hypervolume curve with the final reference point, the front as its own table,
    ``pareto.png``, and ``pareto.json`` plus ``archs/*.yaml`` as an artifact of type
    ``architectures``; the tables' first objective column is named as per trial, and the
    summary's ``first_objective`` names it (``accuracy``, ``ensemble_score``).

    Any failure (wandb missing, init, network, disk) is reported once as one line on stderr;
    from then on every method is a no-op. Bad options raise :class:`~nas._config.ConfigError`
    before anything starts.

    Args:
        options: The ``logger`` config group: ``project``, ``entity``, ``mode`` ("offline",
            "online" or "disabled"), ``dir`` (``None``: ``run_dir``), ``tags`` (a list),
            optionally ``group``.
        run_dir: The search's run directory.
        config: The resolved config, stored as the run's config.
        study_name: The run's name (one run per study).

    Example:
        >>> import tempfile, optuna
        >>> from pathlib import Path
        >>> run_dir = Path(tempfile.mkdtemp())
        >>> logger = WandbLogger({"mode": "offline"}, run_dir=run_dir, config={}, study_name="demo")
        >>> study = optuna.create_study(directions=["maximize", "minimize"])
        >>> study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2,
        ...                callbacks=[logger.on_trial])
        >>> logger.finish()
        >>> sorted(p.name.split("-")[0] for p in (run_dir / "wandb").glob("offline-run-*"))
        ['offline']
    """

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        run_dir: Path,
        config: Mapping[str, Any],
        study_name: str,
        job_type: str = "search",
        run_name: str | None = None,
    ) -> None:
        options = dict(options)
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                f"logger.{unknown[0]} is not a wandb logger option; allowed: {list(OPTIONS)}"
            )
        mode = options.get("mode") or "offline"
        if mode not in MODES:
            raise ConfigError(f"logger.mode must be one of {list(MODES)}, got {mode!r}")
        tags = options.get("tags") or []
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise ConfigError(f"logger.tags must be a list of strings, got {tags!r}")
        self.mode: str = mode
        self.study_name = study_name
        self.job_type = job_type
        self.run_name = run_name or study_name
        self.sync_dir: Path | None = None
        self._run: Any = None
        self._wandb: Any = None
        self._quiet = mode == "disabled"
        self._hv_reference: float | None = (config.get("report") or {}).get(
            "hv_reference_latency_ms"
        )
        self._bounded = ParetoFront(max_latency_ms=self._hv_reference)
        self._bounded_read = 0  # records of the study's index added to _bounded
        self._objective: FirstObjective | None = None
        if self._quiet:
            return
        try:
            self._start(options, tags=list(tags), run_dir=Path(run_dir), config=dict(config))
        except Exception as err:  # as in _guarded: a logger that cannot start spares the search
            self._fail("init", err)

    @property
    def active(self) -> bool:
        """Whether a run is open and logging (False after a failure, after finish, or disabled)."""
        return self._run is not None and not self._quiet

    def _start(
        self, options: dict[str, Any], *, tags: list[str], run_dir: Path, config: dict[str, Any]
    ) -> None:
        if self.mode == "offline":
            # wandb-core reports its own errors to W&B unless told not to; offline means no network.
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        import wandb

        self._wandb = wandb
        if self.mode == "online":
            # prompt=False: no credentials is a failure, never an interactive question in the
            # middle of a search. wandb.login's chatter about where it found the key is dropped.
            with contextlib.redirect_stderr(io.StringIO()):
                found = wandb.login(prompt=False, verify=False)
            if not found:
                raise RuntimeError(
                    "no W&B credentials for logger.mode=online; "
                    "run `wandb login` or set WANDB_API_KEY"
                )
        root = Path(options.get("dir") or run_dir)
        root.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=options.get("project") or "nas",
            entity=options.get("entity"),
            # The runs of one study (compound scaling's two steps) are grouped by it.
            group=options.get("group") or (None if self.job_type == "search" else self.study_name),
            job_type=self.job_type,
            name=self.run_name,
            tags=tags,
            config=config,
            dir=str(root),
            mode=self.mode,
            settings=wandb.Settings(**self._settings(wandb)),
        )
        self.sync_dir = Path(self._run.sync_dir)
        if self.mode == "online":
            print(f"wandb: live run at {self._run.url}", file=sys.stderr)
        if self.job_type == "search":
            self._run.define_metric("trial")
            for name in (*TRIAL_METRICS, "genotype/*"):
                self._run.define_metric(name, step_metric="trial")

    def _settings(self, wandb: Any) -> dict[str, Any]:
        """Settings that keep wandb out of the search's way; a ``WANDB_*`` variable still wins."""
        wanted: dict[str, Any] = {
            # No stdout/stderr capture: it wraps every write of the progress bar.
            "console": "off",
            # No system-metrics sampler: a background process would perturb latency measurements.
            "x_disable_stats": True,
            "save_code": False,
            "disable_code": True,
            # One run per study even when the user has a wandb run open in the same process.
            "reinit": "create_new",
            # wandb's own messages would interleave with the progress bar; we print the one line
            # that matters (the run's URL online, the sync hint offline).
            "silent": True,
            # A finish that cannot upload (network lost) must not hang the end of a search; the
            # data stays on disk for `wandb sync`.
            "finish_timeout": 0.0 if self.mode == "offline" else 300.0,
            "init_timeout": 30.0,
        }
        # Only settings this wandb knows (the x_ ones are internal and may go away).
        fields = getattr(wandb.Settings, "model_fields", wanted)
        return {k: v for k, v in wanted.items() if k in fields and _env_name(k) not in os.environ}

    def _fail(self, where: str, err: BaseException) -> None:
        self._quiet = True
        first = (str(err).strip().splitlines() or [""])[0][:300]
        print(
            f"nas: wandb logging stopped ({where}: {type(err).__name__}: {first}); "
            "the search goes on without it",
            file=sys.stderr,
            flush=True,
        )
        run, self._run = self._run, None
        if run is not None:
            # Already reported above; a second message would only repeat it.
            with contextlib.suppress(Exception):
                run.finish(exit_code=1)

    @_guarded
    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback: log one finished trial against its number."""
        if self._run is None:
            return
        index = StudyIndex.of(study)
        index.refresh()
        row = index.records.get(trial.number) or TrialRecord.of(trial)
        if self._objective is None:  # read once: the study's protocol and its first trials
            self._objective = study_objective(study, index.records.values())
        if self._hv_reference is not None:
            # A fixed reference can cut the front: the area is that of the front below it.
            records = list(index.records.values())
            for r in records[self._bounded_read :]:
                self._bounded.add(r)
            self._bounded_read = len(records)
            ref, points = float(self._hv_reference), self._bounded.points()
        else:
            ref = 1.1 * index.max_latency_ms if index.max_latency_ms is not None else 1.0
            points = index.front.points()
        data: dict[str, Any] = {
            "trial": trial.number,
            "state": row.state,
            "feasible": row.feasible,
            self._objective.key: row.accuracy,
            "latency_ms": finite(row.latency_ms),
            "params": row.params,
            "macs": row.macs,
            "seconds": row.total_seconds,
            "front_size": len(index.front.records),
            "hypervolume": hypervolume(points, ref),  # type: ignore[arg-type]
        }
        genotype = row.genotype or trial.params
        data.update({f"genotype/{k}": _flat_value(v) for k, v in genotype.items()})
        self._run.log({k: v for k, v in data.items() if v is not None})

    @_guarded
    def on_results(self, study: optuna.Study, results: Results) -> None:
        """Log the final tables, plots and the architecture files (see the class docstring)."""
        if self._run is None:
            return
        wandb = self._wandb
        objective = results.objective
        front_ids = {r.trial for r in results.front}

        def named(columns: tuple[str, ...]) -> list[str]:
            return [objective.key if c == "accuracy" else c for c in columns]

        trials = wandb.Table(
            columns=named(TRIAL_TABLE_COLUMNS),
            data=finite(trial_rows(results.rows, front_ids, objective)),
        )
        front = wandb.Table(
            columns=named(FRONT_TABLE_COLUMNS),
            data=finite(
                [
                    [col(r, results.arch_file(r.trial)) for col in FRONT_COLUMNS.values()]
                    for r in results.front
                ]
            ),
        )
        ref = results.reference_latency_ms
        hv = wandb.Table(
            columns=["trial", "hypervolume"],
            data=[list(h) for h in hypervolume_history(results.rows, ref)],
        )
        n_evaluated = sum(r.evaluated for r in results.rows)
        logged: dict[str, Any] = {
            "trials_table": trials,
            "pareto_scatter": wandb.plot.scatter(
                trials,
                "latency_ms",
                objective.key,
                title=f"{self.study_name}: {objective.noun} vs latency (ms), "
                f"{len(front_ids)} Pareto of {n_evaluated} evaluated (column 'pareto')",
            ),
            "pareto_front": front,
            "hypervolume_curve": wandb.plot.line(
                hv,
                "trial",
                "hypervolume",
                title=f"hypervolume, reference point ({objective.key} 0, {ref:.3f} ms)",
            ),
        }
        png = results.files.get("pareto.png")
        if png is not None and Path(png).is_file():
            logged["pareto_plot"] = wandb.Image(
                str(png), caption=f"{self.study_name}: Pareto front"
            )
        self._run.log(logged)
        self._run.summary.update(
            {
                "hypervolume": results.hypervolume,
                "front_size": len(results.front),
                "reference_latency_ms": ref,
                "first_objective": objective.name,
                "n_trials": len(results.rows),
                "n_evaluated": n_evaluated,
            }
        )
        names = sorted(k for k in results.files if k.startswith("archs/") or k == "pareto.json")
        if names:
            artifact = wandb.Artifact(
                _artifact_name(self.study_name),
                type="architectures",
                description=f"Pareto architectures of study {self.study_name} "
                "(load each with nas.build_model)",
                metadata={
                    "hypervolume": results.hypervolume,
                    "front_size": len(results.front),
                    "reference_latency_ms": ref,
                },
            )
            for name in names:
                artifact.add_file(str(results.files[name]), name=name)
            self._run.log_artifact(artifact)

    @_guarded
    def on_family(self, family: FamilyLog) -> None:
        """Log compound scaling's step 2: the family table, its curves, plot and files."""
        if self._run is None:
            return
        wandb = self._wandb
        table = wandb.Table(columns=list(family.columns), data=finite(family.rows))
        logged: dict[str, Any] = {"family": table}
        for y in ("accuracy", "latency_ms"):
            index = family.columns.index(y) if y in family.columns else None
            if index is not None and any(row[index] is not None for row in family.rows):
                logged[f"{y.removesuffix('_ms')}_vs_phi"] = wandb.plot.line(
                    table, "phi", y, title=f"{y.removesuffix('_ms')} vs φ"
                )
        if family.plot is not None and family.plot.is_file():
            logged["scaling_plot"] = wandb.Image(str(family.plot))
        self._run.log(logged)
        self._run.summary.update(finite(dict(family.summary)))
        artifact = wandb.Artifact(_artifact_name(self.study_name, "family"), type="architectures")
        for name, path in family.files.items():
            artifact.add_file(str(path), name=name)
        self._run.log_artifact(artifact)

    @_guarded
    def finish(self) -> None:
        """Close the run; offline, print once where it is and how to upload it.

        wandb's service completes the run's transaction log (``run-ID.wandb``) just after this
        returns; it is complete once the process exits or after ``wandb.teardown()``.
        """
        run, self._run = self._run, None
        self._quiet = True
        if run is None:
            return
        run.finish()
        if self.mode == "offline" and self.sync_dir is not None:
            print(
                f"wandb: offline run saved; upload it with `wandb sync {self.sync_dir}`",
                file=sys.stderr,
            )
