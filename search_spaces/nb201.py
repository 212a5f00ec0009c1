"""NAS-Bench-201's cell space (Dong & Yang, ICLR 2020): six edges, five operations each.

A cell has nodes 0..3; node j sums op(i -> j)(node i) over i < j; node 0 is the cell's input,
node 3 its output. The choice ``n{j}.e{i}`` is the operation on edge i -> j, one of ``none``
(zero), ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3`` (ReLU, conv, BN) and
``avg_pool_3x3``. The network is the benchmark's: a 3x3 stem with BN, three stages of
``cells`` cells at ``channels``, 2x and 4x that width with a ResNet basic block of stride 2
between them, then BN, ReLU, global pooling and a linear classifier. Cells that compute the
same function share one identity (the benchmark's ``unique_str``; 6,466 of the 15,625 cells),
so a search evaluates each once. ``arch_str`` and ``genotype_of`` convert to and from the
benchmark's cell strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.space import Choice, Primitive, SearchSpace, register_space

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: The six edges in the order of the benchmark's cell strings: (target node, source node).
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def label(j: int, i: int) -> str:
    return f"n{j}.e{i}"


def arch_str(genotype: Mapping[str, Primitive]) -> str:
    """The benchmark's cell string, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    nodes = [
        "|" + "|".join(f"{genotype[label(j, i)]}~{i}" for i in range(j)) + "|" for j in (1, 2, 3)
    ]
    return "+".join(nodes)


def genotype_of(cell: str) -> dict[str, Primitive]:
    """The genotype of a benchmark cell string (the inverse of :func:`arch_str`)."""
    genotype: dict[str, Primitive] = {}
    for j, node in enumerate(cell.split("+"), start=1):
        for edge in filter(None, node.split("|")):
            op, i = edge.split("~")
            genotype[label(j, int(i))] = op
    return genotype


def unique_str(genotype: Mapping[str, Primitive]) -> str:
    """The cell's isomorphism class, as NAS-Bench-201 computes it (zeros taken into account).

    A node is the sorted sum of its inputs' terms: ``skip_connect`` passes a node's string on,
    another operation wraps it as ``(node)@op``, and ``none`` (or a zero input) gives ``#``.
    """
    nodes = {0: "0"}
    for j in (1, 2, 3):
        terms = []
        for i in range(j):
            op = genotype[label(j, i)]
            if op == "none" or nodes[i] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(nodes[i])
            else:
                terms.append(f"({nodes[i]})@{op}")
        nodes[j] = "+".join(sorted(terms))
    return nodes[3]


class ReLUConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
        )


def operation(op: str, channels: int) -> nn.Module:
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    return ReLUConvBN(channels, channels, 1 if op == "nor_conv_1x1" else 3, 1)


class Cell(nn.Module):
    """The benchmark's cell; ``none`` edges are left out (they add zeros)."""

    def __init__(self, genotype: Mapping[str, Primitive], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict(
            {
                f"{j}_{i}": operation(str(genotype[label(j, i)]), channels)
                for j, i in EDGES
                if genotype[label(j, i)] != "none"
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            inputs = [
                self.edges[f"{j}_{i}"](nodes[i]) for i in range(j) if f"{j}_{i}" in self.edges
            ]
            nodes.append(sum(inputs[1:], inputs[0]) if inputs else torch.zeros_like(x))
        return nodes[3]


class ResNetBlock(nn.Module):
    """The reduction between stages: a ResNet basic block of stride 2 (average-pool shortcut)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, 2)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Sequential):
    """Stem, three stages of cells with two reductions, BN-ReLU, global pooling, linear."""

    def __init__(
        self, genotype: Mapping[str, Primitive], *, channels: int, cells: int, num_classes: int
    ) -> None:
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
            )
        ]
        width = channels
        for stage in range(3):
            if stage:
                layers.append(ResNetBlock(width, 2 * width))
                width *= 2
            layers += [Cell(genotype, width) for _ in range(cells)]
        layers.append(
            nn.Sequential(
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(width, num_classes),
            )
        )
        super().__init__(*layers)
        self.total_stride = 4

    def latency_units(self) -> list[nn.Module]:
        return list(self)

    def zero_init_residual(self) -> None:
        """Zero the last BN of each reduction's residual branch: it starts as its shortcut.

        Cells are left alone: a cell may have no identity path (a chain of convolutions), and
        zeroing its convolutions would make it, and the network, output zeros.
        """
        for m in self.modules():
            if isinstance(m, ResNetBlock):
                nn.init.zeros_(m.conv_b[2].weight)


@register_space
class NB201Space(SearchSpace):
    """NAS-Bench-201's 15,625 cells on its network (the benchmark's: 16 channels, 5 cells).

    Args:
        resolution: input resolution (the benchmark's CIFAR networks: 32).
        channels: width of the first stage.
        cells: cells per stage.
        ops: the operations offered on every edge.

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("nb201")
        >>> a = genotype_of("|skip_connect~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|")
        >>> b = genotype_of("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
        >>> space.grid_size(), space.identity(a) == space.identity(b)
        (15625, True)
    """

    def __init__(
        self,
        *,
        resolution: int = 32,
        channels: int = 16,
        cells: int = 5,
        ops: Sequence[str] = OPS,
    ) -> None:
        super().__init__(resolution=resolution)
        unknown = [op for op in ops if op not in OPS]
        if unknown or not ops:
            raise ValueError(f"ops must be a non-empty subset of {list(OPS)}, got {list(ops)}")
        if channels < 1 or cells < 1:
            raise ValueError(f"channels and cells must be >= 1, got {channels} and {cells}")
        self.channels, self.cells = channels, cells
        self.declare(*(Choice(label(j, i), tuple(ops)) for j, i in EDGES))

    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        genotype = self.validate(genotype)
        return NB201Network(
            genotype, channels=self.channels, cells=self.cells, num_classes=num_classes
        )

    def identity(self, genotype: Mapping[str, Primitive]) -> str:
        """The cell's isomorphism class (the benchmark's ``unique_str``)."""
        return unique_str(genotype)

    def describe(self, genotype: Mapping[str, Primitive]) -> str:
        return arch_str(genotype)
