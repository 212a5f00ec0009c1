"""Which reference network cancels the machine's drift best?

Each of ``--archs`` MBConv architectures (160 px, batch 1, one thread, CPU time) is measured on
its own, in the same rounds as four candidate references, in two passes (the second in
shuffled order, minutes later). Each pass's figure is the median per-round ratio to one
reference; the references are compared by how well the two passes agree.

Run from the repository root:
    python experiments/latency/reference_choice.py > experiments/latency/results/reference_choice.log 2>&1
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

import nas
from nas import measure_latencies
from nas.layers import B0_STAGES, MBConvNet, StageConfig, scale_stages

ROOT = Path(__file__).resolve().parents[2]


class AtResolution(nn.Module):
    """Runs ``net`` on its own fixed input of ``resolution`` px whatever it is given."""

    def __init__(self, net: nn.Module, resolution: int) -> None:
        super().__init__()
        self.net = net.eval()
        self.register_buffer("x", torch.randn(1, 3, resolution, resolution))

    def forward(self, _x: torch.Tensor) -> torch.Tensor:
        return self.net(self.x)


def small_mbconv() -> nn.Module:
    """Four MBConv stages, 10 classes: cache-resident (about 0.1 M parameters)."""
    rows = ((1, 3, 1, 16, 16, 1), (6, 3, 2, 16, 24, 1), (6, 5, 2, 24, 40, 1), (6, 3, 2, 40, 80, 1))
    stages = [StageConfig.from_row(r) for r in rows]
    return MBConvNet(stages, num_classes=10, stem_channels=16, head_channels=256)


def b0_half_width() -> nn.Module:
    stages = scale_stages([StageConfig.from_row(r) for r in B0_STAGES], width_mult=0.5)
    return MBConvNet(stages, num_classes=1000, stem_channels=16, head_channels=640)


def kept_median(x: np.ndarray) -> float:
    q1, q3 = np.percentile(x, [25, 75])
    k = 1.5 * (q3 - q1)
    return float(np.median(x[(x >= q1 - k) & (x <= q3 + k)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=0.6, help="budget per network")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    refs = {
        "small MBConv @128": AtResolution(small_mbconv(), 128),
        "B0 x0.5 width @128": AtResolution(b0_half_width(), 128),
        "B0 @128": AtResolution(nas.zoo.efficientnet("b0"), 128),
        "B0 @96 (default)": AtResolution(nas.zoo.efficientnet("b0"), 96),
    }
    space = nas.space.make_space("mbconv", resolution=160)
    models = [space.build(space.random_genotype(s), num_classes=1000) for s in range(args.archs)]
    raw: dict[str, list] = {}
    for label in ("A", "B"):
        order = list(range(len(models)))
        if label == "B":
            random.Random(1).shuffle(order)
        per_arch = {}
        for i in order:
            rs = measure_latencies(
                [*refs.values(), models[i]],
                resolution=160,
                reference=None,
                threads=1,
                clock="cpu",
                max_seconds=args.seconds,
                target_rel_spread=1e-6,  # use the whole budget
            )
            per_arch[i] = [list(r.raw["cpu"]) for r in rs]
        raw[label] = [per_arch[i] for i in range(len(models))]
        print(f"pass {label} done", flush=True)
    rows = {}
    for k, name in enumerate(refs):
        figs = {
            p: np.array(
                [kept_median(np.array(a[-1]) / np.array(a[k])) for a in raw[p]],
            )
            for p in ("A", "B")
        }
        dev = np.abs(figs["A"] - figs["B"]) / ((figs["A"] + figs["B"]) / 2)
        rows[name] = {
            "reference_ms": float(np.median([np.median(a[k]) for a in raw["A"]])),
            "spearman": float(spearmanr(figs["A"], figs["B"]).statistic),
            "median_rel_dev": float(np.median(dev)),
            "p90_rel_dev": float(np.percentile(dev, 90)),
            "worst_rel_dev": float(dev.max()),
            "b_over_a_median": float(np.median(figs["B"] / figs["A"])),
        }
    ms = {p: np.array([np.median(a[-1]) for a in raw[p]]) for p in ("A", "B")}
    dev = np.abs(ms["A"] - ms["B"]) / ((ms["A"] + ms["B"]) / 2)
    rows["none (raw CPU ms)"] = {
        "spearman": float(spearmanr(ms["A"], ms["B"]).statistic),
        "median_rel_dev": float(np.median(dev)),
        "p90_rel_dev": float(np.percentile(dev, 90)),
        "worst_rel_dev": float(dev.max()),
    }
    rounds = int(np.median([len(a[0]) for p in ("A", "B") for a in raw[p]]))
    print(f"{args.archs} archs, median {rounds} rounds per architecture and pass")
    print(
        f"{'reference':22s} {'ref ms':>7s} {'Spearman':>9s} {'median':>7s} {'p90':>6s} {'worst':>6s}"
    )
    for name, r in rows.items():
        print(
            f"{name:22s} {r.get('reference_ms', float('nan')):7.2f} {r['spearman']:9.4f} "
            f"{100 * r['median_rel_dev']:6.2f}% {100 * r['p90_rel_dev']:5.2f}% "
            f"{100 * r['worst_rel_dev']:5.2f}%"
        )
    out = ROOT / "experiments/latency/results/reference_choice.json"
    out.write_text(json.dumps({"archs": args.archs, "rounds": rounds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
