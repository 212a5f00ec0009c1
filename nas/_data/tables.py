"""Benchmark tables: measurements of fully trained networks, looked up by a space's identity.

A tabular benchmark (NAS-Bench-201's CSV, NAS-Bench-Macro's JSON) lists, per network, what
training it fully and timing it on real devices gave. Keyed by the same identity a space gives
its networks (``nb201``: the benchmark's ``unique_str``; ``nas_bench_macro``: its canonical
key), a search reads accuracy (:class:`BenchmarkEvaluator`, ``evaluator=table``) and latency
(:class:`BenchmarkLatency`, ``latency=table``) from it instead of training and timing: a whole
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
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def table_row(path: str, key: str, identity: str) -> dict[str, float]:
    rows = read_table(path, key)
    if identity not in rows:
        raise ValueError(
            f"network {identity!r} is not in table {path!r} (matched on {key!r}): "
            "does the space build this benchmark's networks?"
        )
    return rows[identity]


def check_column(path: str, key: str, column: str, *, prefix: str = "") -> None:
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
