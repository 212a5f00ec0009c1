"""Running trials: an exact trial budget shared by many workers, heartbeats, Ctrl-C.

``study.optimize`` cannot keep a budget exact across processes (Optuna's ``MaxTrialsCallback``
stops after the fact, so K workers overshoot by up to K - 1 trials) and its GridSampler races
between workers. So each worker runs an ask/tell loop in which "is there budget left?" and
``study.ask()`` happen together under a gate (:mod:`nas._storage.gate`). Grid studies enqueue
the next unused grid point under the same gate, so each point is evaluated by exactly one
worker. Dead workers' trials are recovered under the gate too (:mod:`nas._storage.recovery`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from nas._storage.gate import Gate
from nas._storage.interrupts import INTERRUPTS as _INTERRUPTS
from nas._storage.recovery import HOST, recover_dead_trials
from nas._storage.storage import quiet_heartbeat_warnings
from nas._trials.index import StudyIndex
from nas._trials.record import FAILURE, retry_attrs, retry_params, write_worker

Callback = Callable[[optuna.Study, FrozenTrial], None]


class PointSource(Protocol):
    """Hands out the next grid point no trial has used (see ``nas._search.samplers.GridOrder``)."""

    def next_point(self, trials: Sequence[FrozenTrial]) -> dict[str, Any] | None: ...


@contextlib.contextmanager
def _heartbeat(storage: BaseStorage, study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat while it runs (what ``study.optimize`` does on RDB)."""
    interval = storage.get_heartbeat_interval() if isinstance(storage, RDBStorage) else None
    if not interval:
        yield
        return
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            storage.record_heartbeat(trial_id)
            stop.wait(interval)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    *,
    storage: BaseStorage | None,
    gate: Gate,
    n_trials: int,
    timeout: float | None,
    callbacks: Sequence[Callback] = (),
    grid: PointSource | None = None,
) -> None:
    """Run trials until the study's budget is used (by all workers together) or the timeout.

    A trial's exception is recorded on it (state FAIL) and the loop goes on; Ctrl-C fails the
    running trial, re-enqueues it for a later resume, and propagates.
    """
    with _INTERRUPTS.installed():
        _loop(study, objective, storage, gate, n_trials, timeout, callbacks, grid)


def _loop(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    storage: BaseStorage | None,
    gate: Gate,
    n_trials: int,
    timeout: float | None,
    callbacks: Sequence[Callback],
    grid: PointSource | None,
) -> None:
    start = time.monotonic()
    while timeout is None or time.monotonic() - start < timeout:
        _INTERRUPTS.check()
        with gate():
            index = StudyIndex.of(study)
            index.refresh()
            if recover_dead_trials(study, storage, running=index.open):
                index.refresh()
            if index.budget_used() >= n_trials:
                return
            if grid is not None and not any(t.state == TrialState.WAITING for t in index.open):
                point = grid.next_point(study.get_trials(deepcopy=False))
                if point is None:
                    return
                study.enqueue_trial(point)
            with quiet_heartbeat_warnings():
                trial = study.ask()
            write_worker(trial, host=HOST, pid=os.getpid())
        with _heartbeat(storage, study, trial) if storage is not None else contextlib.nullcontext():
            frozen = _run_one(study, trial, objective)
        for callback in callbacks:
            callback(study, frozen)


def _run_one(
    study: optuna.Study, trial: optuna.Trial, objective: Callable[[optuna.Trial], Any]
) -> FrozenTrial:
    # skip_if_finished: a trial failed by another worker meanwhile (a heartbeat that came too
    # late) keeps that verdict; its retry evaluates it again.
    try:
        with _INTERRUPTS.evaluation():
            values = objective(trial)
    except optuna.TrialPruned:
        return study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    except KeyboardInterrupt:
        owned = True
        try:
            trial.set_user_attr(FAILURE, f"interrupted ({_INTERRUPTS.reason or 'Ctrl-C'})")
        except optuna.exceptions.UpdateFinishedTrialError:
            owned = False  # failed meanwhile through the heartbeats: that path retries it
        frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        if owned:
            study.enqueue_trial(retry_params(frozen), user_attrs=retry_attrs(trial.number))
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        optuna.logging.get_logger("nas").warning(
            "trial %d failed: %s: %s", trial.number, type(err).__name__, first
        )
        return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    return study.tell(trial, values, skip_if_finished=True)
