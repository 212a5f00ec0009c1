"""MBConv networks: the EfficientNet backbone from its stage table, width/depth scaling, B0..B7."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from nas._models.blocks import ConvBNAct, MBConv, make_divisible
from nas._models.network import input_sizes, n_params


@dataclass(frozen=True)
class StageConfig:
    """One row of an EfficientNet-style stage table (the paper's Table 1, plus SE ratio).

    ``rep``: the stage's depthwise convs are reparameterisable (:class:`~nas.layers.RepConvBNAct`).
    """

    expand_ratio: float
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    layers: int
    se_ratio: float = 0.25
    rep: bool = False

    @classmethod
    def from_row(cls, row: Sequence[float], *, se_ratio: float = 0.25) -> StageConfig:
        """Build from a ``(expand, kernel, stride, in, out, layers)`` row."""
        if len(row) != 6:
            raise ValueError(
                f"a stage row must be (expand, kernel, stride, in, out, layers), got {list(row)}"
            )
        e, k, s, cin, cout, n = row
        return cls(float(e), int(k), int(s), int(cin), int(cout), int(n), se_ratio)


#: EfficientNet-B0 stages: (expand, kernel, stride, in, out, layers).
B0_STAGES: tuple[tuple[int, ...], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)

#: Published EfficientNet variants: (width, depth, resolution, dropout).
EFFICIENTNET_TABLE: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}


def round_channels(channels: float, width_mult: float) -> int:
    """Scale ``channels`` by ``width_mult``, rounded to a multiple of 8 (>= 90% of exact)."""
    return make_divisible(channels * width_mult, 8)


def round_layers(layers: int, depth_mult: float) -> int:
    """Scale a stage's layer count by ``depth_mult``, rounding up as EfficientNet does."""
    return math.ceil(layers * depth_mult)


def scale_stages(
    stages: Sequence[StageConfig], *, width_mult: float = 1.0, depth_mult: float = 1.0
) -> list[StageConfig]:
    """Return new stage configs scaled in width and depth (the inputs are not changed)."""
    return [
        replace(
            s,
            in_channels=round_channels(s.in_channels, width_mult),
            out_channels=round_channels(s.out_channels, width_mult),
            layers=round_layers(s.layers, depth_mult),
        )
        for s in stages
    ]


class MBConvNet(nn.Module):
    """Stem, stages of MBConv blocks, 1x1 head, average pool, dropout, linear.

    Args:
        stages: stage configs, already scaled; each stage's input width is taken from the
            previous stage's output (the first from the stem).
        num_classes: classifier outputs.
        stem_channels: output width of the 3x3 stride-2 stem.
        head_channels: output width of the final 1x1 conv.
        activation: ``silu``, ``relu`` or ``relu6``.
        dropout: dropout before the classifier.
        stochastic_depth: final block's drop probability; it grows linearly from 0 with the
            block index, as in EfficientNet.
        in_channels: image channels.

    Example:
        >>> net = MBConvNet([StageConfig(1, 3, 1, 32, 16, 1)], num_classes=10,
        ...                 stem_channels=32, head_channels=64)
        >>> net(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """

    def __init__(
        self,
        stages: Sequence[StageConfig],
        *,
        num_classes: int = 1000,
        stem_channels: int = 32,
        head_channels: int = 1280,
        activation: str = "silu",
        dropout: float = 0.2,
        stochastic_depth: float = 0.2,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("stages must not be empty")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.stage_configs = tuple(stages)
        layers: list[nn.Module] = [
            ConvBNAct(in_channels, stem_channels, kernel_size=3, stride=2, activation=activation)
        ]
        total_blocks = sum(s.layers for s in stages)
        block_id = 0
        cin = stem_channels
        for stage in stages:
            blocks: list[nn.Module] = []
            for i in range(stage.layers):
                blocks.append(
                    MBConv(
                        cin,
                        stage.out_channels,
                        kernel_size=stage.kernel,
                        stride=stage.stride if i == 0 else 1,
                        expand_ratio=stage.expand_ratio,
                        se_ratio=stage.se_ratio,
                        activation=activation,
                        stochastic_depth=stochastic_depth * block_id / total_blocks,
                        rep=stage.rep,
                    )
                )
                cin = stage.out_channels
                block_id += 1
            layers.append(nn.Sequential(*blocks))
        layers.append(ConvBNAct(cin, head_channels, kernel_size=1, activation=activation))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True), nn.Linear(head_channels, num_classes)
        )
        self.total_stride = 2 ** (1 + sum(1 for s in stages if s.stride == 2))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))

    def latency_units(self) -> list[nn.Module]:
        """Modules whose sequential composition is this network (for latency lookup tables)."""
        units: list[nn.Module] = [self.features[0]]
        for stage in self.features[1:-1]:
            units.extend(stage)
        units.append(self.features[-1])
        units.append(nn.Sequential(self.avgpool, nn.Flatten(1), self.classifier))
        return units

    def zero_init_residual(self) -> None:
        """Zero the last BatchNorm of every residual block: each starts as the identity."""
        for block in self.modules():
            if isinstance(block, MBConv) and block.use_residual:
                nn.init.zeros_(block.block[-1][1].weight)

    layer_table_title = "MBConv stages"

    def layer_table(self, resolution: int) -> list[dict[str, Any]]:
        """The stage table, laid out as Table 1 of the EfficientNet paper.

        One row for the stem, one per MBConv stage (expansion, kernel, stride of its first
        block, output channels, layers, SE ratio) and one for the head; ``input`` is the
        stage's input size at ``resolution``.
        """
        stem, *stages, head = self.features
        named = {"stem": stem, **{f"s{i}": s for i, s in enumerate(stages, start=1)}, "head": head}
        sizes = input_sizes(self, named, resolution)
        conv = stem[0]
        rows: list[dict[str, Any]] = [
            {
                "stage": "stem",
                "operator": f"Conv{conv.kernel_size[0]}x{conv.kernel_size[1]}",
                "input": sizes["stem"],
                "expand": None,
                "kernel": conv.kernel_size[0],
                "stride": conv.stride[0],
                "out": conv.out_channels,
                "layers": 1,
                "SE": None,
                "params": n_params(stem),
            }
        ]
        for i, (cfg, stage) in enumerate(zip(self.stage_configs, stages, strict=True), start=1):
            expand = f"{cfg.expand_ratio:g}"
            rep = "Rep" if cfg.rep else ""
            rows.append(
                {
                    "stage": f"s{i}",
                    "operator": f"{rep}MBConv{expand}, k{cfg.kernel}x{cfg.kernel}",
                    "input": sizes.get(f"s{i}"),
                    "expand": expand,
                    "kernel": cfg.kernel,
                    "stride": cfg.stride,
                    "out": cfg.out_channels,
                    "layers": cfg.layers,
                    "SE": f"{cfg.se_ratio:g}" if cfg.se_ratio else "-",
                    "params": n_params(stage),
                }
            )
        rows.append(
            {
                "stage": "head",
                "operator": "Conv1x1 & Pooling & FC",
                "input": sizes["head"],
                "expand": None,
                "kernel": 1,
                "stride": 1,
                "out": head.out_channels,
                "layers": 1,
                "SE": None,
                "params": n_params(head) + n_params(self.classifier),
            }
        )
        return rows


def _init_weights(model: nn.Module) -> None:
    """EfficientNet's initialisation (as in torchvision)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init_range = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -init_range, init_range)
            nn.init.zeros_(m.bias)


def efficientnet(variant: str = "b0", *, num_classes: int = 1000) -> MBConvNet:
    """Build a published EfficientNet (B0..B7) with the reference widths, depths and dropout.

    The input resolution of each variant is ``EFFICIENTNET_TABLE[variant][2]``.

    Example:
        >>> import nas
        >>> sum(p.numel() for p in nas.zoo.efficientnet("b0").parameters())
        5288548
    """
    key = variant.lower()
    if key not in EFFICIENTNET_TABLE:
        raise ValueError(f"variant must be one of {sorted(EFFICIENTNET_TABLE)}, got {variant!r}")
    width, depth, _, dropout = EFFICIENTNET_TABLE[key]
    stages = scale_stages(
        [StageConfig.from_row(r) for r in B0_STAGES], width_mult=width, depth_mult=depth
    )
    return MBConvNet(
        stages,
        num_classes=num_classes,
        stem_channels=round_channels(32, width),
        head_channels=round_channels(1280, width),
        dropout=dropout,
    )
