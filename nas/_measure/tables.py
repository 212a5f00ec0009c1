"""Benchmark tables: measurements of fully trained networks, looked up by a space's identity.

A tabular benchmark (NAS-Bench-201's CSV, NAS-Bench-Macro's JSON) lists, per network, what
training it fully and timing it on real devices gave. Keyed by the same identity a space gives
its networks (``nb201``: the benchmark's ``unique_str``; ``nas_bench_macro``: its canonical
key), a search reads accuracy (:class:`TableEvaluator`, ``evaluator=table``) and latency
(:class:`TableLatency`, ``latency=table``) from it instead of training and timing: a whole
search in seconds, against a known true Pareto front.

Rows sharing one identity (NAS-Bench-201's isomorphic cells, each trained separately) are
averaged. Hand-written readers: the two formats are small and fixed, and pandas would be a
dependency for two ``read_csv`` calls.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import io
import json
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from nas._measure.data import Dataset
from nas._measure.latency import LatencyResult
from nas._measure.proxy import AccuracyResult, Evaluator, OnEpoch, check_number

#: ``key`` value naming a JSON table's own keys (NAS-Bench-Macro: ``{"22212220": {...}}``).
JSON_KEY = "key"


@functools.lru_cache(maxsize=8)
def read_table(path: str, key: str) -> dict[str, dict[str, float]]:
    """The numeric columns of a table's rows, by the value of column ``key`` (rows averaged).

    A ``.csv`` or ``.csv.gz`` file has a header row; a ``.json`` or ``.json.gz`` file maps
    each key (``key: key``) or holds records with a ``key`` field. Lists of numbers (one per
    seed) become their mean.

    Raises:
        ValueError: no such file, a format it does not read, or no column ``key``.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "t.csv")
        >>> _ = open(p, "w").write("id,acc\\na,90\\na,92\\nb,80\\n")
        >>> read_table(p, "id")["a"]["acc"]
        91.0
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"no table file {path!r}")
    name = file.name.removesuffix(".gz")
    opener = gzip.open if file.name.endswith(".gz") else open
    with opener(file, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        text = fh.read()
    if name.endswith(".csv"):
        records = list(csv.DictReader(io.StringIO(text)))
        if records and key not in records[0]:
            raise ValueError(
                f"table {path!r} has no column {key!r}; columns: {', '.join(records[0])}"
            )
        keyed = [(r[key], r) for r in records]
    elif name.endswith(".json"):
        data = json.loads(text)
        if key == JSON_KEY and isinstance(data, dict):
            keyed = list(data.items())
        else:
            items = data.values() if isinstance(data, dict) else data
            keyed = [(str(r[key]), r) for r in items if isinstance(r, dict) and key in r]
            if not keyed:
                raise ValueError(f"table {path!r} has no field {key!r} (or use key: {JSON_KEY})")
    else:
        raise ValueError(f"table {path!r}: expected a .csv, .csv.gz, .json or .json.gz file")
    groups: dict[str, list[dict[str, float]]] = {}
    for identity, record in keyed:
        groups.setdefault(str(identity), []).append(_numbers(record))
    return {k: _mean_rows(rows) for k, rows in groups.items()}


def _numbers(record: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in record.items():
        if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
            out[name] = statistics.fmean(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):  # text columns (arch_str) are dropped
                out[name] = float(value)
    return out


def _mean_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    columns = set().union(*rows)
    return {c: statistics.fmean(r[c] for r in rows if c in r) for c in columns}


def _row(path: str, key: str, identity: str) -> dict[str, float]:
    rows = read_table(path, key)
    if identity not in rows:
        raise ValueError(
            f"network {identity!r} is not in table {path!r} (matched on {key!r}): "
            "does the space build this benchmark's networks?"
        )
    return rows[identity]


def _column(path: str, key: str, column: str, *, prefix: str = "") -> None:
    """Raise ``ValueError`` unless the table has the numeric ``column``, listing what it has
    (the columns starting with ``prefix``, that prefix removed: ``lat_ms_`` lists devices)."""
    first = next(iter(read_table(path, key).values()), {})
    if column in first:
        return
    names = sorted(c.removeprefix(prefix) for c in first if c.startswith(prefix))
    what, listed = ("latency column", "devices") if prefix else ("numeric column", "columns")
    raise ValueError(
        f"table {path!r} has no {what} {column!r}"
        + (f"; {listed}: {', '.join(names)}" if names else "")
    )


@dataclass
class TableEvaluator(Evaluator):
    """Accuracy read from a benchmark's table: the full training's, and a partial curve.

    The curve is the ``partial`` column (e.g. NAS-Bench-201's 12-epoch accuracy) then the full
    ``accuracy``: early stopping sees a real learning curve, and a trial stopped after the first
    point cost ``partial_epochs`` of ``epochs``.

    Args:
        path: the table (``.csv[.gz]`` or ``.json[.gz]``).
        key: the column holding the space's identity (``key``: a JSON table's own keys).
        accuracy: the column of the full training's accuracy.
        partial: the column of a shorter training's accuracy, or ``None`` (no curve).
        epochs: epochs of the full training (the cost of a trial that is not stopped).
        partial_epochs: epochs of the partial training.
        percent: the table gives accuracy in percent (divided by 100).
        seed: unused (a table is the same for every seed); kept so ``search.seed`` flows in.
    """

    name: ClassVar[str] = "table"

    path: str = ""
    key: str = "unique_str"
    accuracy: str = "c10_test_acc_200ep"
    partial: str | None = "c10_test_acc_12ep_1seed"
    epochs: int = 200
    partial_epochs: int = 12
    percent: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("epochs", self.epochs, minimum=1, integer=True)
        check_number("partial_epochs", self.partial_epochs, minimum=1, integer=True)
        _column(self.path, self.key, self.accuracy)
        if self.partial is not None:
            _column(self.path, self.key, self.partial)

    def check(self, identity: str) -> None:
        """Raise ``ValueError`` unless the table holds the network ``identity``."""
        _row(self.path, self.key, identity)

    def __call__(
        self,
        model: nn.Module,
        data: Dataset,
        *,
        device: str = "cpu",
        on_epoch: OnEpoch | None = None,
        seed: int | None = None,
        identity: str | None = None,
    ) -> AccuracyResult:
        """The table's accuracies of the network ``identity`` (``model`` is not run)."""
        if identity is None:
            raise ValueError("the table evaluator needs the network's identity")
        row = _row(self.path, self.key, identity)
        scale = 0.01 if self.percent else 1.0
        points = [(self.epochs, row[self.accuracy] * scale)]
        if self.partial is not None:
            points.insert(0, (self.partial_epochs, row[self.partial] * scale))
        curve: list[float] = []
        for epochs, accuracy in points:
            curve.append(accuracy)
            if on_epoch is not None and on_epoch(len(curve), accuracy):
                stopped = len(curve) < len(points)
                return AccuracyResult(
                    accuracy, curve, 0.0, epochs, stopped=stopped, evaluator=self.name
                )
        return AccuracyResult(curve[-1], curve, 0.0, self.epochs, evaluator=self.name)


@dataclass(frozen=True)
class TableLatency:
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

    def __post_init__(self) -> None:
        if self.source != "table":
            raise ValueError(f"source must be 'table' here, got {self.source!r}")
        _column(self.path, self.key, self.column_name, prefix="lat_ms_")

    @property
    def column_name(self) -> str:
        return self.column.replace("{device}", str(self.device))

    def check(self, identity: str) -> None:
        """Raise ``ValueError`` unless the table holds the network ``identity``."""
        _row(self.path, self.key, identity)

    def lookup(self, identity: str, *, resolution: int) -> LatencyResult:
        """The table's latency of the network ``identity`` as a result (one figure, no spread)."""
        ms = _row(self.path, self.key, identity)[self.column_name]
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
