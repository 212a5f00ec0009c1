"""The progress bar of a search: the study's whole budget, and the best trade-offs so far."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

from nas._trials.index import StudyIndex


class Progress:
    """tqdm bar over the study's trial budget (all workers), showing the best trade-offs.

    Called as an Optuna callback after each trial (and once before the first).
    """

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.total = total
        self.bar = tqdm(total=total, unit="trial", disable=not enabled, dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial | None) -> None:
        index = StudyIndex.of(study)
        index.refresh()
        front = index.front.records
        if front:
            best = max(front, key=lambda r: r.accuracy or 0.0)
            fast = front[0]
            self.bar.set_postfix_str(
                f"front={len(front)} best={100 * (best.accuracy or 0):.1f}%@{best.latency_ms:.2f}ms "
                f"fastest={fast.latency_ms:.2f}ms@{100 * (fast.accuracy or 0):.1f}%",
                refresh=False,
            )
        self.bar.n = min(self.total, index.budget_used(running=False))
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
