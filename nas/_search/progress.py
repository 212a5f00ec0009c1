"""The progress bar of a search: the study's whole budget, and the best trade-offs so far."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

from nas._trials.index import StudyIndex
from nas._trials.metric import FirstObjective, study_objective


class Progress:
    """tqdm bar over the study's trial budget (all workers), showing the best trade-offs.

    Called as an Optuna callback after each trial (and once before the first).
    """

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.total = total
        self.objective: FirstObjective | None = None
        self.bar = tqdm(total=total, unit="trial", disable=not enabled, dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial | None) -> None:
        index = StudyIndex.of(study)
        index.refresh()
        front = index.front.records
        if front:
            if self.objective is None:  # read once: the study's protocol and its first trials
                self.objective = study_objective(study, front)
            best = max(front, key=lambda r: r.accuracy or 0.0)
            fast = front[0]
            self.bar.set_postfix_str(
                f"front={len(front)} best={self._show(best.accuracy)}@{best.latency_ms:.2f}ms "
                f"fastest={fast.latency_ms:.2f}ms@{self._show(fast.accuracy)}",
                refresh=False,
            )
        self.bar.n = min(self.total, index.budget_used(running=False))
        self.bar.refresh()

    def _show(self, value: float | None) -> str:
        """An accuracy as a percentage, a score to 4 significant digits."""
        value = value or 0.0
        percent = self.objective is None or self.objective.percent
        return f"{100 * value:.1f}%" if percent else f"{value:.4g}"

    def close(self) -> None:
        self.bar.close()
