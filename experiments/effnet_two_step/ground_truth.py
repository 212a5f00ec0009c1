"""A ground truth for step 1 of ``conf=effnet_grid``: every distinct network, trained much longer.

Builds the preset's compound space, takes every distinct network of its grid, and trains each
with the preset's evaluator at ``--factor`` times its budget for ``--seeds`` seeds (seeded as
the search seeds a network: ``nas.search.network_seed(seed, identity)``, evaluator seed ``seed``).
One JSON line per (network, seed), appended, so a rerun resumes. ``regret.py`` then holds the
default command's winners against it.

    python experiments/effnet_two_step/ground_truth.py --factor 10 --seeds 101 102 \\
        --runs results/seeds/seed0 --top 15 --others 10 \\
        --out experiments/effnet_two_step/results/ground_truth.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

import nas
from nas.space import make_space


def networks(overrides: list[str]) -> tuple[dict[str, Any], list[tuple[str, list[str]]]]:
    """The preset's config (plain) and its distinct networks: (identity, the points building it)."""
    cfg = OmegaConf.to_container(nas.compose(["conf=effnet_grid", *overrides]), resolve=True)
    space = make_space(**cfg["space"])
    groups: dict[str, list[str]] = {}
    for point in space.grid_spec.points:
        groups.setdefault(space.identity({"point": point.key}), []).append(point.key)
    return cfg, sorted(groups.items())


def chosen(nets: list[tuple[str, list[str]]], runs: list[Path], top: int, others: int, space):
    """The ``top`` best networks of each run's step 1, plus ``others`` drawn from the rest."""
    picked: set[str] = set()
    for run in runs:
        with (run / "trials.csv").open() as fh:
            rows = [r for r in csv.DictReader(fh) if r["state"] == "COMPLETE" and r["accuracy"]]
        rows = [r for r in rows if not r["duplicate_of"]]
        rows.sort(key=lambda r: -float(r["accuracy"]))
        for r in rows[:top]:
            picked.add(space.identity(json.loads(r["genotype"])))
    rest = sorted(i for i, _ in nets if i not in picked)
    picked.update(random.Random(0).sample(rest, min(others, len(rest))))
    return [(i, p) for i, p in nets if i in picked]


def train(job: dict[str, Any]) -> dict[str, Any]:
    cfg, identity, points, seed = job["cfg"], job["identity"], job["points"], job["seed"]
    torch.set_num_threads(1)
    space = make_space(**cfg["space"])
    genotype = {"point": points[0]}
    resolution = space.resolution_of(genotype)
    data = nas.load_data(**cfg["data"], resolution=resolution)
    options = dict(cfg["evaluator"], seed=seed)
    options["epochs"] = options.get("epochs", 1) * job["factor"]
    if options.get("max_steps"):
        options["max_steps"] *= job["factor"]
    net_seed = nas.search.network_seed(seed, identity)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(net_seed)
        model = space.build(genotype, num_classes=data.num_classes)
    cpu = time.process_time()
    result = nas.measure.make_evaluator(**options)(model, data, seed=net_seed)
    return {
        "identity": identity,
        "points": points,
        "seed": seed,
        "factor": job["factor"],
        "accuracy": result.accuracy,
        "curve": result.curve,
        "steps": result.steps,
        "cpu_seconds": time.process_time() - cpu,
        "params": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=10, help="times the preset's budget")
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    parser.add_argument("--set", nargs="*", default=[], help="config overrides of the preset")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="default-command runs")
    parser.add_argument("--top", type=int, default=15, help="best networks of each run's step 1")
    parser.add_argument("--others", type=int, default=10, help="networks drawn from the rest")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cfg, nets = networks(list(args.set))
    if args.runs:
        nets = chosen(nets, args.runs, args.top, args.others, make_space(**cfg["space"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            done.add((row["identity"], row["seed"]))
    jobs = [
        {"cfg": cfg, "identity": i, "points": p, "seed": s, "factor": args.factor}
        for s in args.seeds
        for i, p in nets
        if (i, s) not in done
    ]
    print(
        f"{len(nets)} distinct networks x {len(args.seeds)} seeds, {len(jobs)} to train", flush=True
    )
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.workers) as pool, args.out.open("a") as fh:
        for k, row in enumerate(pool.imap_unordered(train, jobs), start=1):
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(
                f"[{k}/{len(jobs)}] seed {row['seed']} {row['points'][0]}: "
                f"{100 * row['accuracy']:.2f}% ({row['cpu_seconds']:.0f} s CPU)",
                flush=True,
            )


if __name__ == "__main__":
    main()
