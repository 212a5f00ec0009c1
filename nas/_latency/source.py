"""Where a trial's latency comes from, behind one protocol: measured here, read from a
benchmark's table, or predicted from per-block measurements.

The search, compound scaling and the results ask :func:`latency_of` for a network's figure and
never look at which source it is; ``measured`` says whether the figure was timed on this device
(only those can be timed again side by side at the end of a search). Table and predictor
implement :class:`LatencySource`; measured latency is :class:`nas.LatencySettings` itself (the
settings are the source: what a user passes to ``nas.measure_latency``), adapted here in one
place, since ``settings.py`` cannot import the measuring code that imports it. A new source is
one class implementing the protocol, a ``source:`` value in :func:`latency_source` and one YAML
in ``conf/latency/``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from nas._config import call_with_options
from nas._latency.latency import measure_latency
from nas._latency.lookup import BlockLatencyPredictor
from nas._latency.settings import LatencySettings, describe_device
from nas._latency.table import BenchmarkLatency
from nas._trials.latency import LatencyResult

#: Training images at a resolution, for a backend that calibrates on them (int8).
Images = Callable[[int], torch.Tensor]


@runtime_checkable
class LatencySource(Protocol):
    """A network's latency, by whatever means the source has."""

    @property
    def measured(self) -> bool:
        """True when the figure is timed on this device (it can be timed again)."""
        ...

    def latency_of(
        self,
        model: nn.Module,
        *,
        identity: str,
        resolution: int,
        images: Images | None = None,
    ) -> LatencyResult:
        """The latency of ``model`` (the network ``identity``) at ``resolution`` px."""
        ...


def latency_of(
    source: LatencySource | LatencySettings,
    model: nn.Module,
    *,
    identity: str,
    resolution: int,
    images: Images | None = None,
) -> LatencyResult:
    """The latency ``source`` gives ``model``; measured settings time it, int8 calibrated on
    ``images`` (the first training images) as deployed."""
    if not isinstance(source, LatencySettings):
        return source.latency_of(model, identity=identity, resolution=resolution, images=images)
    n = source.calibration_images_needed
    calibration = images(resolution)[:n] if n and images is not None else None
    return measure_latency(model, resolution=resolution, settings=source, calibration=calibration)


def calibration_images(
    settings: LatencySettings, images: Images, resolutions: list[int]
) -> list[torch.Tensor] | None:
    """Per network, the images an int8 backend calibrates on (``None``: no calibration)."""
    n = settings.calibration_images_needed
    return [images(r)[:n] for r in resolutions] if n else None


@dataclass(frozen=True)
class PredictedLatency:
    """Latency predicted by a per-block lookup table (``latency=predictor``).

    Each distinct block is measured once, with ``settings``, the first time a network needs it
    (see :class:`nas.measure.BlockLatencyPredictor`); a network's figure is the sum of its blocks'. A shortcut to
    be validated (``BlockLatencyPredictor.validate``), never a replacement for measurement.

    Args:
        settings: how blocks are measured.
        path: the table's JSON cache file, or ``None`` to keep it in memory.
    """

    settings: LatencySettings = field(default_factory=LatencySettings)
    path: str | None = None
    measured: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "_table", BlockLatencyPredictor(self.path, settings=self.settings))

    def latency_of(
        self,
        model: nn.Module,
        *,
        identity: str,
        resolution: int,
        images: Images | None = None,
    ) -> LatencyResult:
        table: BlockLatencyPredictor = self._table  # type: ignore[attr-defined]
        s = self.settings
        ms = table.predict(model, resolution=resolution)
        relative = (
            None if s.reference is None else table.predict_relative(model, resolution=resolution)
        )
        return LatencyResult(
            median_ms=ms,
            iqr_ms=0.0,
            runs=1,
            relative=relative,
            reference_ms=table.reference_ms,
            device=f"{describe_device(s.device)} (predicted by blocks)",
            threads=s.threads or torch.get_num_threads(),
            torch_version=torch.__version__,
            batch_size=s.batch_size,
            resolution=resolution,
            clock=str(s.clock),
            wall_ms=math.nan,
            rel_ci=math.inf,
            reference=s.reference_name,
            reference_resolution=s.reference_resolution if s.reference is not None else None,
            backend=s.backend,
        )


def _predicted(*, path: str | None = None, **settings: Any) -> PredictedLatency:
    return PredictedLatency(settings=LatencySettings().replace(**settings), path=path)


#: ``latency.source`` -> a factory taking the rest of the group's keys.
_SOURCES: dict[str, Callable[..., LatencySource | LatencySettings]] = {
    "measured": LatencySettings,
    "table": BenchmarkLatency,
    "predictor": _predicted,
}


def register_latency_source(
    name: str, factory: Callable[..., LatencySource | LatencySettings]
) -> None:
    """Make ``latency.source: NAME`` build its source with ``factory(**other keys)``.

    Raises:
        ValueError: another factory is registered under that name.
    """
    existing = _SOURCES.get(name)
    if existing is not None and existing is not factory:
        raise ValueError(f"a latency source named {name!r} is already registered: {existing}")
    _SOURCES[name] = factory


def latency_source(options: Mapping[str, Any]) -> LatencySource | LatencySettings:
    """The source a ``latency`` config group describes (its ``source`` key; measured by default).

    Raises:
        ValueError: an unknown source or option, or a bad value, named.

    Example:
        >>> latency_source({"source": "measured", "threads": 1}).measured
        True
    """
    options = dict(options)
    source = options.pop("source", "measured")
    factory = _SOURCES.get(source)
    if factory is None:
        raise ValueError(f"latency.source must be one of {', '.join(_SOURCES)}, got {source!r}")
    return call_with_options(factory, options, group="latency")
