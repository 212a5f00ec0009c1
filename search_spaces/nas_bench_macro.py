"""NAS-Bench-Macro's MBConv space (Su et al., CVPR 2021): eight layers, three choices each.

Choice ``l{i}`` (i = 1..8) is ``0`` (identity), ``1`` (MBConv, expansion 3, kernel 3) or ``2``
(MBConv, expansion 6, kernel 5), the characters of the benchmark's keys (``key_of``). The
network is the benchmark's: a 3x3 stem (stride 1) to 32 channels with BN and ReLU; stages of
2, 3 and 3 layers whose first layer has stride 2 and doubles the width; a 1x1 conv to 1280 with
BN and ReLU, global pooling and a linear classifier. MBConv: 1x1 expand (none at expansion 1),
BN, ReLU, depthwise kxk, BN, ReLU, 1x1 project, BN, with a residual at stride 1 and equal width;
an identity of stride 2 is a 1x1 conv of stride 2 with BN. As the benchmark did before
training, the identities after a stage's first layer move to the stage's end, so the 6,561 keys
build 3,969 networks, and equivalent keys share one identity.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from nas.space import Choice, Primitive, SearchSpace, register_space

STAGES = (2, 3, 3)
#: Choice -> (expansion, kernel); 0 is the identity.
BLOCKS = {1: (3, 3), 2: (6, 5)}


def key_of(genotype: Mapping[str, Primitive]) -> str:
    """The benchmark's key of a genotype, e.g. ``"22212220"``."""
    return "".join(str(genotype[f"l{i}"]) for i in range(1, sum(STAGES) + 1))


def genotype_of(key: str) -> dict[str, Primitive]:
    """The genotype of a benchmark key."""
    return {f"l{i}": int(c) for i, c in enumerate(key, start=1)}


def canonical(key: str) -> str:
    """The key of the network trained for it: in each stage, the identities after the first
    (stride-2) layer moved to the stage's end."""
    out, start = "", 0
    for n in STAGES:
        first, rest = key[start], key[start + 1 : start + n]
        kept = rest.replace("0", "")
        out += first + kept + "0" * (len(rest) - len(kept))
        start += n
    return out


def conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> list:
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


class Block(nn.Module):
    """An MBConv layer of the benchmark, or its identity (a 1x1 conv where the shape changes)."""

    def __init__(self, choice: int, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        if choice == 0:
            same = stride == 1 and cin == cout
            self.body = nn.Identity() if same else nn.Sequential(*conv_bn(cin, cout, 1, stride))
            self.residual = False
            return
        expansion, kernel = BLOCKS[choice]
        hidden = round(cin * expansion)
        self.body = nn.Sequential(
            *conv_bn(cin, hidden),
            nn.ReLU(inplace=True),
            *conv_bn(hidden, hidden, kernel, stride, groups=hidden),
            nn.ReLU(inplace=True),
            *conv_bn(hidden, cout),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x if self.residual else self.body(x)


class MacroNetwork(nn.Sequential):
    def __init__(self, key: str, *, num_classes: int, stem: int = 32, head: int = 1280) -> None:
        layers: list[nn.Module] = [nn.Sequential(*conv_bn(3, stem, 3), nn.ReLU(inplace=True))]
        width, choices = stem, iter(int(c) for c in key)
        for n in STAGES:
            for i in range(n):
                stride, cout = (2, 2 * width) if i == 0 else (1, width)
                layers.append(Block(next(choices), width, cout, stride))
                width = cout
        layers.append(
            nn.Sequential(
                *conv_bn(width, head),
                nn.ReLU(inplace=True),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(head, num_classes),
            )
        )
        super().__init__(*layers)
        self.total_stride = 2 ** len(STAGES)

    def latency_units(self) -> list[nn.Module]:
        return list(self)

    def zero_init_residual(self) -> None:
        """Zero the last BN of every residual MBConv: each starts as the identity."""
        for block in self.modules():
            if isinstance(block, Block) and block.residual:
                nn.init.zeros_(block.body[-1].weight)


@register_space
class NasBenchMacroSpace(SearchSpace):
    """NAS-Bench-Macro's 3^8 = 6,561 keys (3,969 distinct networks).

    Args:
        resolution: input resolution (the benchmark's: 32).
        choices: the layer choices offered (0 identity, 1 MBConv3 k3, 2 MBConv6 k5).
        width_mult: multiplies the stem's and the head's widths (and so every stage's): below 1,
            a network reduced for a cheaper proxy; the benchmark's is 1.

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("nas_bench_macro")
        >>> space.identity(genotype_of("02001210")), space.identity(genotype_of("02010210"))
        ('02010210', '02010210')
    """

    def __init__(
        self,
        *,
        resolution: int = 32,
        choices: tuple[int, ...] = (0, 1, 2),
        width_mult: float = 1.0,
    ) -> None:
        super().__init__(resolution=resolution)
        if not choices or any(c not in (0, *BLOCKS) for c in choices):
            raise ValueError(f"choices must be a non-empty subset of [0, 1, 2], got {choices}")
        if not width_mult > 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        self.stem, self.head = max(1, round(32 * width_mult)), max(1, round(1280 * width_mult))
        self.declare(*(Choice(f"l{i}", tuple(choices)) for i in range(1, sum(STAGES) + 1)))

    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        key = canonical(key_of(self.validate(genotype)))
        return MacroNetwork(key, num_classes=num_classes, stem=self.stem, head=self.head)

    def identity(self, genotype: Mapping[str, Primitive]) -> str:
        """The canonical key: keys equal up to where identities sit build one network."""
        return canonical(key_of(genotype))

    def describe(self, genotype: Mapping[str, Primitive]) -> str:
        return key_of(genotype)
