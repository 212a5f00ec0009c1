"""Every training-free score of ``nas`` on many benchmark networks, against their full training.

One JSON line per network (a rerun skips those already written, so a run that stops loses
nothing): identity, the benchmark's accuracy, every score of ``nas.measure.SCORES`` on the
benchmark's own full-size network at initialisation (seeded as a search seeds it), and the CPU
seconds of each shared pass. ``score_summary.py`` turns the lines into the tables.

    python experiments/proxy_ground_truth/scores.py nb201 --archs 1000 \\
        --out results/scores-nb201.jsonl
    python experiments/proxy_ground_truth/scores.py nas_bench_macro --archs 1000 \\
        --out results/scores-macro.jsonl

NAS-Bench-201: the 542 isomorphism classes of the 724 cells of NASLib's published sample (so
that the two implementations can be compared cell by cell) and distinct cells drawn at random
(sample seed) among the other classes, scored in a shuffled order (the first 250 rows of
``results/scores-nb201.jsonl`` were scored before the shuffle, in NASLib's order).
NAS-Bench-Macro: distinct networks at random.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import time
from pathlib import Path
from typing import Any

import torch

import nas
from nas.measure import SCORES, compute_scores
from nas.space import make_space

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data"
CIFAR = DATA / "cifar10_subset.npz"
NASLIB = DATA / "naslib" / "zc_nasbench201.json.gz"
#: NASLib's op indices (its README: ``../shared/data/README.md``).
NASLIB_OPS = ["skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3"]


def naslib_arch_str(key: str) -> str:
    """The NAS-Bench-201 string of NASLib's op-index tuple ``"(a, b, c, d, e, f)"``."""
    a, b, c, d, e, f = (NASLIB_OPS[int(i)] for i in key.strip("()").split(","))
    return f"|{a}~0|+|{b}~0|{d}~1|+|{c}~0|{e}~1|{f}~2|"


def naslib_scores() -> dict[str, dict[str, Any]]:
    """NASLib's CIFAR-10 entries by NAS-Bench-201 string."""
    with gzip.open(NASLIB, "rt") as fh:
        table = json.load(fh)["cifar10"]
    return {naslib_arch_str(k): v for k, v in table.items()}


def networks(
    bench: str, count: int, sample_seed: int, only: set[str] | None = None
) -> list[dict[str, Any]]:
    """The networks to score, in order: identity, genotype, truth (and extras); with ``only``,
    the networks of those identities instead."""
    if only is not None:
        return [n for n in networks(bench, 7000, sample_seed) if n["identity"] in only]
    if bench == "nb201":
        from search_spaces.nb201 import genotype_of

        with gzip.open(DATA / "nb201" / "nb201.csv.gz", "rt") as fh:
            rows = list(csv.DictReader(fh))
        by_str = {r["arch_str"]: r for r in rows}

        def entry(row: dict[str, str], naslib: bool) -> dict[str, Any]:
            return {
                "identity": row["unique_str"],
                "arch_str": row["arch_str"],
                "genotype": genotype_of(row["arch_str"]),
                "truth": float(row["c10_test_acc_200ep"]),
                "acc_12ep": float(row["c10_test_acc_12ep_1seed"]),
                "naslib": naslib,
            }

        first: list[dict[str, Any]] = []
        taken: set[str] = set()
        for s in sorted(naslib_scores()):  # isomorphic cells of NASLib's sample: the first one
            if by_str[s]["unique_str"] not in taken:
                first.append(entry(by_str[s], True))
                taken.add(by_str[s]["unique_str"])
        classes: dict[str, dict[str, str]] = {}
        for r in rows:
            classes.setdefault(r["unique_str"], r)
        others = sorted(k for k in classes if k not in taken)
        drawn = random.Random(sample_seed).sample(
            others, min(len(others), max(0, count - len(first)))
        )
        chosen = (first + [entry(classes[k], False) for k in drawn])[: max(count, 0)]
        random.Random(sample_seed + 1).shuffle(chosen)  # any prefix of the run is a random mix
        return chosen
    from search_spaces.nas_bench_macro import canonical, genotype_of

    with gzip.open(DATA / "nas_bench_macro" / "nas-bench-macro_cifar10.json.gz", "rt") as fh:
        table = json.load(fh)
    seen: dict[str, dict[str, Any]] = {}
    for key in sorted(table):
        seen.setdefault(
            canonical(key),
            {
                "identity": canonical(key),
                "genotype": genotype_of(key),
                "truth": table[key]["mean_acc"],
                "bench_params": table[key]["params"],
                "bench_flops": table[key]["flops"],
            },
        )
    keys = random.Random(sample_seed).sample(sorted(seen), min(count, len(seen)))
    return [seen[k] for k in keys]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=["nb201", "nas_bench_macro"])
    parser.add_argument("--archs", type=int, default=1000)
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="search.seed: weights and batch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--only", type=Path, help="score the networks of this results file")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = args.out if args.out.is_absolute() else HERE / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {json.loads(line)["identity"] for line in out.read_text().splitlines() if line}
    only = None
    if args.only:
        path = args.only if args.only.is_absolute() else HERE / args.only
        only = {json.loads(line)["identity"] for line in path.read_text().splitlines() if line}
    drawn = networks(args.bench, args.archs, args.sample_seed, only)
    todo = [n for n in drawn if n["identity"] not in done]
    print(f"{len(done)} done, {len(todo)} to go -> {out}", flush=True)
    data = nas.load_data(name="npz", path=str(CIFAR), resolution=32, val_fraction=0.2)
    space = make_space(args.bench)
    with out.open("a") as fh:
        for k, net in enumerate(todo, start=1):
            seed = nas.search.network_seed(args.seed, net["identity"])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = space.build(net["genotype"], num_classes=10)
            seconds: dict[str, float] = {}
            start = time.process_time()
            scores = compute_scores(
                model, data, SCORES, batch_size=args.batch_size, seed=args.seed, seconds=seconds
            )
            row = {
                **{k2: v for k2, v in net.items() if k2 != "genotype"},
                "arch": space.describe(net["genotype"]),
                "scores": scores,
                "cpu_seconds": time.process_time() - start,
                "pass_seconds": seconds,
            }
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            if k % 10 == 0 or k == len(todo):
                print(f"[{k}/{len(todo)}] {row['cpu_seconds']:.1f} s CPU", flush=True)


if __name__ == "__main__":
    main()
