"""Latency lookup table: each distinct unit of a network measured once, cached in a JSON file.

A prediction is a validated shortcut next to measurement, never a replacement for it:
:meth:`BlockLatencyPredictor.validate` compares predictions with end-to-end measurement.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._io import atomic_write_text
from nas._latency.backends import runtime_version
from nas._latency.latency import (
    LatencySettings,
    check_resolution,
    describe_device,
    measure_items,
    measure_latencies,
)
from nas._models.network import latency_units
from nas._trials.latency import LatencyResult

_TABLE_VERSION = 1
_UNITS_PER_ROUND = 20


def unit_key(unit: nn.Module, input_shape: Sequence[int]) -> str:
    """Stable string of a unit's configuration and input shape (the lookup table's key).

    Dropout and stochastic-depth probabilities are left out: both are identities in eval mode,
    so blocks that differ only there share one entry.

    Example:
        >>> unit_key(nn.Conv2d(3, 8, 3), (1, 3, 32, 32)).startswith("Conv2d|in=(1, 3, 32, 32)|")
        True
    """
    params = next(unit.parameters(), None)
    dtype = str(params.dtype) if params is not None else "none"
    # The modules' names, types and extra_repr() are what repr() prints, without its costly
    # re-indenting (predictions must stay far cheaper than measurements).
    config = ";".join(
        f"{name}={type(m).__name__}({'' if _identity_in_eval(m) else m.extra_repr()})"
        for name, m in unit.named_modules()
    )
    return f"{type(unit).__qualname__}|in={tuple(int(s) for s in input_shape)}|{dtype}|{config}"


def _identity_in_eval(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.dropout._DropoutNd) or (
        type(module).__name__ == "StochasticDepth"
    )


@dataclass(frozen=True)
class Validation:
    """One network's lookup-table prediction beside its end-to-end measurement.

    ``error`` is predicted / measured - 1 on the reference-normalised figures when the table
    has a reference, otherwise on milliseconds.
    """

    predicted_ms: float
    measured_ms: float
    predicted_relative: float | None
    measured_relative: float | None
    error: float
    predict_seconds: float
    measure_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BlockLatencyPredictor:
    """Latency lookup table: each distinct unit measured once, cached in a JSON file.

    A network is predicted as the sum of its ``latency_units()``, each looked up by
    :func:`unit_key` (unit configuration and input shape, batch included) inside a namespace of
    device, threads, clock, torch version, reference and backend (with its runtime's version).
    Unknown units are measured with the table's
    settings (those of :func:`measure_latency`, interleaved with the reference) the first time
    they are needed, and the file is rewritten atomically. With a reference, each unit is stored
    as its ratio to the reference and predicted as ``ratio * reference_ms`` (the median of the
    reference's figures over the table's measurements), so units measured at different moments
    add up on one scale; ``overhead_relative`` (see :meth:`calibrate`) is added once per network.

    A prediction is a shortcut to be checked with :meth:`validate`, never a replacement for
    measurement.

    Args:
        path: JSON cache file (created when missing); ``None`` keeps the table in memory.
        settings: how units and, in :meth:`validate`, networks are measured (``max_seconds``
            per unit; ``batch_size`` is the default batch of :meth:`predict`). A table with a
            reference needs a fixed ``reference_resolution``.
        **options: settings to change (the fields of :class:`LatencySettings`).

    Example:
        >>> import tempfile
        >>> from nas.space import make_space
        >>> table = BlockLatencyPredictor(f"{tempfile.mkdtemp()}/lut.json", max_seconds=0.2)
        >>> space = make_space("mbconv", resolution=32)
        >>> model = space.build(space.random_genotype(0), num_classes=10)
        >>> table.predict(model, resolution=32) > 0
        True
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        settings: LatencySettings | None = None,
        **options: Any,
    ) -> None:
        self._settings = (settings or LatencySettings()).replace(**options)
        s = self._settings
        if s.reference is not None and s.reference_resolution is None:
            raise ValueError(
                "reference_resolution must be an integer for a lookup table with a reference: "
                "its units are measured at many input sizes and share one reference"
            )
        self.path = None if path is None else Path(path)
        self.measured_units = 0
        ref = s.reference_name
        ref_desc = "none" if ref is None else f"{ref}@{s.reference_resolution}"
        plan = s.plan()
        self.namespace = (
            f"{describe_device(plan.device)}|{plan.device}|threads={plan.threads}|clock={s.clock}|"
            f"torch={torch.__version__}|reference={ref_desc}"
        )
        if s.backend != "torch":  # eager tables keep the namespace they had before backends
            self.namespace += f"|backend={s.backend}|{runtime_version(s.backend)}"
        if not s.fused:
            self.namespace += "|unfused"
        self._data = self._load()

    # ---- file

    def _load(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {"version": _TABLE_VERSION, "namespaces": {}}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{self.path}: not a readable latency table ({err})") from None
        if not isinstance(data, dict) or data.get("version") != _TABLE_VERSION:
            raise ValueError(
                f"{self.path}: not a latency table of version {_TABLE_VERSION} "
                f"(found version {data.get('version') if isinstance(data, dict) else None!r})"
            )
        return data

    def save(self) -> None:
        """Write the table to its file atomically (no-op for an in-memory table)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self._data, indent=1, sort_keys=True))

    @property
    def _space(self) -> dict[str, Any]:
        return self._data["namespaces"].setdefault(
            self.namespace, {"entries": {}, "reference_ms": [], "overhead_relative": 0.0}
        )

    def __len__(self) -> int:
        return len(self._space["entries"])

    @property
    def reference_ms(self) -> float | None:
        """Median of the reference's milliseconds over the table's measurements."""
        history = self._space["reference_ms"]
        return float(statistics.median(history)) if history else None

    @property
    def overhead_relative(self) -> float:
        """Per-network constant added to the sum of units (reference-relative units)."""
        return float(self._space["overhead_relative"])

    # ---- lookup

    def _walk(
        self, model: nn.Module, resolution: int, batch_size: int
    ) -> tuple[list[str], dict[str, tuple[nn.Module, tuple[int, ...], tuple[int, ...]]]]:
        """Keys of the model's units in order, and the units the table lacks.

        A known unit's entry holds its output shape, so walking a network whose units are all
        known runs no forward pass; an unknown unit is run once on zeros for its output shape.
        """
        entries = self._space["entries"]
        shape: tuple[int, ...] = (batch_size, 3, resolution, resolution)
        keys: list[str] = []
        missing: dict[str, tuple[nn.Module, tuple[int, ...], tuple[int, ...]]] = {}
        for unit in latency_units(model):
            key = hashlib.sha1(unit_key(unit, shape).encode()).hexdigest()
            keys.append(key)
            if key in entries:
                out = tuple(entries[key]["out"])
            elif key in missing:
                out = missing[key][2]
            else:
                with torch.inference_mode():
                    y = copy.deepcopy(unit).eval()(torch.zeros(shape))
                out = tuple(int(v) for v in y.shape)
                missing[key] = (unit, shape, out)
            shape = out
        return keys, missing

    def _fill(self, models: Sequence[nn.Module], resolution: int, batch_size: int) -> None:
        missing: dict[str, tuple[nn.Module, tuple[int, ...], tuple[int, ...]]] = {}
        for model in models:
            missing.update(self._walk(model, resolution, batch_size)[1])
        self._measure_units(missing, resolution, batch_size)

    def _measure_units(
        self,
        missing: dict[str, tuple[nn.Module, tuple[int, ...], tuple[int, ...]]],
        resolution: int,
        batch_size: int,
    ) -> None:
        if not missing:
            return
        settings = self._settings.replace(batch_size=batch_size)
        items = [(unit, shape) for unit, shape, _ in missing.values()]
        results: list[LatencyResult] = []
        # About one network's worth of units per round keeps each round short, so the
        # reference runs around a unit stay close in time to it.
        for i in range(0, len(items), _UNITS_PER_ROUND):
            chunk = items[i : i + _UNITS_PER_ROUND]
            results += measure_items(
                chunk, settings=settings, resolutions=[resolution] * len(chunk)
            )
        entries = self._space["entries"]
        for (k, (unit, shape, out)), r in zip(missing.items(), results, strict=True):
            entries[k] = {
                "unit": type(unit).__qualname__,
                "in": list(shape),
                "out": list(out),
                "ms": r.median_ms,
                "relative": r.relative,
                "runs": r.runs,
            }
        if results[0].reference_ms is not None:
            self._space["reference_ms"].append(
                statistics.median(r.reference_ms for r in results if r.reference_ms is not None)
            )
        self.measured_units += len(missing)
        self.save()

    def _lookup(self, model: nn.Module, resolution: int, batch_size: int | None) -> list[dict]:
        batch = self._settings.batch_size if batch_size is None else batch_size
        check_resolution(resolution, [model])
        # One walk: a missing unit's key is already known, only its figure is to be measured.
        keys, missing = self._walk(model, resolution, batch)
        self._measure_units(missing, resolution, batch)
        entries = self._space["entries"]
        return [entries[k] for k in keys]

    def predict_relative(
        self, model: nn.Module, *, resolution: int, batch_size: int | None = None
    ) -> float:
        """Predicted latency relative to the reference (measuring unknown units first).

        Raises:
            ValueError: the table has no reference.
        """
        if self._settings.reference is None:
            raise ValueError("predict_relative needs a table with a reference (reference=None)")
        rows = self._lookup(model, resolution, batch_size)
        return self.overhead_relative + sum(row["relative"] for row in rows)

    def predict(self, model: nn.Module, *, resolution: int, batch_size: int | None = None) -> float:
        """Predicted milliseconds of one forward pass (measuring unknown units first).

        Example:
            >>> from nas.zoo import efficientnet
            >>> table = BlockLatencyPredictor(max_seconds=0.2)
            >>> table.predict(efficientnet("b0"), resolution=64) > 0
            True
        """
        if self._settings.reference is None:
            return sum(row["ms"] for row in self._lookup(model, resolution, batch_size))
        relative = self.predict_relative(model, resolution=resolution, batch_size=batch_size)
        return relative * float(statistics.median(self._space["reference_ms"]))

    def prefill(
        self, models: Sequence[nn.Module], *, resolution: int, batch_size: int | None = None
    ) -> int:
        """Measure every unit of ``models`` not yet in the table, all in the same rounds.

        Returns:
            The number of units measured.
        """
        batch = self._settings.batch_size if batch_size is None else batch_size
        check_resolution(resolution, models)
        before = self.measured_units
        self._fill(models, resolution, batch)
        return self.measured_units - before

    # ---- validation

    def validate(
        self, models: Sequence[nn.Module], *, resolution: int, batch_size: int | None = None
    ) -> list[Validation]:
        """Predict each network and measure it end to end (all networks in the same rounds).

        Returns:
            One :class:`Validation` per network, in order.
        """
        batch = self._settings.batch_size if batch_size is None else batch_size
        self.prefill(models, resolution=resolution, batch_size=batch)
        predictions = []
        for m in models:
            t0 = time.perf_counter()
            ms = self.predict(m, resolution=resolution, batch_size=batch)
            rel = (
                None
                if self._settings.reference is None
                else self.predict_relative(m, resolution=resolution, batch_size=batch)
            )
            predictions.append((ms, rel, time.perf_counter() - t0))
        measured = measure_latencies(
            models, resolution=resolution, settings=self._settings.replace(batch_size=batch)
        )
        rows = []
        for (ms, rel, secs), r in zip(predictions, measured, strict=True):
            if rel is not None and r.relative is not None:
                error = rel / r.relative - 1
            else:
                error = ms / r.median_ms - 1
            rows.append(
                Validation(
                    predicted_ms=ms,
                    measured_ms=r.median_ms,
                    predicted_relative=rel,
                    measured_relative=r.relative,
                    error=error,
                    predict_seconds=secs,
                    measure_seconds=r.seconds,
                )
            )
        return rows

    def calibrate(
        self, models: Sequence[nn.Module], *, resolution: int, batch_size: int | None = None
    ) -> float:
        """Set ``overhead_relative`` to the median of measured - predicted over ``models``.

        Calibrate on networks other than those you then validate on.

        Returns:
            The new overhead (reference-relative units).
        """
        if self._settings.reference is None:
            raise ValueError("calibrate needs a table with a reference (reference=None)")
        self._space["overhead_relative"] = 0.0
        rows = self.validate(models, resolution=resolution, batch_size=batch_size)
        gaps = [
            r.measured_relative - r.predicted_relative
            for r in rows
            if r.measured_relative is not None and r.predicted_relative is not None
        ]
        self._space["overhead_relative"] = float(statistics.median(gaps))
        self.save()
        return self.overhead_relative
