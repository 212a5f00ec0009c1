"""Step 2 of compound scaling: the family φ = 0..N (or B0..B7), profiled, exported and timed.

Scale of the family (``scaling.family``): the paper scales the real B0, while step 1 searched
a proxy-reduced base. By default (``proxy``) the family is built, timed, trained and exported
at the searched scale, where the measurements are affordable and comparable with step 1, and
the parameters and MACs of the same members at full scale (the base as given, e.g. B0 at
224 px) are reported beside them (counted on PyTorch's ``meta`` device: no memory, no
compute). ``full`` does everything at full scale (for a GPU, or a patient CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._latency.latency import LatencySettings, measure_latencies
from nas._latency.profile import profile
from nas._models.mbconvnet import EFFICIENTNET_TABLE
from nas._scaling.compound import (
    PAPER_COEFFICIENTS,
    CompoundScaling,
    Point,
    blocks,
    meta_size,
)
from nas._spaces.arch import Arch, save_arch
from nas._spaces.build import build_model
from nas._trials.latency import LatencyResult

MODES = ("search", "official")
FAMILY_SCALES = ("proxy", "full")


@dataclass
class Member:
    """One network of the scaled family (step 2), at the family's scale unless marked ``full_``.

    ``depth_mult``, ``width_mult`` and ``resolution_mult`` are relative to the base (α^φ, β^φ,
    γ^φ in search mode, the published multipliers in official mode); ``paper_*`` are the powers
    of the paper's (1.2, 1.1, 1.15) at the same φ; ``macs_ratio`` is MACs over the base's
    (the procedure intends target^φ, ``macs_vs_target`` = macs_ratio / target^φ).
    """

    name: str
    phi: int
    depth_mult: float
    width_mult: float
    resolution_mult: float
    resolution: int
    blocks: int
    params: int
    macs: int
    conv_linear_macs: int
    macs_ratio: float
    target_ratio: float
    macs_vs_target: float
    arch_file: str
    paper_depth_mult: float
    paper_width_mult: float
    paper_resolution_mult: float
    full_resolution: int | None = None
    full_params: int | None = None
    full_macs: int | None = None
    full_macs_ratio: float | None = None
    latency_ms: float | None = None
    latency_relative: float | None = None
    latency: dict[str, Any] | None = None
    accuracy: float | None = None
    curve: list[float] = field(default_factory=list)
    train_seconds: float | None = None


def member_name(mode: str, phi: int) -> str:
    return f"b{phi}" if mode == "official" else f"phi_{phi}"


def _multipliers(arch: Arch) -> tuple[float, float]:
    o = arch.space_options
    return float(o.get("depth_mult", 1.0)), float(o.get("width_mult", 1.0))


def _build(arch: Arch, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch)


def family_archs(
    scaling: CompoundScaling, *, mode: str, point: Point, max_phi: int, num_classes: int
) -> list[tuple[int, Arch]]:
    """The family's architectures: φ = 0..max_phi from ``point``, or the published B0..B7."""
    if mode == "official":
        return scaling.official(num_classes=num_classes)
    return scaling.family(point, max_phi=max_phi, num_classes=num_classes)


def build_members(
    scaling: CompoundScaling,
    *,
    mode: str,
    coefficients: tuple[float, float, float],
    max_phi: int,
    num_classes: int,
    family: str,
    target: float,
    run_dir: Path,
    seed: int = 0,
) -> tuple[list[Member], list[nn.Module]]:
    """Profile and export the family (φ = 0..max_phi, or B0..B7); no latency or accuracy yet."""
    full = scaling.full_scale()
    same_scale = full == scaling
    built = full if family == "full" else scaling
    point = Point(*coefficients)
    archs = family_archs(built, mode=mode, point=point, max_phi=max_phi, num_classes=num_classes)
    full_archs = (
        archs
        if same_scale or family == "full"
        else family_archs(full, mode=mode, point=point, max_phi=max_phi, num_classes=num_classes)
    )
    base_depth, base_width = _multipliers(archs[0][1])
    members: list[Member] = []
    models: list[nn.Module] = []
    pa, pb, pg = PAPER_COEFFICIENTS
    base_macs = base_full_macs = 0
    for (phi, arch), (_, full_arch) in zip(archs, full_archs, strict=True):
        model = _build(arch, seed)
        prof = profile(model, resolution=arch.resolution)
        full_params, full_macs = meta_size(full_arch)
        if phi == 0:
            base_macs, base_full_macs = prof.macs, full_macs
        name = member_name(mode, phi)
        path = save_arch(
            arch.with_metrics(phi=phi, params=prof.params, macs=prof.macs),
            run_dir / "family" / f"{name}.yaml",
        )
        depth, width = _multipliers(arch)
        ratio = prof.macs / base_macs
        members.append(
            Member(
                name=name,
                phi=phi,
                depth_mult=depth / base_depth,
                width_mult=width / base_width,
                resolution_mult=(
                    EFFICIENTNET_TABLE[name][2] / EFFICIENTNET_TABLE["b0"][2]
                    if mode == "official"
                    else point.gamma**phi
                ),
                resolution=arch.resolution,
                blocks=blocks(arch),
                params=prof.params,
                macs=prof.macs,
                conv_linear_macs=prof.conv_linear_macs,
                macs_ratio=ratio,
                target_ratio=target**phi,
                macs_vs_target=ratio / target**phi,
                arch_file=str(path.relative_to(run_dir)),
                paper_depth_mult=pa**phi,
                paper_width_mult=pb**phi,
                paper_resolution_mult=pg**phi,
                full_resolution=full_arch.resolution,
                full_params=full_params,
                full_macs=full_macs,
                full_macs_ratio=full_macs / base_full_macs,
            )
        )
        models.append(model)
    return members, models


class _OwnInput(nn.Module):
    """Runs the wrapped network on an input of its own, ignoring the one it is given.

    :func:`nas.measure_latencies` times its networks on one shared input shape, but family
    members differ in resolution; each carries its input as a buffer (so it follows the module
    to the device) and the shared one is a token 1x1 image.
    """

    def __init__(self, model: nn.Module, *, resolution: int, batch_size: int) -> None:
        super().__init__()
        self.model = model
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch_size, 3, resolution, resolution, generator=gen)
        self.register_buffer("x", x, persistent=False)

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return self.model(self.x)


def measure_family(
    models: Sequence[nn.Module], resolutions: Sequence[int], settings: LatencySettings
) -> list[LatencyResult]:
    """Latency of every member, all in the same interleaved rounds."""
    if settings.reference_resolution is None:
        # "the candidate's" would be the token input's; the base member's is the natural one
        settings = settings.replace(reference_resolution=max(8, resolutions[0]))
    wrapped = [
        _OwnInput(m, resolution=r, batch_size=settings.batch_size)
        for m, r in zip(models, resolutions, strict=True)
    ]
    return measure_latencies(wrapped, resolution=1, settings=settings)
