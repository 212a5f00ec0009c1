"""Optuna's journal file, the embedded default storage, synced when a trial starts or ends.

A record cut short (a power loss, a full disk, a process killed inside a write) leaves a last
line without its newline. Optuna skips such a line when it reads, but appends the next record to
it, and the joined line then makes the whole study unreadable. So a torn last record is never
appended to: opening the file, and every write, first repairs it (:func:`repair_torn_tail`):
the original is copied beside it, the torn bytes are dropped, and one line says so. A damaged
line with complete records after it is not a cut write; the file is then refused, unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

# Private helpers of Optuna's journal file (optuna>=5,<6): JournalFile writes as Optuna does.
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.storages.journal._file import LOCK_FILE_SUFFIX, BaseJournalFileLock, get_lock_file
from optuna.storages.journal._storage import JournalOperation

from nas._config import ConfigError
from nas._storage.interrupts import INTERRUPTS

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


#: Seconds a nas writer holding the kernel lock waits for Optuna's lock link to go before it
#: breaks it: another process of plain Optuna holds it for one append (milliseconds).
STALE_LINK_S = 1.0


class WriterLock(BaseJournalFileLock):
    """Optuna's symlink lock on the journal, freed at once when a nas writer holding it dies.

    A process killed while it holds Optuna's lock leaves its link behind; Optuna breaks it only
    after 30 s without a change, so every resume waited 30 s, and resumes killed within those
    30 s never broke it: in ``experiments/crash_soak`` one such kill stopped all progress for
    seven kills in a row. nas writers first take a ``flock`` on ``<journal>.flock``, which the
    kernel releases when its holder dies; holding it, a link still there after
    :data:`STALE_LINK_S` is a dead writer's, and is broken. Plain Optuna processes on the same
    file still take the link, and are excluded by it.
    """

    def __init__(self, path: str) -> None:
        self._link = JournalFileSymlinkLock(path)
        self._target, self._link_path = path, path + LOCK_FILE_SUFFIX
        self._flock_path = path + ".flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._flock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        deadline = time.monotonic() + STALE_LINK_S
        try:
            while True:
                try:
                    os.symlink(self._target, self._link_path)
                    return True
                except FileExistsError:
                    if time.monotonic() < deadline:
                        time.sleep(0.002)
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._link_path)  # its holder is gone
        except BaseException:
            self._unlock()
            raise

    def release(self) -> None:
        try:
            self._link.release()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


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

    def __init__(self, file_path: str, lock_obj: BaseJournalFileLock | None = None) -> None:
        super().__init__(file_path, lock_obj or WriterLock(file_path))
        with INTERRUPTS.critical_section(), get_lock_file(self._lock):
            repair_torn_tail(Path(self._file_path))

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        with (
            INTERRUPTS.critical_section(),
            get_lock_file(self._lock),
            open(self._file_path, "a+b", buffering=0) as fh,
        ):
            fd = fh.fileno()
            end = os.fstat(fd).st_size
            if end and os.pread(fd, 1, end - 1) != b"\n":
                # A writer died inside its write, holding the lock (which Optuna then broke).
                repair_torn_tail(Path(self._file_path))
                end = os.fstat(fd).st_size
            data = memoryview(text.encode("utf-8"))
            try:
                while data:
                    data = data[os.write(fd, data) :]
            except BaseException:
                # A full disk writes part of the text: take it back rather than leave a torn
                # record for the next write to join. (Unbuffered: closing writes nothing more.)
                os.ftruncate(fd, end)
                raise
            if not all(log.get("op_code") in _SYNC_AT_TELL for log in logs):
                os.fsync(fd)


#: How much of the file's end is read at once while looking for its last line.
_CHUNK = 1 << 16


def _last_line_start(fh: Any, end: int) -> int:
    """Offset of the line that ends at ``end`` (just after the newline before it, or 0)."""
    pos = end
    while pos > 0:
        start = max(0, pos - _CHUNK)
        fh.seek(start)
        found = fh.read(pos - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0


def _record(line: bytes) -> dict[str, Any] | None:
    """The journal record on ``line`` (without its newline), or None if it is not one."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "op_code" in record else None


def damaged_line(path: Path, *, end: int | None = None) -> tuple[int, int] | None:
    """The first line of ``path`` (before byte ``end``) that is not a whole record, 1-based,
    and how many lines there are; None when every line is one."""
    with open(path, "rb") as fh:
        data = fh.read() if end is None else fh.read(end)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if _record(line) is None:
            return number, len(lines)
    return None


def repair_torn_tail(path: Path) -> None:
    """Drop a torn last record of the journal ``path``, keeping the original beside it.

    The last line is torn when it has no newline or is not a whole record. A whole record that
    only lacks its newline gets it (nothing is dropped). Call it holding the journal's lock.

    Raises:
        ConfigError: another line is damaged too (the file is left unchanged).
    """
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        terminated = fh.read(1) == b"\n"
        line_end = size - 1 if terminated else size
        start = _last_line_start(fh, line_end)
        fh.seek(start)
        last = fh.read(line_end - start)
    whole = _record(last) is not None
    if terminated and whole:
        return
    damage = damaged_line(path, end=start)
    if damage is not None:
        raise ConfigError(
            f"storage.url: journal file {path} is damaged at line {damage[0]} of "
            f"{damage[1] + 1}, before its last record (not a write cut short); left unchanged: "
            "restore it from a backup, or give a new file name"
        )
    backup = _backup(path)
    with open(path, "r+b") as fh:
        if whole:  # the record is all there; only its newline is missing
            fh.seek(size)
            fh.write(b"\n")
        else:
            fh.truncate(start)
        fh.flush()
        os.fsync(fh.fileno())
    if whole:
        what = "its last record lacked its newline: completed it"
    else:
        what = f"its last record was torn (a write cut short): dropped its {size - start} bytes"
    print(
        f"nas: journal file {path}: {what}; every complete record is kept, the original is "
        f"in {backup}",
        file=sys.stderr,
    )


def _backup(path: Path) -> Path:
    """Copy ``path`` to ``<name>.torn-<time>`` beside it (a new name, never overwriting)."""
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    backup = path.with_name(f"{path.name}.torn-{stamp}")
    n = 1
    while backup.exists():
        n += 1
        backup = path.with_name(f"{path.name}.torn-{stamp}-{n}")
    shutil.copyfile(path, backup)
    with open(backup, "rb") as fh:
        os.fsync(fh.fileno())
    return backup


def check_journal_file(path: Path) -> None:
    """Refuse an existing file that is not an Optuna journal before the storage appends to it.

    Optuna writes its first record and only then reads the file back, so a mistyped
    ``storage.url`` pointing at, say, a notes file would get a JSON line appended.
    """
    try:
        with open(path, "rb") as fh:
            first = fh.readline(1 << 20)
    except FileNotFoundError:
        return
    except OSError as err:
        raise ConfigError(
            f"storage.url: cannot open journal file {path} ({err.strerror})"
        ) from None
    if not first or first.startswith(b'{"op_code":'):  # an empty, or torn, first record
        return
    if _record(first.rstrip(b"\n")) is None:
        raise ConfigError(
            f"storage.url: {path} is not an Optuna journal file (left unchanged); "
            "give a new file name or an existing study.journal"
        )
