"""Early stopping of dominated trials in multi-objective studies.

Optuna refuses ``trial.report`` in multi-objective studies, so its pruners cannot help there.
At epoch k a trial is stopped when enough finished trials that are at least as fast were
clearly more accurate at the same epoch k (their recorded accuracy curves).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import numpy as np
import optuna

from nas._config import EarlyStopConfig
from nas._trials.index import StudyIndex
from nas._trials.record import TrialRecord

#: Called after each epoch with (epoch, accuracy); returns why to stop, or ``None`` to go on.
StopRule = Callable[[int, float], "str | None"]


class Curves:
    """Finished trials' latencies and accuracy curves, as arrays for a vectorised comparison.

    A study of thousands of trials compares every running trial with every finished one at
    every epoch; in arrays that costs microseconds where a loop over records cost milliseconds.
    Only distinct networks count: a duplicate's record is its twin's evaluation again.
    """

    def __init__(self) -> None:
        self.n = 0
        self.latency = np.empty(64)
        self.trials = np.empty(64, dtype=np.int64)
        self.accuracy = np.full((64, 1), np.nan)  # row i: trial i's curve, NaN after its end

    def add(self, record: TrialRecord) -> None:
        """Add a finished record if it can dominate (feasible, with a latency and a curve)."""
        if not (record.curve and record.feasible and record.latency_ms is not None):
            return
        if record.duplicate_of is not None:
            return
        rows, width = self.accuracy.shape
        if self.n == rows or len(record.curve) > width:
            grown = np.full(
                (2 * rows if self.n == rows else rows, max(width, len(record.curve))), np.nan
            )
            grown[:rows, :width] = self.accuracy
            self.accuracy = grown
            if self.n == rows:
                self.latency = np.resize(self.latency, 2 * rows)
                self.trials = np.resize(self.trials, 2 * rows)
        self.latency[self.n] = record.latency_ms
        self.trials[self.n] = record.trial
        self.accuracy[self.n, : len(record.curve)] = record.curve
        self.n += 1


class DominanceStopper:
    """Stops a trial whose partial accuracy is dominated at equal or lower latency.

    Example:
        >>> from nas._config import EarlyStopConfig
        >>> stopper = DominanceStopper(EarlyStopConfig(min_finished=1, min_dominators=1))
        >>> done = [TrialRecord(trial=0, state="COMPLETE", latency_ms=1.0, curve=[0.9])]
        >>> stopper.rule(done, latency_ms=2.0)(1, 0.5)
        'dominated at epoch 1: accuracy 0.5000 below trials [0] at equal or lower latency'
    """

    def __init__(self, cfg: EarlyStopConfig) -> None:
        self.cfg = cfg
        self._curves: weakref.WeakKeyDictionary[StudyIndex, tuple[Curves, int]] = (
            weakref.WeakKeyDictionary()
        )

    def for_trial(self, trial: optuna.Trial, latency_ms: float) -> StopRule | None:
        """The stopping rule of a running trial, against the study's finished trials."""
        if not self.cfg.enabled:
            return None
        index = StudyIndex.of(trial.study)
        index.refresh()
        curves, read = self._curves.get(index, (Curves(), 0))
        for record in index.curves[read:]:
            curves.add(record)
        self._curves[index] = (curves, len(index.curves))
        return self._rule(curves, latency_ms)

    def rule(self, finished: Sequence[TrialRecord], *, latency_ms: float) -> StopRule | None:
        """The rule for a trial of ``latency_ms`` against ``finished`` (complete) records.

        ``None`` until ``min_finished`` feasible trials with curves and latencies finished.
        """
        curves = Curves()
        for record in finished:
            curves.add(record)
        return self._rule(curves, latency_ms)

    def _rule(self, curves: Curves, latency_ms: float) -> StopRule | None:
        cfg = self.cfg
        if not cfg.enabled or curves.n < cfg.min_finished:
            return None
        # The trials finished now: later ones do not join a running trial's comparison.
        faster = curves.latency[: curves.n] <= latency_ms
        trials, accuracy = curves.trials[: curves.n], curves.accuracy[: curves.n]

        def rule(epoch: int, accuracy_now: float) -> str | None:
            if epoch < cfg.min_epoch or epoch > accuracy.shape[1]:
                return None
            better = trials[faster & (accuracy[:, epoch - 1] >= accuracy_now + cfg.margin)]
            if len(better) >= cfg.min_dominators:
                return (
                    f"dominated at epoch {epoch}: accuracy {accuracy_now:.4f} below trials "
                    f"{better[:5].tolist()} at equal or lower latency"
                )
            return None

        return rule
