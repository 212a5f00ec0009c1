"""ResNet / ResNeXt space: per stage the block (basic or bottleneck), depth, width, cardinality.

Every stage ``i`` (1-based) has the choices ``s{i}.block`` (``basic`` or ``bottleneck``),
``s{i}.depth`` (blocks), ``s{i}.width`` (torchvision's ``planes``: a basic block outputs
``width`` channels, a bottleneck ``4 * width``) and ``s{i}.cardinality``: ``"CxDd"``, that is
torchvision's ``groups x width_per_group``, so the bottleneck's grouped 3x3 has
``int(width * D / 64) * C`` channels (``1x64d``: ResNet; ``32x4d``: ResNeXt-50 32x4d;
``1x128d``: Wide ResNet-50-2). Basic blocks ignore the cardinality (the identity does too).
The first stage keeps the stem's resolution, every later one halves it; the stem is
torchvision's (7x7 stride 2 and a max pool) or, with ``stem="cifar"``, a 3x3 stride-1 conv.

The torchvision networks are points (``RESNETS``) and are in the zoo by name
(``nas.zoo.create("resnet50")``), with torchvision's parameter counts and ``state_dict`` keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from nas.layers import input_sizes, make_divisible, n_params
from nas.space import Choice, Primitive, SearchSpace, register_space, stage_lists
from nas.zoo import register_model

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar")
_CARDINALITY = re.compile(r"^(\d+)x(\d+)d$")


def parse_cardinality(value: str) -> tuple[int, int]:
    """``"32x4d"`` -> ``(32, 4)``: groups and torchvision's width per group.

    Example:
        >>> parse_cardinality("32x4d")
        (32, 4)
    """
    match = _CARDINALITY.match(str(value))
    if match is None or min(int(match[1]), int(match[2])) < 1:
        raise ValueError(
            f"cardinality must look like '32x4d' (groups x width per group), got {value!r}"
        )
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class ResNetStage:
    """One stage: ``depth`` blocks of one kind, the first with ``stride`` (torchvision's layer)."""

    block: str
    depth: int
    width: int
    stride: int
    groups: int = 1
    width_per_group: int = 64

    @property
    def out_channels(self) -> int:
        return self.width * (4 if self.block == "bottleneck" else 1)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut (projected when the shape changes), as torchvision's."""

    def __init__(self, in_channels: int, width: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(in_channels, width, stride)
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """1x1, grouped 3x3 (the stride is here: ResNet v1.5), 1x1 to ``4 * width``, shortcut."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        *,
        stride: int = 1,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        inner = max(1, int(width * width_per_group / 64)) * groups
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, 4 * width, stride)
        self.out_channels = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


class ResNet(nn.Module):
    """Stem, stages ``layer1..layerN`` of basic or bottleneck blocks, average pool, ``fc``.

    Module names follow torchvision's, so a torchvision ``state_dict`` loads into the
    canonical networks.
    """

    layer_table_title = "ResNet stages"

    def __init__(
        self,
        stages: Sequence[ResNetStage],
        *,
        num_classes: int,
        stem: str = "imagenet",
        stem_channels: int = 64,
    ) -> None:
        super().__init__()
        self.stages = tuple(stages)
        big = stem == "imagenet"
        self.conv1 = nn.Conv2d(
            3,
            stem_channels,
            7 if big else 3,
            stride=2 if big else 1,
            padding=3 if big else 1,
            bias=False,
        )
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if big else nn.Identity()
        cin = stem_channels
        for i, s in enumerate(self.stages, start=1):
            blocks: list[nn.Module] = []
            for j in range(s.depth):
                blocks.append(_block(cin, s, stride=s.stride if j == 0 else 1))
                cin = s.out_channels
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        self.total_stride = (4 if big else 1) * 2 ** sum(s.stride == 2 for s in self.stages)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def layers(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i}") for i in range(1, len(self.stages) + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in self.layers():
            x = layer(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def latency_units(self) -> list[nn.Module]:
        """Stem, every block, head: their sequential composition is the network."""
        stem = nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool)
        blocks = [block for layer in self.layers() for block in layer]
        return [stem, *blocks, nn.Sequential(self.avgpool, nn.Flatten(1), self.fc)]

    def zero_init_residual(self) -> None:
        """Zero every block's last BatchNorm: each block starts as its shortcut (torchvision's)."""
        for layer in self.layers():
            for block in layer:
                nn.init.zeros_(block.last_bn().weight)

    def layer_table(self, resolution: int) -> list[dict[str, Any]]:
        """One row for the stem, one per stage (block, depth, widths, stride), one for the head."""
        named = {"stem": self.conv1, **{f"s{i}": m for i, m in enumerate(self.layers(), 1)}}
        sizes = input_sizes(self, {**named, "head": self.avgpool}, resolution)
        k, stride = self.conv1.kernel_size[0], self.conv1.stride[0]
        pool = " & MaxPool" if isinstance(self.maxpool, nn.MaxPool2d) else ""
        stem = n_params(self.conv1) + n_params(self.bn1)
        width = self.conv1.out_channels
        rows = [("stem", f"Conv{k}x{k}{pool}", sizes["stem"], None, stride, width, 1, stem)]
        for i, (s, layer) in enumerate(zip(self.stages, self.layers(), strict=True), start=1):
            card = f"{s.groups}x{s.width_per_group}d" if s.block == "bottleneck" else None
            row = (
                s.block,
                sizes[f"s{i}"],
                card,
                s.stride,
                s.out_channels,
                s.depth,
                n_params(layer),
            )
            rows.append((f"s{i}", *row))
        head = ("head", "Pooling & FC", sizes["head"], None, 1, self.fc.out_features, 1)
        rows.append((*head, n_params(self.fc)))
        return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]


_COLUMNS = ("stage", "operator", "input", "cardinality", "stride", "out", "layers", "params")


def _block(cin: int, stage: ResNetStage, *, stride: int) -> nn.Module:
    if stage.block == "basic":
        return BasicBlock(cin, stage.width, stride=stride)
    return Bottleneck(
        cin, stage.width, stride=stride, groups=stage.groups, width_per_group=stage.width_per_group
    )


@register_space
class ResNetSpace(SearchSpace):
    """ResNet and ResNeXt networks searched per stage.

    Args:
        resolution: input resolution.
        blocks: block choices for every stage (``basic``, ``bottleneck``).
        depths: one list of depth choices per stage (its length is the number of stages).
        widths: one list of width (``planes``) choices per stage, before ``width_mult``.
        cardinality: ``"CxDd"`` choices for every stage (bottlenecks only).
        width_mult: multiplies every width and the stem (rounded to 8 when not 1).
        stem: ``imagenet`` (7x7 stride 2 and max pool) or ``cifar`` (3x3 stride 1).
        stem_channels: stem width before ``width_mult``.

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("resnet", resolution=32, width_mult=0.25, stem="cifar")
        >>> space.describe(RESNETS["resnet50"])
        '3xbottleneck-16(1x64d) 4xbottleneck-32(1x64d) 6xbottleneck-64(1x64d) 3xbottleneck-128(1x64d)'
    """

    def __init__(
        self,
        *,
        resolution: int = 224,
        blocks: Sequence[str] = BLOCKS,
        depths: Sequence[Sequence[int]] = ((2, 3), (2, 4), (2, 6, 23), (2, 3)),
        widths: Sequence[Sequence[int]] = ((32, 64), (64, 128), (128, 256), (256, 512)),
        cardinality: Sequence[str] = ("1x64d", "32x4d"),
        width_mult: float = 1.0,
        stem: str = "imagenet",
        stem_channels: int = 64,
    ) -> None:
        super().__init__(resolution=resolution)
        if not blocks or any(b not in BLOCKS for b in blocks):
            raise ValueError(
                f"blocks must be a non-empty subset of {list(BLOCKS)}, got {list(blocks)}"
            )
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {list(STEMS)}, got {stem!r}")
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        for c in cardinality:
            parse_cardinality(c)
        depth_rows = stage_lists(depths, key="depths", length=len(depths)) or []
        width_rows = stage_lists(widths, key="widths", length=len(depth_rows))
        if not depth_rows or width_rows is None:
            raise ValueError("depths must hold one list of depth choices per stage")
        for key, rows in (("depths", depth_rows), ("widths", width_rows)):
            if any(int(v) < 1 for row in rows for v in row):
                raise ValueError(f"{key} must be integers >= 1")
        self.width_mult = float(width_mult)
        self.stem = stem
        self.stem_channels = self._scale(stem_channels)
        for i in range(1, len(depth_rows) + 1):
            self.declare(
                Choice(f"s{i}.block", tuple(blocks)),
                Choice(f"s{i}.depth", tuple(int(v) for v in depth_rows[i - 1])),
                Choice(f"s{i}.width", tuple(int(v) for v in width_rows[i - 1])),
                Choice(f"s{i}.cardinality", tuple(str(c) for c in cardinality)),
            )
        self.n_stages = len(depth_rows)

    def _scale(self, channels: int) -> int:
        if self.width_mult == 1.0:
            return int(channels)
        return make_divisible(channels * self.width_mult, 8)

    def stage_configs(self, genotype: Mapping[str, Primitive]) -> list[ResNetStage]:
        """The genotype's stages (basic blocks drop the cardinality)."""
        rows = []
        for i in range(1, self.n_stages + 1):
            block = str(genotype[f"s{i}.block"])
            groups, per_group = parse_cardinality(str(genotype[f"s{i}.cardinality"]))
            if block == "basic":
                groups, per_group = 1, 64
            depth, width = int(genotype[f"s{i}.depth"]), self._scale(int(genotype[f"s{i}.width"]))
            rows.append(ResNetStage(block, depth, width, 1 if i == 1 else 2, groups, per_group))
        return rows

    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        genotype = self.validate(genotype)
        return ResNet(
            self.stage_configs(genotype),
            num_classes=num_classes,
            stem=self.stem,
            stem_channels=self.stem_channels,
        )

    def identity(self, genotype: Mapping[str, Primitive]) -> str:
        """The built network: stages (cardinality only for bottlenecks), stem, resolution."""
        stages = [asdict(s) for s in self.stage_configs(genotype)]
        stem = [self.stem, self.stem_channels]
        return json.dumps({"stages": stages, "stem": stem, "res": self.resolution}, sort_keys=True)

    def describe(self, genotype: Mapping[str, Primitive]) -> str:
        parts = []
        for s in self.stage_configs(genotype):
            card = f"({s.groups}x{s.width_per_group}d)" if s.block == "bottleneck" else ""
            parts.append(f"{s.depth}x{s.block}-{s.width}{card}")
        return " ".join(parts)


def _genotype(block: str, depths: Sequence[int], cardinality: str) -> dict[str, Primitive]:
    genotype: dict[str, Primitive] = {}
    for i, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512), strict=True), start=1):
        row = {"block": block, "depth": depth, "width": width, "cardinality": cardinality}
        genotype.update({f"s{i}.{key}": value for key, value in row.items()})
    return genotype


#: torchvision's ResNets as genotypes; the first five are points of the default space.
RESNETS: dict[str, dict[str, Primitive]] = {
    "resnet18": _genotype("basic", (2, 2, 2, 2), "1x64d"),
    "resnet34": _genotype("basic", (3, 4, 6, 3), "1x64d"),
    "resnet50": _genotype("bottleneck", (3, 4, 6, 3), "1x64d"),
    "resnet101": _genotype("bottleneck", (3, 4, 23, 3), "1x64d"),
    "resnext50_32x4d": _genotype("bottleneck", (3, 4, 6, 3), "32x4d"),
    "resnet152": _genotype("bottleneck", (3, 8, 36, 3), "1x64d"),
    "resnext101_32x8d": _genotype("bottleneck", (3, 4, 23, 3), "32x8d"),
    "resnext101_64x4d": _genotype("bottleneck", (3, 4, 23, 3), "64x4d"),
    "wide_resnet50_2": _genotype("bottleneck", (3, 4, 6, 3), "1x128d"),
    "wide_resnet101_2": _genotype("bottleneck", (3, 4, 23, 3), "1x128d"),
}


def point_space(genotype: Mapping[str, Primitive], **options: Any) -> ResNetSpace:
    """The smallest space holding ``genotype``: one value per choice."""
    n = len(genotype) // 4
    column = [[genotype[f"s{i}.{key}"]] for i in range(1, n + 1) for key in ("depth", "width")]
    return ResNetSpace(
        blocks=sorted({str(genotype[f"s{i}.block"]) for i in range(1, n + 1)}),
        depths=column[0::2],
        widths=column[1::2],
        cardinality=sorted({str(genotype[f"s{i}.cardinality"]) for i in range(1, n + 1)}),
        **options,
    )


def resnet(name: str, *, num_classes: int = 1000) -> ResNet:
    """A torchvision ResNet / ResNeXt / Wide ResNet by name, built as a point of the space.

    Example:
        >>> sum(p.numel() for p in resnet("resnet18").parameters())
        11689512
    """
    if name not in RESNETS:
        raise ValueError(f"name must be one of {sorted(RESNETS)}, got {name!r}")
    return point_space(RESNETS[name]).build(RESNETS[name], num_classes=num_classes)


def _factory(name: str) -> Any:
    def factory(*, num_classes: int = 1000) -> nn.Module:
        return resnet(name, num_classes=num_classes)

    factory.__doc__ = f"torchvision's {name} (search_spaces/resnet.py)."
    return factory


for _name in RESNETS:
    register_model(_name, _factory(_name))
