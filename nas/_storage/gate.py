"""The gate: a lock that makes "is there budget left?" and ``study.ask()`` one step.

A file lock beside a journal or SQLite file (processes of one machine), a PostgreSQL advisory
lock on a shared server (workers on many machines).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

from optuna.storages import BaseStorage, JournalStorage

from nas._storage.storage import sqlalchemy_url

Gate = Callable[[], contextlib.AbstractContextManager[None]]


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
) -> Gate:
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
