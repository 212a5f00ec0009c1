"""MobileNetV1 space: width multiplier, input resolution and the kernel of every depthwise layer.

Choices: ``width`` (the paper's α: every layer has ``int(channels * α)`` channels, as Keras
computes them), ``resolution`` (the paper's ρ, when ``resolutions`` lists several) and
``l{j}.kernel`` (3, 5 or 7) for each of the 13 depthwise-separable layers. The macro-
architecture is the paper's Table 1: a 3x3 stride-2 conv, 13 depthwise 3x3 + pointwise 1x1
layers (BN and ReLU6 after each conv), global average pool, dropout and the classifier.

MobileNetV1 1.0 at 224 is a point (``MOBILENET_V1``), in the zoo as ``mobilenet_v1`` (and
``mobilenet_v1_0.75`` ... at the other widths). Its parameter count equals the trainable count
of Keras' ``MobileNet(alpha=1.0)``, 4,231,976: Keras' head is a 1x1 conv with bias on the
pooled map, the same weights as the ``nn.Linear`` here, and Keras' other 21,888 parameters are
BatchNorm moving means and variances, which PyTorch keeps as buffers. Keras pads stride-2
convs on the bottom and right only; here padding is symmetric (same shapes, same counts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nas.layers import ConvBNAct, input_sizes, n_params
from nas.space import Choice, Primitive, SearchSpace, register_space
from nas.zoo import register_model

#: The paper's Table 1 after the stem: (pointwise output channels, stride) per layer.
LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *((512, 1),) * 5,
    (1024, 2),
    (1024, 1),
)
STEMS = ("imagenet", "cifar")
KERNELS = (3, 5, 7)


class DepthwiseSeparable(nn.Sequential):
    """Depthwise kxk conv, BN, ReLU6, then pointwise 1x1 conv, BN, ReLU6."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel: int, stride: int) -> None:
        super().__init__(
            ConvBNAct(
                in_channels,
                in_channels,
                kernel_size=kernel,
                stride=stride,
                groups=in_channels,
                activation="relu6",
            ),
            ConvBNAct(in_channels, out_channels, kernel_size=1, activation="relu6"),
        )
        self.out_channels = out_channels


class MobileNetV1(nn.Module):
    """Stem, 13 depthwise-separable layers (``features``), pool, dropout, ``classifier``."""

    layer_table_title = "MobileNetV1 layers"

    def __init__(
        self,
        kernels: Sequence[int],
        *,
        width: float = 1.0,
        num_classes: int,
        stem: str = "imagenet",
        dropout: float = 1e-3,
    ) -> None:
        super().__init__()
        if len(kernels) != len(LAYERS):
            raise ValueError(
                f"kernels must have one entry per layer ({len(LAYERS)}), got {len(kernels)}"
            )
        big = stem == "imagenet"
        cin = int(32 * width)
        layers: list[nn.Module] = [
            ConvBNAct(3, cin, kernel_size=3, stride=2 if big else 1, activation="relu6")
        ]
        for kernel, (channels, stride) in zip(kernels, LAYERS, strict=True):
            layers.append(
                DepthwiseSeparable(cin, int(channels * width), kernel=kernel, stride=stride)
            )
            cin = int(channels * width)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, num_classes)
        self.total_stride = (2 if big else 1) * 2 ** sum(s == 2 for _, s in LAYERS)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(self.dropout(x))

    def latency_units(self) -> list[nn.Module]:
        """Stem, every layer, head: their sequential composition is the network."""
        head = nn.Sequential(self.avgpool, nn.Flatten(1), self.dropout, self.classifier)
        return [*self.features, head]

    def layer_table(self, resolution: int) -> list[dict[str, Any]]:
        """The paper's Table 1: one row per layer (depthwise kernel, stride, output width)."""
        named = {f"l{j}": m for j, m in enumerate(self.features)}
        sizes = input_sizes(self, {**named, "head": self.avgpool}, resolution)
        rows = []
        for j, layer in enumerate(self.features):
            convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
            first, last = convs[0], convs[-1]
            k = first.kernel_size[0]
            name, op = ("stem", f"Conv{k}x{k}") if j == 0 else (f"l{j}", f"Conv dw{k}x{k} & 1x1")
            row = (sizes[f"l{j}"], first.stride[0], last.out_channels, n_params(layer))
            rows.append((name, op, *row))
        rows.append(
            (
                "head",
                "Pooling & FC",
                sizes["head"],
                1,
                self.classifier.out_features,
                n_params(self.classifier),
            )
        )
        columns = ("stage", "operator", "input", "stride", "out", "params")
        return [dict(zip(columns, row, strict=True)) for row in rows]


@register_space
class MobileNetV1Space(SearchSpace):
    """MobileNetV1 networks: width multiplier, resolution and per-layer depthwise kernel.

    Args:
        resolution: input resolution (one of ``resolutions`` when those are given).
        resolutions: ``None`` (fixed at ``resolution``) or the choices of a choice ``resolution``.
        widths: choices of the width multiplier α.
        kernels: depthwise kernel choices for every layer (3, 5, 7).
        stem: ``imagenet`` (stride-2 stem) or ``cifar`` (stride 1).
        dropout: classifier dropout (Keras' default 1e-3).

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("mobilenet_v1", resolution=224, resolutions=[128, 224])
        >>> space.resolution_of(MOBILENET_V1), space.describe(MOBILENET_V1)
        (224, '1.0@224 k3333333333333')
    """

    def __init__(
        self,
        *,
        resolution: int = 224,
        resolutions: Sequence[int] | None = None,
        widths: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
        kernels: Sequence[int] = KERNELS,
        stem: str = "imagenet",
        dropout: float = 1e-3,
    ) -> None:
        super().__init__(resolution=resolution)
        if resolutions is not None and resolution not in resolutions:
            raise ValueError(
                f"resolution must be one of resolutions {list(resolutions)} (or resolutions null), "
                f"got {resolution}"
            )
        if not widths or any(not 0 < w <= 4 for w in widths):
            raise ValueError(f"widths must be multipliers in (0, 4], got {list(widths)}")
        if not kernels or any(k not in KERNELS for k in kernels):
            raise ValueError(
                f"kernels must be a non-empty subset of {list(KERNELS)}, got {list(kernels)}"
            )
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {list(STEMS)}, got {stem!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.stem = stem
        self.dropout = float(dropout)
        self.declare(Choice("width", tuple(float(w) for w in widths)))
        if resolutions is not None:
            self.declare(Choice("resolution", tuple(int(r) for r in resolutions)))
        for j in range(1, len(LAYERS) + 1):
            self.declare(Choice(f"l{j}.kernel", tuple(int(k) for k in kernels)))

    def resolution_of(self, genotype: Mapping[str, Primitive]) -> int:
        return int(genotype.get("resolution", self.resolution))

    def kernels(self, genotype: Mapping[str, Primitive]) -> list[int]:
        """The stem's 3 and the 13 depthwise kernels."""
        return [3, *(int(genotype[f"l{j}.kernel"]) for j in range(1, len(LAYERS) + 1))]

    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        genotype = self.validate(genotype)
        return MobileNetV1(
            self.kernels(genotype)[1:],
            width=float(genotype["width"]),
            num_classes=num_classes,
            stem=self.stem,
            dropout=self.dropout,
        )

    def identity(self, genotype: Mapping[str, Primitive]) -> str:
        """The built network: channel counts, kernels, stem and input resolution."""
        width = float(genotype["width"])
        channels = [int(32 * width), *(int(c * width) for c, _ in LAYERS)]
        return json.dumps(
            {
                "channels": channels,
                "kernels": self.kernels(genotype),
                "stem": self.stem,
                "dropout": self.dropout,
                "res": self.resolution_of(genotype),
            }
        )

    def describe(self, genotype: Mapping[str, Primitive]) -> str:
        kernels = "".join(str(k) for k in self.kernels(genotype)[1:])
        return f"{float(genotype['width'])}@{self.resolution_of(genotype)} k{kernels}"


#: MobileNetV1 1.0 at 224 (all depthwise kernels 3x3), a point of the space in conf/space.
MOBILENET_V1: dict[str, Primitive] = {
    "width": 1.0,
    "resolution": 224,
    **{f"l{j}.kernel": 3 for j in range(1, len(LAYERS) + 1)},
}


def mobilenet_v1(
    width: float = 1.0, *, num_classes: int = 1000, dropout: float = 1e-3
) -> nn.Module:
    """MobileNetV1 at width multiplier ``width`` (3x3 depthwise kernels), a point of the space.

    Example:
        >>> sum(p.numel() for p in mobilenet_v1().parameters())
        4231976
    """
    space = MobileNetV1Space(widths=[width], kernels=[3], dropout=dropout)
    genotype = {key: value for key, value in MOBILENET_V1.items() if key != "resolution"}
    return space.build({**genotype, "width": float(width)}, num_classes=num_classes)


def _factory(width: float) -> Any:
    def factory(*, num_classes: int = 1000, dropout: float = 1e-3) -> nn.Module:
        return mobilenet_v1(width, num_classes=num_classes, dropout=dropout)

    factory.__doc__ = f"MobileNetV1 x{width} (Howard et al. 2017; search_spaces/mobilenet_v1.py)."
    return factory


#: The zoo's names of the paper's width multipliers (``mobilenet_v1`` is 1.0).
MOBILENET_V1_WIDTHS = {
    "mobilenet_v1": 1.0,
    "mobilenet_v1_x0_75": 0.75,
    "mobilenet_v1_x0_5": 0.5,
    "mobilenet_v1_x0_25": 0.25,
}
for _name, _width in MOBILENET_V1_WIDTHS.items():
    register_model(_name, _factory(_width))
