"""Latency benchmarks: repeatability, lookup-table accuracy, and MACs against latency.

Over ``--archs`` random architectures of the MBConv space (160 px, batch 1, CPU), with the
settings of ``conf/latency/<config>.yaml``:

1. Repeatability: two independent passes, A and B (B in shuffled order, minutes later), each
   architecture measured on its own with ``nas.measure_latency``; agreement of the
   reference-normalised figures and of raw milliseconds.
2. Lookup table: a fresh ``BlockLatencyPredictor`` filled with the units of all architectures; each
   architecture predicted from the reloaded file (timed), then ``BlockLatencyPredictor.validate`` measures
   all architectures end to end in the same rounds (pass C); errors against C, A and B.
3. MACs (``nas.profile``) against latency (pass C, where all architectures saw the same machine):
   Spearman, the worst pair MACs order wrongly, a micro-benchmark of single operators (dense
   1x1 conv, depthwise convs, squeeze-excite) and a plot.

Run from the repository root:
    nohup python experiments/latency/bench_latency.py > experiments/latency/results/run.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.stats import spearmanr
from torch import nn

import nas
from nas import measure_latencies, measure_latency
from nas.layers import SqueezeExcite
from nas.measure import BlockLatencyPredictor

ROOT = Path(__file__).resolve().parents[2]


def depthwise_macs(model: nn.Module, resolution: int) -> int:
    """MACs of the depthwise (grouped) convolutions at batch 1."""
    total = 0

    def hook(mod: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if mod.groups > 1:
            k = mod.kernel_size[0] * mod.kernel_size[1]
            total += out.numel() * k * mod.in_channels // mod.groups

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, 3, resolution, resolution))
    for h in handles:
        h.remove()
    return total


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Spearman and |a - b| / mean(a, b) statistics of two passes."""
    d = np.abs(a - b) / ((a + b) / 2)
    return {
        "spearman": float(spearmanr(a, b).statistic),
        "median_rel_dev": float(np.median(d)),
        "p90_rel_dev": float(np.percentile(d, 90)),
        "worst_rel_dev": float(d.max()),
        "within_2pct": float(np.mean(d <= 0.02)),
        "within_8pct": float(np.mean(d <= 0.08)),
    }


def errors(pred: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    err = pred / measured - 1
    return {
        "within_10pct": float(np.mean(np.abs(err) <= 0.10)),
        "within_5pct": float(np.mean(np.abs(err) <= 0.05)),
        "median_error": float(np.median(err)),
        "median_abs_error": float(np.median(np.abs(err))),
        "worst_abs_error": float(np.abs(err).max()),
        "spearman": float(spearmanr(pred, measured).statistic),
    }


def measure_pass(models, order, resolution, cfg, label):
    out = {}
    for n, i in enumerate(order):
        r = measure_latency(models[i], resolution=resolution, **cfg)
        out[i] = {**r.to_dict(), "raw_ms": r.raw}
        print(
            f"[{label} {n + 1:2d}/{len(order)}] arch {i:2d}: {r.median_ms:6.2f} ms "
            f"(wall {r.wall_ms:6.2f}) rel {r.relative:6.3f} ref {r.reference_ms:5.2f} ms "
            f"rounds {r.rounds:3d} rej {r.rejected:2d} ci {r.rel_ci:.3f} {r.seconds:.2f}s",
            flush=True,
        )
    return [out[i] for i in range(len(models))]


class _FixedInput(nn.Module):
    """Runs ``op`` on a fixed (1, channels, hw, hw) tensor whatever it is given."""

    def __init__(self, op: nn.Module, channels: int, hw: int) -> None:
        super().__init__()
        self.op = op
        self.register_buffer("x", torch.randn(1, channels, hw, hw))

    def forward(self, _x: torch.Tensor) -> torch.Tensor:
        return self.op(self.x)


def operator_table(cfg: dict) -> list[dict]:
    """ms and ns per MAC of single operators at one MBConv-typical shape (same rounds)."""
    c, hw = 144, 40
    ops = {
        "dense 1x1 conv 144->144": nn.Conv2d(c, c, 1, bias=False),
        "depthwise 3x3 conv 144": nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
        "depthwise 5x5 conv 144": nn.Conv2d(c, c, 5, padding=2, groups=c, bias=False),
        "depthwise 7x7 conv 144": nn.Conv2d(c, c, 7, padding=3, groups=c, bias=False),
        "squeeze-excite 144 (squeeze 6)": SqueezeExcite(c, 6),
    }
    wrapped = [_FixedInput(op, c, hw) for op in ops.values()]
    results = measure_latencies(wrapped, resolution=8, **{**cfg, "max_seconds": 1.0})
    rows = []
    for (name, op), r in zip(ops.items(), results, strict=True):
        macs = nas.profile(op, resolution=hw, in_channels=c).macs
        rows.append(
            {
                "op": name,
                "macs": macs,
                "ms": r.median_ms,
                "relative": r.relative,
                "ns_per_mac": r.median_ms * 1e6 / max(macs, 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=40)
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--config", default="cpu", help="conf/latency/<config>.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="overrides key=value (YAML values)")
    parser.add_argument("--unit-max-seconds", type=float, default=0.5)
    parser.add_argument("--unit-max-rounds", type=int, default=60)
    parser.add_argument("--out", default=str(ROOT / "experiments/latency/results"))
    args = parser.parse_args()

    # One thread for everything else too (profiling): extra threads only queue for 2 cores.
    torch.set_num_threads(1)
    cfg = yaml.safe_load((ROOT / "conf/latency" / f"{args.config}.yaml").read_text())
    for item in args.set:
        key, value = item.split("=", 1)
        cfg[key] = yaml.safe_load(value)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = args.resolution
    space = nas.space.make_space("mbconv", resolution=res, width_mult=args.width_mult)
    genotypes = [space.random_genotype(seed) for seed in range(args.archs)]
    models = [space.build(g, num_classes=args.num_classes) for g in genotypes]
    print(f"settings: {cfg}", flush=True)
    print(
        f"device: {measure_latency(models[0], resolution=res, max_seconds=0.1).device}, "
        f"torch {torch.__version__}",
        flush=True,
    )
    t_start = time.perf_counter()

    pass_a = measure_pass(models, list(range(len(models))), res, cfg, "pass A")

    lut_path = out / "lut.json"
    lut_path.unlink(missing_ok=True)
    lut_cfg = {**cfg, "max_seconds": args.unit_max_seconds, "max_rounds": args.unit_max_rounds}
    t0 = time.perf_counter()
    n_units = BlockLatencyPredictor(lut_path, **lut_cfg).prefill(models, resolution=res)
    fill_s = time.perf_counter() - t0
    print(f"LUT: measured {n_units} distinct units in {fill_s:.1f} s", flush=True)
    # Reloaded from the file, with the end-to-end settings for validate (same namespace).
    table = BlockLatencyPredictor(lut_path, **cfg)
    pred_rel, pred_ms, pred_s = [], [], []
    for m in models:
        t0 = time.perf_counter()
        pred_rel.append(table.predict_relative(m, resolution=res))
        pred_s.append(time.perf_counter() - t0)
        pred_ms.append(table.predict(m, resolution=res))
    if table.measured_units:
        raise RuntimeError("the reloaded table measured units: the cache did not round-trip")
    t0 = time.perf_counter()
    rows = table.validate(models, resolution=res)
    print(f"pass C (all interleaved, validate): {time.perf_counter() - t0:.1f} s", flush=True)

    order_b = list(range(len(models)))
    random.Random(1).shuffle(order_b)
    pass_b = measure_pass(models, order_b, res, cfg, "pass B")
    measuring_s = time.perf_counter() - t_start

    ops = operator_table(cfg)
    profiles = []
    for g, m in zip(genotypes, models, strict=True):
        p = nas.profile(m, resolution=res)
        profiles.append(
            {
                "describe": space.describe(g),
                "params": p.params,
                "macs": p.macs,
                "conv_linear_macs": p.conv_linear_macs,
                "depthwise_macs": depthwise_macs(m, res),
                "se_stages": sum(1 for i in range(1, 8) if float(g[f"s{i}.se"]) > 0),
            }
        )

    rel_a = np.array([r["relative"] for r in pass_a])
    rel_b = np.array([r["relative"] for r in pass_b])
    rel_c = np.array([r.measured_relative for r in rows])
    ms_a = np.array([r["median_ms"] for r in pass_a])
    ms_b = np.array([r["median_ms"] for r in pass_b])
    ms_c = np.array([r.measured_ms for r in rows])
    wall_a = np.array([r["wall_ms"] for r in pass_a])
    wall_b = np.array([r["wall_ms"] for r in pass_b])
    secs = np.array([r["seconds"] for r in pass_a + pass_b])
    pr = np.array(pred_rel)
    measure_cost = float(np.median(secs))
    predict_cost = float(np.median(pred_s))
    summary = {
        "settings": cfg,
        "archs": len(models),
        "resolution": res,
        "width_mult": args.width_mult,
        "num_classes": args.num_classes,
        "device": pass_a[0]["device"],
        "threads": pass_a[0]["threads"],
        "torch": torch.__version__,
        "repeatability": {
            "relative": agreement(rel_a, rel_b),
            "ms_cpu": agreement(ms_a, ms_b),
            "ms_wall": agreement(wall_a, wall_b),
            "reference_ms_median_a": float(np.median([r["reference_ms"] for r in pass_a])),
            "reference_ms_median_b": float(np.median([r["reference_ms"] for r in pass_b])),
            "wall_over_cpu_median": float(np.median(np.r_[wall_a / ms_a, wall_b / ms_b])),
            "measure_seconds_per_arch": {"median": measure_cost, "max": float(secs.max())},
        },
        "lut": {
            "units": n_units,
            "fill_seconds": fill_s,
            "vs_pass_c_interleaved": errors(pr, rel_c),
            "vs_pass_a": errors(pr, rel_a),
            "vs_pass_b": errors(pr, rel_b),
            "ms_vs_pass_c": errors(np.array(pred_ms), ms_c),
            "predict_seconds_median": predict_cost,
            "predict_seconds_max": float(max(pred_s)),
            "measure_seconds_median": measure_cost,
            "speedup_median": measure_cost / predict_cost,
            "speedup_worst": float(secs.min() / max(pred_s)),
        },
        "measuring_seconds": measuring_s,
    }
    macs = np.array([p["macs"] for p in profiles], dtype=float)
    worst = (0.0, 0, 0)
    for i in range(len(models)):
        for j in range(len(models)):
            if macs[i] < macs[j] and rel_c[i] > rel_c[j]:
                slower = rel_c[i] / rel_c[j] - 1
                if slower > worst[0]:
                    worst = (slower, i, j)
    _, i, j = worst
    summary["macs"] = {
        "spearman_macs_vs_latency": float(spearmanr(macs, rel_c).statistic),
        "spearman_conv_linear_macs_vs_latency": float(
            spearmanr([p["conv_linear_macs"] for p in profiles], rel_c).statistic
        ),
        "spearman_params_vs_latency": float(
            spearmanr([p["params"] for p in profiles], rel_c).statistic
        ),
        "spearman_lut_vs_latency": float(spearmanr(pr, rel_c).statistic),
        "worst_pair": {
            "archs": [i, j],
            "macs": [profiles[i]["macs"], profiles[j]["macs"]],
            "ms": [float(ms_c[i]), float(ms_c[j])],
            "relative": [float(rel_c[i]), float(rel_c[j])],
            "describe": [profiles[i]["describe"], profiles[j]["describe"]],
            "fewer_macs_but_slower_by": worst[0],
            "fewer_macs_by": float(1 - macs[i] / macs[j]),
        },
        "operators": ops,
    }
    plot(out / "macs_vs_latency.png", profiles, ms_c, summary)
    (out / "results.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "profiles": profiles,
                "pass_a": pass_a,
                "pass_b": pass_b,
                "pass_c": [r.to_dict() for r in rows],
                "lut": {"predicted_relative": pred_rel, "predicted_ms": pred_ms, "seconds": pred_s},
            },
            indent=1,
        )
    )
    print(json.dumps(summary, indent=1), flush=True)


def plot(path: Path, profiles: list[dict], ms: np.ndarray, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    macs = np.array([p["macs"] for p in profiles]) / 1e6
    se = np.array([p["se_stages"] for p in profiles])
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.2, 1]})
    sc = a.scatter(macs, ms, c=se, cmap="viridis", s=36, edgecolor="k", linewidth=0.4)
    fig.colorbar(sc, ax=a, label="stages with squeeze-excite (of 7)")
    w = summary["macs"]["worst_pair"]
    a.plot([m / 1e6 for m in w["macs"]], w["ms"], "r--", lw=1, label="worst pair MACs misorder")
    a.set_xlabel("MACs (M, thop)")
    a.set_ylabel("latency (ms CPU time, all archs in the same rounds)")
    a.set_title(
        f"{len(profiles)} MBConv archs, 160 px: Spearman(MACs, latency) = "
        f"{summary['macs']['spearman_macs_vs_latency']:.2f}"
    )
    a.legend(loc="upper left")
    ops = summary["macs"]["operators"]
    names = [o["op"] for o in ops]
    ns = [o["ns_per_mac"] for o in ops]
    b.barh(names, ns, color=["tab:blue", "tab:orange", "tab:orange", "tab:orange", "tab:red"])
    b.set_xscale("log")
    b.set_xlim(min(ns) / 2, max(ns) * 60)
    b.set_xlabel("ns per MAC (log scale), 144 channels at 40x40, batch 1")
    for y, o in enumerate(ops):
        b.text(o["ns_per_mac"], y, f" {o['ms']:.3f} ms, {o['macs'] / 1e6:.2f} M MACs", va="center")
    b.set_title("same MACs, different cost: depthwise and SE")
    b.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
