"""A running study's trials as typed records, each finished trial read once.

Every consumer of a running search (the budget check, duplicate reuse, early stopping, the
progress bar, the wandb logger) used to turn all of the study's trials into records at every
trial, so the framework's time per trial grew with the study: about 12 ms more per 1,000 trials
(``experiments/throughput``). A finished trial never changes, so the index reads each one once;
a refresh reads only the trials after the longest prefix of finished ones (the trials running
now and the new ones), and keeps what the consumers ask for up to date as it goes: the budget
used, the first evaluation of each network, the finished curves, the Pareto front.
"""

from __future__ import annotations

import weakref
from typing import ClassVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas._trials.pareto import ParetoFront
from nas._trials.record import TrialRecord

#: States that count towards ``search.n_trials`` (unless another trial retries them).
COUNTED = frozenset({TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.FAIL})
#: States whose record a later trial of the same network reuses.
REUSABLE = frozenset({TrialState.COMPLETE.name, TrialState.PRUNED.name})


def retry_origin(trial: FrozenTrial) -> int | None:
    """The failed trial that ``trial`` runs again, if any.

    Optuna's ``RetryFailedTrialCallback`` records ``failed_trial`` (a system attribute); nas's
    own retries record ``retry_of``.
    """
    origin = trial.system_attrs.get("failed_trial", trial.user_attrs.get("retry_of"))
    return None if origin is None else int(origin)


class StudyIndex:
    """The trials of one study, as records, kept current by :meth:`refresh`.

    One index per study object and process (:meth:`of`); a new study object starts a new one.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(directions=["maximize", "minimize"])
        >>> study.add_trial(optuna.trial.create_trial(values=[0.9, 2.0],
        ...                 user_attrs={"accuracy": 0.9, "latency_ms": 2.0}))
        >>> index = StudyIndex.of(study)
        >>> _ = index.refresh()
        >>> index.budget_used(), [r.trial for r in index.front.records]
        (1, [0])
    """

    _indexes: ClassVar[weakref.WeakKeyDictionary[optuna.Study, StudyIndex]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, study: optuna.Study) -> None:
        self._study = weakref.ref(study)
        #: Finished trials' records, by trial number, in the order they were read.
        self.records: dict[int, TrialRecord] = {}
        #: Trials not finished at the last refresh (running or waiting), in trial order.
        self.open: list[FrozenTrial] = []
        #: COMPLETE records with an accuracy curve (early stopping's comparison).
        self.curves: list[TrialRecord] = []
        #: The Pareto front of the finished records (``nas.pareto_front``'s rule).
        self.front = ParetoFront()
        #: Largest latency of an evaluated record (the default hypervolume reference's).
        self.max_latency_ms: float | None = None
        self._settled = 0  # trials [0, settled) are all finished and read
        self._first_of: dict[str, TrialRecord] = {}  # identity -> first reusable record
        self._retried: set[int] = set()
        self._counted: set[int] = set()  # finished trials in a counted state
        self._finished_budget = 0  # of those, the ones no trial retries

    @classmethod
    def of(cls, study: optuna.Study) -> StudyIndex:
        """The index of ``study`` in this process (made on first use)."""
        index = cls._indexes.get(study)
        if index is None:
            index = cls._indexes[study] = cls(study)
        return index

    def refresh(self, trials: list[FrozenTrial] | None = None) -> list[TrialRecord]:
        """Read the trials finished since the last refresh; returns their records.

        ``trials``: the study's trials if the caller has just read them.
        """
        if trials is None:
            study = self._study()
            if study is None:
                return []
            trials = study.get_trials(deepcopy=False)
        new: list[TrialRecord] = []
        self.open = []
        # Trial numbers are positions: a study numbers its trials 0, 1, 2, ... as they are made.
        for t in trials[self._settled :]:
            origin = retry_origin(t)
            if origin is not None:
                self._retry(origin)
            if not t.state.is_finished():
                self.open.append(t)
            elif t.number not in self.records:
                new.append(self._add(t))
        while self._settled < len(trials) and trials[self._settled].number in self.records:
            self._settled += 1
        return new

    def budget_used(self, *, running: bool = True) -> int:
        """Trials that count towards ``search.n_trials`` (retried failures do not).

        ``running``: count the trials running now too (the budget check does; a progress bar
        counts finished trials only).
        """
        used = self._finished_budget
        if running:
            used += sum(
                1
                for t in self.open
                if t.state == TrialState.RUNNING and t.number not in self._retried
            )
        return used

    def first_of(self, key: str) -> TrialRecord | None:
        """The lowest-numbered finished (complete or pruned) record of network ``key``."""
        return self._first_of.get(key)

    def _add(self, trial: FrozenTrial) -> TrialRecord:
        record = TrialRecord.of(trial)
        self.records[trial.number] = record
        if trial.state in COUNTED:
            self._counted.add(trial.number)
            if trial.number not in self._retried:
                self._finished_budget += 1
        key = record.genotype_key
        if key is not None and record.state in REUSABLE:
            first = self._first_of.get(key)
            if first is None or record.trial < first.trial:
                self._first_of[key] = record
        if record.evaluated:
            self.front.add(record)
            lat = float(record.latency_ms)  # type: ignore[arg-type]
            self.max_latency_ms = (
                lat if self.max_latency_ms is None else max(lat, self.max_latency_ms)
            )
            if record.curve:
                self.curves.append(record)
        return record

    def _retry(self, origin: int) -> None:
        if origin in self._retried:
            return
        self._retried.add(origin)
        if origin in self._counted:
            self._finished_budget -= 1
