"""Parameters and MACs: thop on a deep copy, cross-checked with ``torch.utils.flop_counter``."""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Profile:
    """Size and cost of a network at one input resolution (batch 1).

    Attributes:
        params: trainable and frozen parameters.
        macs: multiply-accumulates counted by thop (conv, linear, BN, pooling, activations).
        conv_linear_macs: multiply-accumulates of conv and linear layers alone, counted by
            ``torch.utils.flop_counter`` (FLOPs / 2), the figure the papers quote.
        resolution: input resolution.
    """

    params: int
    macs: int
    conv_linear_macs: int
    resolution: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def profile(model: nn.Module, *, resolution: int, in_channels: int = 3) -> Profile:
    """Count a model's parameters and MACs at ``resolution`` (batch 1, eval mode).

    thop registers buffers and hooks on the module it profiles, so it runs on a deep copy and
    the caller's model is left untouched.

    Example:
        >>> import nas
        >>> p = nas.profile(nas.zoo.efficientnet("b0"), resolution=224)
        >>> p.params, round(p.conv_linear_macs / 1e9, 2)
        (5288548, 0.39)
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    params = sum(p.numel() for p in model.parameters())
    clone = copy.deepcopy(model).cpu().eval()
    x = torch.zeros(1, in_channels, resolution, resolution)
    from thop import profile as thop_profile  # import here: thop prints on import-time paths

    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        macs, _ = thop_profile(clone, inputs=(x,), verbose=False)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        copy.deepcopy(model).cpu().eval()(x)
    return Profile(
        params=params,
        macs=int(macs),
        conv_linear_macs=int(counter.get_total_flops() // 2),
        resolution=resolution,
    )
