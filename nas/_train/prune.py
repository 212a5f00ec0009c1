"""Pruning with ``torch.nn.utils.prune``: magnitude (unstructured) and output channels (structured).

Both zero weights in place and keep every tensor's shape: the pruned network is the same dense
network with zeros in it. A dense runtime (eager PyTorch, ONNX Runtime's default kernels) does
the same work on zeros, so neither kind is expected to be faster there: unstructured sparsity
needs sparse kernels, and zeroed channels only save time once they are cut out of the tensors,
which this module does not do (it would have to follow every channel through residual adds,
squeeze-excite gates and concatenations). The report measures what there is.

Structured pruning zeroes an output channel of a convolution *and* the scale and shift of the
BatchNorm right after it, so the channel's output is exactly zero (zeroing the filter alone
would leave the BatchNorm's shift as a constant output). Convolutions without such a
BatchNorm (squeeze-excite, classifier) and the branches of reparameterisable blocks (each
would lose other channels, and folding them together would undo it) are left dense.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.nn.utils import prune

from nas._config import ConfigError

Target = tuple[nn.Module, str]


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(conv, BatchNorm) where the BatchNorm comes right after the conv in a Sequential."""
    skip: set[int] = set()
    for m in model.modules():
        if callable(getattr(m, "reparameterize", None)):
            skip.update(id(sub) for sub in m.modules())
    pairs = []
    for m in model.modules():
        if not isinstance(m, nn.Sequential) or id(m) in skip:
            continue
        children = list(m.children())
        for conv, bn in itertools.pairwise(children):
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.num_features == conv.out_channels
                and bn.affine
            ):
                pairs.append((conv, bn))
    return pairs


def targets(model: nn.Module, method: str) -> list[Target]:
    """The (module, parameter) pairs ``method`` prunes, in a fixed order."""
    if method == "unstructured":
        return [(m, "weight") for m in _layers(model)]
    if method == "structured":
        found: list[Target] = []
        for conv, bn in _conv_bn_pairs(model):
            found += [(conv, "weight"), (bn, "weight"), (bn, "bias")]
        return found
    raise ValueError(f"method must be 'unstructured' or 'structured', got {method!r}")


def _count(amount: float, n: int) -> int:
    """Weights (or channels) to prune of ``n``: never all of them, which would cut the network."""
    return max(0, min(n - 1, round(amount * n)))


def apply(model: nn.Module, *, method: str, amount: float, norm: int = 1) -> None:
    """Prune ``model`` in place; the masks stay attached (``weight_orig`` * ``weight_mask``)
    until :func:`make_permanent`, so fine-tuning keeps the pruned weights at zero.

    Raises:
        ConfigError: the network has nothing this method can prune.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        >>> apply(net, method="structured", amount=0.5)
        >>> _ = make_permanent(net)
        >>> int((net[0].weight.flatten(1).abs().sum(1) == 0).sum()), int((net[1].weight == 0).sum())
        (4, 4)
    """
    found = targets(model, method)
    if not found:
        raise ConfigError(
            f"train.prune.method={method}: the network has no layer this method prunes"
        )
    if method == "unstructured":
        for module, name in found:
            weight = getattr(module, name)
            prune.l1_unstructured(module, name, amount=_count(amount, weight.numel()))
        return
    for conv, _ in _conv_bn_pairs(model):
        count = _count(amount, conv.out_channels)
        prune.ln_structured(conv, "weight", amount=count, n=norm, dim=0)
        keep = conv.weight_mask.flatten(1).amax(dim=1)
        bn = _bn_after(model, conv)
        prune.custom_from_mask(bn, "weight", keep)
        prune.custom_from_mask(bn, "bias", keep)


def _bn_after(model: nn.Module, conv: nn.Conv2d) -> nn.BatchNorm2d:
    return next(bn for c, bn in _conv_bn_pairs(model) if c is conv)


def attach(model: nn.Module, *, method: str) -> None:
    """Give ``model`` the pruning parameters of ``method`` with all-ones masks, so that a
    pruned ``state_dict`` (``weight_orig``, ``weight_mask``) loads into it (a resume)."""
    for module, name in targets(model, method):
        prune.identity(module, name)


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every mask into its weight and drop the pruning parameters: a plain module whose
    ``state_dict`` fits the architecture again."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):  # a PruningContainer is one too
                prune.remove(module, hook._tensor_name)
    return model


def sparsity(model: nn.Module) -> dict[str, float | int]:
    """Zeros among the conv and linear weights, non-zero parameters, and zeroed conv channels."""
    weights = [m.weight.detach() for m in _layers(model)]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    channels = sum(w.shape[0] for w in weights if w.ndim == 4)
    dead = sum(int((w.flatten(1).abs().amax(1) == 0).sum()) for w in weights if w.ndim == 4)
    params = [p.detach() for p in model.parameters()]
    return {
        "weight_sparsity": zeros / total if total else math.nan,
        "nonzero_params": sum(int(torch.count_nonzero(p)) for p in params),
        "zero_conv_channels": dead,
        "conv_channels": channels,
    }
