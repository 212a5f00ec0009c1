"""Plots of a study: the Pareto front (PNG and interactive HTML) and the hypervolume curve."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nas._io import atomic_write_text, save_figure
from nas._trials.metric import FirstObjective
from nas._trials.record import TrialRecord


def plot_pareto_png(
    rows: Sequence[TrialRecord],
    front: Sequence[TrialRecord],
    path: Path,
    *,
    title: str,
    objective: FirstObjective,
) -> None:
    """All evaluated trials (dominated ones faded) and the front as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def y(r: TrialRecord) -> float:
        return objective.scaled(r.accuracy)  # type: ignore[arg-type]

    evaluated = [r for r in rows if r.evaluated]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    front_ids = {r.trial for r in front}
    dominated = [r for r in evaluated if r.trial not in front_ids]
    ax.scatter(
        [r.latency_ms for r in dominated],
        [y(r) for r in dominated],
        s=18,
        color="tab:blue",
        alpha=0.25,
        label=f"dominated ({len(dominated)})",
    )
    ax.scatter(
        [r.latency_ms for r in front],
        [y(r) for r in front],
        s=30,
        color="tab:red",
        zorder=3,
        label=f"Pareto front ({len(front)})",
    )
    if front:
        ax.step(
            [r.latency_ms for r in front],
            [y(r) for r in front],
            where="post",
            color="tab:red",
            alpha=0.8,
        )
        for r in front:
            ax.annotate(
                f"#{r.trial}",
                (r.latency_ms, y(r)),
                fontsize=7,
                xytext=(3, -9),
                textcoords="offset points",
            )
    ax.set_xlabel("latency (ms, median)")
    ax.set_ylabel(objective.label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_pareto_html(
    rows: Sequence[TrialRecord],
    front: Sequence[TrialRecord],
    path: Path,
    *,
    title: str,
    objective: FirstObjective,
) -> None:
    """Interactive version of the Pareto plot (plotly, self-contained, works offline)."""
    import plotly.graph_objects as go

    front_ids = {r.trial for r in front}
    evaluated = [r for r in rows if r.evaluated]
    dominated = [r for r in evaluated if r.trial not in front_ids]

    def y(r: TrialRecord) -> float:
        return objective.scaled(r.accuracy)  # type: ignore[arg-type]

    def hover(r: TrialRecord) -> str:
        shown = objective.show(r.accuracy)
        value = f"{objective.noun} {shown}" + ("%" if objective.percent else "")
        return (
            f"trial {r.trial}<br>{value}<br>latency {r.latency_ms:.3f} ms"
            f"<br>params {r.params:,}<br>MACs {r.macs:,}<br>{r.arch}"
        )

    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[r.latency_ms for r in dominated],
            y=[y(r) for r in dominated],
            mode="markers",
            name="dominated",
            opacity=0.3,
            hovertext=[hover(r) for r in dominated],
            hoverinfo="text",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[r.latency_ms for r in front],
            y=[y(r) for r in front],
            mode="markers+lines",
            line_shape="hv",
            name="Pareto front",
            marker={"color": "red"},
            hovertext=[hover(r) for r in front],
            hoverinfo="text",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="latency (ms, median)",
        yaxis_title=objective.label,
        template="plotly_white",
    )
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    atomic_write_text(path, html)


def plot_hypervolume_png(
    history: Sequence[tuple[int, float]], path: Path, *, ref: float, objective: FirstObjective
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=120)
    ax.plot([h[0] for h in history], [h[1] for h in history], marker=".", color="tab:green")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"hypervolume ({objective.key} x ms)")
    ax.set_title(
        f"hypervolume, reference point ({objective.key} 0, latency {ref:.3f} ms)", fontsize=9
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
