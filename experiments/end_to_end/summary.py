"""The end-to-end table and plot: true-hypervolume ratio of the found front against CPU-hours.

python experiments/end_to_end/summary.py    # results/summary.md, results/ratio_<device>.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUDGETS = (0.25, 0.5, 1.0)  # CPU-hours


def ratio_at(points: list[dict[str, Any]], cpu_h: float, key: str = "ratio") -> float | None:
    """The ratio once ``cpu_h`` CPU-hours were paid (the last point within it); None when the
    run stopped before (its budget was smaller)."""
    if not points or points[-1]["cpu_s"] < cpu_h * 3600 * 0.999:
        return None
    within = [p for p in points if p["cpu_s"] <= cpu_h * 3600]
    return within[-1][key] if within else 0.0


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}" if values else "-"


def table(rows: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["device"], r["method"])].append(r)
    head = (
        "| device | method | seeds | "
        + " | ".join(f"ratio @{b:g} CPU-h" for b in BUDGETS)
        + " | per seed @1 CPU-h | trained-set ratio @1 | distinct | trained |\n"
    )
    out = [head, "|---|---|---:|" + "---:|" * len(BUDGETS) + "---|---:|---:|---:|\n"]
    for (device, method), runs in sorted(groups.items()):
        at = {b: [v for r in runs if (v := ratio_at(r["points"], b)) is not None] for b in BUDGETS}
        last = [ratio_at(r["points"], 1.0) for r in sorted(runs, key=lambda r: r["seed"])]
        trained = [
            v for r in runs if (v := ratio_at(r["points"], 1.0, "trained_ratio")) is not None
        ]
        out.append(
            f"| {device} | {method} | {len(runs)} | "
            + " | ".join(_median(at[b]) for b in BUDGETS)
            + " | "
            + ", ".join("-" if v is None else f"{v:.3f}" for v in last)
            + f" | {_median(trained)} | {statistics.median(r['distinct'] for r in runs):.0f}"
            + f" | {statistics.median(r['trained'] for r in runs):.0f} |\n"
        )
    return "".join(out)


def plot(rows: list[dict[str, Any]], device: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    colours: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: (r["method"], r["seed"])):
        if r["device"] != device:
            continue
        colour = colours.setdefault(r["method"], f"C{len(colours)}")
        xs = [p["cpu_s"] / 3600 for p in r["points"]]
        ys = [p["ratio"] for p in r["points"]]
        first = r["seed"] == min(x["seed"] for x in rows if x["method"] == r["method"])
        ax.plot(xs, ys, color=colour, alpha=0.8, label=r["method"] if first else None)
        trained = [p["trained_ratio"] for p in r["points"]]
        label = f"{r['method']}: every network it evaluated, at its truth" if first else None
        ax.plot(xs, trained, color=colour, alpha=0.5, linestyle="--", linewidth=1, label=label)
    ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("CPU-hours paid (scores, training, sampler)")
    ax.set_ylabel("true hypervolume of the found front / true front's")
    ax.set_title(f"NAS-Bench-201, {device}: the found front at its 200-epoch accuracy")
    ax.set_ylim(0, 1.0)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=HERE / "results" / "runs.jsonl")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.runs.read_text().splitlines() if line.strip()]
    text = table(rows)
    (args.runs.parent / "summary.md").write_text(text)
    print(text)
    for device in sorted({r["device"] for r in rows}):
        plot(rows, device, args.runs.parent / f"ratio_{device}.png")


if __name__ == "__main__":
    main()
