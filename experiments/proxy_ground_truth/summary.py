"""Rank correlations of each proxy run with the benchmark's full-training accuracy.

    python experiments/proxy_ground_truth/summary.py results/*.jsonl

For every results file: Spearman and Kendall of the proxy (and, on the same networks, of
synflow, jacob_cov, parameter count and MACs) with the benchmark's accuracy, a bootstrap 95%
interval of the proxy's Spearman (2,000 resamples of the networks, seed 0), the median CPU
seconds of one proxy evaluation, the range of the benchmark's accuracy over the networks, and
the Spearman of the proxy combined with synflow (the sum of the two z-scores). Prints a
Markdown table.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np
from scipy import stats

SIGNALS = ("proxy", "synflow", "jacob_cov", "params", "macs")


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def spearman(x: list[float], y: list[float]) -> float:
    return float(stats.spearmanr(x, y).statistic)


def kendall(x: list[float], y: list[float]) -> float:
    return float(stats.kendalltau(x, y).statistic)


def bootstrap(x: list[float], y: list[float], n: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    xa, ya = np.asarray(x), np.asarray(y)
    draws = []
    for _ in range(n):
        i = rng.integers(0, len(xa), len(xa))
        if len(set(xa[i])) > 1 and len(set(ya[i])) > 1:
            draws.append(spearman(list(xa[i]), list(ya[i])))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def summarise(path: Path) -> dict:
    rows = load(path)
    truth = [r["truth"] for r in rows]
    out = {"run": path.stem, "n": len(rows)}
    for name in SIGNALS:
        pairs = [(r[name], t) for r, t in zip(rows, truth, strict=True) if r.get(name) is not None]
        xs, ts = [p[0] for p in pairs], [p[1] for p in pairs]
        out[name] = (spearman(xs, ts), kendall(xs, ts), len(pairs))
    proxy = [r["proxy"] for r in rows]
    out["interval"] = bootstrap(proxy, truth)
    out["cpu_s"] = statistics.median(r["cpu_seconds"] for r in rows)
    out["proxy_range"] = (100 * min(proxy), 100 * max(proxy))
    out["truth_range"] = (min(truth), max(truth))
    both = [r for r in rows if r.get("synflow") is not None]
    combined = zscores([r["proxy"] for r in both]) + zscores([r["synflow"] for r in both])
    out["combined"] = spearman(list(combined), [r["truth"] for r in both])
    return out


def zscores(values: list[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return (a - a.mean()) / (a.std() or 1.0)


def main(paths: list[str]) -> None:
    print(
        "| run | n | truth % | proxy Spearman (95% CI) | Kendall | proxy accuracy % "
        "| CPU s / net | synflow | jacob_cov | params | MACs | proxy + synflow |"
    )
    print("|---|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for p in paths:
        s = summarise(Path(p))
        rho, tau, _ = s["proxy"]
        lo, hi = s["interval"]
        others = " | ".join(f"{s[name][0]:.3f}" for name in SIGNALS[1:])
        print(
            f"| {s['run']} | {s['n']} | {s['truth_range'][0]:.1f}-{s['truth_range'][1]:.1f} | "
            f"{rho:.3f} ({lo:.2f}-{hi:.2f}) | {tau:.3f} | "
            f"{s['proxy_range'][0]:.1f}-{s['proxy_range'][1]:.1f} | {s['cpu_s']:.0f} | {others} | "
            f"{s['combined']:.3f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
