"""The logger of the ``logger`` config group: none (``logger=none``) or wandb."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from nas._config import ConfigError
from nas._logging.protocol import FamilyLog, Logger
from nas._logging.wandb import WandbLogger

if TYPE_CHECKING:
    from nas._report.results import Results


class NullLogger:
    """Logs nothing (``logger=none``)."""

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        return None

    def on_results(self, study: optuna.Study, results: Results) -> None:
        return None

    def on_family(self, family: FamilyLog) -> None:
        return None

    def finish(self) -> None:
        return None


LOGGERS = ("none", "wandb")


def make_logger(
    options: Mapping[str, Any],
    *,
    run_dir: Path,
    config: Mapping[str, Any],
    study_name: str,
    job_type: str = "search",
    run_name: str | None = None,
) -> Logger:
    """The logger of the ``logger`` config group, for one run (a search, or scaling's step 2).

    Raises:
        ConfigError: an unknown logger or a bad option of it.
    """
    name = options.get("name", "none")
    if name == "none":
        return NullLogger()
    if name == "wandb":
        return WandbLogger(
            options,
            run_dir=run_dir,
            config=config,
            study_name=study_name,
            job_type=job_type,
            run_name=run_name,
        )
    raise ConfigError(f"logger.name must be one of {list(LOGGERS)}, got {name!r}")
