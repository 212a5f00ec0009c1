"""How the default lr was chosen: the proxy on digits (32 px, width 0.5), 3 archs, 1 thread.

python experiments/proxy_fidelity/lr_sweep/digits.py > experiments/proxy_fidelity/lr_sweep/digits.log
"""

from __future__ import annotations

import torch

import nas
from nas import load_data
from nas.measure import make_evaluator

torch.set_num_threads(1)
data = load_data(name="digits", resolution=32)
space = nas.space.make_space("mbconv", resolution=32, width_mult=0.5)
configs = [
    {"lr": 0.1},
    {"lr": 0.05},
    {"lr": 0.02},
    {"optimizer": "adamw", "lr": 2e-3},
    {"lr": 0.01},
    {"lr": 0.005},
]
for s in range(3):
    for cfg in configs:
        torch.manual_seed(s)
        model = space.build(space.random_genotype(s), num_classes=10)
        r = make_evaluator(name="proxy", **cfg)(model, data)
        print(
            s,
            cfg,
            [round(c, 3) for c in r.curve],
            [round(c, 2) for c in r.losses],
            f"{r.seconds:.1f}s",
            flush=True,
        )
