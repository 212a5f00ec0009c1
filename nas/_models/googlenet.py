"""GoogLeNet macro-architecture (Szegedy et al. 2015) built from Inception modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nas._models.blocks import ConvBNAct, InceptionAux, InceptionModule
from nas._models.network import input_sizes, n_params

#: The paper's nine modules: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
GOOGLENET_WIDTHS: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
WIDTH_KEYS = ("c1x1", "c3x3_reduce", "c3x3", "c5x5_reduce", "c5x5", "pool_proj")
#: Max-pool (3x3, stride 2) after these modules, as in the paper.
_POOL_AFTER = ("3b", "4e")
#: Auxiliary classifiers sit on the outputs of these modules.
_AUX_AFTER = ("4a", "4d")


class GoogLeNet(nn.Module):
    """GoogLeNet with BN, configurable module widths and optional auxiliary classifiers.

    In training mode with ``aux_logits`` the forward returns ``(logits, [aux1, aux2])`` and the
    training loop weights the auxiliary losses by ``aux_loss_weight`` (0.3, as in the paper);
    in eval mode (and so in any export) it returns the logits alone.

    Example:
        >>> net = GoogLeNet(num_classes=10).eval()
        >>> net(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 10])
    """

    aux_loss_weight = 0.3

    def __init__(
        self,
        *,
        modules: Mapping[str, Mapping[str, int]] | None = None,
        branch5x5: Mapping[str, str] | None = None,
        num_classes: int = 1000,
        aux_logits: bool = False,
        dropout: float = 0.4,
        stem_width: float = 1.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        widths = {
            name: dict(zip(WIDTH_KEYS, w, strict=True)) for name, w in GOOGLENET_WIDTHS.items()
        }
        for name, given in (modules or {}).items():
            if name not in widths:
                raise ValueError(f"unknown Inception module {name!r}; known: {list(widths)}")
            widths[name].update(given)
        forms = dict.fromkeys(GOOGLENET_WIDTHS, "5x5")
        forms.update(branch5x5 or {})
        c1 = max(8, int(64 * stem_width))
        c2 = max(8, int(192 * stem_width))
        self.stem = nn.Sequential(
            ConvBNAct(in_channels, c1, kernel_size=7, stride=2, activation="relu"),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            ConvBNAct(c1, c1, kernel_size=1, activation="relu"),
            ConvBNAct(c1, c2, kernel_size=3, activation="relu"),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
        )
        self.inception = nn.ModuleDict()
        self.aux = nn.ModuleDict()
        cin = c2
        for name in GOOGLENET_WIDTHS:
            module = InceptionModule(cin, branch5x5=forms[name], **widths[name])
            self.inception[name] = module
            cin = module.out_channels
            if aux_logits and name in _AUX_AFTER:
                self.aux[name] = InceptionAux(cin, num_classes)
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        self.total_stride = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)
        aux_out: list[torch.Tensor] = []
        for name, module in self.inception.items():
            x = module(x)
            if self.training and name in self.aux:
                aux_out.append(self.aux[name](x))
            if name in _POOL_AFTER:
                x = self.pool(x)
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if self.training and aux_out:
            return logits, aux_out
        return logits

    def latency_units(self) -> list[nn.Module]:
        """Modules whose sequential composition is the eval-mode network."""
        units: list[nn.Module] = [self.stem]
        for name, module in self.inception.items():
            units.append(nn.Sequential(module, self.pool) if name in _POOL_AFTER else module)
        units.append(nn.Sequential(self.avgpool, nn.Flatten(1), self.dropout, self.fc))
        return units

    layer_table_title = "Inception modules"

    def layer_table(self, resolution: int) -> list[dict[str, Any]]:
        """Per Inception module: input size, the six GoogLeNet widths, the "5x5" form, output."""
        named: dict[str, nn.Module] = {"stem": self.stem, **self.inception, "head": self.avgpool}
        sizes = input_sizes(self, named, resolution)
        empty = dict.fromkeys(("#1x1", "#3x3 red", "#3x3", "#5x5 red", "#5x5", "pool proj", "form"))
        stem_convs = [m for m in self.stem.modules() if isinstance(m, nn.Conv2d)]
        rows: list[dict[str, Any]] = [
            {
                "stage": "stem",
                "input": sizes["stem"],
                **empty,
                "out": stem_convs[-1].out_channels,
                "params": n_params(self.stem),
            }
        ]
        for name, module in self.inception.items():
            rows.append(
                {
                    "stage": name,
                    "input": sizes[name],
                    "#1x1": _conv_out(module.branch1, 0),
                    "#3x3 red": _conv_out(module.branch2, 0),
                    "#3x3": _conv_out(module.branch2, 1),
                    "#5x5 red": _conv_out(module.branch3, 0),
                    "#5x5": _conv_out(module.branch3, -1),
                    "pool proj": _conv_out(module.branch4, 0),
                    "form": _branch_form(module),
                    "out": module.out_channels,
                    "params": n_params(module),
                }
            )
        rows.append(
            {
                "stage": "head",
                "input": sizes["head"],
                **empty,
                "out": self.fc.out_features,
                "params": n_params(self.fc),
            }
        )
        if len(self.aux):
            rows.append(
                {
                    "stage": f"aux x{len(self.aux)}",
                    "input": None,
                    **empty,
                    "form": "training only",
                    "out": self.fc.out_features,
                    "params": n_params(self.aux),
                }
            )
        return rows


def _conv_out(branch: nn.Module | None, index: int) -> int:
    """Output width of the ``index``-th conv of an Inception branch (0 when absent)."""
    if branch is None:
        return 0
    return [m for m in branch.modules() if isinstance(m, nn.Conv2d)][index].out_channels


def _branch_form(module: InceptionModule) -> str | None:
    if module.branch3 is None:
        return None
    tail = [m for m in module.branch3.modules() if isinstance(m, nn.Conv2d)][1:]
    if len(tail) == 2:
        return "3x3x2"
    return f"{tail[0].kernel_size[0]}x{tail[0].kernel_size[1]}"


def googlenet(*, num_classes: int = 1000, aux_logits: bool = False) -> GoogLeNet:
    """The paper's GoogLeNet (nine Inception modules, 5x5 branches), with BN.

    Example:
        >>> import nas
        >>> len(nas.zoo.googlenet().inception)
        9
    """
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits)
