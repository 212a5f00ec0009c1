"""Latency of every distinct NAS-Bench-Macro network on this CPU: an MBConv table of our own.

    python experiments/search_efficiency/macro_latency.py \\
        --out experiments/search_efficiency/results/macro_latency.csv          # ~2.5 h, resumable
    python experiments/search_efficiency/macro_latency.py --repeat 200 \\
        --out experiments/search_efficiency/results/macro_latency_repeat.csv   # a second pass

NAS-Bench-Macro (``../shared/data/nas_bench_macro``) gives the accuracy of its 3,969 distinct
networks (6,561 keys; identities moved to the end of their stage share one network) but no
latency. Each distinct network is built by the ``nas_bench_macro`` space (10 classes, 32 px)
and measured with the project's method and settings (``conf/latency/cpu.yaml``: one thread, CPU
time, rounds interleaved with the EfficientNet-B0 reference), eight networks at a time in the
same rounds (``nas.measure_latencies``), in a seeded random order so that a drift of the
machine's speed spreads over the whole space instead of one corner of it.

One CSV row per network, appended as it goes (a rerun skips the keys already in ``--out``):
``key`` (the canonical key), ``lat_ms`` (the reference-normalised figure: the median ratio to
the reference times the reference's median over the whole file, so every row is in the same
milliseconds whatever the machine's speed at its minute; written by ``--finish``), and the raw
``median_ms``, ``relative``, ``rel_ci``, ``runs``, ``reference_ms``, ``loadavg``.
``--repeat N`` measures N networks of ``--table`` again (seed 1), and ``--compare`` prints the
repeatability of the two passes:

    python experiments/search_efficiency/macro_latency.py --compare \
        --out experiments/search_efficiency/results/macro_latency_repeat.csv
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import statistics
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

import nas
from nas.space import make_space

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BENCH = ROOT.parent / "shared" / "data" / "nas_bench_macro" / "nas-bench-macro_cifar10.json.gz"
FIELDS = ["key", "lat_ms", "median_ms", "relative", "rel_ci", "runs", "reference_ms", "loadavg"]
BATCH = 8


def distinct_keys() -> list[str]:
    """The benchmark's distinct networks: the canonical keys of its 6,561 keys."""
    from search_spaces.nas_bench_macro import canonical

    with gzip.open(BENCH) as fh:
        table = json.loads(fh.read())
    return sorted({canonical(k) for k in table})


def settings() -> nas.LatencySettings:
    options = OmegaConf.to_container(nas.compose([]).latency, resolve=True)
    options.pop("source", None)
    return nas.LatencySettings(**options)


def read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def measure(keys: list[str], out: Path) -> None:
    from search_spaces.nas_bench_macro import genotype_of

    space = make_space("nas_bench_macro")
    lat = settings()
    done = {r["key"] for r in read(out)}
    todo = [k for k in keys if k not in done]
    fresh = not out.exists()
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if fresh:
            writer.writeheader()
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            models = [space.build(genotype_of(k), num_classes=10) for k in batch]
            results = nas.measure_latencies(models, resolution=space.resolution, settings=lat)
            load = os.getloadavg()[0]
            for key, r in zip(batch, results, strict=True):
                writer.writerow(
                    {
                        "key": key,
                        "lat_ms": "",
                        "median_ms": f"{r.median_ms:.5f}",
                        "relative": f"{r.relative:.6f}",
                        "rel_ci": f"{r.rel_ci:.5f}" if r.rel_ci is not None else "",
                        "runs": r.runs,
                        "reference_ms": f"{r.reference_ms:.5f}",
                        "loadavg": f"{load:.2f}",
                    }
                )
            fh.flush()
            print(
                f"{len(done) + start + len(batch)}/{len(keys)}: {batch[0]} "
                f"{results[0].median_ms:.3f} ms (x{results[0].relative:.3f}), load {load:.1f}",
                flush=True,
            )


def finish(path: Path) -> None:
    """Fill ``lat_ms``: each row's ratio times the reference's median over the whole file."""
    rows = read(path)
    ref = statistics.median(float(r["reference_ms"]) for r in rows)
    for r in rows:
        r["lat_ms"] = f"{float(r['relative']) * ref:.5f}"
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    print(f"{path}: {len(rows)} rows, reference median {ref:.3f} ms")


def compare(first: Path, second: Path) -> None:
    """Repeatability: the networks of ``second`` against their figures in ``first``."""
    from scipy.stats import spearmanr

    a = {r["key"]: r for r in read(first)}
    b = read(second)
    print(f"{len(b)} networks measured twice ({first.name}, {second.name})")
    # relative: the ratio to the reference, the figure that compares across passes (lat_ms
    # scales it by one pass's reference median, which drifts with the machine's load).
    for column in ("relative", "median_ms"):
        x = [float(a[r["key"]][column]) for r in b]
        y = [float(r[column]) for r in b]
        dev = sorted(abs(v - u) / u for u, v in zip(x, y, strict=True))
        print(
            f"{column}: Spearman {spearmanr(x, y)[0]:.4f}, median deviation "
            f"{100 * statistics.median(dev):.2f}%, p90 {100 * dev[int(0.9 * len(dev))]:.2f}%, "
            f"worst {100 * dev[-1]:.2f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=0, help="networks of --table to re-measure")
    parser.add_argument(
        "--table",
        type=Path,
        default=ROOT / "experiments/search_efficiency/results/macro_latency.csv",
    )
    parser.add_argument("--finish", action="store_true", help="only fill lat_ms")
    parser.add_argument("--compare", action="store_true", help="--out against --table")
    args = parser.parse_args()
    if args.compare:
        compare(args.table, args.out)
        return
    torch.set_num_threads(1)
    if not args.finish:
        keys = distinct_keys()
        random.Random(0).shuffle(keys)
        if args.repeat:
            measured = [r["key"] for r in read(args.table)]
            keys = random.Random(1).sample(sorted(measured), args.repeat)
        measure(keys, args.out)
    finish(args.out)


if __name__ == "__main__":
    main()
