"""Compound scaling's tables, plot, results file and log: what people read of the two steps."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas._io import atomic_write_text, save_figure, to_json
from nas._logging.protocol import FamilyLog
from nas._scaling.compound import PAPER_COEFFICIENTS, Point
from nas._scaling.confirm import Confirmation, Finalist
from nas._scaling.family import Member
from nas._trials.metric import FirstObjective
from nas._trials.record import TrialRecord

if TYPE_CHECKING:
    from rich.table import Table

#: A proxy training's accuracy: what the tables show unless told the evaluator's figure is a score.
ACCURACY = FirstObjective()

#: The family table's columns (the wandb table; scaling.json holds every field).
FAMILY_COLUMNS = (
    "name",
    "phi",
    "depth_mult",
    "width_mult",
    "resolution",
    "params",
    "macs",
    "macs_ratio",
    "latency_ms",
    "accuracy",
    "full_params",
    "full_macs",
)


def _fmt_m(value: float | None, scale: float = 1e6, digits: int = 2) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


def step1_table(
    rows: Sequence[TrialRecord],
    space: Any,
    *,
    winner: TrialRecord,
    front_ids: set[int],
    confirmed: Mapping[int, Finalist] | None = None,
    limit: int = 15,
    objective: FirstObjective = ACCURACY,
) -> Table:
    """A rich table of the step-1 networks (one row per distinct network), best first.

    ``confirmed`` (by trial) adds the finalists' mean ± spread over their re-evaluations.
    """
    from rich.table import Table

    shared: dict[int, list[Any]] = {}
    for r in rows:
        if r.evaluated:
            shared.setdefault(r.duplicate_of if r.duplicate_of is not None else r.trial, []).append(
                r
            )
    origins = [r for r in rows if r.evaluated and r.duplicate_of is None]
    origins.sort(key=lambda r: (-r.accuracy, r.macs or 0))
    table = Table(
        title=f"Step 1: {len(origins)} distinct networks evaluated at φ = 1 (best {min(limit, len(origins))})"
    )
    for col in (
        "trial",
        "α",
        "β",
        "γ",
        "α·β²·γ²",
        "points",
        objective.header,
        *(["confirmed %"] if confirmed else []),
        "latency ms",
        "params",
        "MACs (M)",
        "",
    ):
        table.add_column(col, justify="left" if col == "" else "right")
    win_origin = winner.duplicate_of if winner.duplicate_of is not None else winner.trial
    for r in origins[:limit]:
        p = space.point(r.genotype)
        group = shared.get(r.trial, [r])
        if r.trial == win_origin:
            p = space.point(winner.genotype)
        marks = ("winner " if r.trial == win_origin else "") + (
            "pareto" if r.trial in front_ids else ""
        )
        table.add_row(
            str(r.trial),
            f"{p.alpha:g}",
            f"{p.beta:g}",
            f"{p.gamma:g}",
            f"{p.product:.3f}",
            str(len(group)),
            objective.show(r.accuracy),
            *([confirmed[r.trial].describe() if r.trial in confirmed else ""] if confirmed else []),
            f"{r.latency_ms:.3f}",
            f"{r.params:,}",
            _fmt_m(r.macs),
            marks.strip(),
        )
    return table


def family_tables(
    members: Sequence[Member],
    *,
    mode: str,
    coefficients: tuple[float, float, float],
    target: float,
    objective: FirstObjective = ACCURACY,
) -> list[Table]:
    """Rich tables of the step-2 family: its scaling and size, then its measurements."""
    from rich.table import Table

    a, b, g = coefficients
    what = (
        f"published EfficientNet B0..B{len(members) - 1} multipliers"
        if mode == "official"
        else f"family from α={a:g}, β={b:g}, γ={g:g}"
    )
    size = Table(title=f"Step 2: {what}, built at the family's scale")
    for col in (
        "",
        "φ",
        "depth×",
        "width×",
        "res×",
        "res",
        "blocks",
        "params",
        "MACs (M)",
        "MACs×base",
        f"{target:g}^φ",
        "×base / target",
    ):
        size.add_column(col, justify="left" if col == "" else "right")
    measured = Table(title=f"Step 2: {what}, measured (and at full scale)")
    for col in (
        "",
        "φ",
        "latency ms",
        "lat. relative",
        objective.header,
        "full res",
        "full params (M)",
        "full MACs (G)",
        "full MACs×base",
    ):
        measured.add_column(col, justify="left" if col == "" else "right")
    for m in members:
        size.add_row(
            m.name,
            str(m.phi),
            f"{m.depth_mult:.3f}",
            f"{m.width_mult:.3f}",
            f"{m.resolution_mult:.3f}",
            str(m.resolution),
            str(m.blocks),
            f"{m.params:,}",
            _fmt_m(m.macs),
            f"{m.macs_ratio:.2f}",
            f"{m.target_ratio:g}",
            f"{m.macs_vs_target:.2f}",
        )
        measured.add_row(
            m.name,
            str(m.phi),
            "-" if m.latency_ms is None else f"{m.latency_ms:.3f}",
            "-" if m.latency_relative is None else f"{m.latency_relative:.3f}",
            "-" if m.accuracy is None else objective.show(m.accuracy),
            "-" if m.full_resolution is None else str(m.full_resolution),
            _fmt_m(m.full_params),
            _fmt_m(m.full_macs, 1e9, 3),
            "-" if m.full_macs_ratio is None else f"{m.full_macs_ratio:.2f}",
        )
    return [size, measured]


def official_table(members: Sequence[Member]) -> Table:
    """Published B1..B7 multipliers beside the powers of the paper's (1.2, 1.1, 1.15)."""
    from rich.table import Table

    a, b, g = PAPER_COEFFICIENTS
    table = Table(title=f"Published multipliers vs α^φ, β^φ, γ^φ with (α, β, γ) = ({a}, {b}, {g})")
    for col in (
        "",
        "φ",
        "depth",
        f"{a}^φ",
        "ratio",
        "width",
        f"{b}^φ",
        "ratio",
        "res×",
        f"{g}^φ",
        "ratio",
        "full MACs×B0",
        "2^φ",
    ):
        table.add_column(col, justify="left" if col == "" else "right")
    for m in members[1:]:
        table.add_row(
            m.name,
            str(m.phi),
            f"{m.depth_mult:.2f}",
            f"{m.paper_depth_mult:.3f}",
            f"{m.depth_mult / m.paper_depth_mult:.2f}",
            f"{m.width_mult:.2f}",
            f"{m.paper_width_mult:.3f}",
            f"{m.width_mult / m.paper_width_mult:.2f}",
            f"{m.resolution_mult:.3f}",
            f"{m.paper_resolution_mult:.3f}",
            f"{m.resolution_mult / m.paper_resolution_mult:.2f}",
            "-" if m.full_macs_ratio is None else f"{m.full_macs_ratio:.2f}",
            f"{2**m.phi:g}",
        )
    return table


def plot_scaling_png(
    members: Sequence[Member],
    path: Path,
    *,
    title: str,
    objective: FirstObjective = ACCURACY,
) -> None:
    """Accuracy and latency against φ and against MACs, and the MACs ratio against target^φ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    phis = [m.phi for m in members]
    macs = [m.macs / 1e6 for m in members]
    acc = [math.nan if m.accuracy is None else objective.scaled(m.accuracy) for m in members]
    lat = [math.nan if m.latency_ms is None else m.latency_ms for m in members]
    has_acc = any(m.accuracy is not None for m in members)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=110)
    for ax, xs, xlabel in (
        (axes[0], phis, "φ"),
        (axes[1], macs, "MACs (M, at the family's scale)"),
    ):
        lat_ax = ax.twinx() if has_acc else ax
        if has_acc:
            ax.plot(xs, acc, "o-", color="tab:blue", label=objective.noun)
            ax.set_ylabel(objective.label, color="tab:blue")
        lat_ax.plot(xs, lat, "s--", color="tab:red", label="latency")
        lat_ax.set_ylabel("latency (ms, median of interleaved rounds)", color="tab:red")
        for m, x, a, t in zip(members, xs, acc, lat, strict=True):
            target_ax, y = (ax, a) if has_acc else (lat_ax, t)
            target_ax.annotate(
                m.name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    what = "accuracy and latency" if has_acc else "latency (no accuracy: scaling.accuracy=false)"
    axes[0].set_title(f"{what} vs φ", fontsize=9)
    axes[1].set_title(f"{what} vs MACs", fontsize=9)
    axes[1].set_xscale("log")
    axes[1].xaxis.set_major_formatter(ScalarFormatter())
    ax = axes[2]
    ax.plot(phis, [m.macs_ratio for m in members], "o-", label="family scale")
    if members and members[0].full_macs_ratio is not None:
        ax.plot(phis, [m.full_macs_ratio for m in members], "^-", label="full scale (conv+fc)")
    ax.plot(phis, [m.target_ratio for m in members], "k:", label="target^φ")
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("φ")
    ax.set_ylabel("MACs / base MACs")
    ax.set_title("MACs growth against the intended target^φ", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def winner_line(
    rule: str,
    point: Point,
    winner: TrialRecord,
    confirmation: Confirmation | None = None,
    objective: FirstObjective = ACCURACY,
) -> str:
    """The step-1 winner in one line, naming the trial the step-1 table lists it under.

    The table lists each network once, under the trial that evaluated it; a winning point whose
    network another point had already built is a duplicate trial, named beside it. With a
    confirmation, the winner's mean ± spread and its margin to the runner-up follow.
    """
    shared = "" if winner.duplicate_of is None else f", the point of trial {winner.trial}"
    line = (
        f"Step 1 winner ({rule}): α={point.alpha:g}, β={point.beta:g}, γ={point.gamma:g} "
        f"(α·β²·γ² = {point.product:.3f}; network of trial {winner.origin}{shared}, "
        f"{objective.noun} {objective.show(winner.accuracy or 0.0)}{'%' if objective.percent else ''}"
    )
    if confirmation is not None:
        line += f", confirmed {confirmation.winner.describe()}"
        if confirmation.margin is not None:
            runner = confirmation.finalists[1]
            p = runner.point
            line += (
                f", {100 * confirmation.margin:.2f} points above the runner-up "
                f"(α={p.alpha:g}, β={p.beta:g}, γ={p.gamma:g}: {runner.describe()})"
            )
    return line + "); the paper's: α=1.2, β=1.1, γ=1.15"


def family_log(
    members: Sequence[Member],
    *,
    coefficients: tuple[float, float, float],
    mode: str,
    winner_trial: int | None,
    run_dir: Path,
    files: Mapping[str, Path],
) -> FamilyLog:
    """What a logger records of step 2 (see :meth:`nas._logging.logger.Logger.on_family`)."""
    a, b, g = coefficients
    artifact = {"scaling.json": files["scaling.json"]}
    artifact.update({m.arch_file: run_dir / m.arch_file for m in members})
    return FamilyLog(
        columns=list(FAMILY_COLUMNS),
        rows=[[getattr(m, c) for c in FAMILY_COLUMNS] for m in members],
        summary={"alpha": a, "beta": b, "gamma": g, "mode": mode, "winner_trial": winner_trial},
        plot=files.get("scaling.png"),
        files=artifact,
    )


def write_scaling_json(path: Path, doc: Mapping[str, Any], members: Sequence[Member]) -> None:
    """``scaling.json``: the document with every member's fields (standard JSON)."""
    atomic_write_text(
        path,
        to_json(
            {
                **doc,
                "paper_coefficients": dict(
                    zip(("alpha", "beta", "gamma"), PAPER_COEFFICIENTS, strict=True)
                ),
                "family": [asdict(m) for m in members],
            }
        ),
    )
