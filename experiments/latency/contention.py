"""What a same-round reference cannot cancel: memory-bandwidth contention from the other core.

Eight MBConv architectures (160 px) and the reference are measured in the same rounds three
times: quiet, while a second process streams a 64 MB array copy on the other core (as a
training job's data and activations do), and quiet again. Under contention each network slows
by a different factor, depending on how much of its time is spent waiting for memory, so the
ratio to any one reference moves too.

Run from the repository root:
    python experiments/latency/contention.py > experiments/latency/results/contention.log 2>&1
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

import nas
from nas import measure_latencies

ROOT = Path(__file__).resolve().parents[2]
STREAM = (
    "import numpy as np\n"
    "a = np.ones(16_000_000, np.float32); b = np.empty_like(a)\n"
    "while True: np.copyto(b, a)\n"
)


def main() -> None:
    torch.set_num_threads(1)
    cfg = yaml.safe_load((ROOT / "conf/latency/cpu.yaml").read_text())
    cfg |= {"max_seconds": 3.0, "target_rel_spread": 0.005}
    space = nas.space.make_space("mbconv", resolution=160)
    models = [space.build(space.random_genotype(s), num_classes=1000) for s in range(8)]
    phases = {}
    for phase in ("quiet", "memory stream", "quiet again"):
        proc = None
        if phase == "memory stream":
            proc = subprocess.Popen([sys.executable, "-c", STREAM])
            time.sleep(1.0)
        try:
            rs = measure_latencies(models, resolution=160, **cfg)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait()
        phases[phase] = {
            "ms": [r.median_ms for r in rs],
            "wall_ms": [r.wall_ms for r in rs],
            "relative": [r.relative for r in rs],
            "reference_ms": rs[0].reference_ms,
            "rounds": rs[0].rounds,
        }
        print(f"{phase}: rounds {rs[0].rounds}, reference {rs[0].reference_ms:.2f} ms", flush=True)
    q, s, q2 = (phases[p] for p in ("quiet", "memory stream", "quiet again"))
    slow = np.array(s["ms"]) / np.array(q["ms"])
    shift = np.array(s["relative"]) / np.array(q["relative"]) - 1
    again = np.array(q2["relative"]) / np.array(q["relative"]) - 1
    print("arch  quiet ms  stream ms  slowdown  relative shift  quiet-again shift")
    for i in range(len(models)):
        print(
            f"{i:4d} {q['ms'][i]:9.2f} {s['ms'][i]:10.2f} {slow[i]:8.2f}x "
            f"{100 * shift[i]:+13.1f}% {100 * again[i]:+17.1f}%"
        )
    summary = {
        "reference_slowdown": s["reference_ms"] / q["reference_ms"],
        "slowdown_min": float(slow.min()),
        "slowdown_max": float(slow.max()),
        "relative_shift_min": float(shift.min()),
        "relative_shift_max": float(shift.max()),
        "quiet_again_abs_shift_median": float(np.median(np.abs(again))),
        "quiet_again_abs_shift_max": float(np.abs(again).max()),
    }
    print(json.dumps(summary, indent=1))
    out = ROOT / "experiments/latency/results/contention.json"
    out.write_text(json.dumps({"summary": summary, "phases": phases}, indent=1))


if __name__ == "__main__":
    main()
