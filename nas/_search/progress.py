"""The progress bar of a search: the study's whole budget, and the best trade-offs so far."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas._record import TrialRecord
from nas._report.pareto import pareto_front
from nas._storage.recovery import budget_used


class Progress:
    """tqdm bar over the study's trial budget (all workers), showing the best trade-offs.

    Called as an Optuna callback after each trial (and once before the first).
    """

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.total = total
        self.bar = tqdm(total=total, unit="trial", disable=not enabled, dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial | None) -> None:
        trials = study.get_trials(deepcopy=False)
        front = pareto_front(TrialRecord.all_of(trials))
        if front:
            best = max(front, key=lambda r: r.accuracy or 0.0)
            fast = front[0]
            self.bar.set_postfix_str(
                f"front={len(front)} best={100 * (best.accuracy or 0):.1f}%@{best.latency_ms:.2f}ms "
                f"fastest={fast.latency_ms:.2f}ms@{100 * (fast.accuracy or 0):.1f}%",
                refresh=False,
            )
        finished = [t for t in trials if t.state != TrialState.RUNNING]
        self.bar.n = min(self.total, budget_used(finished))
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
