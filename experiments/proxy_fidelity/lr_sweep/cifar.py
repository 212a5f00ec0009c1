"""The proxy's budget on the CIFAR-10 subset (width 0.25, 32 px, 2,000 training images, 93 steps)
for a few learning rates, with the network's own classifier initialisation and with it zeroed.

    python experiments/proxy_fidelity/lr_sweep/cifar.py > experiments/proxy_fidelity/lr_sweep/cifar.log
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import nas
from nas import load_data
from nas.measure import make_evaluator

ROOT = Path(__file__).resolve().parents[3]
torch.set_num_threads(1)
data = load_data(
    name="npz",
    path=str(ROOT.parent / "shared" / "data" / "cifar10_subset.npz"),
    resolution=32,
    split="test",
    val_size=2000,
)
space = nas.space.make_space("mbconv", resolution=32, width_mult=0.25)
g = space.random_genotype(1)
runs = [
    ({"lr": 0.02}, False),
    ({"lr": 0.05}, False),
    ({"lr": 0.1}, False),
    ({"lr": 0.05, "batch_size": 32}, False),
    ({"lr": 0.02}, True),
    ({"lr": 0.05}, True),
]
for cfg, zero in runs:
    torch.manual_seed(1000)
    model = space.build(g, num_classes=10)
    if zero:
        nn.init.zeros_(model.classifier[1].weight)
    r = make_evaluator(name="proxy", train_size=2000, threads=1, **cfg)(model, data)
    print(
        cfg,
        "zero-fc" if zero else "",
        r.curve,
        [round(c, 2) for c in r.losses],
        f"{r.seconds:.0f}s",
        flush=True,
    )
