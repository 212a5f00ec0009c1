"""Latency in each backend: two passes over the same MBConv architectures, as deployed.

``--archs`` random architectures of the MBConv space (seeds 0.., 160 px, full width, 1000
classes, batch 1), each measured on its own with ``nas.measure_latency`` in every backend
(``--backends``) with the settings of ``conf/latency/cpu.yaml`` (one thread, CPU-time clock,
rounds interleaved with EfficientNet-B0 at 96 px compiled by the same backend) and only
``backend`` changed. Pass A runs every backend in turn, then pass B runs them again in the
same backend order, each in a shuffled architecture order, so the two passes of a backend are
minutes apart. The load average is recorded around every pass, the compile time (export,
quantisation, lowering) of every measurement beside its figures. ``backends_summary.py``
turns the file into the README's tables and plot.

Run from the repository root (about 40 minutes on 2 cores):
    flock /tmp/nas-cpu.lock python experiments/latency/bench_backends.py \
        > experiments/latency/results/backends.log 2>&1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import torch
import yaml

import nas
from nas import measure_latency

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("torch", "onnxruntime", "onnxruntime_int8", "openvino", "executorch")


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def measure_pass(models, order, resolution, cfg, label) -> tuple[list[dict], dict]:
    before = load()
    start = time.perf_counter()
    out = {}
    for n, i in enumerate(order):
        t0 = time.perf_counter()
        r = measure_latency(models[i], resolution=resolution, **cfg)
        total = time.perf_counter() - t0
        out[i] = {**r.to_dict(), "compile_seconds": total - r.seconds}
        print(
            f"[{label} {n + 1:2d}/{len(order)}] arch {i:2d}: {r.median_ms:6.2f} ms "
            f"(wall {r.wall_ms:6.2f}) rel {r.relative:6.3f} ref {r.reference_ms:5.2f} ms "
            f"rounds {r.rounds:3d} ci {r.rel_ci:.3f} compile {total - r.seconds:5.1f}s "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    info = {"load_before": before, "load_after": load(), "seconds": time.perf_counter() - start}
    return [out[i] for i in range(len(models))], info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--set", nargs="*", default=[], help="overrides key=value (YAML values)")
    parser.add_argument("--out", default=str(ROOT / "experiments/latency/results/backends.json"))
    args = parser.parse_args()

    torch.set_num_threads(1)  # profiling and exporting too: extra threads only queue here
    cfg = yaml.safe_load((ROOT / "conf/latency/cpu.yaml").read_text())
    for item in args.set:
        key, value = item.split("=", 1)
        cfg[key] = yaml.safe_load(value)
    backends = args.backends.split(",")
    res = args.resolution
    space = nas.space.make_space("mbconv", resolution=res)
    genotypes = [space.random_genotype(seed) for seed in range(args.archs)]
    models = [space.build(g, num_classes=1000) for g in genotypes]
    archs = []
    for seed, (g, m) in enumerate(zip(genotypes, models, strict=True)):
        p = nas.profile(m, resolution=res)
        archs.append(
            {
                "seed": seed,
                "describe": space.describe(g),
                "params": p.params,
                "macs": p.macs,
                "conv_linear_macs": p.conv_linear_macs,
            }
        )
    doc = {
        "command": "python experiments/latency/bench_backends.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "set"),
        "settings": cfg,
        "resolution": res,
        "archs": archs,
        "passes": {b: {} for b in backends},
        "pass_info": {b: {} for b in backends},
        "torch": torch.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"settings: {cfg}\nbackends: {backends}\nload: {load()}", flush=True)
    for label, seed in (("A", None), ("B", 1)):
        for backend in backends:
            order = list(range(len(models)))
            if seed is not None:
                random.Random(seed).shuffle(order)
            rows, info = measure_pass(
                models, order, res, {**cfg, "backend": backend}, f"{backend} {label}"
            )
            doc["passes"][backend][label] = rows
            doc["pass_info"][backend][label] = info
            out.write_text(json.dumps(doc, indent=1))  # a crash keeps the passes done
    print(f"done; load {load()}", flush=True)


if __name__ == "__main__":
    main()
