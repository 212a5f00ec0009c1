"""Tables and plot from ``bench_backends.py``'s passes: repeatability and how runtimes disagree.

* Repeatability per backend: pass A against pass B, on the reference-normalised figure and on
  raw CPU milliseconds (Spearman, median / p90 / worst relative deviation).
* Disagreement: Spearman between backends (mean of the two passes), the int8 speed-up over
  ONNX Runtime fp32 per architecture, the pairs whose order flips between runtimes (beyond a
  margin, in both passes of both), and how well MACs rank latency in each runtime.
* ``backends.png``: eager against ONNX Runtime, int8 speed-up, MACs against ms per backend,
  and pass A against pass B.

Run from the repository root:
    python experiments/latency/backends_summary.py   # reads results/backends.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments/latency/results"
#: A pair of architectures flips between two runtimes when each runtime orders it, in both of
#: its passes, by at least this much (relative), and the orders disagree.
FLIP_MARGIN = 0.03
SHORT = {
    "torch": "eager",
    "onnxruntime": "ORT fp32",
    "onnxruntime_int8": "ORT int8",
    "openvino": "OpenVINO",
    "executorch": "ExecuTorch",
}
#: One colour per backend in every panel.
COLOR = {b: f"C{i}" for i, b in enumerate(SHORT)}


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    d = np.abs(a - b) / ((a + b) / 2)
    return {
        "spearman": float(spearmanr(a, b).statistic),
        "median_rel_dev": float(np.median(d)),
        "p90_rel_dev": float(np.percentile(d, 90)),
        "worst_rel_dev": float(d.max()),
        "within_2pct": float(np.mean(d <= 0.02)),
        "within_8pct": float(np.mean(d <= 0.08)),
    }


def column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([r[key] for r in rows], dtype=float)


def flips(x: dict[str, np.ndarray], y: dict[str, np.ndarray], describe: list[str]) -> dict:
    """Pairs ordered one way by runtime x and the other by y, each by FLIP_MARGIN in both passes."""
    n = len(describe)
    found, naive = [], 0
    mean_x, mean_y = (x["A"] + x["B"]) / 2, (y["A"] + y["B"]) / 2
    for i, j in itertools.combinations(range(n), 2):
        if np.sign(mean_x[i] - mean_x[j]) != np.sign(mean_y[i] - mean_y[j]):
            naive += 1
        lx = [np.log(x[p][i] / x[p][j]) for p in ("A", "B")]
        ly = [np.log(y[p][i] / y[p][j]) for p in ("A", "B")]
        m = np.log1p(FLIP_MARGIN)
        if (min(lx) > m and max(ly) < -m) or (max(lx) < -m and min(ly) > m):
            gap_x, gap_y = float(np.exp(np.mean(lx)) - 1), float(np.exp(np.mean(ly)) - 1)
            found.append(
                {
                    "archs": [i, j],
                    "describe": [describe[i], describe[j]],
                    "i_vs_j_x": gap_x,
                    "i_vs_j_y": gap_y,
                    "size": abs(np.mean(lx)) + abs(np.mean(ly)),
                }
            )
    found.sort(key=lambda f: -f["size"])
    return {
        "pairs": n * (n - 1) // 2,
        "order_differs_in_means": naive,
        "robust_flips": len(found),
        "largest": found[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(RESULTS / "backends.json"))
    parser.add_argument("--out", default=str(RESULTS / "backends_summary.json"))
    parser.add_argument("--plot", default=str(RESULTS / "backends.png"))
    args = parser.parse_args()
    doc = json.loads(Path(args.input).read_text())
    describe = [a["describe"] for a in doc["archs"]]
    macs = np.array([a["macs"] for a in doc["archs"]], dtype=float)
    backends = [b for b, p in doc["passes"].items() if {"A", "B"} <= set(p)]
    rel = {b: {p: column(doc["passes"][b][p], "relative") for p in "AB"} for b in backends}
    ms = {b: {p: column(doc["passes"][b][p], "median_ms") for p in "AB"} for b in backends}
    summary: dict = {"archs": len(describe), "resolution": doc["resolution"], "backends": {}}
    for b in backends:
        rows = doc["passes"][b]["A"] + doc["passes"][b]["B"]
        summary["backends"][b] = {
            "runtime": rows[0]["runtime_version"],
            "device": rows[0]["device"],
            "threads": rows[0]["threads"],
            "relative": agreement(rel[b]["A"], rel[b]["B"]),
            "ms_cpu": agreement(ms[b]["A"], ms[b]["B"]),
            "ms_median": float(np.median((ms[b]["A"] + ms[b]["B"]) / 2)),
            "ms_range": [float(np.min(ms[b]["A"])), float(np.max(ms[b]["A"]))],
            "reference_ms_median": {
                p: float(np.median(column(doc["passes"][b][p], "reference_ms"))) for p in "AB"
            },
            "rounds_median": float(np.median(column(rows, "rounds"))),
            "measure_seconds_median": float(np.median(column(rows, "seconds"))),
            "compile_seconds_median": float(np.median(column(rows, "compile_seconds"))),
            "load": doc["pass_info"][b],
            "spearman_macs": float(spearmanr(macs, (rel[b]["A"] + rel[b]["B"]) / 2).statistic),
            "ns_per_mac_range": [
                float(np.min((ms[b]["A"] + ms[b]["B"]) / 2 / macs * 1e6)),
                float(np.max((ms[b]["A"] + ms[b]["B"]) / 2 / macs * 1e6)),
            ],
        }
    mean_rel = {b: (rel[b]["A"] + rel[b]["B"]) / 2 for b in backends}
    summary["spearman_between"] = {
        f"{x} / {y}": float(spearmanr(mean_rel[x], mean_rel[y]).statistic)
        for x, y in itertools.combinations(backends, 2)
    }
    summary["flips"] = {
        f"{x} / {y}": flips(rel[x], rel[y], describe)
        for x, y in itertools.combinations(backends, 2)
    }
    speedups = {}
    for slow, fast in (("onnxruntime", "onnxruntime_int8"), ("torch", "onnxruntime")):
        if slow in backends and fast in backends:
            per_pass = {p: ms[slow][p] / ms[fast][p] for p in "AB"}
            s = (per_pass["A"] + per_pass["B"]) / 2
            ref = {
                p: summary["backends"][slow]["reference_ms_median"][p]
                / summary["backends"][fast]["reference_ms_median"][p]
                for p in "AB"
            }
            speedups[f"{slow} -> {fast}"] = {
                "median": float(np.median(s)),
                "min": float(s.min()),
                "max": float(s.max()),
                "slowest_arch": describe[int(np.argmin(s))],
                "fastest_arch": describe[int(np.argmax(s))],
                "pass_a_vs_b": agreement(per_pass["A"], per_pass["B"]),
                "reference_speedup": ref,
                "spearman_with_macs": float(spearmanr(macs, s).statistic),
                "per_arch": [float(v) for v in s],
            }
    summary["speedups"] = speedups
    Path(args.out).write_text(json.dumps(summary, indent=1))
    plot(Path(args.plot), backends, rel, ms, macs, speedups)
    print_tables(summary, backends)


def plot(path, backends, rel, ms, macs, speedups) -> None:
    fig, ax = plt.subplots(2, 2, figsize=(11, 9))
    mean_ms = {b: (ms[b]["A"] + ms[b]["B"]) / 2 for b in backends}
    a = ax[0, 0]
    for b in backends:
        if b != "torch" and "torch" in backends:
            a.scatter(mean_ms["torch"], mean_ms[b], s=14, label=SHORT.get(b, b), color=COLOR[b])
    a.set_xlabel("eager PyTorch, ms (CPU time)")
    a.set_ylabel("compiled runtime, ms (CPU time)")
    a.set_title(f"The same {len(macs)} networks: eager against deployment runtimes")
    a.legend(fontsize=8)
    a = ax[0, 1]
    key = "onnxruntime -> onnxruntime_int8"
    if key in speedups:
        a.scatter(mean_ms["onnxruntime"], speedups[key]["per_arch"], s=14, color="C2")
        a.axhline(1.0, color="grey", lw=0.8)
        a.set_xlabel("ORT fp32, ms")
        a.set_ylabel("int8 speed-up (fp32 ms / int8 ms)")
        a.set_title("int8 speed-up per architecture")
    a = ax[1, 0]
    for b in backends:
        a.scatter(macs / 1e6, mean_ms[b], s=12, label=SHORT.get(b, b), color=COLOR[b])
    a.set_xlabel("MACs (M)")
    a.set_ylabel("ms (CPU time, one thread)")
    a.set_title("MACs against latency in each runtime")
    a.legend(fontsize=8)
    a = ax[1, 1]
    for b in backends:
        a.scatter(rel[b]["A"], rel[b]["B"], s=12, label=SHORT.get(b, b), color=COLOR[b])
    lo = min(float(np.min(rel[b]["A"])) for b in backends)
    hi = max(float(np.max(rel[b]["A"])) for b in backends)
    a.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    a.set_xlabel("pass A, relative to the reference")
    a.set_ylabel("pass B, relative to the reference")
    a.set_title("Repeatability (minutes apart)")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_tables(summary: dict, backends: list[str]) -> None:
    print(
        "| backend | runtime | Spearman A/B | median dev | p90 | worst | ms: Spearman | median dev "
        "| worst | compile s | MACs Spearman |"
    )
    for b in backends:
        s = summary["backends"][b]
        r, m = s["relative"], s["ms_cpu"]
        print(
            f"| {b} | {s['runtime']} | {r['spearman']:.4f} | {100 * r['median_rel_dev']:.2f}% | "
            f"{100 * r['p90_rel_dev']:.2f}% | {100 * r['worst_rel_dev']:.2f}% | "
            f"{m['spearman']:.4f} | {100 * m['median_rel_dev']:.2f}% | "
            f"{100 * m['worst_rel_dev']:.2f}% | {s['compile_seconds_median']:.1f} | "
            f"{s['spearman_macs']:.3f} |"
        )
    for pair, rho in summary["spearman_between"].items():
        f = summary["flips"][pair]
        print(
            f"{pair}: Spearman {rho:.3f}, order differs {f['order_differs_in_means']} of "
            f"{f['pairs']}, robust flips {f['robust_flips']}"
        )
    for key, s in summary["speedups"].items():
        print(
            f"{key}: median {s['median']:.2f}x, range {s['min']:.2f}-{s['max']:.2f}x, "
            f"reference {s['reference_speedup']}"
        )


if __name__ == "__main__":
    main()
