"""Results of a study: the Pareto set, architecture files, tables and plots (written atomically)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas._arch import atomic_write_text, save_arch
from nas._space import SearchSpace

ACCURACY = "accuracy"
LATENCY = "latency_ms"
CSV_COLUMNS = (
    "trial",
    "state",
    "accuracy",
    "latency_ms",
    "latency_iqr_ms",
    "latency_relative",
    "params",
    "macs",
    "resolution",
    "feasible",
    "pareto",
    "duplicate_of",
    "seconds",
    "note",
    "arch",
    "genotype",
)


@dataclass(frozen=True)
class Row:
    """One trial as the reports see it."""

    trial: int
    state: str
    accuracy: float | None
    latency_ms: float | None
    params: int | None
    macs: int | None
    feasible: bool
    duplicate_of: int | None
    seconds: float | None
    note: str
    arch: str
    genotype: dict[str, Any]
    attrs: Mapping[str, Any]

    @property
    def evaluated(self) -> bool:
        """Complete, feasible and with both objectives."""
        return (
            self.state == "COMPLETE"
            and self.feasible
            and self.accuracy is not None
            and self.latency_ms is not None
            and math.isfinite(self.latency_ms)
        )


def rows_of(trials: Iterable[FrozenTrial]) -> list[Row]:
    """Report rows of a study's trials (all states), in trial order."""
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        a = t.user_attrs
        cons = a.get("constraints", [0.0])
        note = a.get("infeasible") or a.get("pruned") or a.get("failure") or ""
        if t.state == TrialState.FAIL and not note:
            note = t.system_attrs.get("fail_reason", "failed")
        rows.append(
            Row(
                trial=t.number,
                state=t.state.name,
                accuracy=a.get(ACCURACY),
                latency_ms=a.get(LATENCY),
                params=a.get("params"),
                macs=a.get("macs"),
                feasible=all(c <= 0 for c in cons),
                duplicate_of=a.get("duplicate_of"),
                seconds=(a.get("seconds") or {}).get("total"),
                note=str(note).splitlines()[0] if note else "",
                arch=a.get("arch", ""),
                genotype=a.get("genotype", {}),
                attrs=a,
            )
        )
    return rows


def pareto_front(rows: Sequence[Row]) -> list[Row]:
    """Non-dominated evaluated rows (max accuracy, min latency), one per genotype, by latency.

    Hand-written because Optuna's ``best_trials`` reads objective values, which the MnasNet
    single-objective mode does not hold as two objectives; the rule is the usual one.
    """
    candidates = [r for r in rows if r.evaluated and r.duplicate_of is None]
    front = [
        r
        for r in candidates
        if not any(
            o.accuracy >= r.accuracy  # type: ignore[operator]
            and o.latency_ms <= r.latency_ms  # type: ignore[operator]
            and (o.accuracy > r.accuracy or o.latency_ms < r.latency_ms)  # type: ignore[operator]
            for o in candidates
        )
    ]
    return sorted(front, key=lambda r: (r.latency_ms, -(r.accuracy or 0.0)))


def hypervolume(points: Iterable[tuple[float, float]], ref_latency_ms: float) -> float:
    """Area dominated by (accuracy, latency) points, bounded by accuracy 0 and ``ref_latency_ms``.

    Two objectives only, so the exact area is a sweep over the front sorted by latency (Optuna's
    hypervolume code is private API).
    """
    pts = sorted((lat, acc) for acc, lat in points if lat < ref_latency_ms and acc > 0)
    area, best_acc = 0.0, 0.0
    for i, (lat, acc) in enumerate(pts):
        best_acc = max(best_acc, acc)
        next_lat = pts[i + 1][0] if i + 1 < len(pts) else ref_latency_ms
        area += best_acc * (next_lat - lat)
    return area


def reference_latency(rows: Sequence[Row], fixed: float | None) -> float:
    """The hypervolume reference latency: the configured one, else 1.1x the slowest evaluated."""
    if fixed is not None:
        return float(fixed)
    lats = [r.latency_ms for r in rows if r.evaluated]
    return 1.1 * max(lats) if lats else 1.0


def hypervolume_history(rows: Sequence[Row], ref_latency_ms: float) -> list[tuple[int, float]]:
    """Hypervolume of the evaluated trials so far, after each trial number."""
    history, points = [], []
    for r in rows:
        if r.evaluated:
            points.append((r.accuracy, r.latency_ms))
        history.append((r.trial, hypervolume(points, ref_latency_ms)))
    return history


def _atomic_bytes(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv_text(rows: Sequence[Row], front_ids: set[int]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        lat = r.attrs.get("latency") or {}
        writer.writerow(
            [
                r.trial,
                r.state,
                r.accuracy,
                r.latency_ms,
                lat.get("iqr_ms"),
                lat.get("relative"),
                r.params,
                r.macs,
                r.attrs.get("resolution"),
                r.feasible,
                r.trial in front_ids,
                r.duplicate_of,
                r.seconds,
                r.note,
                r.arch,
                json.dumps(r.genotype, sort_keys=True),
            ]
        )
    return buf.getvalue()


def _front_record(r: Row, arch_file: str | None) -> dict[str, Any]:
    a = r.attrs
    return {
        "trial": r.trial,
        "accuracy": r.accuracy,
        "latency_ms": r.latency_ms,
        "latency": a.get("latency"),
        "params": r.params,
        "macs": r.macs,
        "conv_linear_macs": a.get("conv_linear_macs"),
        "resolution": a.get("resolution"),
        "curve": a.get("curve"),
        "seconds": a.get("seconds"),
        "arch": r.arch,
        "genotype": r.genotype,
        "arch_file": arch_file,
    }


def plot_pareto_png(rows: Sequence[Row], front: Sequence[Row], path: Path, *, title: str) -> None:
    """All evaluated trials (dominated ones faded) and the front as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluated = [r for r in rows if r.evaluated]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    front_ids = {r.trial for r in front}
    dominated = [r for r in evaluated if r.trial not in front_ids]
    ax.scatter(
        [r.latency_ms for r in dominated],
        [100 * r.accuracy for r in dominated],
        s=18,
        color="tab:blue",
        alpha=0.25,
        label=f"dominated ({len(dominated)})",
    )
    ax.scatter(
        [r.latency_ms for r in front],
        [100 * r.accuracy for r in front],
        s=30,
        color="tab:red",
        zorder=3,
        label=f"Pareto front ({len(front)})",
    )
    if front:
        ax.step(
            [r.latency_ms for r in front],
            [100 * r.accuracy for r in front],
            where="post",
            color="tab:red",
            alpha=0.8,
        )
        for r in front:
            ax.annotate(
                f"#{r.trial}",
                (r.latency_ms, 100 * r.accuracy),
                fontsize=7,
                xytext=(3, -9),
                textcoords="offset points",
            )
    ax.set_xlabel("latency (ms, median)")
    ax.set_ylabel("proxy accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _atomic_bytes(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def plot_pareto_html(rows: Sequence[Row], front: Sequence[Row], path: Path, *, title: str) -> None:
    """Interactive version of the Pareto plot (plotly, self-contained, works offline)."""
    import plotly.graph_objects as go

    front_ids = {r.trial for r in front}
    evaluated = [r for r in rows if r.evaluated]
    dominated = [r for r in evaluated if r.trial not in front_ids]

    def hover(r: Row) -> str:
        return (
            f"trial {r.trial}<br>accuracy {100 * r.accuracy:.2f}%<br>latency {r.latency_ms:.3f} ms"
            f"<br>params {r.params:,}<br>MACs {r.macs:,}<br>{r.arch}"
        )

    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[r.latency_ms for r in dominated],
            y=[100 * r.accuracy for r in dominated],
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
            y=[100 * r.accuracy for r in front],
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
        yaxis_title="proxy accuracy (%)",
        template="plotly_white",
    )
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    atomic_write_text(path, html)


def plot_hypervolume_png(history: Sequence[tuple[int, float]], path: Path, *, ref: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=120)
    ax.plot([h[0] for h in history], [h[1] for h in history], marker=".", color="tab:green")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (accuracy x ms)")
    ax.set_title(f"hypervolume, reference point (accuracy 0, latency {ref:.3f} ms)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _atomic_bytes(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


@dataclass
class Results:
    """What :func:`write_results` produced."""

    rows: list[Row]
    front: list[Row]
    reference_latency_ms: float
    hypervolume: float
    files: dict[str, Path]


def write_results(
    study: optuna.Study,
    *,
    space: SearchSpace,
    num_classes: int,
    run_dir: Path,
    plots: bool = True,
    hv_reference_latency_ms: float | None = None,
    extra: Mapping[str, Any] | None = None,
    remeasured: Mapping[int, Mapping[str, Any]] | None = None,
) -> Results:
    """Write pareto.json, archs/, trials.csv and the plots of a study into ``run_dir``.

    ``remeasured`` holds the front's latencies measured again side by side after the search
    (``latency_final`` in pareto.json); the objectives stay the figures the search used.
    """
    run_dir = Path(run_dir)
    rows = rows_of(study.get_trials(deepcopy=False))
    front = pareto_front(rows)
    ref = reference_latency(rows, hv_reference_latency_ms)
    hv = hypervolume([(r.accuracy, r.latency_ms) for r in front], ref)  # type: ignore[misc]
    files: dict[str, Path] = {}
    arch_dir = run_dir / "archs"
    arch_files: dict[int, str] = {}
    for r in front:
        arch = space.arch(r.genotype, num_classes=num_classes)
        arch = type(arch)(
            **{
                **arch.__dict__,
                "metrics": {
                    "trial": r.trial,
                    "accuracy": r.accuracy,
                    "latency_ms": r.latency_ms,
                    "params": r.params,
                    "macs": r.macs,
                },
            }
        )
        path = save_arch(arch, arch_dir / f"trial_{r.trial}.yaml")
        arch_files[r.trial] = str(path.relative_to(run_dir))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    counts["infeasible"] = sum(1 for r in rows if r.state == "COMPLETE" and not r.feasible)
    counts["duplicates"] = sum(1 for r in rows if r.duplicate_of is not None)
    doc = {
        "study_name": study.study_name,
        "space": space.name,
        "num_classes": num_classes,
        "objectives": {"accuracy": "maximize", "latency_ms": "minimize"},
        "reference_point": {"accuracy": 0.0, "latency_ms": ref},
        "hypervolume": hv,
        "n_trials": len(rows),
        "counts": counts,
        **(extra or {}),
        "latency_final_note": (
            "latency_final: the front measured again after the search, all networks in the same "
            "rounds; latency_ms is what the search saw, each network timed in its own minute"
        )
        if remeasured
        else None,
        "front": [
            {
                **_front_record(r, arch_files.get(r.trial)),
                "latency_final": (remeasured or {}).get(r.trial),
            }
            for r in front
        ],
    }
    files["pareto.json"] = run_dir / "pareto.json"
    atomic_write_text(files["pareto.json"], json.dumps(doc, indent=2, default=_json_default))
    files["trials.csv"] = run_dir / "trials.csv"
    atomic_write_text(files["trials.csv"], _csv_text(rows, {r.trial for r in front}))
    if plots:
        title = (
            f"{study.study_name}: {len(front)} Pareto of {sum(r.evaluated for r in rows)} evaluated"
        )
        files["pareto.png"] = run_dir / "pareto.png"
        plot_pareto_png(rows, front, files["pareto.png"], title=title)
        files["pareto.html"] = run_dir / "pareto.html"
        plot_pareto_html(rows, front, files["pareto.html"], title=title)
        files["hypervolume.png"] = run_dir / "hypervolume.png"
        plot_hypervolume_png(hypervolume_history(rows, ref), files["hypervolume.png"], ref=ref)
    for trial, rel in arch_files.items():
        files[f"archs/trial_{trial}.yaml"] = run_dir / rel
    return Results(rows=rows, front=front, reference_latency_ms=ref, hypervolume=hv, files=files)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


def front_table(front: Sequence[Mapping[str, Any]] | Sequence[Row], *, title: str = "Pareto front"):
    """A rich table of a front (rows or pareto.json records)."""
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
        d = r if isinstance(r, Mapping) else r.__dict__
        table.add_row(
            str(d["trial"]),
            f"{100 * d['accuracy']:.2f}",
            f"{d['latency_ms']:.3f}",
            f"{d['params']:,}",
            f"{d['macs'] / 1e6:.2f}",
            str(d.get("arch", "")),
        )
    return table
