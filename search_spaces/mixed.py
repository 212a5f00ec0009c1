"""Mixed space: every stage picks its block family (MBConv, ShuffleNetV2 unit, ResNet basic block).

Per stage ``i``: ``s{i}.block`` (a family of :data:`BLOCKS`), ``s{i}.width`` (output
channels), ``s{i}.depth`` (blocks), ``s{i}.kernel`` (the depthwise kernel of MBConv and
shuffle units) and ``s{i}.expand`` (MBConv's expansion ratio). A family ignores the settings
it does not read (a basic block is two 3x3 convs), and :meth:`MixedSpace.identity` ignores
them too, so a search never pays twice for one network. The first block of a stage takes the
stage's stride and changes the width (a shuffle unit then runs both of its branches; a basic
block projects its shortcut); stem: a 3x3 conv; head: 1x1 conv, pool, linear.

Families: ``mbconv`` (MobileNetV2's inverted bottleneck, ReLU6, no SE: ``nas.layers.MBConv``),
``shuffle`` (``search_spaces.shufflenet_v2.ShuffleUnit``), ``rep`` (a RepVGG block: kxk, 1x1
and BN-identity branches in training, one kxk conv for inference, ReLU:
``nas.layers.RepConvBNAct``) and ``basic`` (``search_spaces.resnet.BasicBlock``).
**Extension point**: :data:`BLOCKS` maps a family's name to how to build one block; one entry
here (and its name in ``blocks`` of ``conf/space/mixed.yaml``) adds a family. Latency, export
and ``nas.build_model(..., fused=True)`` fold every block with a ``reparameterize()`` method.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from nas.layers import ConvBNAct, MBConv, RepConvBNAct, input_sizes, n_params
from nas.space import Choice, Primitive, SearchSpace, register_space, stage_lists
from search_spaces.resnet import BasicBlock
from search_spaces.shufflenet_v2 import ShuffleUnit


@dataclass(frozen=True)
class BlockFamily:
    """How to build one block of a family, which settings it reads, and its residual's last BN.

    ``build(in_channels, out_channels, stride=, kernel=, expand=)`` returns the block;
    ``residual_bn(block)`` the BatchNorm that ends its residual branch (zeroed by the proxy's
    ``zero_init``), or ``None``.
    """

    build: Callable[..., nn.Module]
    reads: tuple[str, ...]
    residual_bn: Callable[[nn.Module], nn.Module | None]


def _mbconv(cin: int, cout: int, *, stride: int, kernel: int, expand: float) -> nn.Module:
    return MBConv(
        cin,
        cout,
        kernel_size=kernel,
        stride=stride,
        expand_ratio=expand,
        se_ratio=0.0,
        activation="relu6",
    )


def _shuffle(cin: int, cout: int, *, stride: int, kernel: int, expand: float) -> nn.Module:
    return ShuffleUnit(cin, cout, stride=stride, kernel=kernel)


def _rep(cin: int, cout: int, *, stride: int, kernel: int, expand: float) -> nn.Module:
    return RepConvBNAct(cin, cout, kernel_size=kernel, stride=stride, activation="relu")


def _basic(cin: int, cout: int, *, stride: int, kernel: int, expand: float) -> nn.Module:
    return BasicBlock(cin, cout, stride=stride)


#: The block families, by name: the extension point (see the module docstring).
BLOCKS: dict[str, BlockFamily] = {
    "mbconv": BlockFamily(
        _mbconv, ("kernel", "expand"), lambda b: b.block[-1][1] if b.use_residual else None
    ),
    "shuffle": BlockFamily(_shuffle, ("kernel",), lambda b: None),  # concatenation: no residual sum
    "rep": BlockFamily(_rep, ("kernel",), lambda b: None),  # its identity branch is no residual
    "basic": BlockFamily(_basic, (), lambda b: b.bn2),
}
STEMS = ("imagenet", "cifar")


@dataclass(frozen=True)
class MixedStage:
    """One stage: ``depth`` blocks of one family, the first with ``stride``."""

    block: str
    width: int
    depth: int
    stride: int
    kernel: int | None = None
    expand: float | None = None


class MixedNet(nn.Module):
    """Stem, stages of blocks of any family, 1x1 head conv, pool, linear classifier."""

    layer_table_title = "Mixed stages"

    def __init__(
        self,
        stages: Sequence[MixedStage],
        *,
        num_classes: int,
        stem: str = "cifar",
        stem_channels: int = 16,
        head_channels: int = 256,
    ) -> None:
        super().__init__()
        self.stage_configs = tuple(stages)
        self.stem = ConvBNAct(
            3,
            stem_channels,
            kernel_size=3,
            stride=2 if stem == "imagenet" else 1,
            activation="relu",
        )
        cin = stem_channels
        self.stages = nn.ModuleList()
        for s in self.stage_configs:
            family = BLOCKS[s.block]
            blocks = []
            for j in range(s.depth):
                stride = s.stride if j == 0 else 1
                blocks.append(
                    family.build(
                        cin, s.width, stride=stride, kernel=s.kernel or 3, expand=s.expand or 1
                    )
                )
                cin = s.width
            self.stages.append(nn.Sequential(*blocks))
        self.head = ConvBNAct(cin, head_channels, kernel_size=1, activation="relu")
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head_channels, num_classes)
        self.total_stride = (2 if stem == "imagenet" else 1) * math.prod(s.stride for s in stages)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.classifier(torch.flatten(self.avgpool(self.head(x)), 1))

    def latency_units(self) -> list[nn.Module]:
        """Stem, every block, head: their sequential composition is the network."""
        blocks = [block for stage in self.stages for block in stage]
        return [
            self.stem,
            *blocks,
            nn.Sequential(self.head, self.avgpool, nn.Flatten(1), self.classifier),
        ]

    def zero_init_residual(self) -> None:
        """Zero the last BatchNorm of every residual branch: each block starts as its shortcut."""
        for s, stage in zip(self.stage_configs, self.stages, strict=True):
            for block in stage:
                bn = BLOCKS[s.block].residual_bn(block)
                if bn is not None:
                    nn.init.zeros_(bn.weight)

    def families(self) -> list[str]:
        """The block family of each stage."""
        return [s.block for s in self.stage_configs]

    def layer_table(self, resolution: int) -> list[dict[str, Any]]:
        """One row for the stem, one per stage (family and its settings), one for the head."""
        named = {"stem": self.stem, **{f"s{i}": m for i, m in enumerate(self.stages, 1)}}
        sizes = input_sizes(self, {**named, "head": self.head}, resolution)
        stride = self.stem[0].stride[0]
        rows = [
            (
                "stem",
                "Conv3x3",
                sizes["stem"],
                None,
                None,
                stride,
                self.stem.out_channels,
                1,
                n_params(self.stem),
            )
        ]
        for i, (s, stage) in enumerate(zip(self.stage_configs, self.stages, strict=True), start=1):
            k = f"{s.kernel}x{s.kernel}" if s.kernel else None
            rows.append(
                (
                    f"s{i}",
                    s.block,
                    sizes[f"s{i}"],
                    k,
                    s.expand,
                    s.stride,
                    s.width,
                    s.depth,
                    n_params(stage),
                )
            )
        head = n_params(self.head) + n_params(self.classifier)
        rows.append(
            (
                "head",
                "Conv1x1 & Pooling & FC",
                sizes["head"],
                None,
                None,
                1,
                self.head.out_channels,
                1,
                head,
            )
        )
        columns = (
            "stage",
            "operator",
            "input",
            "kernel",
            "expand",
            "stride",
            "out",
            "layers",
            "params",
        )
        return [dict(zip(columns, row, strict=True)) for row in rows]


@register_space
class MixedSpace(SearchSpace):
    """Networks whose stages each pick a block family and its settings.

    Args:
        resolution: input resolution.
        blocks: the families offered to every stage (names of :data:`BLOCKS`; ``rep`` is
            offered only when listed, so the default space is the one before it existed).
        strides: each stage's stride (its length is the number of stages).
        widths: one list of output-width choices per stage (even: shuffle units split them).
        depths: one list of depth choices per stage.
        kernels: depthwise kernel choices (MBConv and shuffle units; 3, 5, 7).
        expand: MBConv expansion-ratio choices.
        stem: ``cifar`` (3x3 stride 1) or ``imagenet`` (3x3 stride 2).
        stem_channels: stem width.
        head_channels: width of the 1x1 conv before pooling.

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("mixed")
        >>> g = {**space.random_genotype(0), "s1.block": "basic"}
        >>> space.identity({**g, "s1.kernel": 3}) == space.identity({**g, "s1.kernel": 5})
        True
    """

    def __init__(
        self,
        *,
        resolution: int = 32,
        blocks: Sequence[str] = ("mbconv", "shuffle", "basic"),
        strides: Sequence[int] = (1, 2, 2, 2),
        widths: Sequence[Sequence[int]] = ((16, 24), (32, 48), (64, 96), (128, 192)),
        depths: Sequence[Sequence[int]] = ((1, 2), (1, 2), (1, 2, 3), (1, 2)),
        kernels: Sequence[int] = (3, 5),
        expand: Sequence[float] = (3, 6),
        stem: str = "cifar",
        stem_channels: int = 16,
        head_channels: int = 256,
    ) -> None:
        super().__init__(resolution=resolution)
        if not blocks or any(b not in BLOCKS for b in blocks):
            raise ValueError(
                f"blocks must be a non-empty subset of {list(BLOCKS)}, got {list(blocks)}"
            )
        if not strides or any(s not in (1, 2) for s in strides):
            raise ValueError(f"strides must be a non-empty list of 1 and 2, got {list(strides)}")
        width_rows = stage_lists(widths, key="widths", length=len(strides)) or []
        depth_rows = stage_lists(depths, key="depths", length=len(strides)) or []
        if any(int(w) < 2 or int(w) % 2 for row in width_rows for w in row):
            raise ValueError("widths must be even channel counts >= 2 (shuffle units split them)")
        if any(int(d) < 1 for row in depth_rows for d in row):
            raise ValueError("depths must be integers >= 1")
        if not kernels or any(k not in (3, 5, 7) for k in kernels):
            raise ValueError(
                f"kernels must be a non-empty subset of [3, 5, 7], got {list(kernels)}"
            )
        if not expand or any(e < 1 for e in expand):
            raise ValueError(f"expand must be ratios >= 1, got {list(expand)}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {list(STEMS)}, got {stem!r}")
        self.strides = [int(s) for s in strides]
        self.stem = stem
        self.stem_channels = int(stem_channels)
        self.head_channels = int(head_channels)
        for i in range(1, len(self.strides) + 1):
            self.declare(
                Choice(f"s{i}.block", tuple(blocks)),
                Choice(f"s{i}.width", tuple(int(w) for w in width_rows[i - 1])),
                Choice(f"s{i}.depth", tuple(int(d) for d in depth_rows[i - 1])),
                Choice(f"s{i}.kernel", tuple(int(k) for k in kernels)),
                Choice(f"s{i}.expand", tuple(float(e) for e in expand)),
            )

    def stage_configs(self, genotype: Mapping[str, Primitive]) -> list[MixedStage]:
        """The genotype's stages, each with only the settings its family reads."""
        rows = []
        for i, stride in enumerate(self.strides, start=1):
            block = str(genotype[f"s{i}.block"])
            reads = BLOCKS[block].reads
            kernel = int(genotype[f"s{i}.kernel"]) if "kernel" in reads else None
            expand = float(genotype[f"s{i}.expand"]) if "expand" in reads else None
            width, depth = int(genotype[f"s{i}.width"]), int(genotype[f"s{i}.depth"])
            rows.append(MixedStage(block, width, depth, stride, kernel, expand))
        return rows

    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        genotype = self.validate(genotype)
        return MixedNet(
            self.stage_configs(genotype),
            num_classes=num_classes,
            stem=self.stem,
            stem_channels=self.stem_channels,
            head_channels=self.head_channels,
        )

    def identity(self, genotype: Mapping[str, Primitive]) -> str:
        """The built network: stages without the settings their family ignores, stem, head."""
        stages = [asdict(s) for s in self.stage_configs(genotype)]
        rest = [self.stem, self.stem_channels, self.head_channels, self.resolution]
        return json.dumps({"stages": stages, "rest": rest}, sort_keys=True)

    def describe(self, genotype: Mapping[str, Primitive]) -> str:
        parts = []
        for s in self.stage_configs(genotype):
            part = f"{s.block}:x{s.depth}:{s.width}"
            part += f":k{s.kernel}" if s.kernel else ""
            part += f":e{s.expand:g}" if s.expand else ""
            parts.append(part)
        return " ".join(parts)
