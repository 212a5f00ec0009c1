"""Training-free scores: SynFlow and jacob_cov, computed on a deep copy of the model.

Both rank networks without training, in well under a second; ``experiments/proxy_fidelity``
holds how well they rank against training here.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from nas._accuracy.proxy import (
    AccuracyResult,
    Evaluator,
    NonFiniteLossError,
    OnEpoch,
    check_number,
    logits_of,
    resolve_device,
    seeded,
)
from nas._data.data import Dataset, check_resolution


@dataclass(frozen=True)
class SynflowEvaluator(Evaluator):
    """SynFlow score: data-free, higher is better; reported as log10 of the sum.

    Tanaka et al. 2020, "Pruning neural networks without any data by iteratively conserving
    synaptic flow" (NeurIPS), used as a zero-cost NAS proxy by Abdelfattah et al. 2021,
    "Zero-Cost Proxies for Lightweight NAS" (ICLR). As in the latter's reference code: on a
    copy without BatchNorm, in float64, every parameter replaced by its absolute value, an
    all-ones input, R = sum of the outputs; score = sum over conv and linear weights of
    |θ ⊙ ∂R/∂θ|. The log keeps the figure readable (raw sums reach 1e30 and more) and ranks
    the same.

    Example:
        >>> from nas import load_data
        >>> from nas.measure import make_evaluator
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32, width_mult=0.25)
        >>> model = space.build(space.random_genotype(0), num_classes=10)
        >>> data = load_data(name="synthetic", resolution=32)
        >>> make_evaluator(name="synflow")(model, data).epochs
        0
    """

    name: ClassVar[str] = "synflow"

    def __call__(
        self,
        model: nn.Module,
        data: Dataset,
        *,
        device: str = "cpu",
        on_epoch: OnEpoch | None = None,
        seed: int | None = None,
        identity: str | None = None,
    ) -> AccuracyResult:
        """Score a deep copy of ``model`` (the model itself is not changed)."""
        dev = resolve_device(device)
        check_resolution(model, data.resolution)
        start = time.perf_counter()
        raw = synflow_sum(model, data.resolution, dev)
        if not math.isfinite(raw) or raw <= 0:
            raise NonFiniteLossError(
                f"synflow sum is {raw} (float64 overflow or a dead network); cannot score"
            )
        return AccuracyResult(
            accuracy=math.log10(raw), seconds=time.perf_counter() - start, evaluator=self.name
        )


def synflow_sum(model: nn.Module, resolution: int, dev: torch.device) -> float:
    """The synaptic-flow sum of a copy of ``model`` (see :class:`SynflowEvaluator`)."""
    net = _without_batchnorm(copy.deepcopy(model)).to(device=dev, dtype=torch.float64)
    net.eval()
    with torch.no_grad():
        for p in net.state_dict().values():
            p.abs_()
    net.zero_grad(set_to_none=True)
    ones = torch.ones((1, 3, resolution, resolution), dtype=torch.float64, device=dev)
    logits_of(net(ones)).sum().backward()
    raw = 0.0
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.Linear) and m.weight.grad is not None:
                raw += float((m.weight * m.weight.grad).abs().sum())
    return raw


def _without_batchnorm(net: nn.Module) -> nn.Module:
    for name, child in list(net.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, nn.Identity())
        else:
            _without_batchnorm(child)
    return net


@dataclass(frozen=True)
class JacobCovEvaluator(Evaluator):
    """jacob_cov score: correlation of input Jacobians over a batch; higher is better.

    Mellor et al. 2021, "Neural Architecture Search without Training" (ICML; the Jacobian
    covariance score of arXiv:2006.04647v1), as in Abdelfattah et al. 2021's reference code:
    J = ∂(sum of outputs)/∂x per image of a batch (the model in training mode, so BatchNorm
    uses batch statistics), C = corrcoef(J), eigenvalues λ of C, k = 1e-5;
    score = -Σ [log(λ + k) + 1/(λ + k)]. Computed on a deep copy.

    Args:
        batch_size: images in the batch (drawn from the training split with ``seed``).
        seed: seeds the batch and every random layer.

    Example:
        >>> from nas import load_data
        >>> from nas.measure import make_evaluator
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32, width_mult=0.25)
        >>> model = space.build(space.random_genotype(0), num_classes=10)
        >>> data = load_data(name="synthetic", resolution=32)
        >>> make_evaluator(name="jacob_cov", batch_size=32)(model, data).curve
        []
    """

    name: ClassVar[str] = "jacob_cov"

    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("batch_size", self.batch_size, minimum=2, integer=True)
        check_number("seed", self.seed, minimum=0, integer=True)

    def __call__(
        self,
        model: nn.Module,
        data: Dataset,
        *,
        device: str = "cpu",
        on_epoch: OnEpoch | None = None,
        seed: int | None = None,
        identity: str | None = None,
    ) -> AccuracyResult:
        """Score a deep copy of ``model`` (the model itself is not changed)."""
        dev = resolve_device(device)
        check_resolution(model, data.resolution)
        start = time.perf_counter()
        net = copy.deepcopy(model).to(dev)
        net.train()
        gen = torch.Generator().manual_seed(self.seed)
        n = min(self.batch_size, len(data.y_train))
        idx = torch.randperm(len(data.y_train), generator=gen)[:n]
        with seeded(self.seed if seed is None else seed, dev):
            score = jacob_cov_of(net, data.x_train[idx].to(dev))
        if not math.isfinite(score):
            raise NonFiniteLossError(
                "jacob_cov score is not finite (an input Jacobian is constant over the batch)"
            )
        return AccuracyResult(
            accuracy=score, seconds=time.perf_counter() - start, evaluator=self.name
        )


def jacob_cov_of(net: nn.Module, x: torch.Tensor) -> float:
    """The jacob_cov score of ``net`` (changed: gradients) on the batch ``x`` (see
    :class:`JacobCovEvaluator`); ``nan`` when an input Jacobian is constant over the batch."""
    n = len(x)
    x = x.clone().requires_grad_(True)
    out = logits_of(net(x))
    if not out.requires_grad:
        return math.nan  # the output does not depend on the input (every path is "none")
    out.backward(torch.ones_like(out))
    if x.grad is None:
        return math.nan
    jacobian = x.grad.reshape(n, -1).double().cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(jacobian)
    k = 1e-5
    if not np.isfinite(corr).all():
        return math.nan
    eig = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
    return float(-np.sum(np.log(eig + k) + 1.0 / (eig + k)))
