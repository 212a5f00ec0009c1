"""``nas show ARCH.yaml``: an architecture's record, its layer table, parameters and MACs."""

from __future__ import annotations

import inspect
import io
import os
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from torch import nn

from nas._latency.profile import profile
from nas._models.network import layer_table, n_params
from nas._spaces.arch import as_arch
from nas._spaces.build import ArchLike, build_model, space_of


def describe_arch(arch: ArchLike, *, width: int = 110) -> str:
    """A human-readable description of an architecture: record, layer table, params, MACs.

    Args:
        arch: an architecture file path, a mapping or an :class:`~nas.Arch`.
        width: text width of the tables.

    Returns:
        Plain text (no colour codes), ready to print.

    Raises:
        ArchFileError: the file cannot be read or describes no valid architecture.

    Example:
        >>> from nas import describe_arch
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32, width_mult=0.25)
        >>> text = describe_arch(space.arch(space.random_genotype(0), num_classes=10))
        >>> "params" in text and "MBConv" in text
        True
    """
    record = as_arch(arch)
    model = build_model(arch).eval()
    space = space_of(record)
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, highlight=False, emoji=False)

    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    if isinstance(arch, str | os.PathLike):
        summary.add_row("file", str(arch))
    summary.add_row("space", record.space)
    summary.add_row("resolution", str(record.resolution))
    summary.add_row("classes", str(record.num_classes))
    summary.add_row("genotype", space.describe(space.validate(record.genotype)))
    changed = _changed_options(space)
    if changed:
        summary.add_row("space options", changed)
    for key, value in record.metrics.items():
        summary.add_row(f"metrics.{key}", str(value))
    console.print(summary)

    title, rows = layer_table(model, record.resolution)
    console.print(_table(rows, title=title))

    cost = profile(model, resolution=record.resolution)
    totals = Table.grid(padding=(0, 2))
    totals.add_column(style="bold")
    totals.add_column(justify="right")
    totals.add_column()
    totals.add_row("params", f"{cost.params:,}", _si(cost.params))
    aux = getattr(model, "aux", None)
    if isinstance(aux, nn.Module) and len(aux):
        deployed = cost.params - n_params(aux)
        totals.add_row("params, eval/export", f"{deployed:,}", f"{_si(deployed)} (no aux heads)")
    totals.add_row(
        "MACs, conv + linear",
        f"{cost.conv_linear_macs:,}",
        f"{_si(cost.conv_linear_macs)} (torch flop counter)",
    )
    totals.add_row("MACs, all ops", f"{cost.macs:,}", f"{_si(cost.macs)} (thop)")
    console.print(totals)
    return out.getvalue()


def _si(n: float) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f} {unit}"
    return f"{n:g}"


def _changed_options(space: Any) -> str:
    """The space's options that differ from its constructor's defaults, as ``key=value``."""
    params = inspect.signature(type(space).__init__).parameters
    parts = []
    for key, value in space.options().items():
        default = params[key].default if key in params else inspect.Parameter.empty
        if default is inspect.Parameter.empty or not _same(value, default):
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _same(value: Any, default: Any) -> bool:
    if default is None and isinstance(value, Mapping | list | tuple) and not value:
        return True  # an empty mapping or list stored for "none given"
    if isinstance(default, tuple | list) and isinstance(value, tuple | list):
        return len(value) == len(default) and all(
            _same(v, d) for v, d in zip(value, default, strict=True)
        )
    return value == default


def _table(rows: list[dict[str, Any]], *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for key in rows[0]:
        table.add_column(key, justify="left" if key in ("stage", "operator", "form") else "right")
    for row in rows:
        table.add_row(*(_cell(v) for v in row.values()))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10_000:
        return f"{value:,}"
    return str(value)
