"""Sampler settings tried before the default was chosen: evaluations to 95% and 99% per setting.

    python experiments/search_efficiency/tune.py --device raspi4 --seeds 6 --evals 600 \\
        "nsga2:population_size=8" "tpe:multivariate=true,n_startup_trials=16"

Each setting (``bench.py``'s sampler names, plus ``gamma=F/CAP`` for TPE: ``min(ceil(F n),
CAP)`` good trials of ``n``, a callable Optuna takes but a config cannot) runs ``--seeds``
searches over NAS-Bench-201's table on ``--device`` and prints the median distinct evaluations
to 95% and 99% of the true front's hypervolume (headline reference: 90% floor), each seed's
evaluations to 95%, the median final ratio, asks per distinct network and CPU seconds a run.
``--duplicates same`` tells the sampler a duplicate's values again (as nas did before).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import optuna

import nas

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench


def with_gamma(options: dict[str, Any], *, seed: int, constrained: bool) -> Any:
    """``nas.search.make_sampler``, and TPE with a ``gamma=F/CAP`` option."""
    options = dict(options)
    gamma = options.pop("gamma", None)
    if gamma is None:
        return make_sampler(options, seed=seed, constrained=constrained)
    frac, cap = (float(x) for x in str(gamma).split("/"))
    options.pop("name")
    return optuna.samplers.TPESampler(
        seed=seed, gamma=lambda n: min(math.ceil(frac * n), int(cap)), **options
    )


make_sampler = nas.search.make_sampler


def parse(setting: str) -> dict[str, Any]:
    """``bench.py``'s sampler name, with ``gamma=F/CAP`` kept as text."""
    base, _, extra = setting.partition(":")
    options: dict[str, Any] = {"name": base}
    for pair in extra.split(","):
        key, _, value = pair.partition("=")
        options[key] = value if key == "gamma" else json.loads(value)
    return options


def reach(curve: list[float], target: float) -> float:
    return next(((i + 1) * bench.CHECKPOINTS for i, r in enumerate(curve) if r >= target), math.inf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+")
    parser.add_argument("--device", default="raspi4")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--evals", type=int, default=600)
    parser.add_argument("--max-trials", type=int, default=20000)
    parser.add_argument("--duplicates", choices=("pruned", "same"), default="pruned")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    nas.search.make_sampler = (
        with_gamma  # bench.run makes its sampler through nas.search.make_sampler
    )
    nb = bench.nb201(args.device)
    refs = bench.references(nb.values, 90.0)
    truth = bench.true_areas(nb.values, refs)
    options_of = bench.sampler_options
    for setting in args.settings:
        options = parse(setting) if ":" in setting else options_of(setting)
        bench.sampler_options = lambda _name, o=options: o  # type: ignore[assignment]
        runs = []
        for seed in range(args.seeds):
            runs.append(
                bench.run(
                    setting,
                    seed,
                    nb,
                    refs,
                    truth,
                    evals=args.evals,
                    max_trials=args.max_trials,
                    duplicates=args.duplicates,
                )
            )
        c95 = [reach(r["ratio"]["headline"], 0.95) for r in runs]
        c99 = [reach(r["ratio"]["headline"], 0.99) for r in runs]
        print(
            f"{args.device} {setting:50s} 95%: {statistics.median(c95):6.0f} "
            f"99%: {statistics.median(c99):6.0f} "
            f"final {statistics.median(r['ratio']['headline'][-1] for r in runs):.3f} "
            f"asks/distinct {statistics.median(r['trials'] / r['distinct'] for r in runs):.2f} "
            f"cpu {statistics.median(r['cpu_seconds'] for r in runs):.1f}s "
            f"[{' '.join('inf' if math.isinf(x) else str(int(x)) for x in c95)}]",
            flush=True,
        )


if __name__ == "__main__":
    main()
