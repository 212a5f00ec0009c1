"""Results of a study: the Pareto set, architecture files, the trials table and the plots.

Every file is written atomically (:mod:`nas._io`). The trials table's columns are declared once
(:data:`TRIAL_COLUMNS`): ``trials.csv`` and the wandb trials table both read them.

The first objective keeps the key ``accuracy`` in every file, whatever the evaluator, so that
readers of earlier files keep working; what it is (an accuracy, or a training-free score) is
said next to it: ``first_objective`` in ``pareto.json`` (whose ``objectives`` and
``reference_point`` name it ``score`` for a score), the ``objective`` column of ``trials.csv``
(:class:`nas._trials.metric.FirstObjective`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from nas._io import atomic_write_text, to_json
from nas._report.plots import plot_hypervolume_png, plot_pareto_html, plot_pareto_png
from nas._spaces.arch import save_arch
from nas._spaces.base import SearchSpace
from nas._trials.latency import LatencyResult
from nas._trials.metric import FirstObjective, study_objective
from nas._trials.pareto import (
    hypervolume,
    hypervolume_history,
    pareto_front,
    reference_latency,
)
from nas._trials.record import TrialRecord, genotype_json

Column = Callable[[TrialRecord, bool, FirstObjective], Any]

#: The trials table: column name -> value of a record (whether it is on the front, and the
#: study's first objective). ``objective`` says what ``accuracy`` holds: ``accuracy``, or a
#: score's name (``ensemble_score``); ``screen``: the ensemble figure that decided whether the
#: network was trained (``evaluator=screen``). New columns go last, so that no column moves.
TRIAL_COLUMNS: dict[str, Column] = {
    "trial": lambda r, *_: r.trial,
    "state": lambda r, *_: r.state,
    "accuracy": lambda r, *_: r.accuracy,
    "latency_ms": lambda r, *_: r.latency_ms,
    "latency_iqr_ms": lambda r, *_: r.latency.iqr_ms if r.latency else None,
    "latency_relative": lambda r, *_: r.latency.relative if r.latency else None,
    "params": lambda r, *_: r.params,
    "macs": lambda r, *_: r.macs,
    "resolution": lambda r, *_: r.resolution,
    "feasible": lambda r, *_: r.feasible,
    "pareto": lambda _, pareto, __: pareto,
    "duplicate_of": lambda r, *_: r.duplicate_of,
    "seconds": lambda r, *_: r.total_seconds,
    "note": lambda r, *_: r.note,
    "arch": lambda r, *_: r.arch,
    "genotype": lambda r, *_: genotype_json(r.genotype),
    "objective": lambda _, __, objective: objective.name,
    "screen": lambda r, *_: r.screen,
    "budget": lambda r, *_: r.budget,
}

#: The front's table (wandb, and ``nas show``): column name -> value of a record and its file.
FRONT_COLUMNS: dict[str, Callable[[TrialRecord, str | None], Any]] = {
    "trial": lambda r, _: r.trial,
    "accuracy": lambda r, _: r.accuracy,
    "latency_ms": lambda r, _: r.latency_ms,
    "params": lambda r, _: r.params,
    "macs": lambda r, _: r.macs,
    "arch": lambda r, _: r.arch,
    "arch_file": lambda _, f: f,
    "genotype": lambda r, _: genotype_json(r.genotype),
    "budget": lambda r, _: r.budget or 1,  # trainings behind accuracy (search.promote)
}


def trial_rows(
    records: Sequence[TrialRecord], front_ids: set[int], objective: FirstObjective
) -> list[list[Any]]:
    """The trials table's rows, in :data:`TRIAL_COLUMNS` order."""
    return [
        [col(r, r.trial in front_ids, objective) for col in TRIAL_COLUMNS.values()] for r in records
    ]


@dataclass
class Results:
    """What :func:`write_results` produced."""

    rows: list[TrialRecord]
    front: list[TrialRecord]
    reference_latency_ms: float
    hypervolume: float
    files: dict[str, Path]
    objective: FirstObjective = field(default_factory=FirstObjective)

    def arch_file(self, trial: int) -> str | None:
        """The architecture file of a front trial, relative to the run directory."""
        key = f"archs/trial_{trial}.yaml"
        return key if key in self.files else None

    @property
    def counts(self) -> dict[str, int]:
        """Trials by state (duplicates apart: they hold an earlier trial's result)."""
        counts: dict[str, int] = {}
        for r in self.rows:
            if r.duplicate_of is None:
                counts[r.state] = counts.get(r.state, 0) + 1
        counts["infeasible"] = sum(
            1 for r in self.rows if r.duplicate_of is None and not r.feasible
        )
        counts["duplicates"] = sum(1 for r in self.rows if r.duplicate_of is not None)
        return counts


def _csv_text(
    records: Sequence[TrialRecord], front_ids: set[int], objective: FirstObjective
) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(TRIAL_COLUMNS)
    writer.writerows(trial_rows(records, front_ids, objective))
    return buf.getvalue()


def _front_record(r: TrialRecord, arch_file: str | None) -> dict[str, Any]:
    return {
        "trial": r.trial,
        "accuracy": r.accuracy,
        "latency_ms": r.latency_ms,
        "latency": r.latency.to_dict() if r.latency else None,
        "params": r.params,
        "macs": r.macs,
        "conv_linear_macs": r.conv_linear_macs,
        "resolution": r.resolution,
        "curve": r.curve,
        "budget": r.budget or 1,  # trainings behind accuracy: their mean (search.promote)
        "accuracies": r.accuracies or None,
        "seconds": r.seconds,
        "arch": r.arch,
        "genotype": r.genotype,
        "arch_file": arch_file,
    }


def write_results(
    study: optuna.Study,
    *,
    space: SearchSpace,
    num_classes: int,
    run_dir: Path,
    plots: bool = True,
    hv_reference_latency_ms: float | None = None,
    extra: Mapping[str, Any] | None = None,
    remeasured: Mapping[int, LatencyResult] | None = None,
) -> Results:
    """Write pareto.json, archs/, trials.csv and the plots of a study into ``run_dir``.

    ``remeasured`` holds the front's latencies measured again side by side after the search
    (``latency_final`` in pareto.json); the objectives stay the figures the search used.
    """
    run_dir = Path(run_dir)
    rows = TrialRecord.all_of(study.get_trials(deepcopy=False))
    front = pareto_front(rows)
    objective = study_objective(study, rows)
    ref = reference_latency(rows, hv_reference_latency_ms)
    hv = hypervolume([(r.accuracy, r.latency_ms) for r in front], ref)  # type: ignore[misc]
    files: dict[str, Path] = {}
    arch_files: dict[int, str] = {}
    for r in front:
        arch = space.arch(r.genotype, num_classes=num_classes).with_metrics(
            trial=r.trial,
            **{objective.name: r.accuracy},
            latency_ms=r.latency_ms,
            params=r.params,
            macs=r.macs,
        )
        path = save_arch(arch, run_dir / "archs" / f"trial_{r.trial}.yaml")
        arch_files[r.trial] = str(path.relative_to(run_dir))
    results = Results(
        rows=rows,
        front=front,
        reference_latency_ms=ref,
        hypervolume=hv,
        files=files,
        objective=objective,
    )
    final = {k: v.to_dict() for k, v in (remeasured or {}).items()}
    doc = {
        "study_name": study.study_name,
        "space": space.name,
        "num_classes": num_classes,
        "first_objective": objective.to_dict(),
        "objectives": {objective.key: "maximize", "latency_ms": "minimize"},
        "reference_point": {objective.key: 0.0, "latency_ms": ref},
        "hypervolume": hv,
        "n_trials": len(rows),
        "counts": results.counts,
        **(extra or {}),
        "latency_final_note": (
            "latency_final: the front measured again after the search, all networks in the same "
            "rounds; latency_ms is what the search saw, each network timed in its own minute"
        )
        if final
        else None,
        "front": [
            {**_front_record(r, arch_files.get(r.trial)), "latency_final": final.get(r.trial)}
            for r in front
        ],
    }
    files["pareto.json"] = run_dir / "pareto.json"
    atomic_write_text(files["pareto.json"], to_json(doc))
    files["trials.csv"] = run_dir / "trials.csv"
    atomic_write_text(files["trials.csv"], _csv_text(rows, {r.trial for r in front}, objective))
    if plots:
        title = (
            f"{study.study_name}: {len(front)} Pareto of {sum(r.evaluated for r in rows)} evaluated"
        )
        files["pareto.png"] = run_dir / "pareto.png"
        plot_pareto_png(rows, front, files["pareto.png"], title=title, objective=objective)
        files["pareto.html"] = run_dir / "pareto.html"
        plot_pareto_html(rows, front, files["pareto.html"], title=title, objective=objective)
        files["hypervolume.png"] = run_dir / "hypervolume.png"
        plot_hypervolume_png(
            hypervolume_history(rows, ref), files["hypervolume.png"], ref=ref, objective=objective
        )
    for trial, rel in arch_files.items():
        files[f"archs/trial_{trial}.yaml"] = run_dir / rel
    return results
