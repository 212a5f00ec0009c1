"""Experiment loggers: none, or Weights & Biases (``logger=wandb``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial


class Logger(Protocol):
    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None: ...
    def on_results(self, study: optuna.Study, results: Any) -> None: ...
    def finish(self) -> None: ...


class NullLogger:
    """Logs nothing (``logger=none``)."""

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        return None

    def on_results(self, study: optuna.Study, results: Any) -> None:
        return None

    def finish(self) -> None:
        return None


def make_logger(
    options: dict[str, Any], *, run_dir: Path, config: dict[str, Any], study_name: str
) -> Logger:
    """The logger of the ``logger`` config group."""
    from nas._config import ConfigError

    name = options.get("name", "none")
    if name == "none":
        return NullLogger()
    if name == "wandb":
        from nas._wandb import WandbLogger

        return WandbLogger(options, run_dir=run_dir, config=config, study_name=study_name)
    raise ConfigError(f"logger.name must be 'none' or 'wandb', got {name!r}")
