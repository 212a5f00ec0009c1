"""What short training adds to the ensemble, on the networks the proxy training trained.

    python experiments/proxy_ground_truth/training_adds.py \\
        results/nb201-deep16.jsonl results/scores-nb201-proxy30.jsonl results/scores-nb201.jsonl \\
        --ensemble naswot az_expressivity --aggregate log

For the networks of a proxy-training run (its ``proxy`` accuracy), with their training-free
scores (``scores.py --only``): Spearman with the benchmark of the proxy, of the ensemble (ranked
against the reference population drawn from the main scores file, as ``score_summary.py``
draws it) and of the mean of the two's ranks among these networks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata, spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from score_summary import ensemble, load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("proxy", type=Path)
    parser.add_argument("scores", type=Path)
    parser.add_argument("population", type=Path, help="the main scores file (reference)")
    parser.add_argument("--ensemble", nargs="+", required=True)
    parser.add_argument("--aggregate", default="normal", choices=["normal", "log"])
    parser.add_argument("--reference", type=int, default=32)
    args = parser.parse_args()
    path = lambda p: p if p.is_absolute() else HERE / p  # noqa: E731
    proxy = {
        json.loads(x)["identity"]: json.loads(x)
        for x in path(args.proxy).read_text().split("\n")
        if x
    }
    rows = [r for r in load(path(args.scores)) if r["identity"] in proxy]
    population = load(path(args.population))
    idx = np.random.default_rng(1).choice(len(population), size=args.reference, replace=False)
    reference = [population[i] for i in sorted(idx)]
    truth = [r["truth"] for r in rows]
    trained = [proxy[r["identity"]]["proxy"] for r in rows]
    ens = ensemble(rows, reference, args.ensemble, args.aggregate)
    both = (rankdata(trained) + rankdata(ens)) / 2
    cpu = np.median([proxy[r["identity"]]["cpu_seconds"] for r in rows])
    print(f"{len(rows)} networks (truth {min(truth):.1f}-{max(truth):.1f}%)\n")
    print("| estimate | Spearman | CPU s (median) |\n|---|---:|---:|")
    print(f"| proxy training | {spearmanr(trained, truth).statistic:.3f} | {cpu:.0f} |")
    print(f"| ensemble {' + '.join(args.ensemble)} | {spearmanr(ens, truth).statistic:.3f} | - |")
    print(f"| mean rank of the two | {spearmanr(both, truth).statistic:.3f} | - |")


if __name__ == "__main__":
    main()
