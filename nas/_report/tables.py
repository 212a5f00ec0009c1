"""Tables people read: a front, and the closing summary of a search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nas._trials.record import TrialRecord

if TYPE_CHECKING:
    from rich.table import Table

    from nas._report.results import Results


def front_table(
    front: Sequence[Mapping[str, Any]] | Sequence[TrialRecord], *, title: str = "Pareto front"
) -> Table:
    """A rich table of a front (records, or the records of a ``pareto.json``)."""
    from rich.table import Table

    table = Table(title=title)
    for col, justify in (
        ("trial", "right"),
        ("accuracy %", "right"),
        ("latency ms", "right"),
        ("params", "right"),
        ("MACs (M)", "right"),
        ("architecture", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in front:
        get = r.get if isinstance(r, Mapping) else lambda key, r=r: getattr(r, key)
        table.add_row(
            str(get("trial")),
            f"{100 * get('accuracy'):.2f}",
            f"{get('latency_ms'):.3f}",
            f"{get('params'):,}",
            f"{get('macs') / 1e6:.2f}",
            str(get("arch") or ""),
        )
    return table


def summary_line(results: Results) -> str:
    """One line: trials by state, hypervolume and its reference latency."""
    return (
        f"{len(results.rows)} trials {results.counts}; hypervolume {results.hypervolume:.4g} "
        f"(reference latency {results.reference_latency_ms:.3f} ms)"
    )
