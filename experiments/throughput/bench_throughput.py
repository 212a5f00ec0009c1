"""Throughput with 1, 2 and 4 workers, and the time the framework adds to each trial.

``throughput``: the real command, ``python -m nas search ... search.n_workers=K``, with a cheap
evaluator (SynFlow, no training) and a short latency measurement on the MBConv proxy space;
trials per minute from the trials' own start and end times (the study's steady state) and
from the command's wall time (process start, results files included). Worker counts are
interleaved over the repetitions, so that drifting load on the machine hits all of them.

``overhead``: what nas adds per trial beyond evaluation. The evaluation (building, profiling,
latency, accuracy) is replaced by constant results, so every millisecond left is the
framework's: sampling, user attributes, ask/tell, the gate and budget check, dead-worker scan,
dedupe scan, early-stopping hook, progress callback. NSGA-II on a 28-parameter categorical
space (7 stages x kernel, expand, SE, layers), on the journal file, SQLite and in memory,
next to plain Optuna (``study.optimize`` suggesting the same 28 categoricals) on the same
storage, in one run.

    python experiments/throughput/bench_throughput.py all --out experiments/throughput/results
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import optuna  # noqa: E402
import torch  # noqa: E402
from optuna.storages import JournalStorage  # noqa: E402
from optuna.storages.journal import JournalFileBackend  # noqa: E402

from nas._storage.journal import JournalFile  # noqa: E402

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)

#: The cheap search of the throughput runs (about 1 s a trial here).
CHEAP = [
    "conf=mbconv_pareto",
    "evaluator=synflow",
    "data=synthetic",
    "sampler=random",
    "latency.warmup=1",
    "latency.min_rounds=3",
    "latency.max_seconds=0.2",
    "search.progress=false",
    "report.plots=false",
    "report.remeasure_front=false",
]
#: 7 stages x (kernel, expand, se, layers) = 28 categorical parameters.
SPACE28 = [
    "conf=mbconv_pareto",
    "data=synthetic",
    "space.layers=[[1,2],[1,2,3],[1,2,3],[2,3,4],[2,3,4],[2,3,4],[1,2]]",
    "sampler=nsga2",
    "search.progress=false",
    "report.plots=false",
]


# --- throughput --------------------------------------------------------------------------------


def _journal_trials(path: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = JournalStorage(JournalFileBackend(str(path)))
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def throughput_run(workers: int, n_trials: int, work: Path) -> dict[str, Any]:
    run = work / f"w{workers}_{time.time_ns()}"
    cmd = [
        sys.executable,
        "-m",
        "nas",
        "search",
        *CHEAP,
        f"search.n_trials={n_trials}",
        f"search.n_workers={workers}",
        f"hydra.run.dir={run}",
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    trials = _journal_trials(run / "study.journal", "mbconv_pareto")
    assert len(trials) == n_trials, len(trials)
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    span = (last - first).total_seconds()
    totals = [t.user_attrs["seconds"]["total"] for t in trials if "seconds" in t.user_attrs]
    return {
        "workers": workers,
        "n_trials": n_trials,
        "wall_s": wall,
        "span_s": span,
        "trials_per_min_span": 60 * n_trials / span,
        "trials_per_min_wall": 60 * n_trials / wall,
        "median_trial_s": statistics.median(totals),
        "pids": len({t.user_attrs["worker"]["pid"] for t in trials}),
    }


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for workers in args.workers:
                r = throughput_run(workers, args.trials, Path(tmp))
                r["rep"] = rep
                runs.append(r)
                print(json.dumps(r), flush=True)
    summary = {}
    for workers in args.workers:
        mine = [r for r in runs if r["workers"] == workers]
        summary[workers] = {
            key: statistics.median(r[key] for r in mine)
            for key in ("trials_per_min_span", "trials_per_min_wall", "median_trial_s")
        }
    base = summary[args.workers[0]]["trials_per_min_span"]
    for workers in args.workers:
        summary[workers]["speedup_span"] = summary[workers]["trials_per_min_span"] / base
    return {"runs": runs, "summary": summary, "overrides": CHEAP, "n_trials": args.trials}


# --- overhead ----------------------------------------------------------------------------------


class Timers:
    """Accumulated seconds per component, between two trial ends."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.per_trial: list[dict[str, float]] = []
        self.depth = 0

    def wrap(self, owner: Any, name: str, label: str) -> Callable[[], None]:
        raw = inspect.getattr_static(owner, name)  # a staticmethod object stays one
        own = name in vars(owner)
        original = getattr(owner, name)
        timers = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if timers.depth:  # count nested calls once, in the outer component
                return original(*args, **kwargs)
            timers.depth += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers.current[label] += time.perf_counter() - start
                timers.depth -= 1

        setattr(owner, name, staticmethod(timed) if isinstance(raw, staticmethod) else timed)
        return lambda: setattr(owner, name, raw) if own else delattr(owner, name)

    def close_trial(self, total: float) -> None:
        row = dict(self.current)
        row["total"] = total
        row["other"] = total - sum(v for k, v in self.current.items())
        self.per_trial.append(row)
        self.current = defaultdict(float)


@contextlib.contextmanager
def constant_evaluation(objective: Any) -> Iterator[None]:
    """Replace building, profiling, latency and accuracy by constant results (random values).

    This benchmark measures the framework itself, so it reaches into its private modules: the
    objective's own references to profile and measure_latency are swapped for constants.
    """
    import nas._search.objective as objective_module
    from nas import measure_latency, profile
    from nas.measure import AccuracyResult

    space = objective.space
    genotype = space.random_genotype(0)
    model = space.build(genotype, num_classes=objective.num_classes)
    prof = profile(model, resolution=space.resolution)
    lat = measure_latency(
        model, resolution=space.resolution, warmup=1, min_rounds=3, max_seconds=0.2
    )
    rng = random.Random(0)
    saved = (objective_module.profile, objective_module.measure_latency, objective.evaluator)
    objective_module.profile = lambda m, resolution: prof
    objective_module.measure_latency = lambda *a, **kw: replace(lat, median_ms=rng.uniform(1, 5))
    objective.evaluator = lambda m, data, **kw: AccuracyResult(
        accuracy=rng.random(), curve=[rng.random()], evaluator="constant"
    )
    space.build = lambda g, num_classes: model
    try:
        yield
    finally:
        objective_module.profile, objective_module.measure_latency, objective.evaluator = saved
        del space.build


def nas_overhead(url: str | None, n_trials: int, work: Path) -> dict[str, Any]:
    import nas._search.progress as progress_module
    import nas._search.run as search
    import nas._storage.workers as workers
    from nas import compose
    from nas._search.objective import Objective

    cfg = compose([*SPACE28, f"search.n_trials={n_trials}", f"storage.url={url or 'null'}"])
    run_dir = work / f"nas_{time.time_ns()}"
    run_dir.mkdir()
    if url and url.startswith("sqlite:///"):
        url = f"sqlite:///{run_dir}/study.db"
        cfg.storage.url = url
    prepared = search.prepare(cfg, run_dir)
    space, objective, study = prepared.space, prepared.objective, prepared.study
    assert len(space.grid()) == 28, len(space.grid())
    timers = Timers()
    undo = [
        timers.wrap(type(space), "sample", "sample (suggest x28)"),
        timers.wrap(optuna.Trial, "set_user_attr", "user attrs"),
        timers.wrap(optuna.Study, "ask", "ask"),
        timers.wrap(optuna.Study, "tell", "tell"),
        timers.wrap(Objective, "_previous", "dedupe scan"),
        timers.wrap(Objective, "_stop_rule", "early-stop hook"),
        timers.wrap(workers, "recover_dead_trials", "dead-worker scan"),
        timers.wrap(progress_module.Progress, "__call__", "progress callback"),
    ]
    ends = [time.perf_counter()]

    def on_trial(study: optuna.Study, trial: Any) -> None:
        ends.append(time.perf_counter())
        timers.close_trial(ends[-1] - ends[-2])

    progress = progress_module.Progress(n_trials, False)
    try:
        with constant_evaluation(objective):
            search._trial_loop(cfg, prepared, [progress, on_trial])
    finally:
        for u in undo:
            u()
    assert len(study.get_trials()) == n_trials
    return {"per_trial": timers.per_trial}


def optuna_overhead(
    url: str | None, n_trials: int, work: Path, *, backend: type = JournalFileBackend
) -> dict[str, Any]:
    """Plain Optuna: study.optimize, the same 28 categoricals, the same sampler settings."""
    from omegaconf import OmegaConf

    from nas import compose
    from nas.space import make_space

    grid = make_space(**OmegaConf.to_container(compose(SPACE28).space, resolve=True)).grid()
    run_dir = work / f"optuna_{time.time_ns()}"
    run_dir.mkdir()
    if url is None:
        storage: Any = JournalStorage(backend(str(run_dir / "study.journal")))
    elif url == ":memory:":
        storage = None
    else:
        storage = f"sqlite:///{run_dir}/study.db"
    study = optuna.create_study(
        directions=["maximize", "minimize"],
        storage=storage,
        sampler=optuna.samplers.NSGAIISampler(population_size=8, seed=0),
    )
    rng = random.Random(0)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        for label, values in grid.items():
            trial.suggest_categorical(label, values)
        return rng.random(), rng.uniform(1, 5)

    ends = [time.perf_counter()]
    totals: list[float] = []

    def on_trial(study: optuna.Study, trial: Any) -> None:
        ends.append(time.perf_counter())
        totals.append(ends[-1] - ends[-2])

    study.optimize(objective, n_trials=n_trials, callbacks=[on_trial])
    return {"per_trial": [{"total": t} for t in totals]}


STORAGES = {"journal": None, "sqlite": "sqlite:///", "memory": ":memory:"}


# --- scaling of the framework alone --------------------------------------------------------------


def _scaling_worker(
    url: str | None, run_dir: str, n_trials: int, eval_s: float, barrier: Any
) -> None:
    import nas._search.run as search
    from nas import compose

    cfg = compose(
        [
            *SPACE28,
            f"search.n_trials={n_trials}",
            f"storage.url={url or 'null'}",
            "search.study_name=scaling",
        ]
    )
    prepared = search.prepare(cfg, Path(run_dir))
    objective = prepared.objective
    with constant_evaluation(objective):
        evaluate = objective.evaluator

        def waiting(*args: Any, **kwargs: Any) -> Any:
            time.sleep(eval_s)  # an evaluation that waits (a GPU, a device) instead of computing
            return evaluate(*args, **kwargs)

        objective.evaluator = waiting
        barrier.wait()
        search._trial_loop(cfg, prepared, [])


def scaling_run(workers: int, url: str | None, n_trials: int, eval_s: float, work: Path) -> float:
    import multiprocessing

    run_dir = work / f"scale{workers}_{time.time_ns()}"
    run_dir.mkdir()
    if url:  # a fresh study on the server
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name="scaling", storage=_rdb(url))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    procs = [
        ctx.Process(target=_scaling_worker, args=(url, str(run_dir), n_trials, eval_s, barrier))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    storage = (
        _rdb(url) if url else JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    )
    trials = optuna.load_study(study_name="scaling", storage=storage).get_trials()
    assert len(trials) == n_trials, len(trials)
    if url:
        optuna.delete_study(study_name="scaling", storage=storage)
    # From the first trial's start to the last one's end: process start and exit left out.
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    return 60 * n_trials / (last - first).total_seconds()


def _rdb(url: str) -> str:
    from nas._storage.storage import sqlalchemy_url

    return sqlalchemy_url(url)


def scaling(args: argparse.Namespace) -> dict[str, Any]:
    backends = {"journal": None}
    if os.environ.get("NAS_TEST_POSTGRES_URL"):
        backends["postgresql"] = os.environ["NAS_TEST_POSTGRES_URL"]
    results: dict[str, Any] = {"eval_s": args.eval_s, "n_trials": args.trials}
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in backends.items():
            rates: dict[int, list[float]] = defaultdict(list)
            for _ in range(args.reps):
                for workers in args.workers:
                    rates[workers].append(
                        scaling_run(workers, url, args.trials, args.eval_s, Path(tmp))
                    )
            ideal = 60 / args.eval_s
            results[name] = {
                w: {
                    "trials_per_min": statistics.median(r),
                    "ideal_trials_per_min": w * ideal,
                    "efficiency": statistics.median(r) / (w * ideal),
                }
                for w, r in rates.items()
            }
            print(name, json.dumps(results[name]), flush=True)
    return results


def _ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in STORAGES.items():
            n = args.trials
            plain = optuna_overhead(url, n, Path(tmp))
            if url is None:  # the same journal file nas writes, to isolate what nas adds
                plain_nas_file = optuna_overhead(url, n, Path(tmp), backend=JournalFile)
            mine = nas_overhead(url, n, Path(tmp))
            rows = mine["per_trial"]
            components = sorted({k for r in rows for k in r} - {"total"})
            last = rows[-100:]
            results[name] = {
                "n_trials": n,
                "optuna_median_ms": _ms([r["total"] for r in plain["per_trial"]]),
                "optuna_last100_median_ms": _ms([r["total"] for r in plain["per_trial"][-100:]]),
                "nas_median_ms": _ms([r["total"] for r in rows]),
                "nas_last100_median_ms": _ms([r["total"] for r in last]),
                "nas_components_median_ms": {
                    c: _ms([r.get(c, 0.0) for r in rows]) for c in components
                },
                "nas_components_last100_median_ms": {
                    c: _ms([r.get(c, 0.0) for r in last]) for c in components
                },
            }
            r = results[name]
            baseline = r["optuna_median_ms"]
            if url is None:
                r["optuna_on_nas_journal_file_median_ms"] = _ms(
                    [x["total"] for x in plain_nas_file["per_trial"]]
                )
                baseline = r["optuna_on_nas_journal_file_median_ms"]
            r["added_by_nas_ms"] = r["nas_median_ms"] - baseline
            print(name, json.dumps(r), flush=True)
    return results


def growth(args: argparse.Namespace) -> dict[str, Any]:
    """Per-trial overhead against the number of trials already in the study, nas and Optuna.

    Both on the journal file class nas writes (``JournalFile``), NSGA-II, constant evaluation,
    in the order nas, Optuna, Optuna, nas, so that a drift of the machine's load hits both.
    Reported: the median of each window of 100 trials, every ``--every`` trials.
    """
    n, every = args.trials, args.every
    runs: dict[str, list[list[float]]] = {"nas": [], "optuna": []}
    with tempfile.TemporaryDirectory() as tmp:
        for who in ("nas", "optuna", "optuna", "nas")[: 2 * args.reps]:
            if who == "nas":
                rows = nas_overhead(None, n, Path(tmp))["per_trial"]
            else:
                rows = optuna_overhead(None, n, Path(tmp), backend=JournalFile)["per_trial"]
            runs[who].append([r["total"] for r in rows])
            print(who, "done", flush=True)
    windows = []
    for start in [0, *range(every - 100, n, every)]:
        row: dict[str, Any] = {"trials": f"{start}-{start + 100}"}
        for who, totals in runs.items():
            row[f"{who}_ms"] = [_ms(t[start : start + 100]) for t in totals]
        row["ratio"] = statistics.median(row["nas_ms"]) / statistics.median(row["optuna_ms"])
        windows.append(row)
        print(json.dumps(row), flush=True)
    return {"n_trials": n, "windows": windows, "order": "nas, optuna, optuna, nas"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("throughput", "overhead", "scaling", "growth", "all"))
    parser.add_argument("--every", type=int, default=1000, help="growth: window spacing")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--eval-s", type=float, default=0.5, help="scaling: seconds a trial waits")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments/throughput/results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "cpu_count": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "command": " ".join(sys.argv),
    }
    if args.what in ("overhead", "all"):
        a = argparse.Namespace(**{**vars(args), "trials": args.trials or 300})
        doc = {"meta": meta, "overhead": overhead(a)}
        (args.out / "overhead.json").write_text(json.dumps(doc, indent=2))
    if args.what == "growth":
        a = argparse.Namespace(**{**vars(args), "trials": args.trials or 10_000})
        doc = {"meta": meta, "growth": growth(a)}
        doc["meta"]["loadavg_after"] = os.getloadavg()
        (args.out / "growth.json").write_text(json.dumps(doc, indent=2))
    if args.what in ("scaling", "all"):
        a = argparse.Namespace(**{**vars(args), "trials": args.trials or 48})
        doc = {"meta": meta, "scaling": scaling(a)}
        (args.out / "scaling.json").write_text(json.dumps(doc, indent=2))
    if args.what in ("throughput", "all"):
        a = argparse.Namespace(**{**vars(args), "trials": args.trials or 40})
        doc = {"meta": meta, "throughput": throughput(a)}
        doc["meta"]["loadavg_after"] = os.getloadavg()
        (args.out / "throughput.json").write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
