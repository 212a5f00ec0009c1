"""Tables people read: a front, and the closing summary of a search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nas._trials.metric import FirstObjective, first_objective
from nas._trials.record import TrialRecord

if TYPE_CHECKING:
    from rich.table import Table

    from nas._report.results import Results


def front_table(
    front: Sequence[Mapping[str, Any]] | Sequence[TrialRecord],
    *,
    title: str = "Pareto front",
    objective: FirstObjective | None = None,
) -> Table:
    """A rich table of a front (records, or the records of a ``pareto.json``).

    ``objective``: what the ``accuracy`` values are (by default, what their evaluators say).
    """
    from rich.table import Table

    def getter(r: Mapping[str, Any] | TrialRecord) -> Any:
        return r.get if isinstance(r, Mapping) else lambda key: getattr(r, key)

    if objective is None:
        objective = first_objective(getter(r)("evaluator") for r in front)
    table = Table(title=title)
    for col, justify in (
        ("trial", "right"),
        (objective.header, "right"),
        ("latency ms", "right"),
        ("params", "right"),
        ("MACs (M)", "right"),
        ("architecture", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in front:
        get = getter(r)
        table.add_row(
            str(get("trial")),
            objective.show(get("accuracy")),
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
