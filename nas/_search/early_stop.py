"""Early stopping of dominated trials in multi-objective studies.

Optuna refuses ``trial.report`` in multi-objective studies, so its pruners cannot help there.
At epoch k a trial is stopped when enough finished trials that are at least as fast were
clearly more accurate at the same epoch k (their recorded accuracy curves).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optuna
from optuna.trial import TrialState

from nas._config import EarlyStopConfig
from nas._record import TrialRecord

#: Called after each epoch with (epoch, accuracy); returns why to stop, or ``None`` to go on.
StopRule = Callable[[int, float], "str | None"]


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

    def for_trial(self, trial: optuna.Trial, latency_ms: float) -> StopRule | None:
        """The stopping rule of a running trial, against the study's finished trials."""
        if not self.cfg.enabled:
            return None
        finished = TrialRecord.all_of(
            trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        )
        return self.rule(finished, latency_ms=latency_ms)

    def rule(self, finished: Sequence[TrialRecord], *, latency_ms: float) -> StopRule | None:
        """The rule for a trial of ``latency_ms`` against ``finished`` records.

        ``None`` until ``min_finished`` feasible trials with curves and latencies finished.
        """
        cfg = self.cfg
        if not cfg.enabled:
            return None
        done = [r for r in finished if r.curve and r.feasible and r.latency_ms is not None]
        if len(done) < cfg.min_finished:
            return None
        faster = [r for r in done if r.latency_ms <= latency_ms]  # type: ignore[operator]

        def rule(epoch: int, accuracy: float) -> str | None:
            if epoch < cfg.min_epoch:
                return None
            better = [
                r.trial
                for r in faster
                if len(r.curve) >= epoch and r.curve[epoch - 1] >= accuracy + cfg.margin
            ]
            if len(better) >= cfg.min_dominators:
                return (
                    f"dominated at epoch {epoch}: accuracy {accuracy:.4f} below trials "
                    f"{better[:5]} at equal or lower latency"
                )
            return None

        return rule
