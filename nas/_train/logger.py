"""Logging a training run through the ``logger`` group: nothing, or one wandb run (offline).

The wandb logger is the search's (:class:`nas._logging.wandb.WandbLogger`: offline by default,
a failure reported once and never stopping the run) with two more calls: each epoch's
metrics against the ``epoch`` axis, and the final report with the model files as an artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from nas._config import ConfigError
from nas._io import finite
from nas._logging.logger import LOGGERS
from nas._logging.wandb import WandbLogger, _artifact_name, _guarded


class TrainLogger(Protocol):
    def on_epoch(self, row: Mapping[str, Any]) -> None: ...
    def on_report(self, report: Mapping[str, Any], files: Mapping[str, Path]) -> None: ...
    def finish(self) -> None: ...


class NullTrainLogger:
    """Logs nothing (``logger=none``)."""

    def on_epoch(self, row: Mapping[str, Any]) -> None:
        return None

    def on_report(self, report: Mapping[str, Any], files: Mapping[str, Path]) -> None:
        return None

    def finish(self) -> None:
        return None


class WandbTrainLogger(WandbLogger):
    """One wandb run (job type ``train``) per command; a resumed run starts another one in the
    same group (the run's name), logging from the epoch it resumed at."""

    def __init__(self, options: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(options, job_type="train", **kwargs)
        self._define_axes()

    @_guarded
    def _define_axes(self) -> None:
        if self._run is None:
            return
        self._run.define_metric("epoch")
        self._run.define_metric("*", step_metric="epoch")

    @_guarded
    def on_epoch(self, row: Mapping[str, Any]) -> None:
        """Log one epoch's loss, learning rate and validation accuracy."""
        if self._run is None:
            return
        phase = row.get("phase", "train")
        prefix = "" if phase == "train" else f"{phase}/"
        self._run.log(
            {"epoch": row["epoch"]}
            | {
                f"{prefix}{k}": v
                for k, v in finite(dict(row)).items()
                if k not in ("epoch", "phase") and isinstance(v, int | float)
            }
        )

    @_guarded
    def on_report(self, report: Mapping[str, Any], files: Mapping[str, Path]) -> None:
        """The report's figures as the run's summary; the model files as an artifact."""
        if self._run is None:
            return
        model = report.get("model") or {}
        summary = {k: v for k, v in model.items() if isinstance(v, int | float)}
        if model.get("latency"):
            summary["latency_ms"] = model["latency"]["median_ms"]
        self._run.summary.update(finite(summary))
        artifact = self._wandb.Artifact(
            _artifact_name(self.study_name, "model"),
            type="model",
            description="trained weights, ONNX file and report (nas.load_model(arch, weights=))",
            metadata=finite(summary),
        )
        for name, path in files.items():
            if Path(path).is_file():
                artifact.add_file(str(path), name=name)
        self._run.log_artifact(artifact)


def make_train_logger(
    options: Mapping[str, Any], *, run_dir: Path, config: Mapping[str, Any], name: str
) -> TrainLogger:
    """The logger of the ``logger`` group for one training run.

    Raises:
        ConfigError: an unknown logger or a bad option of it.
    """
    kind = options.get("name", "none")
    if kind == "none":
        return NullTrainLogger()
    if kind == "wandb":
        return WandbTrainLogger(options, run_dir=run_dir, config=config, study_name=name)
    raise ConfigError(f"logger.name must be one of {list(LOGGERS)}, got {kind!r}")
