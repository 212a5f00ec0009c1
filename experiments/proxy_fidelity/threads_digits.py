"""Default proxy on digits (32 px, width-0.5 MBConv): 1 thread against torch's default, back to back.

python experiments/proxy_fidelity/threads_digits.py | tee experiments/proxy_fidelity/threads_digits.log
"""

from __future__ import annotations

import os
import statistics

import torch

import nas
from nas import load_data
from nas.measure import make_evaluator

data = load_data(name="digits", resolution=32)
space = nas.space.make_space("mbconv", resolution=32, width_mult=0.5)
seconds: dict[int | None, list[float]] = {1: [], None: []}
print("arch threads accuracy seconds loadavg")
for s in range(4):
    for threads in (1, None):
        torch.manual_seed(s)
        model = space.build(space.random_genotype(s), num_classes=10)
        r = make_evaluator(name="proxy", threads=threads)(model, data)
        seconds[threads].append(r.seconds)
        print(s, threads, round(r.accuracy, 3), round(r.seconds, 1), round(os.getloadavg()[0], 1))
print({k: round(statistics.median(v), 1) for k, v in seconds.items()})
