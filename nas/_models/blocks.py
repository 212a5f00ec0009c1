"""Building blocks: Conv-BN-act, squeeze-and-excitation, MBConv, Inception module, aux head,
and the reparameterisable Conv-BN-act (MobileOne / RepVGG).

The blocks follow the reference implementations (torchvision's EfficientNet and GoogLeNet) so that
parameter counts match them exactly; torchvision itself cannot be a dependency here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": lambda: nn.SiLU(inplace=True),
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for ``name`` (silu, relu or relu6)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


class ConvBNAct(nn.Sequential):
    """Convolution without bias, batch norm, optional activation ("same" padding)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = "silu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
        ]
        if activation is not None:
            layers.append(make_activation(activation))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al.) with 1x1 convolutions, as EfficientNet uses it."""

    def __init__(self, channels: int, squeeze_channels: int, *, activation: str = "silu") -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = make_activation(activation)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * scale


class StochasticDepth(nn.Module):
    """Drops the whole residual branch per sample with probability ``p`` in training.

    Hand-written because torchvision (which has ``stochastic_depth``) cannot be installed here.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"stochastic depth probability p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MBConv(nn.Module):
    """Mobile inverted bottleneck (MobileNetV2 / EfficientNet) with optional squeeze-excite.

    The expand 1x1 is omitted when ``expand_ratio`` is 1; the residual is used only when the
    stride is 1 and the channel count is unchanged; the SE squeeze width is
    ``max(1, int(in_channels * se_ratio))``, as in EfficientNet. With ``rep`` the depthwise
    conv is a :class:`RepConvBNAct` (MobileOne's depthwise block: kxk, 1x1 and BN-identity
    branches in training, one kxk conv once reparameterised).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int,
        stride: int,
        expand_ratio: float,
        se_ratio: float = 0.25,
        activation: str = "silu",
        stochastic_depth: float = 0.0,
        rep: bool = False,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if kernel_size not in (3, 5, 7):
            raise ValueError(f"kernel_size must be one of [3, 5, 7], got {kernel_size}")
        if expand_ratio < 1:
            raise ValueError(f"expand_ratio must be >= 1, got {expand_ratio}")
        if not 0.0 <= se_ratio < 1.0:
            raise ValueError(f"se_ratio must be in [0, 1), got {se_ratio}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.use_residual = stride == 1 and in_channels == out_channels
        hidden = make_divisible(in_channels * expand_ratio, 8) if expand_ratio != 1 else in_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, kernel_size=1, activation=activation))
        depthwise = RepConvBNAct if rep else ConvBNAct
        layers.append(
            depthwise(
                hidden,
                hidden,
                kernel_size=kernel_size,
                stride=stride,
                groups=hidden,
                activation=activation,
            )
        )
        if se_ratio > 0:
            squeeze = max(1, int(in_channels * se_ratio))
            layers.append(SqueezeExcite(hidden, squeeze, activation=activation))
        layers.append(ConvBNAct(hidden, out_channels, kernel_size=1, activation=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth if self.use_residual else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_residual:
            out = self.stochastic_depth(out) + x
        return out


class RepConvBNAct(nn.Module):
    """Conv-BN-act that trains with parallel branches and folds into one conv for inference.

    MobileOne / RepVGG (Ding et al. 2021, Vasu et al. 2023): the sum of a kxk conv-BN
    (``conv_branches`` of them: MobileOne's over-parameterisation), a 1x1 conv-BN (when the
    kernel is larger than 1) and a BN-only identity (when the shape is kept), then the
    activation. All branches are linear in eval mode, so :meth:`reparameterize` replaces them
    by one kxk convolution with a bias that computes the same function: training sees the
    richer model, inference pays for a plain conv. ``groups`` applies to every branch
    (``groups=channels`` is the depthwise form).

    Example:
        >>> block = RepConvBNAct(8, 8, kernel_size=3, activation="relu").eval()
        >>> x = torch.randn(2, 8, 16, 16)
        >>> before = block(x)
        >>> block.reparameterize()
        >>> torch.allclose(block(x), before, atol=1e-5), block.fused
        (True, Conv2d(8, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = "relu",
        conv_branches: int = 1,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer >= 1, got {kernel_size}")
        if conv_branches < 1:
            raise ValueError(f"conv_branches must be >= 1, got {conv_branches}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = kernel_size, stride, groups

        def conv_bn(k: int) -> nn.Sequential:
            conv = nn.Conv2d(
                in_channels, out_channels, k, stride, (k - 1) // 2, groups=groups, bias=False
            )
            return nn.Sequential(conv, nn.BatchNorm2d(out_channels))

        self.branches = nn.ModuleList([conv_bn(kernel_size) for _ in range(conv_branches)])
        self.scale = conv_bn(1) if kernel_size > 1 else None
        self.identity = (
            nn.BatchNorm2d(out_channels) if in_channels == out_channels and stride == 1 else None
        )
        self.fused: nn.Conv2d | None = None
        self.act = make_activation(activation) if activation is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        if self.scale is not None:
            out = out + self.scale(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return self.act(out)

    def reparameterize(self) -> None:
        """Replace the branches by the one conv they add up to in eval mode (in place, once)."""
        if self.fused is not None:
            return
        k = self.kernel_size
        weight, bias = 0.0, 0.0
        for branch in [*self.branches, *([self.scale] if self.scale is not None else [])]:
            conv, bn = branch
            pad = (k - conv.kernel_size[0]) // 2  # a 1x1 kernel sits at the kxk kernel's centre
            w, b = _fold_bn(nn.functional.pad(conv.weight, [pad] * 4), bn)
            weight, bias = weight + w, bias + b
        if self.identity is not None:
            per_group = self.in_channels // self.groups
            eye = torch.zeros(
                self.out_channels, per_group, k, k, device=self.identity.weight.device
            )
            channel = torch.arange(self.out_channels)
            eye[channel, channel % per_group, k // 2, k // 2] = 1.0
            w, b = _fold_bn(eye, self.identity)
            weight, bias = weight + w, bias + b
        fused = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            k,
            self.stride,
            (k - 1) // 2,
            groups=self.groups,
            bias=True,
        ).to(self.branches[0][0].weight.device)
        with torch.no_grad():
            fused.weight.copy_(weight)
            fused.bias.copy_(bias)
        self.fused = fused
        del self.branches, self.scale, self.identity
        self.branches, self.scale, self.identity = nn.ModuleList(), None, None

    def extra_repr(self) -> str:
        return "fused" if self.fused is not None else ""


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv weight (no bias) followed by eval-mode BN, as one weight and bias."""
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = (gamma / std).detach()
    return weight.detach() * scale.reshape(-1, 1, 1, 1), (beta - bn.running_mean * scale).detach()


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor``, never below 90% of ``value``.

    Same rule as the TensorFlow and torchvision MobileNet/EfficientNet code.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class InceptionModule(nn.Module):
    """GoogLeNet Inception module with BN after every conv.

    Widths follow the paper's table: ``c1x1``, ``c3x3_reduce``, ``c3x3``, ``c5x5_reduce``,
    ``c5x5``, ``pool_proj``. The "5x5" branch is a 5x5 conv (``"5x5"``), a single 3x3 conv
    (``"3x3"``, as torchvision's GoogLeNet does) or two stacked 3x3 convs (``"3x3x2"``, as
    Inception-v2 does). A width of 0 removes that branch's output (its reduce too). With
    ``bn=False`` the convs carry a bias unless ``bias=False`` (the paper's arithmetic example).
    """

    BRANCH_FORMS = ("5x5", "3x3", "3x3x2")

    def __init__(
        self,
        in_channels: int,
        *,
        c1x1: int,
        c3x3_reduce: int,
        c3x3: int,
        c5x5_reduce: int,
        c5x5: int,
        pool_proj: int,
        branch5x5: str = "5x5",
        activation: str = "relu",
        bn: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if branch5x5 not in self.BRANCH_FORMS:
            raise ValueError(
                f"branch5x5 must be one of {list(self.BRANCH_FORMS)}, got {branch5x5!r}"
            )
        widths = {
            "c1x1": c1x1,
            "c3x3_reduce": c3x3_reduce,
            "c3x3": c3x3,
            "c5x5_reduce": c5x5_reduce,
            "c5x5": c5x5,
            "pool_proj": pool_proj,
        }
        for key, width in widths.items():
            if width < 0:
                raise ValueError(f"{key} must be >= 0, got {width}")
        if c1x1 + c3x3 + c5x5 + pool_proj == 0:
            raise ValueError("an Inception module needs at least one branch with a width > 0")
        if (c3x3 > 0 and c3x3_reduce == 0) or (c5x5 > 0 and c5x5_reduce == 0):
            raise ValueError("a 3x3 or 5x5 branch with width > 0 needs its reduce width > 0")

        def conv(cin: int, cout: int, k: int) -> nn.Module:
            if bn:
                return ConvBNAct(cin, cout, kernel_size=k, activation=activation)
            return nn.Sequential(
                nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias), make_activation(activation)
            )

        self.branch1 = conv(in_channels, c1x1, 1) if c1x1 else None
        self.branch2 = (
            nn.Sequential(conv(in_channels, c3x3_reduce, 1), conv(c3x3_reduce, c3x3, 3))
            if c3x3
            else None
        )
        if c5x5:
            if branch5x5 == "5x5":
                tail: list[nn.Module] = [conv(c5x5_reduce, c5x5, 5)]
            elif branch5x5 == "3x3":
                tail = [conv(c5x5_reduce, c5x5, 3)]
            else:
                tail = [conv(c5x5_reduce, c5x5, 3), conv(c5x5, c5x5, 3)]
            self.branch3: nn.Module | None = nn.Sequential(conv(in_channels, c5x5_reduce, 1), *tail)
        else:
            self.branch3 = None
        self.branch4 = (
            nn.Sequential(
                nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                conv(in_channels, pool_proj, 1),
            )
            if pool_proj
            else None
        )
        self.out_channels = c1x1 + c3x3 + c5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches if b is not None], dim=1)


class InceptionAux(nn.Module):
    """GoogLeNet auxiliary classifier: 5x5/3 avg pool, 1x1 conv 128, FC 1024, dropout 0.7, FC.

    The pooled map is adaptively pooled to 4x4 (what 5x5/3 gives on GoogLeNet's 14x14 maps) so
    the head also works at the small resolutions used for proxy training.
    """

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float = 0.7) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = ConvBNAct(in_channels, 128, kernel_size=1, activation="relu")
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(x))
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(self.dropout(x))
