"""Latency read from a benchmark table (``latency=table``); see :mod:`nas._data.tables`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from nas._data.tables import check_column, table_row
from nas._trials.latency import LatencyResult


@dataclass(frozen=True)
class BenchmarkLatency:
    """Latency read from a benchmark's table for one of its devices (``latency=table``).

    Args:
        source: ``table`` (what selects this instead of measuring).
        path: the table.
        key: the column holding the space's identity.
        device: the benchmark's device name, e.g. NAS-Bench-201's ``raspi4``, ``pixel3``,
            ``fpga``, ``gold_6226``, ``titan_rtx_1``.
        column: the column read, with ``{device}`` replaced (``lat_ms_{device}``).
    """

    source: str = "table"
    path: str = ""
    key: str = "unique_str"
    device: str = "raspi4"
    column: str = "lat_ms_{device}"
    #: Read, not timed here (see ``nas._latency.source``).
    measured: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.source != "table":
            raise ValueError(f"source must be 'table' here, got {self.source!r}")
        check_column(self.path, self.key, self.column_name, prefix="lat_ms_")

    @property
    def column_name(self) -> str:
        return self.column.replace("{device}", str(self.device))

    def latency_of(
        self,
        model: nn.Module,
        *,
        identity: str,
        resolution: int,
        images: Callable[[int], torch.Tensor] | None = None,
    ) -> LatencyResult:
        """The table's figure of the network ``identity`` (the model is not run)."""
        return self.lookup(identity, resolution=resolution)

    def check(self, identity: str) -> None:
        """Raise ``ValueError`` unless the table holds the network ``identity``."""
        table_row(self.path, self.key, identity)

    def lookup(self, identity: str, *, resolution: int) -> LatencyResult:
        """The table's latency of the network ``identity`` as a result (one figure, no spread)."""
        ms = table_row(self.path, self.key, identity)[self.column_name]
        return LatencyResult(
            median_ms=ms,
            iqr_ms=0.0,
            runs=1,
            relative=None,
            reference_ms=None,
            device=f"{self.device} (table {Path(self.path).name})",
            threads=0,
            torch_version=torch.__version__,
            batch_size=1,
            resolution=resolution,
            clock="table",
            wall_ms=ms,
            rel_ci=math.inf,
        )
