"""Dead workers: trials whose worker is gone are failed and run again; the budget's count.

A trial whose worker died is found two ways: on RDB storage by Optuna's heartbeats
(:func:`nas._storage.storage.fail_stale_trials`, retried by ``RetryFailedTrialCallback``); on a
journal file, which has no heartbeats, by the worker's host and PID recorded on the trial.
Either way the trial is marked failed with a note, its parameters re-enqueued, and the failed
trial no longer counts towards the budget.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import datetime

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from nas._storage.storage import MAX_RETRIES, fail_stale_trials, quiet_heartbeat_warnings
from nas._trials.index import retry_origin
from nas._trials.record import FAILURE, TrialRecord, retry_attrs, retry_params

HOST = socket.gethostname()

#: A RUNNING trial with no worker recorded this long after it started lost its worker between
#: ``study.ask()`` and recording it (milliseconds apart): killed, or a power cut that took the
#: unsynced record (see :class:`nas._storage.journal.JournalFile`).
UNCLAIMED_AFTER_S = 60.0


def retried_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that another trial retries."""
    return {o for o in map(retry_origin, trials) if o is not None}


def budget_used(trials: Sequence[FrozenTrial]) -> int:
    """Trials that count towards ``search.n_trials``: finished or running, retried failures not."""
    retried = retried_numbers(trials)
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.FAIL)
    return sum(1 for t in trials if t.state in counted and t.number not in retried)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_alive(trial: FrozenTrial) -> bool:
    """False when the trial's worker ran on this host and its process is gone."""
    worker = TrialRecord.of(trial).worker
    if not worker:
        start = trial.datetime_start
        if start is None:
            return True
        now = datetime.now(start.tzinfo) if start.tzinfo else datetime.now()
        return (now - start).total_seconds() < UNCLAIMED_AFTER_S
    return worker.get("host") != HOST or _alive(int(worker.get("pid", -1)))


def recover_dead_trials(
    study: optuna.Study,
    storage: BaseStorage | None,
    *,
    running: Sequence[FrozenTrial] | None = None,
) -> list[int]:
    """Fail and re-enqueue RUNNING trials whose worker is gone; returns their numbers.

    Call it under the gate, so that two workers never recover (and retry) the same trial.
    ``running``: the study's unfinished trials, if the caller has just read them.
    """
    if storage is None:
        return []
    recovered = []
    if running is None:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in running:
        if t.state != TrialState.RUNNING or worker_alive(t):
            continue
        record = TrialRecord.of(t)
        worker = record.worker or {}
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        retries = record.retries
        retry = retries < MAX_RETRIES
        reason = f"worker {worker.get('pid')} on {HOST} died during the trial"
        try:
            # The reason first: a finished trial's attributes can no longer be set.
            storage.set_trial_user_attr(
                trial_id, FAILURE, reason if retry else f"{reason} (not retried again)"
            )
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished after all
        if retry:
            study.enqueue_trial(
                retry_params(t), user_attrs=retry_attrs(t.number, retries=retries + 1)
            )
        recovered.append(t.number)
    # Workers on other machines: no heartbeat within the grace period. Retried by Optuna's
    # RetryFailedTrialCallback (see nas._storage.storage.make_storage).
    recovered += sorted(_fail_stale(study, storage))
    return recovered


def _fail_stale(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """nas's noted ``fail_stale_trials`` on a storage with heartbeats; nothing on the others."""
    if not isinstance(storage, RDBStorage) or not storage.get_heartbeat_interval():
        return []
    with quiet_heartbeat_warnings():
        return fail_stale_trials(study, storage)


def fail_stale_twins(study: optuna.Study) -> list[int]:
    """Fail (with a note) and retry the trials whose heartbeat is stale; numbers of those failed.

    For a worker waiting on an identical network that another machine is evaluating: if that
    machine died, the twin is failed through the heartbeats as :func:`recover_dead_trials`
    would, so that the waiting worker goes on. A storage without heartbeats has none to fail.
    """
    return _fail_stale(study, getattr(study._storage, "_backend", study._storage))
