"""Samplers on NAS-Bench-201's table: hypervolume found against the true front's, per evaluation.

    python experiments/search_efficiency/bench.py --device raspi4 --seeds 10 --evals 1000 \\
        --samplers default nsga2 random --out experiments/search_efficiency/results/raspi4.jsonl

Each run is a plain Optuna ask/tell loop over the ``nb201`` space with the table's values
(``nas.read_table``: the 200-epoch CIFAR-10 accuracy, and the latency measured on ``--device``),
the same values ``conf=nb201_table`` reads, without the framework's per-trial profiling. A
network whose identity (isomorphism class) was evaluated before costs nothing: it is told the
same values and does not count. After 10, 20, ... distinct evaluations the run records the
hypervolume of what it found divided by the true front's (every class of the table), for two
reference points:

- ``headline``: accuracy floor ``--floor`` (90%: the region practitioners care about) and, as
  the latency reference, the slowest latency among the networks above the floor;
- ``table``: the table's worst accuracy and worst latency (every sampler looks perfect here).

One JSON line per (sampler, seed); a rerun skips those already in ``--out``. ``summary.py``
turns them into the median evaluations to 95% and 99% and the plot.

Samplers: ``default`` is what ``python -m nas search`` uses (``conf/sampler/nsga2.yaml``:
NSGA-II, population 8); ``nsga2``, ``tpe``, ``nsga3`` and ``random`` are Optuna's with their
own defaults.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from omegaconf import OmegaConf

import nas
from nas.space import make_space

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201.csv.gz"
ACCURACY = "c10_test_acc_200ep"
CHECKPOINTS = 10


def values(device: str, table: Path = TABLE) -> dict[str, tuple[float, float]]:
    """(accuracy %, latency ms) of every isomorphism class of the table."""
    rows = nas.read_table(str(table), "unique_str")
    return {k: (r[ACCURACY], r[f"lat_ms_{device}"]) for k, r in rows.items()}


def references(
    table: dict[str, tuple[float, float]], floor: float
) -> dict[str, tuple[float, float]]:
    """(accuracy reference %, latency reference ms) of the headline and the table figure."""
    above = [lat for acc, lat in table.values() if acc > floor]
    return {
        "headline": (floor, max(above)),
        "table": (min(a for a, _ in table.values()), max(lat for _, lat in table.values())),
    }


def area(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Hypervolume of (accuracy %, latency ms) points above the reference accuracy.

    Computed on the non-dominated points only, so any set holding the true front gives exactly
    the true front's area (dominated points would only change the floating-point rounding).
    """
    floor, ref_lat = ref
    front, best = [], -float("inf")
    for lat, acc in sorted((lat, -acc) for acc, lat in points):
        if -acc > best:
            best = -acc
            front.append((best - floor, lat))
    return nas.hypervolume(front, ref_lat)


def true_areas(
    table: dict[str, tuple[float, float]], refs: dict[str, tuple[float, float]]
) -> dict[str, float]:
    return {name: area(list(table.values()), ref) for name, ref in refs.items()}


def sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "default":
        options = OmegaConf.to_container(nas.compose([]).sampler, resolve=True)
        assert options.pop("name") == "nsga2"
        return optuna.samplers.NSGAIISampler(seed=seed, **options)
    makers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
        "nsga3": lambda: optuna.samplers.NSGAIIISampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    return makers[name]()


def run(
    name: str,
    seed: int,
    table: dict[str, tuple[float, float]],
    refs: dict[str, tuple[float, float]],
    truth: dict[str, float],
    *,
    evals: int,
    max_trials: int,
) -> dict:
    """One search: the hypervolume ratios after every CHECKPOINTS distinct evaluations."""
    space = make_space("nb201")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler(name, seed))
    seen: dict[str, tuple[float, float]] = {}
    curve: dict[str, list[float]] = {k: [] for k in refs}
    start, trials = time.process_time(), 0
    while len(seen) < evals and trials < max_trials:
        trial = study.ask()
        trials += 1
        key = space.identity(space.sample(trial))
        fresh = key not in seen
        seen.setdefault(key, table[key])
        study.tell(trial, list(seen[key]))
        if fresh and len(seen) % CHECKPOINTS == 0:
            found = list(seen.values())
            for ref_name, ref in refs.items():
                curve[ref_name].append(area(found, ref) / truth[ref_name])
    return {
        "sampler": name,
        "seed": seed,
        "distinct": len(seen),
        "trials": trials,
        "every": CHECKPOINTS,
        "ratio": curve,
        "cpu_seconds": time.process_time() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="raspi4")
    parser.add_argument("--samplers", nargs="+", default=["default", "nsga2", "random"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--evals", type=int, default=1000, help="distinct evaluations per run")
    parser.add_argument("--max-trials", type=int, default=20000, help="asks per run at most")
    parser.add_argument("--floor", type=float, default=90.0, help="headline accuracy floor %%")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    table = values(args.device)
    refs = references(table, args.floor)
    truth = true_areas(table, refs)
    done = set()
    if args.out.exists():
        rows = (json.loads(line) for line in args.out.read_text().splitlines() if line)
        done = {(r["sampler"], r["seed"]) for r in rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as fh:
        for name in args.samplers:
            for seed in range(args.seeds):
                if (name, seed) in done:
                    continue
                row = run(
                    name, seed, table, refs, truth, evals=args.evals, max_trials=args.max_trials
                )
                row.update(device=args.device, floor=args.floor, references=refs)
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                last = row["ratio"]["headline"][-1] if row["ratio"]["headline"] else 0.0
                print(
                    f"{args.device} {name} seed {seed}: {row['distinct']} distinct in "
                    f"{row['trials']} trials, headline ratio {last:.3f} "
                    f"({row['cpu_seconds']:.0f} s CPU)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
