"""What a logger is told: the logger protocol, and the record of compound scaling's step 2.

A search calls :meth:`Logger.on_trial` after each trial and :meth:`Logger.on_results` once the
results are written; compound scaling's step 2 calls :meth:`Logger.on_family`. Logging is a
side channel: a logger never stops or changes a search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from optuna.trial import FrozenTrial

if TYPE_CHECKING:
    from nas._report.results import Results


@dataclass
class FamilyLog:
    """What step 2 of compound scaling logs: the family as a table, a summary, plot and files."""

    columns: list[str]
    rows: list[list[Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    plot: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)


class Logger(Protocol):
    """What a search and compound scaling tell a logger."""

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None: ...
    def on_results(self, study: optuna.Study, results: Results) -> None: ...
    def on_family(self, family: FamilyLog) -> None: ...
    def finish(self) -> None: ...
