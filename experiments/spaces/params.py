"""The canonical networks of the new spaces against their references: parameters and MACs.

References (numbers we did not make): torchvision's ``num_params`` and ``_ops`` (GMACs at
224 px) from its weights' metadata; for MobileNetV1, Keras' ``MobileNet(alpha=1.0)`` summary
(4,253,864 total, 4,231,976 trainable) and the paper's Table 6 (Mult-Adds). Each network is
built by name through ``nas.zoo.create`` on the meta device (shapes only, no memory).

    python experiments/spaces/params.py      # prints the README's table (a few seconds)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import nas

#: name -> (space, reference parameters, reference GMACs at 224 px).
REFERENCES: dict[str, tuple[str, int | None, float]] = {
    "resnet18": ("resnet", 11_689_512, 1.814),
    "resnet34": ("resnet", 21_797_672, 3.664),
    "resnet50": ("resnet", 25_557_032, 4.089),
    "resnet101": ("resnet", 44_549_160, 7.801),
    "resnet152": ("resnet", 60_192_808, 11.514),
    "resnext50_32x4d": ("resnet", 25_028_904, 4.23),
    "resnext101_32x8d": ("resnet", 88_791_336, 16.414),
    "resnext101_64x4d": ("resnet", 83_455_272, 15.46),
    "wide_resnet50_2": ("resnet", 68_883_240, 11.398),
    "wide_resnet101_2": ("resnet", 126_886_696, 22.753),
    "shufflenet_v2_x0_5": ("shufflenet_v2", 1_366_792, 0.04),
    "shufflenet_v2_x1_0": ("shufflenet_v2", 2_278_604, 0.145),
    "shufflenet_v2_x1_5": ("shufflenet_v2", 3_503_624, 0.296),
    "shufflenet_v2_x2_0": ("shufflenet_v2", 7_393_996, 0.583),
    "mobilenet_v1": ("mobilenet_v1", 4_231_976, 0.569),
    "mobilenet_v1_x0_75": ("mobilenet_v1", None, 0.325),
    "mobilenet_v1_x0_5": ("mobilenet_v1", None, 0.149),
    "mobilenet_v1_x0_25": ("mobilenet_v1", None, 0.041),
}


def measure(name: str) -> tuple[int, int, float]:
    """Parameters, BatchNorm running statistics and GMACs (conv + linear) at 224 px."""
    with torch.device("meta"):
        model = nas.zoo.create(name).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, 224, 224))
    params = sum(p.numel() for p in model.parameters())
    stats = sum(2 * m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    return params, stats, counter.get_total_flops() / 2e9


def main() -> None:
    print(
        "| network | space | params (ours) | params (reference) | match | GMACs (ours) | GMACs (reference) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (space, ref_params, ref_gmacs) in REFERENCES.items():
        params, stats, gmacs = measure(name)
        match = "-" if ref_params is None else ("yes" if params == ref_params else "**NO**")
        ref = "-" if ref_params is None else f"{ref_params:,}"
        print(f"| `{name}` | {space} | {params:,} | {ref} | {match} | {gmacs:.3f} | {ref_gmacs} |")
        if name == "mobilenet_v1":
            print(
                f"| `{name}` + BN statistics | | {params + stats:,} | 4,253,864 (Keras total) "
                f"| {'yes' if params + stats == 4_253_864 else '**NO**'} | | |"
            )


if __name__ == "__main__":
    main()
