"""Folding reparameterisable blocks (RepVGG / MobileOne) into plain convolutions."""

from __future__ import annotations

from torch import nn


def reparameterize(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode and fold every reparameterisable block (in place).

    A block is reparameterisable when it has a ``reparameterize()`` method
    (``nas.layers.RepConvBNAct`` does); a network without one is only put in eval mode. Fold after
    loading trained weights: the folded network has other parameters (``fused.weight``).

    Returns:
        ``model`` itself.

    Example:
        >>> from nas.layers import RepConvBNAct
        >>> net = nn.Sequential(RepConvBNAct(3, 8), RepConvBNAct(8, 8))
        >>> sum(isinstance(m, nn.BatchNorm2d) for m in reparameterize(net).modules())
        0
    """
    model.eval()
    for module in list(model.modules()):
        fold = getattr(module, "reparameterize", None)
        if callable(fold):
            fold()
    return model
