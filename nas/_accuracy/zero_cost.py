"""Training-free ("zero-cost") scores of a network at initialisation, computed in shared passes.

Each score follows its paper (and, where one exists, NASLib's reference implementation, whose
published values on 724 NAS-Bench-201 cells ``experiments/proxy_ground_truth`` compares with):

========== ====== =====================================================================
name       labels definition
========== ====== =====================================================================
params     no     parameter count
flops      no     multiply-accumulates of one image (``torch.utils.flop_counter``)
depth      no     most conv/linear layers on one path from input to output (autograd graph)
synflow    no     Tanaka et al. 2020 / Abdelfattah et al. 2021 (:mod:`nas._accuracy.scores`)
jacob_cov  no     Mellor et al. 2021 v1 (:mod:`nas._accuracy.scores`)
naswot     no     Mellor et al. 2021 (ICML): log|det K|, K_ij = units where the binary
                  activation codes of images i and j agree, summed over activation layers
meco       no     Jiang et al. 2023 (NeurIPS): Σ over layers of the least eigenvalue of the
                  Pearson correlation between the channels of one image's feature map
az_expressivity  no  Lee & Ham 2024 (AZ-NAS, CVPR): Σ over blocks of the entropy of the
                  normalised eigenvalues of the block output's channel covariance
az_progressivity no  AZ-NAS: least increase of that entropy from one block to the next
az_trainability  no  AZ-NAS's form, -mean over blocks of (σ + 1/σ - 2), with a simpler σ:
                  |J^T v| / |v| for one Gaussian v backpropagated from the last block (AZ-NAS:
                  the largest singular value of the gradients' cross-covariance, a fresh ±1
                  vector per block; an identity block scores -inf there, 0 (best) here). Not
                  AZ-NAS's trainability: a reviewer's re-implementation of it ranked 14 cells at
                  Spearman 0.35 against this one
snip       yes    Lee et al. 2019: Σ |θ ⊙ ∂L/∂θ| over conv and linear weights, cross-entropy
grad_norm  yes    Abdelfattah et al. 2021: Σ over conv and linear layers of |∂L/∂W|_2
zico       yes    Li et al. 2023 (ICLR): Σ over layers of log Σ_θ mean|g_θ| / std(g_θ), the
                  gradients of two independent batches as the paper says (its code keeps the
                  first batch's gradient in the second), std with Bessel's correction
========== ====== =====================================================================

All scores are "higher is better": depth, parameters and FLOPs are reported as counts (larger
networks rank higher, as in NAS-Bench-Suite-Zero). They are computed on a deep copy in training
mode (BatchNorm uses the batch's statistics, as NASLib does at initialisation; dropout and
stochastic depth off), with the network's own initialisation, on ``batch_size`` training images
drawn with ``seed``; the two ZiCo batches are the first ``batch_size`` and the next
``batch_size`` images of that draw. Departures from a paper: NASWOT's batch is 64 (the paper's
128; NASLib's 32), and it reads every activation (SiLU and the like too, not only ReLU); MeCo
reads image 0 of the batch (the paper feeds one image alone); AZ-NAS feeds Gaussian noise to
Kaiming-initialised weights, these scores real images to the network as built.

Hand-written: no maintained library computes these scores on an arbitrary ``nn.Module``
(NASLib's ``predictors/utils/pruners`` is tied to its own graph classes and unmaintained).
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas._accuracy.proxy import logits_of, resolve_device, seeded
from nas._accuracy.scores import jacob_cov_of, synflow_sum
from nas._data.data import Dataset, check_resolution
from nas._models.blocks import StochasticDepth


@dataclass(frozen=True)
class ScoreInfo:
    """What a score needs: labels (``labels``) and which shared pass computes it."""

    labels: bool
    group: str


#: Every training-free score by name (the ``score`` option of ``conf/evaluator/score.yaml``).
SCORES: dict[str, ScoreInfo] = {
    "params": ScoreInfo(False, "size"),
    "flops": ScoreInfo(False, "size"),
    "depth": ScoreInfo(False, "size"),
    "synflow": ScoreInfo(False, "synflow"),
    "jacob_cov": ScoreInfo(False, "jacob_cov"),
    "naswot": ScoreInfo(False, "forward"),
    "meco": ScoreInfo(False, "forward"),
    "az_expressivity": ScoreInfo(False, "forward"),
    "az_progressivity": ScoreInfo(False, "forward"),
    "az_trainability": ScoreInfo(False, "trainability"),
    "snip": ScoreInfo(True, "gradients"),
    "grad_norm": ScoreInfo(True, "gradients"),
    "zico": ScoreInfo(True, "gradients"),
}

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU, nn.LeakyReLU, nn.Mish)
_WEIGHTED = (nn.Conv2d, nn.Linear)


def check_scores(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple, each a known score.

    Raises:
        ValueError: an unknown name (listing the known ones) or none at all.
    """
    names = tuple(names)
    unknown = [n for n in names if n not in SCORES]
    if unknown:
        raise ValueError(f"unknown score {unknown[0]!r}; known: {', '.join(SCORES)}")
    if not names:
        raise ValueError("no score named; known: " + ", ".join(SCORES))
    return names


def compute_scores(
    model: nn.Module,
    data: Dataset,
    names: Iterable[str],
    *,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    seconds: dict[str, float] | None = None,
) -> dict[str, float]:
    """The training-free scores ``names`` of ``model`` (not changed), sharing passes.

    Non-finite scores come back as ``nan`` (a dead network: for example a NAS-Bench-201 cell
    whose every path is ``none``). ``seconds``, when given, receives the CPU seconds
    (``time.process_time``) of each shared pass by group.

    Example:
        >>> from nas import load_data
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32, width_mult=0.25)
        >>> model = space.build(space.random_genotype(0), num_classes=10)
        >>> data = load_data(name="synthetic", resolution=32)
        >>> sorted(compute_scores(model, data, ["naswot", "params"], batch_size=16))
        ['naswot', 'params']
    """
    names = check_scores(names)
    dev = resolve_device(device)
    check_resolution(model, data.resolution)
    groups = {SCORES[n].group for n in names}
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data.y_train), generator=gen)
    n = min(batch_size, len(order))
    x1 = data.x_train[order[:n]].to(dev)
    if len(order) >= 2 * n:  # the gradient scores' two batches (ZiCo needs two)
        one, two = order[:n], order[n : 2 * n]
    elif n >= 4:  # too few images for two batches: the halves of the one
        one, two = order[: n // 2], order[n // 2 : n]
    else:
        raise ValueError(f"{n} training images: the scores need at least 4")
    batches = tuple((data.x_train[b].to(dev), data.y_train[b].to(dev)) for b in (one, two))
    out: dict[str, float] = {}
    timing = seconds if seconds is not None else {}

    def run(group: str, fn: Callable[[], dict[str, float]]) -> None:
        if group in groups:
            start = time.process_time()
            with seeded(seed, dev):
                out.update(fn())
            timing[group] = time.process_time() - start

    run("size", lambda: _size(model, x1[:1]))
    run("synflow", lambda: {"synflow": _synflow(model, data.resolution, dev)})
    run("jacob_cov", lambda: {"jacob_cov": _jacob_cov(model, x1)})
    run("forward", lambda: _forward_scores(model, x1))
    run("trainability", lambda: {"az_trainability": _trainability(model, x1)})
    run("gradients", lambda: _gradient_scores(model, *batches))
    return {name: _finite(out[name]) for name in names}


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else math.nan


def _copy(model: nn.Module, dev: torch.device) -> nn.Module:
    """A copy in training mode (BatchNorm on the batch's statistics, as NASLib scores at
    initialisation) with dropout and stochastic depth off: no reference drops branches."""
    net = copy.deepcopy(model).to(dev)
    net.train()
    for m in net.modules():
        if isinstance(m, nn.Dropout | StochasticDepth):
            m.eval()
    net.zero_grad(set_to_none=True)
    return net


# --- size -------------------------------------------------------------------------------------


def _size(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    net = _copy(model, x.device)
    params = sum(p.numel() for p in net.parameters())
    net.eval()  # one image: BatchNorm must not need batch statistics
    with FlopCounterMode(display=False) as counter:
        out = logits_of(net(x.clone().requires_grad_(True)))
    return {
        "params": float(params),
        "flops": counter.get_total_flops() / 2.0,  # torch counts a multiply-add as 2
        "depth": float(_depth(out)),
    }


_LAYER_NODES = ("Convolution", "Addmm", "Mm", "Linear")


def _depth(out: torch.Tensor) -> int:
    """Most conv/linear operations on one path of ``out``'s autograd graph."""
    best: dict[object, int] = {}
    stack: list[tuple[object, bool]] = [(out.grad_fn, False)]
    while stack:  # iterative post-order: deep networks overflow a recursive walk
        node, expanded = stack.pop()
        if node is None or node in best:
            continue
        children = [c for c, _ in node.next_functions if c is not None]  # type: ignore[attr-defined]
        if not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in children if c not in best)
            continue
        own = int(type(node).__name__.startswith(_LAYER_NODES))
        best[node] = own + max((best.get(c, 0) for c in children), default=0)
    return best.get(out.grad_fn, 0)


# --- synflow and jacob_cov (as the evaluators of nas._accuracy.scores define them) ------------


def _synflow(model: nn.Module, resolution: int, dev: torch.device) -> float:
    raw = synflow_sum(model, resolution, dev)
    return math.log10(raw) if raw > 0 and math.isfinite(raw) else math.nan


def _jacob_cov(model: nn.Module, x: torch.Tensor) -> float:
    return jacob_cov_of(_copy(model, x.device), x)


# --- one forward pass: NASWOT, MeCo, AZ-NAS expressivity and progressivity --------------------


def blocks(model: nn.Module) -> list[nn.Module]:
    """The network's blocks, in order: its top-level modules, with sequential containers of
    containers (stages) opened, less global pooling; those whose output is a feature map are
    scored per block."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            inner = list(child.children())
            if (
                isinstance(child, nn.Sequential)
                and inner
                and all(list(c.children()) for c in inner)
            ):
                visit(child)
            elif not isinstance(child, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
                found.append(child)

    visit(model)
    return found


def _forward_scores(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    net = _copy(model, x.device)
    n = len(x)
    kernel = torch.zeros(n, n, dtype=torch.float64)
    meco = 0.0
    block_outputs: list[torch.Tensor] = []

    def on_activation(module: nn.Module, inputs: tuple[torch.Tensor, ...], _: object) -> None:
        codes = (inputs[0].detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    def on_module(module: nn.Module, _: object, output: object) -> None:
        nonlocal meco
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[1] > 1:
            meco += _least_correlation_eigenvalue(output[0].detach())

    def on_block(module: nn.Module, _: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            block_outputs.append(output.detach())

    handles = [
        m.register_forward_hook(on_activation) for m in net.modules() if isinstance(m, _ACTIVATIONS)
    ]
    handles += [m.register_forward_hook(on_module) for m in net.modules() if m is not net]
    handles += [b.register_forward_hook(on_block) for b in blocks(net)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    naswot = float(np.linalg.slogdet(kernel.numpy())[1])
    entropies = [_isotropy(f) for f in block_outputs]
    steps = [b - a for a, b in itertools.pairwise(entropies)]
    return {
        "naswot": naswot,
        "meco": meco,
        "az_expressivity": float(sum(entropies)),
        "az_progressivity": float(min(steps)) if steps else math.nan,
    }


def _least_correlation_eigenvalue(feature: torch.Tensor) -> float:
    """MeCo's term: least eigenvalue of the channels' Pearson correlation (C, H*W)."""
    rows = feature.reshape(feature.shape[0], -1).double()
    if rows.shape[0] > rows.shape[1]:
        return 0.0  # more channels than pixels: the correlation is singular, its least eigenvalue 0
    corr = torch.corrcoef(rows)
    corr = torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
    return float(torch.linalg.eigvalsh(corr)[0])


def _isotropy(feature: torch.Tensor) -> float:
    """AZ-NAS expressivity of one block: entropy of the normalised eigenvalues of the channel
    covariance of its output, the batch's pixels as samples."""
    c = feature.shape[1]
    samples = feature.permute(0, 2, 3, 1).reshape(-1, c).double()
    samples = samples - samples.mean(0, keepdim=True)
    cov = samples.T @ samples / max(1, len(samples) - 1)
    eig = torch.linalg.eigvalsh(cov).clamp(min=0)
    total = float(eig.sum())
    if total <= 0 or not math.isfinite(total):
        return 0.0
    p = eig / total
    p = p[p > 0]
    return float(-(p * p.log()).sum())


# --- AZ-NAS trainability ------------------------------------------------------------------------


def _trainability(model: nn.Module, x: torch.Tensor) -> float:
    net = _copy(model, x.device)
    outputs: list[torch.Tensor] = []

    def on_block(module: nn.Module, _: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.requires_grad:
            output.retain_grad()
            outputs.append(output)

    handles = [b.register_forward_hook(on_block) for b in blocks(net)]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    if len(outputs) < 2:
        return math.nan
    last = outputs[-1]
    last.backward(torch.randn_like(last))
    terms = []
    for before, after in itertools.pairwise(outputs):
        if before.grad is None or after.grad is None:
            continue
        g_in, g_out = float(before.grad.norm()), float(after.grad.norm())
        if g_in > 0 and g_out > 0:
            sigma = g_in / g_out
            terms.append(sigma + 1 / sigma - 2)
    return -float(np.mean(terms)) if terms else math.nan


# --- labelled gradients: snip, grad_norm, ZiCo ----------------------------------------------------


def _gradient_scores(
    model: nn.Module, first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, ...]
) -> dict[str, float]:
    net = _copy(model, first[0].device)
    layers = [m for m in net.modules() if isinstance(m, _WEIGHTED)]
    grads: list[list[torch.Tensor]] = []
    snip = grad_norm = 0.0
    for k, (x, y) in enumerate((first, second)):
        net.zero_grad(set_to_none=True)
        loss = F.cross_entropy(logits_of(net(x)), y)
        loss.backward()
        grads.append([_grad(m) for m in layers])
        if k == 0:
            with torch.no_grad():
                for m, g in zip(layers, grads[0], strict=True):
                    snip += float((m.weight * g).abs().sum())
                    grad_norm += float(g.norm())
    zico = 0.0
    for g1, g2 in zip(*grads, strict=True):
        both = torch.stack([g1, g2]).double()
        std = both.std(0)
        mean_abs = both.abs().mean(0)
        keep = std != 0
        total = float((mean_abs[keep] / std[keep]).sum())
        if total > 0:
            zico += math.log(total)
    return {"snip": snip, "grad_norm": grad_norm, "zico": zico}


def _grad(m: nn.Module) -> torch.Tensor:
    g = m.weight.grad  # type: ignore[union-attr]
    return torch.zeros_like(m.weight) if g is None else g.detach().clone()  # type: ignore[arg-type]
