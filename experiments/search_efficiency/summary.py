"""Median evaluations to 95% and 99% of the true hypervolume, per sampler, and the plot.

    python experiments/search_efficiency/summary.py experiments/search_efficiency/results/*.jsonl

For each device and sampler: the median (over seeds) number of distinct evaluations after which
the found front's hypervolume reaches 95% and 99% of the true front's (">N" when fewer than
half of the seeds got there), and the median ratio after 100, 300 and 1,000. Writes
``<device>.png`` beside each results file: the median ratio against distinct evaluations, with
the interquartile band, per sampler (headline reference point).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def evals_to(curve: list[float], every: int, target: float) -> float:
    for i, r in enumerate(curve):
        if r >= target:
            return (i + 1) * every
    return float("inf")


def main(paths: list[str], figure: str = "headline") -> None:
    print(f"Reference: {figure}")
    print("| device | sampler | seeds | evals to 95% | evals to 99% | ratio @100 | @300 | @1000 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for path in paths:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
        by: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            by[r["sampler"]].append(r)
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, runs in by.items():
            every = runs[0]["every"]
            n = min(len(r["ratio"][figure]) for r in runs)
            curves = np.array([r["ratio"][figure][:n] for r in runs])
            x = every * np.arange(1, n + 1)
            med = np.median(curves, axis=0)
            lo, hi = np.percentile(curves, [25, 75], axis=0)
            ax.plot(x, med, label=name)
            ax.fill_between(x, lo, hi, alpha=0.2)
            cells = []
            for target in (0.95, 0.99):
                hits = sorted(evals_to(r["ratio"][figure], every, target) for r in runs)
                m = float(np.median(hits))
                cells.append(f"{m:.0f}" if np.isfinite(m) else f">{n * every}")
            at = [
                f"{med[k // every - 1]:.3f}" if k // every <= n else "-" for k in (100, 300, 1000)
            ]
            device = runs[0]["device"]
            print(f"| {device} | {name} | {len(runs)} | {' | '.join(cells)} | {' | '.join(at)} |")
        ax.set_xscale("log")
        ax.set_xlabel("distinct networks evaluated")
        ax.set_ylabel("hypervolume / true front's")
        ax.set_title(f"NAS-Bench-201, {rows[0]['device']}, floor {rows[0]['floor']:.0f}%")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(Path(path).with_suffix(".png"), dpi=120)
        plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
