"""GoogLeNet macro-architecture (Szegedy et al. 2015) built from Inception modules."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from nas._blocks import ConvBNAct, InceptionAux, InceptionModule

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


def googlenet(*, num_classes: int = 1000, aux_logits: bool = False) -> GoogLeNet:
    """The paper's GoogLeNet (nine Inception modules, 5x5 branches), with BN.

    Example:
        >>> import nas
        >>> len(nas.googlenet().inception)
        9
    """
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits)
