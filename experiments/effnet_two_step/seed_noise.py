"""How much of a step-1 ranking is the proxy's noise? Retrain networks with other seeds.

Reads a finished compound-scaling run (its ``.hydra/config.yaml`` and ``trials.csv``), takes the
``--top`` distinct networks by step-1 accuracy (or the ``--points`` given), and proxy-trains each
again with ``--seeds`` seeds (weight initialisation, data order and training subset all follow
the seed), with the run's own evaluator and data settings unless ``--set`` changes them (for
example a larger budget). Prints, and writes ``seed_noise[-TAG].json`` into the run directory:
the step-1 accuracy beside the mean, standard deviation and values over the seeds.

    python experiments/effnet_two_step/seed_noise.py RUN_DIR --top 5 --seeds 3
    python experiments/effnet_two_step/seed_noise.py RUN_DIR --seeds 3 --tag long \
        --points a1_b1.2_g1.2,a1.2_b1.1_g1.15 --set evaluator.epochs=4 data.train_size=2048
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from nas import load_data
from nas.measure import make_evaluator
from nas.space import make_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--top", type=int, default=5, help="best distinct networks of step 1")
    parser.add_argument("--points", default=None, help="comma-separated point keys instead")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, key=value")
    parser.add_argument("--tag", default="", help="suffix of the output file")
    args = parser.parse_args()
    cfg = OmegaConf.load(args.run_dir / ".hydra" / "config.yaml")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(args.set)))
    threads = cfg.search.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    space = make_space(**OmegaConf.to_container(cfg.space, resolve=True))
    with (args.run_dir / "trials.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["state"] == "COMPLETE" and r["accuracy"]]
    step1 = {json.loads(r["genotype"])["point"]: float(r["accuracy"]) for r in rows}
    if args.points:
        points = args.points.split(",")
    else:
        distinct = sorted(
            (r for r in rows if not r["duplicate_of"]), key=lambda r: -float(r["accuracy"])
        )
        points = [json.loads(r["genotype"])["point"] for r in distinct[: args.top]]
    data_options = OmegaConf.to_container(cfg.data, resolve=True)
    results = []
    for point in points:
        genotype = space.validate({"point": point})
        resolution = space.resolution_of(genotype)
        data = load_data(**data_options, resolution=resolution)
        accs = []
        start = time.perf_counter()
        for seed in range(1, args.seeds + 1):
            options = {**OmegaConf.to_container(cfg.evaluator, resolve=True), "seed": seed}
            evaluator = make_evaluator(**options)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = space.build(genotype, num_classes=data.num_classes)
            accs.append(evaluator(model, data, device=cfg.search.device).accuracy)
        record = {
            "point": point,
            "resolution": resolution,
            "step1_accuracy": step1.get(point),
            "seed_accuracies": accs,
            "mean": statistics.mean(accs),
            "stdev": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "seconds": time.perf_counter() - start,
            "overrides": list(args.set),
        }
        results.append(record)
        first = (
            "-" if record["step1_accuracy"] is None else f"{100 * record['step1_accuracy']:.1f}%"
        )
        print(
            f"{point:<18} {resolution:>3} px  step 1 {first:>6}  seeds "
            f"{', '.join(f'{100 * a:.1f}' for a in accs)}  mean {100 * record['mean']:.1f} "
            f"± {100 * record['stdev']:.1f}  ({record['seconds']:.0f} s)",
            flush=True,
        )
    name = f"seed_noise{'-' + args.tag if args.tag else ''}.json"
    (args.run_dir / name).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
