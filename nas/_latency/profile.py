"""Parameters and MACs: thop, cross-checked with ``torch.utils.flop_counter``."""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas._models.reparam import reparameterize


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

    Reparameterisable blocks (``nas.layers.RepConvBNAct``) are counted folded into one conv,
    the inference form latency and export see (on a copy). The model is left as it was: thop's hooks and the ``total_ops`` / ``total_params`` buffers
    it leaves on modules it has no rule for are removed, and every module's training flag is
    restored. (Profiling deep copies instead cost two thirds of a table-backed search's time.)

    Example:
        >>> import nas
        >>> p = nas.profile(nas.zoo.efficientnet("b0"), resolution=224)
        >>> p.params, round(p.conv_linear_macs / 1e9, 2)
        (5288548, 0.39)
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    if any(callable(getattr(m, "reparameterize", None)) for m in model.modules()):
        # Count the inference form, as latency and export see it: folded blocks (a copy).
        model = reparameterize(copy.deepcopy(model))
    params = sum(p.numel() for p in model.parameters())
    modules = list(model.modules())
    if any(name in m._buffers for m in modules for name in _THOP_BUFFERS):
        model = copy.deepcopy(model)  # buffers of thop's names of its own: leave them alone
        modules = list(model.modules())
    training = [m.training for m in modules]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros(1, in_channels, resolution, resolution, device=device)
    from thop import profile as thop_profile  # import here: thop prints on import-time paths

    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            macs, _ = thop_profile(model, inputs=(x,), verbose=False)
        counter = FlopCounterMode(display=False)
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    finally:
        for m, flag in zip(modules, training, strict=True):
            m.training = flag
            for name in _THOP_BUFFERS:
                m._buffers.pop(name, None)
    return Profile(
        params=params,
        macs=int(macs),
        conv_linear_macs=int(counter.get_total_flops() // 2),
        resolution=resolution,
    )


#: The buffers thop registers on every leaf module it visits.
_THOP_BUFFERS = ("total_ops", "total_params")
