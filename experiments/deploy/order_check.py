"""Is the pruned network's small latency edge the pruning, or its place in each round?

``nas train`` times the dense and the pruned network in the same interleaved rounds, always
dense first. This times them in both orders, and the dense network against itself, in eager
PyTorch and ONNX Runtime (one thread, CPU clock, no reference network, as the pruning runs).

    python experiments/deploy/order_check.py
"""

from __future__ import annotations

from pathlib import Path

import nas

RUNS = Path(__file__).resolve().parent / "runs"
ARCH = RUNS / "nb201_search" / "archs" / "trial_5.yaml"


def main() -> None:
    dense = nas.load_model(ARCH, weights=RUNS / "nb201_small" / "weights.pt")
    pruned = nas.load_model(ARCH, weights=RUNS / "prune_unstructured_0.5" / "weights.pt")
    resolution = nas.load_arch(ARCH).resolution
    pairs = {
        "dense, pruned": (dense, pruned),
        "pruned, dense": (pruned, dense),
        "dense, dense": (dense, dense),
    }
    print("| backend | order (first, second) | first ms | second ms | second / first |")
    print("|---|---|---:|---:|---:|")
    for backend in ("torch", "onnxruntime"):
        for label, models in pairs.items():
            a, b = nas.measure_latencies(
                list(models),
                resolution=resolution,
                backend=backend,
                reference=None,
                threads=1,
                max_seconds=1.0,
            )
            print(
                f"| {backend} | {label} | {a.median_ms:.3f} | {b.median_ms:.3f} | "
                f"{b.median_ms / a.median_ms:.3f} |"
            )


if __name__ == "__main__":
    main()
