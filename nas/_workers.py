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
import json
import os
import random
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

# Private helpers of Optuna's journal file (optuna>=5,<6): JournalFile writes as Optuna does.
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation
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


#: Journal records that only fill in a running trial; the fsync of its tell (or of its failure)
#: makes them durable together.
_SYNC_AT_TELL = frozenset(
    op.value
    for op in (
        JournalOperation.SET_TRIAL_PARAM,
        JournalOperation.SET_TRIAL_USER_ATTR,
        JournalOperation.SET_TRIAL_SYSTEM_ATTR,
        JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE,
    )
)


class JournalFile(JournalFileBackend):
    """Optuna's journal file, synced to disk when a trial is created or finished.

    Optuna fsyncs every record: about 45 per trial here (28 suggestions, a dozen user
    attributes, ask, tell), at 4 ms each on this machine's disk, 170 ms of a trial's overhead
    (``experiments/throughput``). Records written by ``write()`` survive a killed process
    either way, being in the OS page cache; only a power cut or kernel crash can lose what was
    not synced. Syncing at a trial's creation and end keeps every finished trial durable; a
    power cut can then only lose details of trials that were running, which a resume fails
    and retries.
    """

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        with get_lock_file(self._lock), open(self._file_path, "ab") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            if not all(log.get("op_code") in _SYNC_AT_TELL for log in logs):
                os.fsync(fh.fileno())


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


@contextlib.contextmanager
def quiet_heartbeat_warnings() -> Iterator[None]:
    """Silence Optuna's notices about heartbeats: experimental, and meant for ``optimize``.

    Heartbeats have been "experimental" since Optuna 2.8; the ask/tell loop here records them
    as ``optimize`` does, so the notice that they belong to ``optimize`` does not apply.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
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


#: A RUNNING trial with no worker recorded this long after it started lost its worker between
#: ``study.ask()`` and recording it (milliseconds apart): killed, or a power cut that took the
#: unsynced record (see :class:`JournalFile`).
UNCLAIMED_AFTER_S = 60.0


def worker_alive(trial: FrozenTrial) -> bool:
    """False when the trial's worker ran on this host and its process is gone."""
    worker = trial.user_attrs.get("worker")
    if not worker:
        start = trial.datetime_start
        if start is None:
            return True
        now = datetime.now(start.tzinfo) if start.tzinfo else datetime.now()
        return (now - start).total_seconds() < UNCLAIMED_AFTER_S
    return worker.get("host") != HOST or _alive(int(worker.get("pid", -1)))


#: How often a trial whose worker died is retried before its failure counts towards the budget
#: (a network that always kills its worker, e.g. through the kernel's OOM killer, must not be
#: retried forever).
MAX_RETRIES = 2


def recover_dead_trials(study: optuna.Study, storage: BaseStorage | None) -> list[int]:
    """Fail and re-enqueue RUNNING trials whose worker is gone; returns their numbers.

    Call it under the gate, so that two workers never recover (and retry) the same trial.
    """
    if storage is None:
        return []
    recovered = []
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker_alive(t):
            continue
        worker = t.user_attrs.get("worker") or {}
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        retries = int(t.user_attrs.get("retries", 0))
        retry = bool(t.params) and retries < MAX_RETRIES
        reason = f"worker {worker.get('pid')} on {HOST} died during the trial"
        try:
            # The reason first: a finished trial's attributes can no longer be set.
            storage.set_trial_user_attr(
                trial_id, "failure", reason if retry else f"{reason} (not retried again)"
            )
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished after all
        if retry:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "retries": retries + 1})
        recovered.append(t.number)
    if isinstance(storage, RDBStorage) and storage.get_heartbeat_interval():
        # Workers on other machines: no heartbeat within the grace period. Retried by Optuna's
        # RetryFailedTrialCallback (see nas._search.make_storage).
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with quiet_heartbeat_warnings():
            optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        recovered += sorted(before - after)
    return recovered


class _Interrupts:
    """Ctrl-C and SIGTERM stop a worker only at a point where no trial is left half-recorded.

    During a trial's evaluation they raise ``KeyboardInterrupt`` at once (the trial is failed
    and re-enqueued); during ask, tell, storage writes and the gate they are deferred to the end
    of that step. Otherwise a signal landing between ``study.ask()`` and recording the worker
    leaves a RUNNING trial that no one owns and no one can recover. SIGTERM is what a terminal
    closing, ``kill``, Slurm's time limit and ``search.n_workers``' clean-up send.
    """

    def __init__(self) -> None:
        self.pending = False
        self.evaluating = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.evaluating:
            self.evaluating = False
            raise KeyboardInterrupt
        self.pending = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers belong to the main thread
            return
        self.pending = False
        old = {sig: signal.signal(sig, self._handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
            self.check()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def check(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def evaluation(self) -> Iterator[None]:
        self.check()
        self.evaluating = True
        try:
            yield
        finally:
            self.evaluating = False


_INTERRUPTS = _Interrupts()


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
    with _INTERRUPTS.installed():
        _loop(study, objective, storage, gate, n_trials, timeout, callbacks, grid)


def _loop(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    storage: BaseStorage | None,
    gate: Callable[[], contextlib.AbstractContextManager[None]],
    n_trials: int,
    timeout: float | None,
    callbacks: Sequence[Callback],
    grid: GridOrder | None,
) -> None:
    start = time.monotonic()
    while timeout is None or time.monotonic() - start < timeout:
        _INTERRUPTS.check()
        with gate():
            recover_dead_trials(study, storage)
            trials = study.get_trials(deepcopy=False)
            if budget_used(trials) >= n_trials:
                return
            if grid is not None and not any(t.state == TrialState.WAITING for t in trials):
                point = grid.next_point(trials)
                if point is None:
                    return
                study.enqueue_trial(point)
            with quiet_heartbeat_warnings():
                trial = study.ask()
            trial.set_user_attr("worker", {"host": HOST, "pid": os.getpid()})
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
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            trial.set_user_attr("failure", "interrupted (Ctrl-C)")
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        optuna.logging.get_logger("nas").warning(
            "trial %d failed: %s: %s", trial.number, type(err).__name__, first
        )
        return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    return study.tell(trial, values, skip_if_finished=True)
