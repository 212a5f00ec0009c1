"""Compound-scaling space: EfficientNet's (α, β, γ) grid with α·β²·γ² ≈ 2, at a fixed φ.

One categorical choice ``point`` over the admissible points; a genotype's network is the base
MBConv network scaled by that point at ``phi``. The framework holds the grid, the scaling and
the space's behaviour (``nas.scaling.CompoundScalingSpace``); this module declares its options
and what ``base: b0`` means. The two-step procedure (``nas.run_scaling``) searches this space
at φ = 1, then scales the winner.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from nas.scaling import CompoundGrid, CompoundScaling, CompoundScalingSpace
from nas.space import Arch, as_arch, register_space
from search_spaces.mbconv import B0_GENOTYPE


def base_arch(base: str | Mapping[str, Any]) -> Arch:
    """``"b0"`` (EfficientNet-B0 at 224 px, 1000 classes), or an ``mbconv`` architecture."""
    if isinstance(base, str) and base.lower() == "b0":
        return Arch(
            space="mbconv",
            genotype=dict(B0_GENOTYPE),
            resolution=224,
            num_classes=1000,
            space_options={"resolution": 224},
        )
    return as_arch(base if isinstance(base, Mapping) else os.fspath(base))


@register_space
class CompoundSpace(CompoundScalingSpace):
    """One categorical choice over the admissible (α, β, γ) points, applied at a fixed φ.

    Args:
        base: ``"b0"`` (EfficientNet-B0) or an ``mbconv`` architecture file or mapping.
        resolution: base input resolution (default: the base architecture's).
        base_width: extra width multiplier of the base (a reduced proxy network when < 1).
        alpha, beta, gamma: ``[low, high]`` ranges of the grid.
        step: grid step.
        target: the FLOPs factor per unit of φ (2 in the paper).
        tolerance: admit points with |α·β²·γ² − target| <= tolerance.
        phi: the compound coefficient the space's networks are built at.

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("compound", resolution=32, base_width=0.25)
        >>> len(space.points)
        109
    """

    def __init__(
        self,
        *,
        base: str | Mapping[str, Any] = "b0",
        resolution: int | None = None,
        base_width: float = 1.0,
        alpha: tuple[float, float] = (1.0, 2.0),
        beta: tuple[float, float] = (1.0, 2.0),
        gamma: tuple[float, float] = (1.0, 2.0),
        step: float = 0.05,
        target: float = 2.0,
        tolerance: float = 0.1,
        phi: float = 1.0,
    ) -> None:
        self.setup(
            CompoundScaling(base_arch(base), resolution, float(base_width)),
            CompoundGrid(alpha, beta, gamma, step, target, tolerance),
            phi=phi,
        )
