"""The deterministic figures of nas, to compare two versions: run it at each, diff the files.

Latency varies from run to run, so it is left out, and so is everything it decides (Pareto
membership, early stopping); what remains is fixed for a seed on CPU with one thread:
sampled genotypes, network identities, params, MACs, proxy accuracies and curves, architecture
records, the trials table's columns, pareto.json's keys, and compound scaling's step 1 and
family (its winner is chosen by accuracy).

    python experiments/test_strength/deterministic_figures.py after.json
"""

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch

torch.set_num_threads(1)
torch.manual_seed(0)
import nas  # noqa: E402
from nas import compose, run_scaling, run_search  # noqa: E402
from nas.space import make_space  # noqa: E402
from nas.zoo import efficientnet, googlenet  # noqa: E402

out = {}
#: conf/conf/tiny.yaml with two choices per searched option and no early stopping.
TINY = [
    "conf=tiny",
    "space.kernel=[3,5]",
    "space.se=[0.0,0.25]",
    "search.early_stop.enabled=false",
]


def trials_of(res):
    rows = []
    for t in res.study.get_trials():
        a = t.user_attrs
        rows.append(
            {
                k: a.get(k)
                for k in (
                    "genotype",
                    "genotype_key",
                    "arch",
                    "resolution",
                    "params",
                    "macs",
                    "conv_linear_macs",
                    "accuracy",
                    "curve",
                    "duplicate_of",
                    "evaluator",
                )
            }
            | {"state": t.state.name, "number": t.number, "params_optuna": t.params}
        )
    return rows


for sampler in ("random", "grid"):
    d = tempfile.mkdtemp()
    cfg = compose(
        [
            *TINY,
            f"sampler={sampler}",
            "search.n_trials=5",
            *(["space.kernel=[3]", "space.se=[0.0]"] if sampler == "grid" else []),
        ]
    )
    res = run_search(cfg, run_dir=d)
    out[f"search_{sampler}"] = trials_of(res)
    csv = Path(d, "trials.csv").read_text().splitlines()
    out[f"csv_header_{sampler}"] = csv[0]
    doc = json.loads(Path(d, "pareto.json").read_text())
    out[f"pareto_keys_{sampler}"] = sorted(doc)
    out[f"front_keys_{sampler}"] = sorted(doc["front"][0]) if doc["front"] else []
    t0 = res.study.get_trials()[0]
    space = make_space(
        "mbconv", **{k: v for k, v in dict(res.study.user_attrs["space_options"]).items()}
    )
    out[f"arch_{sampler}"] = space.arch(t0.user_attrs["genotype"], num_classes=4).to_dict()
# compound step 1
d = tempfile.mkdtemp()
cfg = compose(
    [
        "conf=effnet_grid",
        "data=synthetic",
        "space.alpha=[1.1,1.2]",
        "space.beta=[1.1,1.2]",
        "space.gamma=[1.1,1.2]",
        "space.step=0.1",
        "scaling.max_phi=2",
        "scaling.accuracy=true",
        "scaling.accuracy_max_phi=1",
        "evaluator.max_steps=2",
        "evaluator.batch_size=16",
        "latency.max_seconds=0.05",
        "latency.min_rounds=2",
        "latency.warmup=1",
        "search.progress=false",
        "search.n_workers=1",
    ]
)
o = run_scaling(cfg, run_dir=d)
out["scaling_step1"] = trials_of(o.step1)
out["scaling_family"] = [
    {
        k: v
        for k, v in m.__dict__.items()
        if k not in ("latency", "latency_ms", "latency_relative", "train_seconds", "arch_file")
    }
    for m in o.members
]
out["family_files"] = {p.name: p.read_text() for p in sorted(Path(d, "family").iterdir())}
# zoo + profile
out["params"] = {v: sum(p.numel() for p in efficientnet(v).parameters()) for v in ("b0", "b3")} | {
    "googlenet": sum(p.numel() for p in googlenet().parameters())
}
out["b0_profile"] = nas.profile(efficientnet("b0"), resolution=224).__dict__
Path(sys.argv[1]).write_text(json.dumps(out, indent=1, sort_keys=True, default=str))
print("ok")
