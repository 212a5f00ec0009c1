"""Running trials: an exact trial budget shared by many workers, heartbeats, crash recovery.

``study.optimize`` cannot keep a budget exact across processes (Optuna's ``MaxTrialsCallback``
stops after the fact, so K workers overshoot by up to K - 1 trials) and its GridSampler races
between workers. So each worker runs an ask/tell loop in which "is there budget left?" and
``study.ask()`` happen together under a gate: a file lock next to a journal or SQLite file, a
PostgreSQL advisory lock for a shared server. Grid studies enqueue the next unused grid point
under the same gate, so each point is evaluated by exactly one worker.

A trial whose worker died is found two ways: on RDB storage by Optuna's heartbeats
(``fail_stale_trials``, retried by ``RetryFailedTrialCallback``); on a journal file, which has
no heartbeats, by the worker's host and PID recorded on the trial. Either way the trial is marked
failed and its parameters re-enqueued, and the failed trial no longer counts towards the budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

HOST = socket.gethostname()
#: Largest grid that ``sampler=grid`` enqueues.
MAX_GRID = 100_000

Callback = Callable[[optuna.Study, FrozenTrial], None]


def retried_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that another trial retries."""
    retried = set()
    for t in trials:
        origin = t.system_attrs.get("failed_trial", t.user_attrs.get("retry_of"))
        if origin is not None:
            retried.add(int(origin))
    return retried


def budget_used(trials: Sequence[FrozenTrial]) -> int:
    """Trials that count towards ``search.n_trials``: finished or running, retried failures not."""
    retried = retried_numbers(trials)
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.FAIL)
    return sum(1 for t in trials if t.state in counted and t.number not in retried)


class _FileGate:
    """An exclusive ``flock`` on a file beside the storage (processes of one machine)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with open(self.path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


#: PostgreSQL drivers SQLAlchemy can use, in order of preference.
POSTGRES_DRIVERS = ("psycopg", "psycopg2")


def sqlalchemy_url(url: str) -> str:
    """``url`` with a PostgreSQL driver that is installed, when it names none.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3 and 2.0 as psycopg2, so the same
    URL works or not depending on versions; pick whichever driver is importable instead. The
    ``postgres://`` spelling (Heroku, many docs) is accepted as ``postgresql://``.
    """
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    for driver in POSTGRES_DRIVERS:
        if importlib.util.find_spec(driver) is not None:
            return f"postgresql+{driver}://{rest}"
    return f"postgresql://{rest}"


class _PostgresGate:
    """A PostgreSQL advisory lock keyed by the study name (workers on many machines)."""

    def __init__(self, url: str, study_name: str) -> None:
        import sqlalchemy

        self.engine = sqlalchemy.create_engine(
            sqlalchemy_url(url), poolclass=sqlalchemy.pool.NullPool
        )
        digest = hashlib.sha256(f"nas:{study_name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self.text = sqlalchemy.text

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self.engine.connect() as conn:
            conn.execute(self.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
            try:
                yield
            finally:
                conn.execute(self.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})


@contextlib.contextmanager
def _no_gate() -> Iterator[None]:
    yield


def make_gate(
    storage: BaseStorage | None, *, url: str | None, run_dir: Path, study_name: str
) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """The lock that makes budget check + ``ask`` atomic for this storage."""
    if storage is None:
        return _no_gate
    if isinstance(storage, JournalStorage):
        journal = Path(url) if url else run_dir / "study.journal"
        return _FileGate(journal.with_name(journal.name + ".gate"))
    assert url is not None  # RDB storages are made from a URL
    if url.startswith("sqlite:///"):
        return _FileGate(Path(url[len("sqlite:///") :] + ".gate"))
    if url.startswith(("postgresql", "postgres")):
        return _PostgresGate(url, study_name)
    return _no_gate


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
    worker = trial.user_attrs.get("worker") or {}
    return worker.get("host") != HOST or _alive(int(worker.get("pid", -1)))


def recover_dead_trials(study: optuna.Study, storage: BaseStorage | None) -> list[int]:
    """Fail and re-enqueue RUNNING trials whose worker is gone; returns their numbers."""
    if storage is None:
        return []
    if isinstance(storage, RDBStorage) and storage.get_heartbeat_interval():
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        return sorted(before - after)
    recovered = []
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker_alive(t):
            continue
        worker = t.user_attrs.get("worker") or {}
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            continue  # another worker recovered it first
        storage.set_trial_user_attr(
            trial_id, "failure", f"worker {worker.get('pid')} on {HOST} died during the trial"
        )
        if t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        recovered.append(t.number)
    return recovered


class GridOrder:
    """The grid's points in a seeded random order; hands out the next point no trial has used.

    Points are enqueued one at a time under the gate, so a budget smaller than the grid leaves
    no waiting trials behind and several workers never take the same point.
    """

    def __init__(self, grid: dict[str, list[Any]], *, seed: int) -> None:
        size = 1
        for values in grid.values():
            size *= len(values)
        if size > MAX_GRID:
            raise ValueError(
                f"sampler=grid: the space has {size:,} points; grid search takes at most "
                f"{MAX_GRID:,} (narrow the space or use another sampler)"
            )
        self.points = [dict(zip(grid, c, strict=True)) for c in itertools.product(*grid.values())]
        random.Random(seed).shuffle(self.points)

    def next_point(self, trials: Sequence[FrozenTrial]) -> dict[str, Any] | None:
        # A trial another worker is sampling has no or partial params: read its enqueued point.
        used = {_params_key(t.system_attrs.get("fixed_params") or t.params) for t in trials}
        return next((p for p in self.points if _params_key(p) not in used), None)


def _params_key(params: dict[str, Any]) -> str:
    return repr(sorted(params.items()))


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    *,
    storage: BaseStorage | None,
    gate: Callable[[], contextlib.AbstractContextManager[None]],
    n_trials: int,
    timeout: float | None,
    callbacks: Sequence[Callback] = (),
    grid: GridOrder | None = None,
) -> None:
    """Run trials until the study's budget is used (by all workers together) or the timeout.

    A trial's exception is recorded on it (state FAIL) and the loop goes on; Ctrl-C fails the
    running trial, re-enqueues it for a later resume, and propagates.
    """
    start = time.monotonic()
    while timeout is None or time.monotonic() - start < timeout:
        recover_dead_trials(study, storage)
        with gate():
            trials = study.get_trials(deepcopy=False)
            if budget_used(trials) >= n_trials:
                return
            if grid is not None and not any(t.state == TrialState.WAITING for t in trials):
                point = grid.next_point(trials)
                if point is None:
                    return
                study.enqueue_trial(point)
            trial = study.ask()
            trial.set_user_attr("worker", {"host": HOST, "pid": os.getpid()})
        with _heartbeat(storage, study, trial) if storage is not None else contextlib.nullcontext():
            frozen = _run_one(study, trial, objective)
        for callback in callbacks:
            callback(study, frozen)


def _run_one(
    study: optuna.Study, trial: optuna.Trial, objective: Callable[[optuna.Trial], Any]
) -> FrozenTrial:
    try:
        values = objective(trial)
    except optuna.TrialPruned:
        return study.tell(trial, state=TrialState.PRUNED)
    except KeyboardInterrupt:
        trial.set_user_attr("failure", "interrupted (Ctrl-C)")
        study.tell(trial, state=TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        optuna.logging.get_logger("nas").warning(
            "trial %d failed: %s: %s", trial.number, type(err).__name__, first
        )
        return study.tell(trial, state=TrialState.FAIL)
    return study.tell(trial, values)
