"""Reading finished runs back: ``nas show RUN_DIR`` and the storage behind ``nas dashboard``."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from nas._report.tables import front_table
from nas._trials.metric import FirstObjective, study_objective
from nas._trials.pareto import pareto_front
from nas._trials.record import TrialRecord


def storage_of(target: str | Path) -> optuna.storages.BaseStorage | str:
    """The Optuna storage of a run directory (its ``study.journal``) or a storage URL."""
    text = str(target)
    if "://" in text:
        return text
    path = Path(text)
    journal = path / "study.journal" if path.is_dir() else path
    if not journal.is_file():
        raise ValueError(
            f"{target}: no study.journal here (is it a run directory of `nas search`?)"
        )
    return JournalStorage(JournalFileBackend(str(journal)))


def load_trials(target: str | Path, *, study_name: str | None = None) -> list[TrialRecord]:
    """The trials of a finished (or running) study as records, in trial order.

    Args:
        target: a run directory (its ``study.journal``), a journal file or a storage URL.
        study_name: the study; may be left out when the storage holds only one.

    Raises:
        ValueError: no study there, or several and no ``study_name``.

    Example:
        >>> import nas
        >>> rows = nas.load_trials("outputs/mbconv_pareto")  # doctest: +SKIP
        >>> front = nas.pareto_front(rows)  # doctest: +SKIP
    """
    storage = storage_of(target)
    if study_name is None:
        names = [s.study_name for s in optuna.study.get_all_study_summaries(storage)]
        if len(names) != 1:
            raise ValueError(
                f"{target}: {len(names)} studies ({', '.join(names) or 'none'}); give study_name"
            )
        study_name = names[0]
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise ValueError(f"{target}: no study named {study_name!r}") from None
    return TrialRecord.all_of(study.get_trials(deepcopy=False))


def show_run(run_dir: Path) -> None:
    """Print a run's Pareto front (from pareto.json, else from its study storage)."""
    from rich.console import Console

    console = Console()
    pareto = run_dir / "pareto.json"
    if pareto.is_file():
        try:
            doc = json.loads(pareto.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{pareto}: not valid JSON ({err.msg} at line {err.lineno})") from None
        # A pareto.json of an earlier version has no first_objective: its front is accuracies.
        objective = FirstObjective.from_dict(doc.get("first_objective") or {})
        console.print(
            front_table(
                doc["front"], title=f"Pareto front of {doc['study_name']}", objective=objective
            )
        )
        ref = doc["reference_point"]["latency_ms"]
        console.print(
            f"{doc['n_trials']} trials {doc['counts']}; hypervolume {doc['hypervolume']:.4g} "
            f"(reference latency {ref:.3f} ms)"
        )
        return
    storage = storage_of(run_dir)
    for summary in optuna.study.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        rows = TrialRecord.all_of(study.get_trials(deepcopy=False))
        console.print(
            front_table(
                pareto_front(rows),
                title=f"Pareto front of {study.study_name} (from storage)",
                objective=study_objective(study, rows),
            )
        )
