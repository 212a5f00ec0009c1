"""Proxy fidelity: does the default proxy rank architectures as a 10x larger training budget does?

Samples architectures from the MBConv space (reduced width, 32 px), trains each twice on the
CIFAR-10 subset: once with the default proxy (``conf/evaluator/proxy.yaml``) on a training
subset, once with ten times as many optimiser steps on the whole training split (the
reference), from independent initialisations. Reports Spearman's rank correlation between the
two, beside the training-free scores (synflow, jacob_cov) and the parameter count, and the
proxy's seconds per architecture. Results are written after every architecture, so an
interrupted run continues with ``--resume``.

    python experiments/proxy_fidelity/run.py --archs 20 --out experiments/proxy_fidelity/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from scipy.stats import kendalltau, spearmanr

import nas
from nas import load_data
from nas.measure import NonFiniteLossError, make_evaluator

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10_subset.npz"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the CIFAR-10 subset .npz")
    p.add_argument("--archs", type=int, default=20, help="architectures to sample")
    p.add_argument("--width", type=float, default=0.5, help="space width_mult")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--proxy-train-size", type=int, default=2000, help="proxy's training images")
    p.add_argument("--val-size", type=int, default=2000, help="validation images (test split)")
    p.add_argument("--factor", type=int, default=10, help="reference budget / proxy budget")
    p.add_argument("--seed", type=int, default=0, help="seed of the architecture sample")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (on a shared, oversubscribed machine 1 thread is several times faster)",
    )
    p.add_argument("--out", default=str(ROOT / "experiments" / "proxy_fidelity" / "results"))
    p.add_argument("--resume", action="store_true", help="keep finished architectures")
    p.add_argument(
        "--shard", default="0/1", help="K/N: this process runs indices i with i %% N == K"
    )
    return p.parse_args()


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The default proxy, its seed following search.seed (0) as in a search.
    config = OmegaConf.create(
        {"search": {"seed": 0}, "evaluator": OmegaConf.load(ROOT / "conf/evaluator/proxy.yaml")}
    )
    proxy_options = OmegaConf.to_container(config.evaluator, resolve=True)
    proxy_options.pop("name")
    if args.threads is not None:
        proxy_options["threads"] = args.threads
        torch.set_num_threads(args.threads)
    space = nas.space.make_space("mbconv", resolution=args.resolution, width_mult=args.width)
    data = load_data(
        name="npz",
        path=args.data,
        resolution=args.resolution,
        split="test",
        val_size=args.val_size,
        seed=0,
    )
    proxy = make_evaluator(name="proxy", **{**proxy_options, "train_size": args.proxy_train_size})
    batch = proxy_options["batch_size"]
    proxy_steps = proxy_options["epochs"] * (args.proxy_train_size // batch)
    reference = make_evaluator(
        name="proxy",
        **{**proxy_options, "train_size": None, "max_steps": args.factor * proxy_steps},
    )
    synflow = make_evaluator(name="synflow")
    jacob_cov = make_evaluator(name="jacob_cov")

    genotypes: list[dict] = []
    for i in range(10 * args.archs):
        g = space.random_genotype(args.seed * 100_000 + i)
        if g not in genotypes:
            genotypes.append(g)
        if len(genotypes) == args.archs:
            break

    setup = {
        "command": " ".join(["python", *sys.argv]),
        "args": vars(args),
        "data": {
            "path": args.data,
            "train": len(data.y_train),
            "val": len(data.y_val),
            "val_from": "test split (seeded, class-stratified)",
        },
        "space": space.options(),
        "proxy": proxy.options(),
        "proxy_steps": proxy_steps,
        "reference": reference.options(),
        "reference_steps": args.factor * proxy_steps,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    # One file per architecture, so shards (--shard K/N, one process each) and resumed runs
    # share the work; results.json aggregates whatever is finished.
    arch_dir = out / "archs"
    arch_dir.mkdir(exist_ok=True)
    same = ("space", "proxy", "reference", "data")
    setup_file = out / "setup.json"
    if setup_file.exists():
        previous = json.loads(setup_file.read_text())
        if not args.resume or any(previous.get(k) != setup[k] for k in same):
            raise SystemExit(
                f"{out} holds another run; pass --resume with the same options, or use another --out"
            )
    elif (out / "results.json").exists() and args.resume:  # a run from before per-arch files
        previous = json.loads((out / "results.json").read_text())
        if all(previous["setup"].get(k) == setup[k] for k in same):
            for r in previous["archs"]:
                _write_json(arch_dir / f"{r['index']:03d}.json", r)
    _write_json(setup_file, {k: v for k, v in setup.items() if k != "args"})
    shard, shards = (int(v) for v in args.shard.split("/"))
    for i, g in enumerate(genotypes):
        file = arch_dir / f"{i:03d}.json"
        if i % shards != shard or file.exists():
            continue
        record: dict = {"index": i, "arch": space.describe(g), "genotype": g}
        torch.manual_seed(1000 + i)
        model = space.build(g, num_classes=10)
        record["params"] = sum(p.numel() for p in model.parameters())
        record["synflow"] = synflow(model, data).accuracy
        try:
            record["jacob_cov"] = jacob_cov(model, data).accuracy
        except NonFiniteLossError as err:
            record["jacob_cov"] = None
            record["jacob_cov_error"] = str(err)
        result = proxy(model, data)
        record.update(proxy=result.accuracy, proxy_curve=result.curve, proxy_seconds=result.seconds)
        torch.manual_seed(2000 + i)  # an independent initialisation for the reference
        result = reference(space.build(g, num_classes=10), data)
        record.update(
            reference=result.accuracy,
            reference_curve=result.curve,
            reference_seconds=result.seconds,
            loadavg=os.getloadavg()[0],
            shard=args.shard,
        )
        _write_json(file, record)
        print(
            f"[{i + 1}/{len(genotypes)}] {record['arch']}: proxy {record['proxy']:.3f} "
            f"({record['proxy_seconds']:.1f} s), reference {record['reference']:.3f} "
            f"({record['reference_seconds']:.1f} s), synflow {record['synflow']:.2f}, "
            f"load {record['loadavg']:.1f}",
            flush=True,
        )
        write(out, setup, _records(arch_dir))
    summary = write(out, setup, _records(arch_dir))
    print(json.dumps(summary, indent=2))


def _records(arch_dir: Path) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(arch_dir.glob("*.json"))]


def _write_json(path: Path, payload: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def rank_stats(x: list[float], y: list[float]) -> dict[str, float]:
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if a is not None]
    xs, ys = zip(*pairs, strict=True)
    return {
        "spearman": float(spearmanr(xs, ys).statistic),
        "kendall": float(kendalltau(xs, ys).statistic),
        "n": len(pairs),
    }


def write(out: Path, setup: dict, records: list[dict]) -> dict:
    summary: dict = {"archs": len(records)}
    if len(records) >= 3:
        ref = [r["reference"] for r in records]
        for key in ("proxy", "synflow", "jacob_cov", "params"):
            summary[f"{key}_vs_reference"] = rank_stats([r[key] for r in records], ref)
        proxy_s = [r["proxy_seconds"] for r in records]
        ref_s = [r["reference_seconds"] for r in records]
        summary["proxy_seconds_median"] = statistics.median(proxy_s)
        summary["proxy_seconds_mean"] = statistics.fmean(proxy_s)
        summary["reference_seconds_median"] = statistics.median(ref_s)
        summary["reference_over_proxy_seconds"] = statistics.median(
            b / a for a, b in zip(proxy_s, ref_s, strict=True)
        )
        summary["proxy_accuracy_range"] = [
            min(r["proxy"] for r in records),
            max(r["proxy"] for r in records),
        ]
        summary["reference_accuracy_range"] = [min(ref), max(ref)]
    _write_json(out / "results.json", {"setup": setup, "summary": summary, "archs": records})
    columns = [
        "index",
        "arch",
        "params",
        "proxy",
        "proxy_seconds",
        "reference",
        "reference_seconds",
        "synflow",
        "jacob_cov",
    ]
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in records]
    (out / "results.csv").write_text("\n".join(lines) + "\n")
    if len(records) >= 3:
        plot(out, records, summary)
    return summary


def plot(out: Path, records: list[dict], summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, key, label in (
        (axes[0], "proxy", "default proxy accuracy"),
        (axes[1], "synflow", "synflow (log10)"),
        (axes[2], "jacob_cov", "jacob_cov score"),
    ):
        pts = [(r[key], r["reference"]) for r in records if r[key] is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22)
        rho = summary[f"{key}_vs_reference"]["spearman"]
        ax.set_title(f"{label}: Spearman {rho:.2f}")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy at 10x budget")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "scatter.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
