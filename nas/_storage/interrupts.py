"""Ctrl-C and SIGTERM stop a worker only where no record is left half-written.

During a trial's evaluation they raise ``KeyboardInterrupt`` at once (the trial is failed and
re-enqueued); during ask, tell, the gate and every journal write they are deferred to the end of
that step. Otherwise a signal landing between ``study.ask()`` and recording the worker leaves a
RUNNING trial that no one owns, and one landing inside Optuna's journal lock makes the lock's
release raise ``FileNotFoundError`` instead of the interrupt (or release another process's lock):
the trial then fails as an ordinary error and the worker carries on after a Ctrl-C. SIGTERM is
what a terminal closing, ``kill``, Slurm's time limit and ``search.n_workers``' clean-up send.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Interrupts:
    """The process's SIGINT/SIGTERM handling while a worker runs trials (one per process)."""

    def __init__(self) -> None:
        self.pending = False
        self.evaluating = False
        self.critical = 0
        self.reason: str | None = None

    def _handler(self, signum: int, frame: Any) -> None:
        # The first signal names the interruption: a Ctrl-C reaches a worker and then, while it
        # records the failure, its parent's clean-up SIGTERM; the note must say Ctrl-C.
        if self.reason is None:
            self.reason = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self.evaluating and not self.critical:
            self.evaluating = False
            raise KeyboardInterrupt
        self.pending = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals (main thread only) until the block ends, then raise if one came."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers belong to the main thread
            return
        self.pending = False
        self.reason = None
        old = {sig: signal.signal(sig, self._handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
            self.check()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` for a signal that came while it was deferred."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def evaluation(self) -> Iterator[None]:
        """A trial's evaluation: a signal interrupts it at once (outside critical sections)."""
        self.check()
        self.evaluating = True
        try:
            yield
        finally:
            self.evaluating = False

    @contextlib.contextmanager
    def critical_section(self) -> Iterator[None]:
        """A write that must not be cut: a signal waits for its end, then interrupts."""
        self.critical += 1
        try:
            yield
        finally:
            self.critical -= 1
        if not self.critical and self.evaluating and self.pending:
            self.pending = False
            self.evaluating = False
            raise KeyboardInterrupt


INTERRUPTS = Interrupts()
