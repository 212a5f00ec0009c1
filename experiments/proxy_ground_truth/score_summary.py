"""Tables of ``scores.py``'s results: each training-free score and the ensembles against the
benchmarks' full training, and agreement with NASLib's published scores.

    python experiments/proxy_ground_truth/score_summary.py \\
        results/scores-nb201.jsonl results/scores-macro.jsonl > results/scores-summary.md

Ensembles are chosen on one set and reported on others: components are picked greedily on
NASLib's 724 NAS-Bench-201 cells (the first rows of ``scores-nb201.jsonl``), then reported on
the other NAS-Bench-201 cells and on NAS-Bench-Macro, which played no part in the choice. Each
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
from scipy.stats import kendalltau, spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scores import naslib_scores  # noqa: E402

from nas.measure import SCORES, normal_ranks  # noqa: E402

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
    rows: list[dict[str, Any]], reference: list[dict[str, Any]], names: list[str]
) -> list[float]:
    """Mean normal rank of ``names`` against the reference's scores (as the evaluator)."""
    per = [
        normal_ranks([r["scores"][n] for r in rows], [r["scores"][n] for r in reference])
        for n in names
    ]
    return [statistics.fmean(v) for v in zip(*per, strict=True)]


def pass_seconds(row: dict[str, Any], names: list[str]) -> float:
    groups = {SCORES[n].group for n in names}
    return sum(v for k, v in row["pass_seconds"].items() if k in groups)


def greedy(rows: list[dict[str, Any]], reference: list[dict[str, Any]], pool: list[str]) -> list:
    """Forward selection of components on ``rows`` (Spearman with the truth), up to 6."""
    truth = [r["truth"] for r in rows]
    chosen: list[str] = []
    trail = []
    best_so_far = -1.0
    while len(chosen) < 6:
        tries = {n: spearman(ensemble(rows, reference, [*chosen, n]), truth) for n in pool}
        name = max((n for n in tries if n not in chosen), key=tries.__getitem__)
        if tries[name] <= best_so_far + 1e-4:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--reference", type=int, default=32)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--ensemble", nargs="*", help="report this ensemble (default: chosen)")
    args = parser.parse_args()
    data = {}
    for f in args.files:
        rows = load(f if f.is_absolute() else HERE / f)
        bench = "nb201" if "arch_str" in rows[0] else "nas_bench_macro"
        data[bench] = rows
    rng = np.random.default_rng(1)
    head = "| score | Spearman (95% CI) | Kendall | top half | top 10% | CPU s (median) |"
    line = "|---|---|---:|---:|---:|---:|"
    chosen = args.ensemble
    for bench, rows in data.items():
        ref_idx = set(rng.choice(len(rows), size=args.reference, replace=False).tolist())
        reference = [r for i, r in enumerate(rows) if i in ref_idx]
        evaluated = [r for i, r in enumerate(rows) if i not in ref_idx]
        truth = [r["truth"] for r in evaluated]
        lo, hi = min(truth), max(truth)
        print(f"\n## {bench}: {len(evaluated)} networks (truth {lo:.1f}-{hi:.1f}%),")
        print(f"reference population of {len(reference)} others\n")
        print(head)
        print(line)
        for name in SCORES:
            x = [r["scores"][name] for r in evaluated]
            cpu = statistics.median(pass_seconds(r, [name]) for r in evaluated)
            tag = " (labels)" if SCORES[name].labels else ""
            print(f"| {name}{tag} | {fmt(stats(x, truth, boot=args.boot))} | {cpu:.2f} |")
        if bench == "nb201":
            x = [r["acc_12ep"] for r in evaluated]
            print(f"| benchmark 12-epoch accuracy | {fmt(stats(x, truth, boot=args.boot))} | - |")
            select = [r for r in evaluated if r["naslib"]]
            held = [r for r in evaluated if not r["naslib"]]
            if chosen is None:
                trail = greedy(select, reference, LABEL_FREE)
                print("\nGreedy choice of label-free components on NASLib's cells:\n")
                for names, rho in trail:
                    print(f"- {' + '.join(names)}: {rho:.3f}")
                chosen = trail[-1][0]
        if chosen:
            cpu = statistics.median(pass_seconds(r, chosen) for r in evaluated)
            ens = ensemble(evaluated, reference, chosen)
            print(
                f"| **ensemble** {' + '.join(chosen)} | {fmt(stats(ens, truth, boot=args.boot))}"
                f" | {cpu:.2f} |"
            )
            names3 = ["naswot", "synflow", "jacob_cov"]
            e3 = ensemble(evaluated, reference, names3)
            print(
                f"| ensemble naswot + synflow + jacob_cov | {fmt(stats(e3, truth, boot=args.boot))} | - |"
            )
            if bench == "nb201":
                parts = {"NASLib's cells (choice)": select, "other cells (held out)": held}
                for label, part in parts.items():
                    if len(part) > 10:
                        e = ensemble(part, reference, chosen)
                        t = [r["truth"] for r in part]
                        print(
                            f"| ensemble on {label}, n={len(part)} | {fmt(stats(e, t, boot=args.boot))} | - |"
                        )
                # What short training adds: the ensemble's and the 12-epoch column's normal
                # ranks (the latter ranked against the same reference), averaged.
                e12 = [
                    (a + b) / 2
                    for a, b in zip(
                        ens,
                        normal_ranks(
                            [r["acc_12ep"] for r in evaluated], [r["acc_12ep"] for r in reference]
                        ),
                        strict=True,
                    )
                ]
                print(
                    f"| ensemble + 12-epoch accuracy | {fmt(stats(e12, truth, boot=args.boot))} | - |"
                )
        if bench == "nb201":
            mine = naslib_scores()
            both = [r for r in evaluated if r["naslib"]]
            print(f"\nAgreement with NASLib on {len(both)} of its cells (Spearman):\n")
            print("| score | ours vs NASLib's | ours vs truth | NASLib's vs truth |")
            print("|---|---:|---:|---:|")
            t = [r["truth"] for r in both]
            for ours, theirs in NASLIB_NAMES.items():
                a = [r["scores"][ours] for r in both]
                b = [mine[r["arch_str"]][theirs]["score"] for r in both]
                print(
                    f"| {ours} | {spearman(a, b):.3f} | {spearman(a, t):.3f} | "
                    f"{spearman(b, t):.3f} |"
                )


if __name__ == "__main__":
    main()
