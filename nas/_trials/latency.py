"""The latency figures of one network, as a trial records them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class LatencyResult:
    """Latency of one network, measured interleaved with a reference.

    Attributes:
        median_ms: median milliseconds of one forward pass on ``clock`` (outlying runs dropped).
        iqr_ms: interquartile range of the kept runs, in milliseconds.
        runs: timed runs kept after outlier rejection.
        relative: median over rounds of candidate time / reference time measured in the same
            round (drift-cancelled; comparable between results with equal reference, reference
            resolution and batch size); ``None`` without a reference.
        reference_ms: the reference's median milliseconds in the same rounds (``None`` without).
        device: human description of the device (CPU model or CUDA device name).
        threads: intra-op CPU threads used.
        torch_version: ``torch.__version__``.
        batch_size: input batch size.
        resolution: input resolution (square).
        clock: ``"wall"`` (elapsed time) or ``"cpu"`` (CPU time of the computing thread(s)),
            the clock of ``median_ms``, ``iqr_ms``, ``relative`` and ``reference_ms``.
        wall_ms: median wall-clock milliseconds, whatever ``clock`` is.
        rounds: rounds run (before outlier rejection).
        rejected: rounds dropped as outliers (by the ratio when a reference is used, else by ms).
        rel_ci: half-width of the 95% confidence interval of the reported median (of
            ``relative`` with a reference, else of ``median_ms``), relative to it.
        seconds: wall-clock seconds this result cost (its share of the warm-up and rounds).
        reference: the reference's name (``"efficientnet_b0"`` for the built-in one, else the
            module's class name; ``None`` without).
        reference_resolution: the reference's input resolution (``None`` without).
        backend: the runtime it was timed in (``torch`` for figures of earlier versions).
        runtime_version: that runtime and its version (``onnxruntime 1.32.0``).
    """

    median_ms: float
    iqr_ms: float
    runs: int
    relative: float | None
    reference_ms: float | None
    device: str
    threads: int
    torch_version: str
    batch_size: int
    resolution: int
    clock: str = "wall"
    wall_ms: float = math.nan
    rounds: int = 0
    rejected: int = 0
    rel_ci: float = math.inf
    seconds: float = 0.0
    reference: str | None = None
    reference_resolution: int | None = None
    backend: str = "torch"
    runtime_version: str | None = None
    raw: dict[str, tuple[float, ...]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable mapping of the figures (without the raw samples)."""
        d = asdict(self)
        d.pop("raw")
        if not math.isfinite(d["rel_ci"]):
            d["rel_ci"] = None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyResult:
        """The result :meth:`to_dict` wrote (keys this version does not know are ignored)."""
        known = {f.name for f in fields(cls)} - {"raw"}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("rel_ci") is None:
            values["rel_ci"] = math.inf
        return cls(**values)
