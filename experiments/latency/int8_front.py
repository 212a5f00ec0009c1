"""What int8 costs in accuracy on a real Pareto front.

Reads a finished search (its run directory: the study, the Pareto front, ``.hydra/config.yaml``),
trains every front network again exactly as the search did (same seed from ``search.seed`` and
the network's identity, same data, evaluator and thread count: the recorded proxy accuracy must
come back) and measures ``nas.int8_accuracy``: the validation accuracy in PyTorch, of the
exported fp32 ONNX file in ONNX Runtime, and of its static int8 quantisation (calibrated on 256
training images).

Run from the repository root, after the search (the MBConv preset on the CIFAR-10 subset, with
int8 latency as its objective):
    python -m nas search conf=mbconv_pareto data=npz data.path=../shared/data/cifar10_subset.npz \
        latency=int8 search.study_name=int8_front search.n_trials=16 evaluator.train_size=5000 \
        evaluator.threads=1 > experiments/latency/results/int8_front_search.log 2>&1
    python experiments/latency/int8_front.py outputs/int8_front --networks completed \
        > experiments/latency/results/int8_front.log 2>&1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

import nas

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default="outputs/int8_front")
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument(
        "--networks",
        choices=("front", "completed"),
        default="front",
        help="the Pareto front, or every completed trial (the front among them)",
    )
    parser.add_argument("--out", default=str(ROOT / "experiments/latency/results/int8_front.json"))
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    cfg = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra/config.yaml"), resolve=True)
    torch.set_num_threads(cfg["search"]["threads"] or torch.get_num_threads())
    space_options = dict(cfg["space"])
    space = nas.space.make_space(**space_options)
    evaluator = nas.measure.make_evaluator(**cfg["evaluator"])
    records = nas.load_trials(run_dir)
    front = nas.pareto_front(records)
    on_front = {r.trial for r in front}
    chosen = front
    if args.networks == "completed":
        chosen = [r for r in records if r.evaluated and r.duplicate_of is None and not r.pruned]
    print(
        f"{len(records)} trials, front of {len(front)}, {len(chosen)} networks; "
        f"load {os.getloadavg()}",
        flush=True,
    )
    rows = []
    for r in chosen:
        t0 = time.perf_counter()
        key = space.identity(r.genotype)
        seed = nas.search.network_seed(cfg["search"]["seed"], key)
        data = nas.load_data(resolution=space.resolution_of(r.genotype), **cfg["data"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = space.build(r.genotype, num_classes=data.num_classes)
        trained = evaluator(model, data, device=cfg["search"]["device"], seed=seed, identity=key)
        q = nas.int8_accuracy(model, data, calibration_images=args.calibration_images, threads=1)
        row = {
            "trial": r.trial,
            "on_front": r.trial in on_front,
            "arch": r.arch,
            "params": r.params,
            "macs": r.macs,
            "latency_ms": r.latency_ms,
            "latency_relative": r.latency.relative if r.latency else None,
            "latency_backend": r.latency.backend if r.latency else None,
            "latency_raw_ms": r.latency.median_ms if r.latency else None,
            "recorded_accuracy": r.accuracy,
            "retrained_accuracy": trained.accuracy,
            **q.to_dict(),
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        print(
            f"trial {r.trial:2d} {r.arch}: recorded {r.accuracy:.4f} retrained "
            f"{trained.accuracy:.4f} torch {q.float_accuracy:.4f} ort fp32 {q.onnx_accuracy:.4f} "
            f"int8 {q.int8_accuracy:.4f} drop {100 * q.drop:+.2f} pts; int8 latency "
            f"{r.latency_ms:.3f} ms; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    drops = [row["drop"] for row in rows]
    front_drops = [row["drop"] for row in rows if row["on_front"]]
    summary = {
        "run_dir": str(run_dir),
        "networks": args.networks,
        "measured": len(rows),
        "front": len(front),
        "front_drop_points": [100 * d for d in front_drops],
        "trials": len(records),
        "latency_backend": rows[0]["latency_backend"] if rows else None,
        "drop_points_median": 100 * statistics.median(drops),
        "drop_points_worst": 100 * max(drops),
        "drop_points_best": 100 * min(drops),
        "retrained_equals_recorded": sum(
            abs(row["retrained_accuracy"] - row["recorded_accuracy"]) < 1e-9 for row in rows
        ),
        "torch_equals_onnx_fp32": sum(
            abs(row["float_accuracy"] - row["onnx_accuracy"]) < 1e-9 for row in rows
        ),
        "calibration_images": args.calibration_images,
        "validation_images": rows[0]["images"] if rows else None,
        "runtime": rows[0]["runtime"] if rows else None,
        "load_end": list(os.getloadavg()),
    }
    print(json.dumps(summary, indent=1), flush=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "front": rows}, indent=1))


if __name__ == "__main__":
    main()
