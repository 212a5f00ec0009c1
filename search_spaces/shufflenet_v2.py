"""ShuffleNetV2 space: per stage the repeats, output channels and depthwise kernel size.

Every stage ``i`` (1-based; torchvision's ``stage{i+1}``) has the choices ``s{i}.repeats``
(units), ``s{i}.out`` (output channels, even: the unit splits them in two halves) and
``s{i}.kernel`` (3, 5 or 7: both depthwise convolutions of the stage's units, as
ShuffleNet-based NAS such as Single Path One-Shot searches them); ``head`` is the width of the
final 1x1 conv. The units are the paper's: a stride-2 unit runs two branches on the whole
input, a stride-1 unit passes one half through and transforms the other; the halves are
concatenated and the channels shuffled (two groups).

ShuffleNetV2 x0.5, x1.0, x1.5 and x2.0 are points (``SHUFFLENETS``), in the zoo by name
(``nas.zoo.create("shufflenet_v2_x1_0")``) with torchvision's parameter counts and
``state_dict`` keys. With ``stem="cifar"`` the stem is a stride-1 conv without the max pool.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from nas.layers import input_sizes, make_divisible, n_params
from nas.space import Choice, Primitive, SearchSpace, register_space, stage_lists
from nas.zoo import register_model

STEMS = ("imagenet", "cifar")
KERNELS = (3, 5, 7)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups (batch size and resolution free).

    Example:
        >>> channel_shuffle(torch.arange(4.0).view(1, 4, 1, 1), 2).flatten().tolist()
        [0.0, 2.0, 1.0, 3.0]
    """
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


def _dw(channels: int, kernel: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)


def _pw(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit (torchvision's ``InvertedResidual``, with a depthwise kernel choice).

    The split form (one half through, one transformed) needs stride 1 and ``in == out``;
    otherwise the unit runs both branches on the whole input (the paper's downsampling unit,
    here also at stride 1 when the width changes).
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int, kernel: int = 3
    ) -> None:
        super().__init__()
        if out_channels % 2 or stride not in (1, 2) or kernel not in KERNELS:
            raise ValueError(
                f"a shuffle unit needs even out_channels, stride 1 or 2 and kernel in "
                f"{list(KERNELS)}, got {out_channels}, {stride}, {kernel}"
            )
        half = out_channels // 2
        self.split = stride == 1 and in_channels == out_channels
        self.stride = stride
        if self.split:
            self.branch1 = nn.Sequential()
        else:
            self.branch1 = nn.Sequential(
                _dw(in_channels, kernel, stride),
                nn.BatchNorm2d(in_channels),
                *_pw(in_channels, half),
            )
        self.branch2 = nn.Sequential(
            *_pw(half if self.split else in_channels, half),
            _dw(half, kernel, stride),
            nn.BatchNorm2d(half),
            *_pw(half, half),
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


@dataclass(frozen=True)
class ShuffleStage:
    """One stage: ``repeats`` units, the first of stride 2."""

    repeats: int
    out_channels: int
    kernel: int = 3


class ShuffleNetV2(nn.Module):
    """``conv1``, ``maxpool``, ``stage2..stageN``, ``conv5``, global mean, ``fc`` (torchvision's)."""

    layer_table_title = "ShuffleNetV2 stages"

    def __init__(
        self,
        stages: Sequence[ShuffleStage],
        *,
        num_classes: int,
        head_channels: int = 1024,
        stem: str = "imagenet",
        stem_channels: int = 24,
    ) -> None:
        super().__init__()
        self.stages = tuple(stages)
        big = stem == "imagenet"
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem_channels, 3, 2 if big else 1, 1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if big else nn.Identity()
        cin = stem_channels
        for i, s in enumerate(self.stages, start=2):
            units = [ShuffleUnit(cin, s.out_channels, stride=2, kernel=s.kernel)]
            units += [
                ShuffleUnit(s.out_channels, s.out_channels, stride=1, kernel=s.kernel)
                for _ in range(s.repeats - 1)
            ]
            self.add_module(f"stage{i}", nn.Sequential(*units))
            cin = s.out_channels
        self.conv5 = nn.Sequential(*_pw(cin, head_channels))
        self.fc = nn.Linear(head_channels, num_classes)
        self.total_stride = (4 if big else 1) * 2 ** len(self.stages)

    def stage_modules(self) -> list[nn.Sequential]:
        return [getattr(self, f"stage{i}") for i in range(2, len(self.stages) + 2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        for stage in self.stage_modules():
            x = stage(x)
        return self.fc(self.conv5(x).mean((2, 3)))

    def latency_units(self) -> list[nn.Module]:
        """Stem, every unit, head: their sequential composition is the network."""
        units = [unit for stage in self.stage_modules() for unit in stage]
        pool = nn.AdaptiveAvgPool2d(1)
        return [
            nn.Sequential(self.conv1, self.maxpool),
            *units,
            nn.Sequential(self.conv5, pool, nn.Flatten(1), self.fc),
        ]

    def layer_table(self, resolution: int) -> list[dict[str, Any]]:
        """The paper's Table 5 layout: stem, one row per stage, head."""
        stages = self.stage_modules()
        named = {"stem": self.conv1, **{f"s{i}": m for i, m in enumerate(stages, 1)}}
        sizes = input_sizes(self, {**named, "head": self.conv5}, resolution)
        pool = " & MaxPool" if isinstance(self.maxpool, nn.MaxPool2d) else ""
        conv = self.conv1[0]
        stem = (sizes["stem"], None, conv.stride[0], conv.out_channels, 1, n_params(self.conv1))
        rows = [("stem", f"Conv3x3{pool}", *stem)]
        for i, (s, stage) in enumerate(zip(self.stages, stages, strict=True), start=1):
            k = f"{s.kernel}x{s.kernel}"
            row = (sizes[f"s{i}"], k, 2, s.out_channels, s.repeats, n_params(stage))
            rows.append((f"s{i}", "ShuffleUnit", *row))
        head = (sizes["head"], None, 1, self.conv5[0].out_channels, 1)
        rows.append(
            ("head", "Conv1x1 & Pooling & FC", *head, n_params(self.conv5) + n_params(self.fc))
        )
        columns = ("stage", "operator", "input", "kernel", "stride", "out", "repeats", "params")
        return [dict(zip(columns, row, strict=True)) for row in rows]


@register_space
class ShuffleNetV2Space(SearchSpace):
    """ShuffleNetV2 networks searched per stage.

    Args:
        resolution: input resolution.
        repeats: one list of unit-count choices per stage (its length is the number of stages).
        out: one list of output-channel choices per stage (even numbers), before ``width_mult``.
        kernels: depthwise kernel choices for every stage (3, 5, 7).
        head: choices of the final 1x1 conv's width, before ``width_mult``.
        width_mult: multiplies every width (stage widths rounded to even, stem and head to 8;
            1.0 leaves them as given).
        stem: ``imagenet`` (3x3 stride 2 and max pool) or ``cifar`` (3x3 stride 1).
        stem_channels: stem width before ``width_mult``.

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("shufflenet_v2", resolution=32, width_mult=0.5, stem="cifar")
        >>> space.describe(SHUFFLENETS["shufflenet_v2_x1_0"])
        '4x58k3 8x116k3 4x232k3 head512'
    """

    def __init__(
        self,
        *,
        resolution: int = 224,
        repeats: Sequence[Sequence[int]] = ((2, 4), (4, 8), (2, 4)),
        out: Sequence[Sequence[int]] = (
            (48, 116, 176, 244),
            (96, 232, 352, 488),
            (192, 464, 704, 976),
        ),
        kernels: Sequence[int] = KERNELS,
        head: Sequence[int] = (1024, 2048),
        width_mult: float = 1.0,
        stem: str = "imagenet",
        stem_channels: int = 24,
    ) -> None:
        super().__init__(resolution=resolution)
        repeat_rows = stage_lists(repeats, key="repeats", length=len(repeats)) or []
        out_rows = stage_lists(out, key="out", length=len(repeat_rows))
        if not repeat_rows or out_rows is None:
            raise ValueError("repeats must hold one list of repeat choices per stage")
        if any(int(v) < 1 for row in repeat_rows for v in row):
            raise ValueError("repeats must be integers >= 1")
        if any(int(v) < 2 or int(v) % 2 for row in out_rows for v in row):
            raise ValueError(
                "out must be even channel counts >= 2 (the unit splits them in halves)"
            )
        if not kernels or any(k not in KERNELS for k in kernels):
            raise ValueError(
                f"kernels must be a non-empty subset of {list(KERNELS)}, got {list(kernels)}"
            )
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {list(STEMS)}, got {stem!r}")
        if width_mult <= 0 or not head:
            raise ValueError(
                f"width_mult must be > 0 and head non-empty, got {width_mult}, {list(head)}"
            )
        self.width_mult = float(width_mult)
        self.stem = stem
        self.stem_channels = self._scale(stem_channels, 8)
        self.n_stages = len(repeat_rows)
        for i in range(1, self.n_stages + 1):
            self.declare(
                Choice(f"s{i}.repeats", tuple(int(v) for v in repeat_rows[i - 1])),
                Choice(f"s{i}.out", tuple(int(v) for v in out_rows[i - 1])),
                Choice(f"s{i}.kernel", tuple(int(k) for k in kernels)),
            )
        self.declare(Choice("head", tuple(int(h) for h in head)))

    def _scale(self, channels: int, divisor: int) -> int:
        if self.width_mult == 1.0:
            return int(channels)
        return make_divisible(channels * self.width_mult, divisor)

    def stage_configs(self, genotype: Mapping[str, Primitive]) -> list[ShuffleStage]:
        """The genotype's stages after width scaling."""
        return [
            ShuffleStage(
                int(genotype[f"s{i}.repeats"]),
                self._scale(int(genotype[f"s{i}.out"]), 2),
                int(genotype[f"s{i}.kernel"]),
            )
            for i in range(1, self.n_stages + 1)
        ]

    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        genotype = self.validate(genotype)
        return ShuffleNetV2(
            self.stage_configs(genotype),
            num_classes=num_classes,
            head_channels=self._scale(int(genotype["head"]), 8),
            stem=self.stem,
            stem_channels=self.stem_channels,
        )

    def identity(self, genotype: Mapping[str, Primitive]) -> str:
        """The built network: scaled stages and head, stem, resolution."""
        stages = [asdict(s) for s in self.stage_configs(genotype)]
        head = self._scale(int(genotype["head"]), 8)
        stem = [self.stem, self.stem_channels]
        return json.dumps(
            {"stages": stages, "head": head, "stem": stem, "res": self.resolution}, sort_keys=True
        )

    def describe(self, genotype: Mapping[str, Primitive]) -> str:
        parts = [f"{s.repeats}x{s.out_channels}k{s.kernel}" for s in self.stage_configs(genotype)]
        return " ".join([*parts, f"head{self._scale(int(genotype['head']), 8)}"])


def _genotype(out: Sequence[int], head: int) -> dict[str, Primitive]:
    genotype: dict[str, Primitive] = {"head": head}
    for i, (repeats, width) in enumerate(zip((4, 8, 4), out, strict=True), start=1):
        genotype.update({f"s{i}.repeats": repeats, f"s{i}.out": width, f"s{i}.kernel": 3})
    return genotype


#: torchvision's ShuffleNetV2 networks as genotypes of the default space.
SHUFFLENETS: dict[str, dict[str, Primitive]] = {
    "shufflenet_v2_x0_5": _genotype((48, 96, 192), 1024),
    "shufflenet_v2_x1_0": _genotype((116, 232, 464), 1024),
    "shufflenet_v2_x1_5": _genotype((176, 352, 704), 1024),
    "shufflenet_v2_x2_0": _genotype((244, 488, 976), 2048),
}


def shufflenet_v2(name: str, *, num_classes: int = 1000) -> ShuffleNetV2:
    """A torchvision ShuffleNetV2 by name, built as a point of the default space.

    Example:
        >>> sum(p.numel() for p in shufflenet_v2("shufflenet_v2_x1_0").parameters())
        2278604
    """
    if name not in SHUFFLENETS:
        raise ValueError(f"name must be one of {sorted(SHUFFLENETS)}, got {name!r}")
    return ShuffleNetV2Space().build(SHUFFLENETS[name], num_classes=num_classes)


def _factory(name: str) -> Any:
    def factory(*, num_classes: int = 1000) -> nn.Module:
        return shufflenet_v2(name, num_classes=num_classes)

    factory.__doc__ = f"torchvision's {name} (search_spaces/shufflenet_v2.py)."
    return factory


for _name in SHUFFLENETS:
    register_model(_name, _factory(_name))
