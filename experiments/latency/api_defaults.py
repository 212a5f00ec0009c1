"""``nas.measure_latency`` with no settings against the same call given ``conf/latency/cpu.yaml``.

A user who calls ``nas.measure_latency(model, resolution=...)`` should measure as a search does
(``latency=cpu``, the default config). Eight EfficientNet-B0 width variants (0.25-1.25) at
128 px, two passes, each pass timing every network both ways in turn, in one process:

    python experiments/latency/api_defaults.py --out experiments/latency/results/api_defaults.json

Prints, per way, how much the figures move between the two passes (the reference-relative
figure and raw ms: median and worst change, Spearman between passes) and how far the two ways
differ within a pass.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import yaml
from scipy.stats import spearmanr

import nas
from nas.layers import B0_STAGES, MBConvNet, StageConfig, scale_stages

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = (0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 1.25)


def variant(width: float) -> MBConvNet:
    stages = scale_stages([StageConfig.from_row(r) for r in B0_STAGES], width_mult=width)
    stem = max(8, int(32 * width + 4) // 8 * 8)
    return MBConvNet(stages, num_classes=10, stem_channels=stem, head_channels=1280).eval()


def change(a: list[float], b: list[float]) -> tuple[float, float]:
    d = [abs(y / x - 1) for x, y in zip(a, b, strict=True)]
    return statistics.median(d), max(d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cpu_yaml = yaml.safe_load((ROOT / "conf/latency/cpu.yaml").read_text())
    ways = {"defaults": {}, "cpu.yaml": {"settings": nas.LatencySettings(**cpu_yaml)}}
    models = [variant(w) for w in WIDTHS]
    runs: dict[str, list[list[dict]]] = {w: [] for w in ways}
    for p in range(2):
        for way, kwargs in ways.items():
            results = [
                nas.measure_latency(m, resolution=args.resolution, **kwargs).to_dict()
                for m in models
            ]
            runs[way].append(results)
            print(
                f"pass {p + 1} {way:9s} relative "
                + " ".join(f"{r['relative']:.3f}" for r in results),
                flush=True,
            )
    summary = {"load_average": os.getloadavg(), "widths": WIDTHS, "ways": {}}
    for way, (first, second) in runs.items():
        rel = [[r["relative"] for r in x] for x in (first, second)]
        ms = [[r["median_ms"] for r in x] for x in (first, second)]
        summary["ways"][way] = {
            "clock": first[0]["clock"],
            "threads": first[0]["threads"],
            "relative_change_median_worst": change(*rel),
            "ms_change_median_worst": change(*ms),
            "spearman_ms_between_passes": float(spearmanr(*ms).statistic),
        }
    for p in range(2):
        a = [r["relative"] for r in runs["defaults"][p]]
        b = [r["relative"] for r in runs["cpu.yaml"][p]]
        summary[f"pass{p + 1}_defaults_vs_cpu_yaml_relative_median_worst"] = change(a, b)
    summary["runs"] = runs
    text = json.dumps(summary, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
