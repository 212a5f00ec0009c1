"""What short training adds to the label-free ensemble, on networks both were measured on.

    python experiments/proxy_ground_truth/training_adds.py \\
        nb201=results/nb201-short150.jsonl:results/scores-nb201.jsonl \\
        nas_bench_macro=results/macro-short150.jsonl:results/scores-macro.jsonl

Each argument: a benchmark, a proxy-training results file of ``run.py`` (its ``proxy``
accuracy and ``cpu_seconds``) and the ``scores.py`` file holding the same networks' scores.
The ensemble is the default of ``conf/evaluator/ensemble.yaml``, ranked against the reference
population ``score_summary.py`` draws (the same seed, files in the same order). Variants:

- **mean rank**: the mean of the training's and the ensemble's ranks among these networks;
- **weighted rank**: ``w`` × the training's rank + (1 - ``w``) × the ensemble's, ``w`` chosen on
  the *other* benchmark (never on the networks reported);
- **screen**: the ensemble first, the training only for its top ``q`` (those are ordered by the
  training, above all others; the rest keep the ensemble's order), ``q`` chosen on the other
  benchmark. It costs the ensemble plus ``q`` of a training per network.

With NAS-Bench-201's scores file, the same variants with the benchmark's own 12-epoch training
(GPU, full CIFAR-10) instead of ours, on every scored cell: what a better short training would
add; as NAS-Bench-Macro has no such column, ``w`` and ``q`` are chosen on alternate cells and
reported on the others.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.stats import rankdata

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from score_summary import ensemble, fmt, load, pass_seconds, spearman, stats  # noqa: E402

WEIGHTS = [round(0.1 * i, 1) for i in range(11)]
SHARES = [0.1, 0.2, 0.3, 0.5]


def default_components() -> list[str]:
    conf = HERE.parents[1] / "conf" / "evaluator" / "ensemble.yaml"
    return list(yaml.safe_load(conf.read_text())["scores"])


def weighted(train: list[float], ens: list[float], w: float) -> list[float]:
    return list(w * rankdata(train) + (1 - w) * rankdata(ens))


def screened(train: list[float], ens: list[float], q: float) -> list[float]:
    """The ensemble's order, with its top ``q`` reordered by the training (and kept on top)."""
    e = rankdata(ens) / len(ens)
    top = e > 1 - q
    t = np.asarray(train, dtype=np.float64)
    out = e.copy()
    if top.any():
        out[top] = 2.0 + rankdata(t[top])  # above every network left to the ensemble
    return list(out)


def best(
    choices: list[float],
    fn: Callable[[list[float], list[float], float], list[float]],
    train: list[float],
    ens: list[float],
    truth: list[float],
) -> float:
    return max(choices, key=lambda c: spearman(fn(train, ens, c), truth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="BENCH=TRAINING.jsonl:SCORES.jsonl")
    parser.add_argument("--reference", type=int, default=32)
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args()
    path = lambda p: Path(p) if Path(p).is_absolute() else HERE / p  # noqa: E731
    names = default_components()
    rng = np.random.default_rng(1)  # as score_summary.py draws the reference populations
    data: dict[str, dict[str, Any]] = {}
    for run in args.runs:
        bench, files = run.split("=", 1)
        train_file, scores_file = files.split(":", 1)
        population = load(path(scores_file))
        ref_idx = set(rng.choice(len(population), size=args.reference, replace=False).tolist())
        reference = [r for i, r in enumerate(population) if i in ref_idx]
        scored = [r for i, r in enumerate(population) if i not in ref_idx]
        trained = {
            json.loads(x)["identity"]: json.loads(x)
            for x in path(train_file).read_text().splitlines()
            if x
        }
        rows = [r for r in scored if r["identity"] in trained]
        data[bench] = {
            "rows": rows,
            "scored": scored,
            "truth": [r["truth"] for r in rows],
            "train": [trained[r["identity"]]["proxy"] for r in rows],
            "ens": ensemble(rows, reference, names),
            "ens_all": ensemble(scored, reference, names),
            "train_cpu": statistics.median(trained[r["identity"]]["cpu_seconds"] for r in rows),
            "ens_cpu": statistics.median(pass_seconds(r, names) for r in rows),
            "settings": json.loads(path(train_file).with_suffix(".settings.json").read_text()),
        }

    head = "| estimate | Spearman (95% CI) | Kendall | top half | top 10% | CPU s / network |"
    line = "|---|---|---:|---:|---:|---:|"
    print(f"Ensemble: {' + '.join(names)} (normal aggregation, reference {args.reference}).")
    for bench, d in data.items():
        others = [o for o in data if o != bench]
        truth, train, ens = d["truth"], d["train"], d["ens"]
        s = d["settings"]
        print(
            f"\n## {bench}: {len(truth)} networks (truth {min(truth):.1f}-{max(truth):.1f}%), "
            f"training: preset {s.get('preset')}, {s['space']}, {s['resolution']} px, "
            f"{s['evaluator']}\n"
        )
        print(head)
        print(line)

        def row(label: str, x: list[float], cpu: float | None, t: list[float] = truth) -> None:
            c = f"{cpu:.1f}" if cpu is not None else "-"
            print(f"| {label} | {fmt(stats(x, t, boot=args.boot))} | {c} |")

        tc, ec = d["train_cpu"], d["ens_cpu"]
        row("proxy training alone", train, tc)
        row("ensemble alone", ens, ec)
        row("mean rank of the two", weighted(train, ens, 0.5), tc + ec)
        for o in others:
            od = data[o]
            w = best(WEIGHTS, weighted, od["train"], od["ens"], od["truth"])
            row(f"weighted rank, w = {w} (chosen on {o})", weighted(train, ens, w), tc + ec)
            q = best(SHARES, screened, od["train"], od["ens"], od["truth"])
            row(
                f"screen: ensemble, then training for its top {q:.0%} (chosen on {o})",
                screened(train, ens, q),
                ec + q * tc,
            )

        if bench == "nb201":
            scored = d["scored"]
            short = [r["acc_12ep"] for r in scored]
            ens_all, t_all = d["ens_all"], [r["truth"] for r in scored]
            pick, held = slice(0, None, 2), slice(1, None, 2)
            sub = lambda x, part: list(np.asarray(x)[part])  # noqa: E731
            w = best(WEIGHTS, weighted, sub(short, pick), sub(ens_all, pick), sub(t_all, pick))
            q = best(SHARES, screened, sub(short, pick), sub(ens_all, pick), sub(t_all, pick))
            n_held = len(sub(t_all, held))
            print(
                f"\nWith the benchmark's own 12-epoch training (GPU) instead: {n_held} cells held "
                f"out (w and q chosen on the other {len(scored) - n_held})\n"
            )
            print(head)
            print(line)
            th = sub(t_all, held)
            row("12-epoch accuracy alone", sub(short, held), None, th)
            row("ensemble alone", sub(ens_all, held), None, th)
            both = weighted(sub(short, held), sub(ens_all, held), 0.5)
            row("mean rank of the two", both, None, th)
            row(
                f"weighted rank, w = {w}",
                weighted(sub(short, held), sub(ens_all, held), w),
                None,
                th,
            )
            row(
                f"screen: ensemble, then 12-epoch training for its top {q:.0%}",
                screened(sub(short, held), sub(ens_all, held), q),
                None,
                th,
            )


if __name__ == "__main__":
    main()
