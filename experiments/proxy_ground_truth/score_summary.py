"""Tables of ``scores.py``'s results: each training-free score and the ensembles against the
benchmarks' full training, and agreement with NASLib's published scores.

    python experiments/proxy_ground_truth/score_summary.py \\
        results/scores-nb201.jsonl results/scores-macro.jsonl > results/scores-summary.md

Ensembles are chosen on one set and reported on others: components (and the aggregation) are
picked greedily on alternate rows of a benchmark's file, then reported on the other rows and on
the other benchmark, which played no part in the choice. Each
ensemble is computed as ``evaluator=ensemble`` computes it: every network ranked against a
reference population (``--reference`` networks drawn at random, seeded, from the benchmark's
other networks: a random draw from the space, as a study draws it) by
``nas._accuracy.ensemble.normal_ranks``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau, rankdata, spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scores import naslib_scores  # noqa: E402

from nas.measure import SCORES, ensemble_figures  # noqa: E402

LABEL_FREE = [s for s, info in SCORES.items() if not info.labels]
#: Our score name -> NASLib's.
NASLIB_NAMES = {
    "flops": "flops",
    "params": "params",
    "synflow": "synflow",
    "grad_norm": "grad_norm",
    "naswot": "nwot",
    "jacob_cov": "jacov",
    "snip": "snip",
}


def load(path: Path) -> list[dict[str, Any]]:
    """The rows of a results file, one per network (the first of isomorphic twins)."""
    rows: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line:
            row = json.loads(line)
            rows.setdefault(row["identity"], row)
    return list(rows.values())


def _filled(values: list[float]) -> np.ndarray:
    """Scores with failures (nan) below every finite value (dead networks rank last)."""
    a = np.asarray(values, dtype=np.float64)
    finite = a[np.isfinite(a)]
    low = (finite.min() - 1.0 - abs(finite.min())) if len(finite) else 0.0
    return np.where(np.isfinite(a), a, low)


def spearman(x: list[float], y: list[float]) -> float:
    return float(spearmanr(_filled(x), y).statistic) if len(x) > 2 else math.nan


def stats(x: list[float], truth: list[float], *, boot: int, seed: int = 0) -> dict[str, float]:
    """Spearman (with a 95% bootstrap interval), Kendall, Spearman in the top half and top 10%."""
    xs, t = _filled(x), np.asarray(truth)
    order = np.argsort(-t)
    half, tenth = order[: len(t) // 2], order[: max(3, len(t) // 10)]
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(boot):
        i = rng.integers(0, len(t), len(t))
        samples.append(spearmanr(xs[i], t[i]).statistic)
    lo, hi = np.nanpercentile(samples, [2.5, 97.5]) if boot else (math.nan, math.nan)
    return {
        "spearman": float(spearmanr(xs, t).statistic),
        "lo": float(lo),
        "hi": float(hi),
        "kendall": float(kendalltau(xs, t).statistic),
        "top_half": float(spearmanr(xs[half], t[half]).statistic),
        "top_10": float(spearmanr(xs[tenth], t[tenth]).statistic),
    }


def ensemble(
    rows: list[dict[str, Any]],
    reference: list[dict[str, Any]],
    names: list[str],
    aggregate: str = "normal",
) -> list[float]:
    """The ensemble's figures of ``rows`` against the reference (as the evaluator computes)."""
    return ensemble_figures(
        {n: [r["scores"][n] for r in rows] for n in names},
        {n: [r["scores"][n] for r in reference] for n in names},
        aggregate,
    )


def pass_seconds(row: dict[str, Any], names: list[str]) -> float:
    groups = {SCORES[n].group for n in names}
    return sum(v for k, v in row["pass_seconds"].items() if k in groups)


def greedy(
    sets: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]],
    pool: list[str],
    aggregate: str,
) -> list:
    """Forward selection of up to 6 components maximising the mean Spearman with the truth
    over ``sets`` (each: networks, reference); stops when a component adds under 0.002."""
    chosen: list[str] = []
    trail = []
    best_so_far = -1.0

    def score(names: list[str]) -> float:
        return statistics.fmean(
            spearman(ensemble(rows, ref, names, aggregate), [r["truth"] for r in rows])
            for rows, ref in sets
        )

    while len(chosen) < 6:
        tries = {n: score([*chosen, n]) for n in pool if n not in chosen}
        name = max(tries, key=tries.__getitem__)
        if tries[name] < best_so_far + 0.002:
            break
        chosen.append(name)
        best_so_far = tries[name]
        trail.append((list(chosen), tries[name]))
    return trail


def fmt(s: dict[str, float]) -> str:
    return (
        f"{s['spearman']:.3f} ({s['lo']:.2f}-{s['hi']:.2f}) | {s['kendall']:.3f} | "
        f"{s['top_half']:.3f} | {s['top_10']:.3f}"
    )


def split(bench: str, rows: list[dict[str, Any]]) -> tuple[list, list]:
    """The networks an ensemble is chosen on, and those it is reported on (held out)."""
    return rows[::2], rows[1::2]  # alternate rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--reference", type=int, default=32)
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args()
    data, refs, evals = {}, {}, {}
    rng = np.random.default_rng(1)
    for f in args.files:
        rows = load(f if f.is_absolute() else HERE / f)
        bench = "nb201" if "arch_str" in rows[0] else "nas_bench_macro"
        ref_idx = set(rng.choice(len(rows), size=args.reference, replace=False).tolist())
        data[bench] = rows
        refs[bench] = [r for i, r in enumerate(rows) if i in ref_idx]
        evals[bench] = [r for i, r in enumerate(rows) if i not in ref_idx]
    head = "| score | Spearman (95% CI) | Kendall | top half | top 10% | CPU s (median) |"
    line = "|---|---|---:|---:|---:|---:|"

    def row(label: str, x: list[float], rows: list[dict[str, Any]], cpu: str = "-") -> None:
        t = [r["truth"] for r in rows]
        print(f"| {label} | {fmt(stats(x, t, boot=args.boot))} | {cpu} |")

    for bench, rows in evals.items():
        truth = [r["truth"] for r in rows]
        print(f"\n## {bench}: {len(rows)} networks (truth {min(truth):.1f}-{max(truth):.1f}%)\n")
        print(head)
        print(line)
        for name in SCORES:
            x = [r["scores"][name] for r in rows]
            cpu = statistics.median(pass_seconds(r, [name]) for r in rows)
            tag = " (labels)" if SCORES[name].labels else ""
            row(f"{name}{tag}", x, rows, f"{cpu:.2f}")
        if bench == "nb201":
            row("benchmark's 12-epoch accuracy (GPU training)", [r["acc_12ep"] for r in rows], rows)
        all_scores = [n for n in SCORES]
        cpu = statistics.median(pass_seconds(r, all_scores) for r in rows)
        print(f"\nAll {len(all_scores)} scores together: median {cpu:.2f} CPU s per network.")

    # Ensembles: chosen on one part, reported on the held-out part and on the other benchmark.
    parts = {b: split(b, rows) for b, rows in evals.items()}
    choices: dict[str, tuple[list[str], str]] = {}
    print(
        "\n## Ensembles (label-free components, chosen greedily; reference population of "
        f"{args.reference} networks)\n"
    )
    for label, benches in [(b, [b]) for b in evals] + [("both", list(evals))]:
        if label == "both" and len(evals) < 2:
            continue
        sets = [(parts[b][0], refs[b]) for b in benches]
        trails = {agg: greedy(sets, LABEL_FREE, agg) for agg in ("normal", "log")}
        agg = max(trails, key=lambda a: trails[a][-1][1])
        choices[label] = (trails[agg][-1][0], agg)
        sizes = ", ".join(f"{len(parts[b][0])} {b} networks" for b in benches)
        for a, trail in trails.items():
            steps = "; ".join(f"{' + '.join(n)}: {rho:.3f}" for n, rho in trail)
            print(f"- chosen on {sizes}, aggregate {a}{' (kept)' if a == agg else ''}: {steps}")
    for bench, rows in evals.items():
        held = parts[bench][1]
        print(f"\n### {bench}: held out ({len(held)} networks) and all {len(rows)}\n")
        print(head)
        print(line)
        for label, (names, agg) in choices.items():
            where = "held out" if label in (bench, "both") else "all (other benchmark's choice)"
            on = held if label in (bench, "both") else rows
            if len(on) < 10:
                print(f"| chosen on {label}: too few networks held out yet ({len(on)}) | |||| |")
                continue
            cpu = statistics.median(pass_seconds(r, names) for r in on)
            row(
                f"chosen on {label}: {' + '.join(names)}, {agg} ({where})",
                ensemble(on, refs[bench], names, agg),
                on,
                f"{cpu:.2f}",
            )
            if label == "both":
                row(
                    f"chosen on both, all {len(rows)}",
                    ensemble(rows, refs[bench], names, agg),
                    rows,
                )
        three = ["naswot", "synflow", "jacob_cov"]
        row("naswot + synflow + jacob_cov (all)", ensemble(rows, refs[bench], three), rows)
        row("FLOPs (all)", [r["scores"]["flops"] for r in rows], rows)
        if bench == "nb201" and "both" in choices:
            # What training adds: the mean of the two's ranks among these networks.
            ens = rankdata(ensemble(rows, refs[bench], *choices["both"]))
            short = rankdata([r["acc_12ep"] for r in rows])
            row(
                "chosen on both + benchmark's 12-epoch accuracy, mean rank (all)",
                list((ens + short) / 2),
                rows,
            )
    if "nb201" in evals:
        mine = naslib_scores()
        both = [r for r in data["nb201"] if r["naslib"]]
        print(f"\n## Agreement with NASLib on {len(both)} of its cells (Spearman)\n")
        print("| score | ours vs NASLib's | ours vs truth | NASLib's vs truth |")
        print("|---|---:|---:|---:|")
        t = [r["truth"] for r in both]
        for ours, theirs in NASLIB_NAMES.items():
            a = [r["scores"][ours] for r in both]
            b = [mine[r["arch_str"]][theirs]["score"] for r in both]
            print(
                f"| {ours} | {spearman(a, b):.3f} | {spearman(a, t):.3f} | {spearman(b, t):.3f} |"
            )


if __name__ == "__main__":
    main()
