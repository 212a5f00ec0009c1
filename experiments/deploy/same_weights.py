"""Whether two training runs ended with exactly the same weights (``torch.equal``, every tensor).

python experiments/deploy/same_weights.py RUN_DIR_A RUN_DIR_B
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def main(a: str, b: str) -> int:
    wa = torch.load(Path(a) / "weights.pt", weights_only=True)
    wb = torch.load(Path(b) / "weights.pt", weights_only=True)
    differ = sorted(
        k
        for k in wa.keys() | wb.keys()
        if k not in wa or k not in wb or not torch.equal(wa[k], wb[k])
    )
    print(
        f"{len(wa)} tensors; identical: {not differ}"
        + (f"; differ: {differ[:5]}" if differ else "")
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
