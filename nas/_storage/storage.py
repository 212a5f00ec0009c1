"""Optuna storage from ``storage.url``: the journal file by default, or an RDB server.

Journal file (a path, or the run directory's ``study.journal``): measured here it costs far
less per trial than SQLite (``experiments/throughput``) and is safe for several processes on
one machine. ``sqlite:///``, ``postgresql://`` and ``mysql://`` URLs use Optuna's RDB storage,
with heartbeats when ``heartbeat_interval`` is set; ``:memory:`` keeps the study in memory.
Passwords never reach a message or a file (:func:`redact`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import random
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas._config import ConfigError
from nas._storage.journal import JournalFile, check_journal_file, damaged_line
from nas._trials.record import FAILURE, retry_params

#: How often a trial whose worker died is retried before its failure counts towards the budget
#: (a network that always kills its worker, e.g. through the kernel's OOM killer, must not be
#: retried forever). Heartbeats (workers on other machines) and nas._storage.recovery (this one)
#: both keep to it.
MAX_RETRIES = 2

#: PostgreSQL drivers SQLAlchemy can use, in order of preference.
POSTGRES_DRIVERS = ("psycopg", "psycopg2")


def sqlalchemy_url(url: str) -> str:
    """``url`` with a PostgreSQL driver that is installed, when it names none.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3 and 2.0 as psycopg2, so the same
    URL works or not depending on versions; pick whichever driver is importable instead. The
    ``postgres://`` spelling (Heroku, many docs) is accepted as ``postgresql://``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    for driver in POSTGRES_DRIVERS:
        if importlib.util.find_spec(driver) is not None:
            return f"postgresql+{driver}://{rest}"
    return f"postgresql://{rest}"


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


def redact(url: str) -> str:
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
    """Optuna storage for ``storage.url`` (see the module docstring); ``None`` for memory.

    ``None`` is the embedded default, the journal file ``study.journal`` in the run directory
    (:class:`nas._storage.journal.JournalFile`); a path is a journal file elsewhere.

    Raises:
        ConfigError: an unsupported scheme, a missing driver, an unreachable server, a file that
            is not a journal, or a folder that does not exist (the password shown as ``***``).
    """
    from optuna.storages import JournalStorage

    if url == ":memory:":
        return None
    if url is None or "://" not in url:
        path = Path(url) if url else run_dir / "study.journal"
        if url and not path.parent.is_dir():
            raise ConfigError(
                f"storage.url: folder {path.parent} of journal file {path} does not exist"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        check_journal_file(path)
        # The writers' lock file beside the journal: a refused journal gets none left behind (a
        # failed command leaves the folder as it found it). Nobody writes to a refused journal,
        # so removing the lock file cannot break another process's lock.
        flock = Path(f"{path}.flock")
        had_flock = flock.exists()
        try:
            return JournalStorage(JournalFile(str(path)))
        except OSError as err:
            error = ConfigError(f"storage.url: cannot open journal file {path} ({err.strerror})")
        except ConfigError as err:
            error = err
        except ValueError as err:  # a damaged record in the middle of the file
            damage = damaged_line(path)
            where = f"at line {damage[0]} of {damage[1]}" if damage else f"({_first_line(err)})"
            error = ConfigError(
                f"storage.url: journal file {path} is damaged {where}, before its last record "
                "(not a write cut short); left unchanged: restore it from a backup, or give a new "
                "file name"
            )
        if not had_flock:
            flock.unlink(missing_ok=True)
        raise error from None
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme not in ("sqlite", "postgresql", "postgres", "mysql"):
        raise ConfigError(
            f"storage.url: unsupported scheme {scheme!r} in {redact(url)}; use a journal file path, "
            "sqlite:///FILE, postgresql://USER:PASSWORD@HOST/DB or :memory:"
        )
    kwargs: dict[str, Any] = {}
    try:
        with quiet_heartbeat_warnings():
            if heartbeat_interval:
                kwargs.update(
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryStaleTrial(max_retry=MAX_RETRIES),
                )
            return _open_rdb(sqlalchemy_url(url), _engine_kwargs(scheme), kwargs)
    except ImportError:  # Optuna re-raises the driver's ModuleNotFoundError as ImportError
        hint = "pip install 'nas[postgres]'" if scheme.startswith("postgres") else "install one"
        raise ConfigError(
            f"storage.url: no {scheme} driver is installed for {redact(url)}; {hint}"
        ) from None
    except Exception as err:  # SQLAlchemy raises many types for unreachable servers
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"storage.url: cannot open {redact(url)} ({first})") from None


class RetryStaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose worker stopped beating, with its network once known.

    Optuna queues the retry with the parameters the trial had; a worker lost while it sampled
    the network had made only some choices, and fixing those would make the retry another
    network, so such a retry samples afresh (as :func:`nas._trials.record.retry_params` decides).
    Optuna also copies the trial's user attributes to the retry: not its failure note.
    """

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial = copy.copy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != FAILURE}
        if not retry_params(trial):
            trial.params, trial.distributions = {}, {}
        super().__call__(study, trial)


def fail_stale_trials(study: optuna.Study, rdb: optuna.storages.RDBStorage) -> list[int]:
    """Optuna's ``fail_stale_trials``, with a failure note on each trial it fails.

    A running trial whose heartbeat is older than the grace period is failed and handed to the
    storage's retry callback (:class:`RetryStaleTrial`). Optuna's own function leaves no note,
    and a finished trial's attributes can no longer be set, so the note is written first.
    ``rdb``: the study's storage (which the study reaches through Optuna's cache). Returns the
    numbers of the trials failed.
    """
    interval = rdb.get_heartbeat_interval()
    if not interval:
        return []
    grace = rdb.grace_period or 2 * interval
    storage = study._storage  # through the cache, as Optuna's own function writes
    callback = storage.get_heartbeat_stale_trial_callback()
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        trial = storage.get_trial(trial_id)
        worker = trial.user_attrs.get("worker") or {}
        retried = len(trial.system_attrs.get("retry_history", [])) < MAX_RETRIES
        note = (
            f"no heartbeat for {grace} s: worker {worker.get('pid')} on {worker.get('host')} "
            "stopped during the trial" + ("" if retried else " (not retried again)")
        )
        try:
            storage.set_trial_user_attr(trial_id, FAILURE, note)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished after all, or another worker failed it first
    for trial_id in failed:
        if callback is not None:
            callback(study, copy.deepcopy(storage.get_trial(trial_id)))
    return [storage.get_trial_number_from_id(t) for t in failed]


def _open_rdb(
    url: str, engine_kwargs: dict[str, Any], kwargs: dict[str, Any], attempts: int = 5
) -> optuna.storages.RDBStorage:
    """Open an RDB storage; retry when another process is creating Optuna's tables.

    Opening creates the tables of an empty database, and workers started together (a Slurm
    array, ``search.n_workers``) race for them: on PostgreSQL the losers fail with a duplicate
    ``pg_type`` row or an existing relation. On a retry the tables are there.
    """
    from optuna.storages import RDBStorage
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts - 1):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except (IntegrityError, ProgrammingError):
            time.sleep(0.2 * (attempt + 1) + 0.2 * random.random())
    return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)  # the last try raises its error


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _engine_kwargs(scheme: str) -> dict[str, Any]:
    if scheme in ("postgresql", "postgres"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}
