"""A plain CNN, searched per stage: the README's example of a space in one file.

Per stage ``i``: ``s{i}.width`` (channels), ``s{i}.kernel`` and ``s{i}.depth`` (convolutions,
the first of stride 2). Written against ``nas.space`` alone; its config is
``conf/space/tiny_cnn.yaml`` and ``space=tiny_cnn`` selects it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from nas.layers import ConvBNAct
from nas.space import Choice, Primitive, SearchSpace, register_space


class TinyCNN(nn.Sequential):
    """Stages of Conv-BN-ReLU, each starting with a stride-2 conv; average pool; linear."""

    def __init__(self, stages: Sequence[tuple[int, int, int]], *, num_classes: int) -> None:
        layers: list[nn.Module] = []
        cin = 3
        for width, kernel, depth in stages:
            for i in range(depth):
                stride = 2 if i == 0 else 1
                layers.append(
                    ConvBNAct(cin, width, kernel_size=kernel, stride=stride, activation="relu")
                )
                cin = width
        layers.append(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
        )
        super().__init__(*layers)
        self.total_stride = 2 ** len(stages)  # the network protocol (nas.layers.Network)

    def latency_units(self) -> list[nn.Module]:
        return list(self)


@register_space
class TinyCNNSpace(SearchSpace):
    """Width, kernel size and depth of each stage of a plain CNN.

    Example:
        >>> from nas.space import make_space
        >>> sorted(make_space("tiny_cnn", stages=1).grid())
        ['s1.depth', 's1.kernel', 's1.width']
    """

    def __init__(
        self,
        *,
        resolution: int = 32,
        stages: int = 3,
        widths: Sequence[int] = (16, 32, 64),
        kernels: Sequence[int] = (3, 5),
        depths: Sequence[int] = (1, 2),
    ) -> None:
        super().__init__(resolution=resolution)
        if not isinstance(stages, int) or stages < 1:
            raise ValueError(f"stages must be an integer >= 1, got {stages!r}")
        self.stages = stages
        for i in range(1, stages + 1):
            self.declare(
                Choice(f"s{i}.width", tuple(widths)),
                Choice(f"s{i}.kernel", tuple(kernels)),
                Choice(f"s{i}.depth", tuple(depths)),
            )

    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        g = self.validate(genotype)
        rows = [
            (int(g[f"s{i}.width"]), int(g[f"s{i}.kernel"]), int(g[f"s{i}.depth"]))
            for i in range(1, self.stages + 1)
        ]
        return TinyCNN(rows, num_classes=num_classes)
