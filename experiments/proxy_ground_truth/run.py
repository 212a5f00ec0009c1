"""Proxy accuracy against the benchmarks' full-training accuracy (NAS-Bench-201, NAS-Bench-Macro).

Draws distinct networks of a benchmark uniformly at random (seeded), trains each with a proxy on
the CIFAR-10 subset of ``../shared/data``, and appends one JSON line per network to the output
file (a rerun skips the networks already there, so a run that stops loses nothing). Beside the
proxy it records, on the benchmark's own (full-size) network: synflow, jacob_cov, parameters
and MACs. ``summary.py`` turns the lines into rank correlations.

    python experiments/proxy_ground_truth/run.py nb201 --archs 30 --out results/nb201-P1.jsonl \\
        --space channels=8 cells=1 --set lr=0.1 warmup=0.1 zero_init=true

``--preset nb201_proxy`` (``nas_bench_macro_proxy``) takes the proxy's settings from that
preset of ``conf/conf/`` with ``evaluator=proxy_cifar`` (the presets now use a training-free
ensemble), the network's reduction from ``--space`` and ``--resolution``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf

import nas
from nas.space import make_space

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data"
CIFAR = DATA / "cifar10_subset.npz"


def ground_truth(bench: str) -> list[tuple[str, dict[str, Any], float]]:
    """(identity, genotype, full-training accuracy) of every distinct network of a benchmark."""
    if bench == "nb201":
        from search_spaces.nb201 import genotype_of

        with gzip.open(DATA / "nb201" / "nb201.csv.gz", "rt") as fh:
            rows = list(csv.DictReader(fh))
        seen: dict[str, tuple[str, dict[str, Any], float]] = {}
        for row in rows:
            seen.setdefault(
                row["unique_str"],
                (row["unique_str"], genotype_of(row["arch_str"]), float(row["c10_test_acc_200ep"])),
            )
        return sorted(seen.values(), key=lambda x: x[0])
    from search_spaces.nas_bench_macro import canonical, genotype_of

    with gzip.open(DATA / "nas_bench_macro" / "nas-bench-macro_cifar10.json.gz", "rt") as fh:
        table = json.load(fh)
    seen = {}
    for key in sorted(table):
        seen.setdefault(canonical(key), (canonical(key), genotype_of(key), table[key]["mean_acc"]))
    return sorted(seen.values(), key=lambda x: x[0])


def _parse(items: list[str]) -> dict[str, Any]:
    return {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in items)}


def preset(name: str, bench: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """A preset's network options, proxy options (those that differ from the evaluator's
    defaults) and resolution; its data must be the CIFAR-10 subset split as here."""
    cfg = OmegaConf.to_container(
        nas.compose([f"conf={name}", "evaluator=proxy_cifar"]), resolve=True
    )
    space, evaluator, data = cfg["space"], cfg["evaluator"], cfg["data"]
    if space.pop("name") != bench:
        raise SystemExit(f"preset {name} does not search the {bench} space")
    resolution = space.pop("resolution")
    defaults = nas.measure.make_evaluator(name="proxy").options()
    changed = {
        k: v
        for k, v in evaluator.items()
        if k not in ("name", "seed", "threads") and v != defaults[k]
    }
    split = (data["split"], data["val_fraction"], data["train_size"], data["val_size"])
    path = HERE.parents[1] / data["path"]  # relative to the repository, as nas search runs
    if path.resolve() != CIFAR.resolve() or split != ("train", 0.2, None, None):
        raise SystemExit(f"preset {name} trains on other data than this benchmark")
    return space, changed, resolution


def evaluate(job: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(1)
    bench, genotype, identity = job["bench"], job["genotype"], job["identity"]
    data = nas.load_data(name="npz", path=str(CIFAR), resolution=job["resolution"], **job["data"])
    proxy_space = make_space(bench, resolution=job["resolution"], **job["space"])
    seed = nas.search.network_seed(job["seed"], identity)  # as the search seeds it
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = proxy_space.build(genotype, num_classes=10)
    evaluator = nas.measure.make_evaluator(name="proxy", seed=job["seed"], **job["evaluator"])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = evaluator(model, data, seed=seed)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    full_space = make_space(bench)
    full_data = nas.load_data(name="npz", path=str(CIFAR), resolution=32, **job["data"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        full = full_space.build(genotype, num_classes=10)
    scores = {}
    for name in ("synflow", "jacob_cov"):
        try:
            scores[name] = nas.measure.make_evaluator(name=name)(full, full_data).accuracy
        except nas.measure.NonFiniteLossError:
            scores[name] = None
    size = nas.profile(full, resolution=32)
    return {
        "identity": identity,
        "arch": full_space.describe(genotype),
        "truth": job["truth"],
        "proxy": result.accuracy,
        "curve": result.curve,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "params": size.params,
        "macs": size.macs,
        **scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=["nb201", "nas_bench_macro"])
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--sample-seed", type=int, default=0, help="which networks are drawn")
    parser.add_argument("--seed", type=int, default=0, help="search.seed of the proxy")
    parser.add_argument(
        "--resolution", type=int, default=None, help="default: 32 (or the preset's)"
    )
    parser.add_argument("--space", nargs="*", default=[], help="proxy network options k=v")
    parser.add_argument("--set", nargs="*", default=[], help="proxy evaluator options k=v")
    parser.add_argument("--data", nargs="*", default=[], help="load_data options k=v")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preset", help="take --resolution, --space, --set from conf=PRESET")
    parser.add_argument("--among", type=Path, help="draw only networks of this scores.py file")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    space_options, evaluator_options = _parse(args.space), _parse(args.set)
    if args.preset:
        options, changed, resolution = preset(args.preset, args.bench)
        space_options = {**options, **space_options}
        evaluator_options = {**changed, **evaluator_options}  # --set on top of the preset's
        args.resolution = args.resolution or resolution
    args.resolution = args.resolution or 32

    truth = ground_truth(args.bench)
    if args.among:  # only networks of a scores file (their training-free scores are there)
        among = args.among if args.among.is_absolute() else HERE / args.among
        scored = {json.loads(line)["identity"] for line in among.read_text().splitlines() if line}
        truth = [t for t in truth if t[0] in scored]
    drawn = random.Random(args.sample_seed).sample(truth, args.archs)
    out = args.out if args.out.is_absolute() else HERE / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {json.loads(line)["identity"] for line in out.read_text().splitlines() if line}
    settings = {
        "bench": args.bench,
        "sample_seed": args.sample_seed,
        "seed": args.seed,
        "resolution": args.resolution,
        "preset": args.preset,
        "among": str(args.among) if args.among else None,
        "space": space_options,
        "evaluator": evaluator_options,
        "data": {"val_fraction": 0.2, **_parse(args.data)},
    }
    (out.with_suffix(".settings.json")).write_text(json.dumps(settings, indent=2))
    jobs = [
        {**settings, "identity": i, "genotype": g, "truth": t} for i, g, t in drawn if i not in done
    ]
    print(f"{len(drawn)} networks drawn, {len(done)} done, {len(jobs)} to go -> {out}", flush=True)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.workers) as pool, out.open("a") as fh:
        for k, row in enumerate(pool.imap_unordered(evaluate, jobs), start=1):
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(
                f"[{k}/{len(jobs)}] truth {row['truth']:.2f} proxy {100 * row['proxy']:.2f} "
                f"({row['cpu_seconds']:.0f} s CPU) {row['arch']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
