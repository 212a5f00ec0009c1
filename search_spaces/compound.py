"""Compound-scaling space: EfficientNet's (α, β, γ) grid with α·β²·γ² ≈ 2.

Optuna's GridSampler cannot filter a grid by a constraint and wants primitive categorical
values, so the admissible points are enumerated here and exposed as one categorical choice
``point`` whose values are string keys such as ``"a1.2_b1.1_g1.15"``.

Given φ, a point maps the base MBConv network to depth α^φ, width β^φ and resolution γ^φ
(layers rounded up, channels to multiples of 8, resolution to a multiple of 8); the scaled
member is an ordinary ``mbconv`` architecture (:meth:`CompoundSpace.scaled_arch`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from nas import Arch, Choice, SearchSpace, load_arch, register_space
from nas._arch import as_arch
from nas._space import Primitive
from search_spaces.mbconv import B0_GENOTYPE


@dataclass(frozen=True)
class Point:
    """One (α, β, γ) point of the compound-scaling grid."""

    alpha: float
    beta: float
    gamma: float

    @property
    def key(self) -> str:
        return f"a{self.alpha:g}_b{self.beta:g}_g{self.gamma:g}"

    @property
    def product(self) -> float:
        """α·β²·γ², the FLOPs factor of one step of φ."""
        return self.alpha * self.beta**2 * self.gamma**2

    @classmethod
    def from_key(cls, key: str) -> Point:
        try:
            a, b, g = (float(part[1:]) for part in key.split("_"))
        except ValueError:
            raise ValueError(f"not a compound-scaling point key: {key!r}") from None
        return cls(a, b, g)


def _axis(lo: float, hi: float, step: float, name: str) -> list[float]:
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    if lo < 1.0 or hi < lo:
        raise ValueError(f"{name} range must satisfy 1 <= low <= high, got [{lo}, {hi}]")
    n = math.floor((hi - lo) / step + 1e-9)
    return [round(lo + i * step, 6) for i in range(n + 1)]


def admissible_points(
    *,
    alpha: tuple[float, float] = (1.0, 2.0),
    beta: tuple[float, float] = (1.0, 2.0),
    gamma: tuple[float, float] = (1.0, 2.0),
    step: float = 0.05,
    target: float = 2.0,
    tolerance: float = 0.1,
) -> list[Point]:
    """All grid points with |α·β²·γ² − target| <= tolerance (α, β, γ >= 1).

    Example:
        >>> len(admissible_points())
        109
    """
    points = [
        Point(a, b, g)
        for a in _axis(*alpha, step, "alpha")
        for b in _axis(*beta, step, "beta")
        for g in _axis(*gamma, step, "gamma")
    ]
    ok = [p for p in points if abs(p.product - target) <= tolerance + 1e-12]
    if not ok:
        closest = sorted(points, key=lambda p: abs(p.product - target))[:3]
        shown = ", ".join(
            f"({p.alpha:g}, {p.beta:g}, {p.gamma:g}) -> {p.product:.4f}" for p in closest
        )
        raise ValueError(
            f"no admissible (alpha, beta, gamma) point: none has |a*b^2*g^2 - {target:g}| <= "
            f"{tolerance:g}; closest: {shown}; raise space.tolerance or refine space.step"
        )
    return ok


def round_resolution(resolution: float) -> int:
    """Round an input resolution to the nearest multiple of 8 (at least 8)."""
    return max(8, round(resolution / 8.0) * 8)


def _base_arch(base: str | Mapping[str, Any]) -> Arch:
    if isinstance(base, str) and base.lower() == "b0":
        return Arch(
            space="mbconv",
            genotype=dict(B0_GENOTYPE),
            resolution=224,
            num_classes=1000,
            space_options={"resolution": 224},
        )
    arch = load_arch(base) if isinstance(base, str | os.PathLike) else as_arch(base)
    if arch.space != "mbconv":
        raise ValueError(
            f"compound scaling needs an MBConv base network; {base if isinstance(base, str) else 'base'}"
            f" is an architecture of space {arch.space!r}"
        )
    return arch


@register_space("compound")
class CompoundSpace(SearchSpace):
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
        >>> from nas import make_space
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
        base_arch = _base_arch(base)
        super().__init__(resolution=resolution or base_arch.resolution)
        if base_width <= 0:
            raise ValueError(f"base_width must be > 0, got {base_width}")
        if phi < 0:
            raise ValueError(f"phi must be >= 0, got {phi}")
        self.base_arch = base_arch
        self.base_width = float(base_width)
        self.phi = float(phi)
        self.points = admissible_points(
            alpha=tuple(alpha),
            beta=tuple(beta),
            gamma=tuple(gamma),
            step=step,
            target=target,
            tolerance=tolerance,
        )
        self._by_key = {p.key: p for p in self.points}
        self._options: dict[str, Any] = {
            "base": base if isinstance(base, str) else base_arch.to_dict(),
            "resolution": self.resolution,
            "base_width": self.base_width,
            "alpha": list(alpha),
            "beta": list(beta),
            "gamma": list(gamma),
            "step": step,
            "target": target,
            "tolerance": tolerance,
            "phi": self.phi,
        }
        self._choices = (Choice("point", tuple(self._by_key)),)

    @property
    def choices(self) -> tuple[Choice, ...]:
        return self._choices

    def options(self) -> dict[str, Any]:
        return dict(self._options)

    def point(self, genotype: Mapping[str, Primitive]) -> Point:
        return self._by_key[str(self.validate(genotype)["point"])]

    def scaled_arch(self, point: Point, phi: float, *, num_classes: int) -> Arch:
        """The base network scaled by ``point`` at ``phi``, as an ``mbconv`` architecture."""
        base_opts = dict(self.base_arch.space_options)
        width = float(base_opts.get("width_mult", 1.0)) * self.base_width * point.beta**phi
        depth = float(base_opts.get("depth_mult", 1.0)) * point.alpha**phi
        resolution = round_resolution(self.resolution * point.gamma**phi)
        base_opts.update(width_mult=width, depth_mult=depth, resolution=resolution)
        return Arch(
            space="mbconv",
            genotype=dict(self.base_arch.genotype),
            resolution=resolution,
            num_classes=num_classes,
            space_options=base_opts,
        )

    def member(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> Arch:
        """The ``mbconv`` architecture of a genotype at this space's φ."""
        return self.scaled_arch(self.point(genotype), self.phi, num_classes=num_classes)

    def resolution_of(self, genotype: Mapping[str, Primitive]) -> int:
        return round_resolution(self.resolution * self.point(genotype).gamma ** self.phi)

    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        return self.member(genotype, num_classes=num_classes).build()

    def identity(self, genotype: Mapping[str, Primitive]) -> str:
        """Points that round to the same network share one identity (and one evaluation)."""
        member = self.member(genotype, num_classes=1)
        return member.make_space().identity(member.genotype)

    def describe(self, genotype: Mapping[str, Primitive]) -> str:
        p = self.point(genotype)
        return f"alpha={p.alpha:g} beta={p.beta:g} gamma={p.gamma:g}"
