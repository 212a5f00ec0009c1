"""Seed noise of a proxy against the spread between networks, on the networks two runs share.

    python experiments/proxy_ground_truth/noise.py results/nb201-deep16.jsonl \\
        results/nb201-deep16-seed1.jsonl

The two files are the same proxy on the same networks with another ``search.seed`` (so other
weights and another data order). Prints the seed-to-seed standard deviation of the proxy
accuracy (pooled over the networks: |a - b| / sqrt 2), the standard deviation between the
networks (of their two-seed means), the Spearman correlation of one seed's ranking with the
other's, and each seed's Spearman with the benchmark on these networks.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

from scipy import stats


def load(path: str) -> dict[str, dict]:
    rows = (json.loads(line) for line in Path(path).read_text().splitlines() if line)
    return {r["identity"]: r for r in rows}


def main(first: str, second: str) -> None:
    a, b = load(first), load(second)
    common = sorted(set(a) & set(b))
    pa = [100 * a[k]["proxy"] for k in common]
    pb = [100 * b[k]["proxy"] for k in common]
    truth = [a[k]["truth"] for k in common]
    seed_sd = math.sqrt(statistics.fmean((x - y) ** 2 / 2 for x, y in zip(pa, pb, strict=True)))
    between = statistics.stdev((x + y) / 2 for x, y in zip(pa, pb, strict=True))
    print(f"networks in both runs: {len(common)}")
    print(f"seed-to-seed sd of the proxy: {seed_sd:.2f} points")
    print(f"sd between networks (two-seed means): {between:.2f} points")
    print(
        f"largest change between seeds: {max(abs(x - y) for x, y in zip(pa, pb, strict=True)):.2f}"
    )
    print(f"Spearman seed 0 vs seed 1: {stats.spearmanr(pa, pb).statistic:.3f}")
    for name, p in ((Path(first).stem, pa), (Path(second).stem, pb)):
        print(
            f"Spearman {name} vs benchmark on these networks: "
            f"{stats.spearmanr(p, truth).statistic:.3f}"
        )
    mean = [(x + y) / 2 for x, y in zip(pa, pb, strict=True)]
    print(
        f"Spearman of the two-seed mean vs benchmark: {stats.spearmanr(mean, truth).statistic:.3f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
