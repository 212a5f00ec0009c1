"""Samplers on benchmark tables: hypervolume found against the true front's, per evaluation.

    python experiments/search_efficiency/bench.py --bench nb201 --device raspi4 --seeds 20 \\
        --samplers default nsga2 tpe nsga3 random \\
        --out experiments/search_efficiency/results/nb201_raspi4.jsonl
    python experiments/search_efficiency/bench.py --bench macro --seeds 20 \\
        --out experiments/search_efficiency/results/macro_cpu.jsonl

Each run is an Optuna ask/tell loop over the benchmark's space with the table's values, the
sampler made by ``nas.search.make_sampler`` exactly as ``python -m nas search`` makes it:

- ``nb201``: the ``nb201`` space; NAS-Bench-201's 200-epoch CIFAR-10 accuracy and the latency
  measured on ``--device`` (``nas.measure.read_table``, the values ``conf=nb201_table`` reads);
- ``macro``: the ``nas_bench_macro`` space; NAS-Bench-Macro's mean accuracy over its three
  seeds, and the latency of each network measured on this CPU (``macro_latency.py``).

A network whose identity (isomorphism class, canonical key) was evaluated before costs nothing
and does not count; as in ``python -m nas search``, the sampler is told it was pruned (a known
point: ``--duplicates same`` tells its values again, as nas did before). After 10, 20, ... distinct evaluations the run
records the hypervolume of what it found divided by the true front's (every network of the
table), for two reference points:

- ``headline``: accuracy floor ``--floor`` (90%: the region practitioners care about) and, as
  the latency reference, the slowest latency among the networks above the floor;
- ``table``: the table's worst accuracy and worst latency (every sampler looks perfect here).

``--early-stop`` applies the framework's rule (``nas.search.DominanceStopper`` with the config's
``search.early_stop``) to NAS-Bench-201's 12-epoch accuracy, as ``conf=nb201_table`` does: a
network stopped there costs 12 epochs instead of 200, is told to the sampler as pruned, and is
not on the found front. Every row records the epochs spent at each checkpoint.

Samplers: ``default`` is the project's (``conf/sampler`` of the primary config); ``nsga2``,
``tpe``, ``nsga3`` and ``random`` are Optuna's with Optuna's own defaults; ``NAME:key=value,...``
sets options (``tpe:multivariate=true,n_startup_trials=16``). One JSON line per (sampler, seed,
early stopping); a rerun skips those already in ``--out``. ``summary.py`` turns them into the
tables and plots.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf

import nas
from nas.space import make_space

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
NB201 = DATA / "nb201" / "nb201.csv.gz"
MACRO = DATA / "nas_bench_macro" / "nas-bench-macro_cifar10.json.gz"
MACRO_LATENCY = ROOT / "experiments" / "search_efficiency" / "results" / "macro_latency.csv"
CHECKPOINTS = 10


@dataclass
class Bench:
    """A tabular benchmark: (accuracy %, latency ms) of every network, by identity."""

    space: str
    values: dict[str, tuple[float, float]]
    partial: dict[str, float] | None = None  # a shorter training's accuracy %, by identity
    epochs: int = 200
    partial_epochs: int = 12


def nb201(device: str, table: Path = NB201) -> Bench:
    """NAS-Bench-201 on one of its devices (6,466 isomorphism classes)."""
    rows = nas.measure.read_table(str(table), "unique_str")
    column = f"lat_ms_{device}"
    if column not in next(iter(rows.values())):
        raise SystemExit(f"bench.py: NAS-Bench-201 has no device {device!r}")
    return Bench(
        space="nb201",
        values={k: (r["c10_test_acc_200ep"], r[column]) for k, r in rows.items()},
        partial={k: r["c10_test_acc_12ep_1seed"] for k, r in rows.items()},
    )


def macro(latency: Path = MACRO_LATENCY, table: Path = MACRO) -> Bench:
    """NAS-Bench-Macro with this CPU's latency (3,969 distinct networks; no partial curve)."""
    from search_spaces.nas_bench_macro import canonical

    with gzip.open(table) as fh:
        accuracy = {canonical(k): v["mean_acc"] for k, v in json.loads(fh.read()).items()}
    with latency.open() as fh:
        lat = {r["key"]: float(r["lat_ms"]) for r in csv.DictReader(fh)}
    missing = sorted(set(accuracy) - set(lat))
    if missing:
        raise SystemExit(f"bench.py: {latency} lacks {len(missing)} networks, e.g. {missing[0]}")
    return Bench(space="nas_bench_macro", values={k: (accuracy[k], lat[k]) for k in accuracy})


def values(device: str, table: Path = NB201) -> dict[str, tuple[float, float]]:
    """(accuracy %, latency ms) of every isomorphism class of NAS-Bench-201 on ``device``."""
    return nb201(device, table).values


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


def sampler_options(name: str) -> dict[str, Any]:
    """The ``sampler`` config of a name: ``default``, an Optuna sampler, or ``NAME:k=v,...``."""
    if name == "default":
        return OmegaConf.to_container(nas.compose([]).sampler, resolve=True)  # type: ignore[return-value]
    base, _, extra = name.partition(":")
    options: dict[str, Any] = {"name": base}
    for pair in filter(None, extra.split(",")):
        key, _, value = pair.partition("=")
        options[key] = json.loads(value)
    return options


def early_stop_config() -> nas.search.EarlyStopConfig:
    """The framework's default early-stopping settings (``search.early_stop``)."""
    options = OmegaConf.to_container(nas.compose([]).search.early_stop, resolve=True)
    return nas.search.EarlyStopConfig(**options | {"enabled": True})  # type: ignore[operator]


def run(
    name: str,
    seed: int,
    bench: Bench | dict[str, tuple[float, float]],
    refs: dict[str, tuple[float, float]],
    truth: dict[str, float],
    *,
    evals: int,
    max_trials: int,
    early_stop: bool = False,
    duplicates: str = "pruned",
    screen: tuple[Any, float] | None = None,
) -> dict[str, Any]:
    """One search: the hypervolume ratios after every CHECKPOINTS distinct evaluations.

    ``duplicates``: what a network evaluated before tells the sampler: ``pruned``, as
    ``python -m nas search`` does, or ``same`` (its values again, as nas did before).
    ``screen``: (``ensemble_scores.EnsembleScores``, keep): ``evaluator=screen``'s rule, each
    candidate ranked by the ensemble computed on the real network, and only one reaching the
    reference's top ``keep`` trained (looked up); the others are told as pruned and cost only
    their scores' CPU-seconds.
    """
    if not isinstance(bench, Bench):
        bench = Bench(space="nb201", values=bench)
    if early_stop and bench.partial is None:
        raise ValueError("early stopping needs the benchmark's partial (shorter) training")
    space = make_space(bench.space)
    options = sampler_options(name)
    sampler = nas.search.make_sampler(options, seed=seed, constrained=False)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    stopper = nas.search.DominanceStopper(early_stop_config()) if early_stop else None
    seen: dict[str, tuple[float, float] | None] = {}  # None: stopped early
    finished: list[nas.TrialRecord] = []
    found: list[tuple[float, float]] = []
    curve: dict[str, list[float]] = {k: [] for k in refs}
    epochs_at: list[int] = []
    trials_at: list[int] = []
    trained_at: list[int] = []
    score_seconds_at: list[float] = []
    epochs = trained = 0
    score_seconds = 0.0
    threshold = None
    if screen is not None:
        scores, keep = screen
        threshold = scores.threshold(keep)
        score_seconds = scores.reference()[1]  # the study's reference population
    start, trials = time.process_time(), 0
    while len(seen) < evals and trials < max_trials:
        trial = study.ask()
        trials += 1
        genotype = space.sample(trial)
        key = space.identity(genotype)
        fresh = key not in seen
        passed = True
        if fresh and screen is not None:
            row = scores.row(key, genotype)
            score_seconds += row["cpu_seconds"]
            figure = scores.figure(row["values"])
            passed = figure is not None and figure >= threshold
        if fresh and not passed:
            seen[key] = None  # screened out: never trained, not on the found front
        elif fresh:
            trained += 1
            acc, lat = bench.values[key]
            stop = None
            if stopper is not None:
                rule = stopper.rule(finished, latency_ms=lat)
                partial = bench.partial[key] / 100  # type: ignore[index]
                stop = rule(1, partial) if rule is not None else None
            if stop is None:
                seen[key] = (acc, lat)
                found.append((acc, lat))
                epochs += bench.epochs
                curve_points = [] if bench.partial is None else [bench.partial[key] / 100]
                finished.append(
                    nas.TrialRecord(
                        trial=trial.number,
                        state="COMPLETE",
                        accuracy=acc / 100,
                        latency_ms=lat,
                        curve=[*curve_points, acc / 100],
                    )
                )
            else:
                seen[key] = None
                epochs += bench.partial_epochs
        if fresh and len(seen) % CHECKPOINTS == 0:
            for ref_name, ref in refs.items():
                curve[ref_name].append(area(found, ref) / truth[ref_name])
            epochs_at.append(epochs)
            trials_at.append(trials)
            trained_at.append(trained)
            score_seconds_at.append(round(score_seconds, 2))
        told = seen[key]
        if told is None or (duplicates == "pruned" and not fresh):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, list(told))
    return {
        "sampler": name,
        "options": options,
        "seed": seed,
        "early_stop": early_stop,
        "duplicates": duplicates,
        "distinct": len(seen),
        "stopped": sum(v is None for v in seen.values()) - (len(seen) - trained),
        "screen": None if screen is None else screen[1],
        "trained": trained,
        "trials": trials,
        "every": CHECKPOINTS,
        "ratio": curve,
        "epochs": epochs_at,
        "trials_at": trials_at,
        "trained_at": trained_at,
        "score_seconds_at": score_seconds_at,
        "cpu_seconds": time.process_time() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", choices=("nb201", "macro"), default="nb201")
    parser.add_argument("--device", default="raspi4", help="nb201: the benchmark's device")
    parser.add_argument("--samplers", nargs="+", default=["default", "nsga2", "random"])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--evals", type=int, default=1000, help="distinct evaluations per run")
    parser.add_argument("--max-trials", type=int, default=20000, help="asks per run at most")
    parser.add_argument("--floor", type=float, default=90.0, help="headline accuracy floor %%")
    parser.add_argument("--early-stop", choices=("off", "on", "both"), default="off")
    parser.add_argument("--duplicates", choices=("pruned", "same"), default="pruned")
    parser.add_argument(
        "--screen",
        type=float,
        help="screen each candidate by the ensemble and train only the reference's top KEEP",
    )
    parser.add_argument("--ensemble", default="ensemble", help="the screen's conf/evaluator")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if args.screen is not None and not 0 < args.screen <= 1:
        raise SystemExit(f"bench.py: --screen must be a share in (0, 1], got {args.screen}")

    bench = nb201(args.device) if args.bench == "nb201" else macro()
    device = args.device if args.bench == "nb201" else "cpu"
    refs = references(bench.values, args.floor)
    truth = true_areas(bench.values, refs)
    done = set()
    if args.out.exists():
        rows = (json.loads(line) for line in args.out.read_text().splitlines() if line)
        done = {
            (
                r["sampler"],
                r["seed"],
                r.get("early_stop", False),
                r.get("duplicates"),
                r.get("screen"),
            )
            for r in rows
        }
    screen = None
    if args.screen is not None:
        from ensemble_scores import EnsembleScores

        space = "nb201" if args.bench == "nb201" else "nas_bench_macro"
        screen = (EnsembleScores(space, args.ensemble), args.screen)
    stops = {"off": [False], "on": [True], "both": [False, True]}[args.early_stop]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as fh:
        for name in args.samplers:
            for early_stop in stops:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    if (name, seed, early_stop, args.duplicates, args.screen) in done:
                        continue
                    row = run(
                        name,
                        seed,
                        bench,
                        refs,
                        truth,
                        evals=args.evals,
                        max_trials=args.max_trials,
                        early_stop=early_stop,
                        duplicates=args.duplicates,
                        screen=screen,
                    )
                    row.update(bench=args.bench, device=device, floor=args.floor, references=refs)
                    fh.write(json.dumps(row) + "\n")
                    fh.flush()
                    last = row["ratio"]["headline"][-1] if row["ratio"]["headline"] else math.nan
                    print(
                        f"{args.bench} {device} {name} seed {seed} early_stop={early_stop}: "
                        f"{row['distinct']} distinct ({row['stopped']} stopped, {row['trained']} trained) in "
                        f"{row['trials']} trials, headline ratio {last:.3f} "
                        f"({row['cpu_seconds']:.0f} s CPU)",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
