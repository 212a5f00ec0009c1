"""Compound scaling's building blocks: the admissible (α, β, γ) grid and the scaled networks.

Optuna's GridSampler cannot filter a grid by a constraint and wants primitive categorical
values, so :class:`CompoundGrid` enumerates the admissible points itself; a space exposes them
as one categorical whose values are the points' string keys (``"a1.2_b1.1_g1.15"``).

Given φ, :class:`CompoundScaling` maps a base architecture to depth α^φ, width β^φ and
resolution γ^φ (resolution to a multiple of 8; the space rounds layers and channels); each
scaled member is an ordinary architecture of the base's space, which says how through
:class:`CompoundScalable` (no space is named here). :class:`CompoundScalingSpace` is the base
class of a space over the grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas._models.mbconvnet import EFFICIENTNET_TABLE
from nas._spaces.arch import Arch, Primitive
from nas._spaces.base import Choice, SearchSpace
from nas._spaces.build import build_model, space_of
from nas._spaces.registry import get_space

#: The paper's coefficients (section 4.2: "α = 1.2, β = 1.1, γ = 1.15").
PAPER_COEFFICIENTS = (1.2, 1.1, 1.15)


@dataclass(frozen=True)
class Point:
    """One (α, β, γ) point of the compound-scaling grid.

    Example:
        >>> Point(1.2, 1.1, 1.15).key, round(Point(1.2, 1.1, 1.15).product, 4)
        ('a1.2_b1.1_g1.15', 1.9203)
    """

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


@dataclass(frozen=True)
class CompoundGrid:
    """The admissible (α, β, γ) of a grid: ranges, step, target and tolerance.

    Example:
        >>> grid = CompoundGrid()
        >>> len(grid.points), grid.point("a1.2_b1.1_g1.15") in grid.points
        (109, True)
    """

    alpha: tuple[float, float] = (1.0, 2.0)
    beta: tuple[float, float] = (1.0, 2.0)
    gamma: tuple[float, float] = (1.0, 2.0)
    step: float = 0.05
    target: float = 2.0
    tolerance: float = 0.1
    points: tuple[Point, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        points = admissible_points(
            alpha=self.alpha,  # type: ignore[arg-type]
            beta=self.beta,  # type: ignore[arg-type]
            gamma=self.gamma,  # type: ignore[arg-type]
            step=self.step,
            target=self.target,
            tolerance=self.tolerance,
        )
        object.__setattr__(self, "points", tuple(points))

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.points)

    def point(self, key: str) -> Point:
        """The admissible point of a key.

        Raises:
            ValueError: the key is not an admissible point of this grid.
        """
        for p in self.points:
            if p.key == key:
                return p
        raise ValueError(f"{key!r} is not an admissible point of this grid")

    def rule(self) -> str:
        """The admission rule in words (for logs and results)."""
        return (
            f"α in {list(self.alpha)}, β in {list(self.beta)}, γ in {list(self.gamma)} step "
            f"{self.step:g}, all >= 1, |α·β²·γ² − {self.target:g}| <= {self.tolerance:g}"
        )


def round_resolution(resolution: float) -> int:
    """Round an input resolution to the nearest multiple of 8 (at least 8)."""
    return max(8, round(resolution / 8.0) * 8)


@runtime_checkable
class CompoundScalable(Protocol):
    """A space whose networks compound scaling can scale: the space author's side of it.

    The space class says how its options change when a network is made ``width`` times wider,
    ``depth`` times deeper and run at ``resolution`` (``extra``: further options a published
    family sets per member, such as ``dropout``). Builders never mutate what they are given.
    """

    @classmethod
    def scale_options(
        cls,
        options: Mapping[str, Any],
        *,
        width: float,
        depth: float,
        resolution: int,
        **extra: float,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CompoundScaling:
    """Scales a base architecture in depth, width and resolution.

    Args:
        base: the base network, an architecture of a :class:`CompoundScalable` space
            (EfficientNet-B0 in the paper).
        resolution: the family's base resolution (default: the base architecture's).
        base_width: extra width multiplier of the base (a reduced proxy network when < 1).

    Raises:
        ValueError: the base's space cannot be scaled, or a bad number.
    """

    base: Arch
    resolution: int | None = None
    base_width: float = 1.0

    def __post_init__(self) -> None:
        space = get_space(self.base.space)
        if not isinstance(space, CompoundScalable):
            raise ValueError(
                "compound scaling needs a base network whose space can be scaled (its class "
                "implements nas.scaling.CompoundScalable.scale_options); the base is an "
                f"architecture of space {self.base.space!r}"
            )
        if self.resolution is None:
            object.__setattr__(self, "resolution", self.base.resolution)
        if not self.base_width > 0:
            raise ValueError(f"base_width must be > 0, got {self.base_width}")

    def full_scale(self) -> CompoundScaling:
        """The same scaling of the base at its own scale (no width or resolution reduction)."""
        return replace(self, resolution=self.base.resolution, base_width=1.0)

    def _member(self, *, width: float, depth: float, resolution: int, **extra: float) -> Arch:
        space: CompoundScalable = get_space(self.base.space)  # type: ignore[assignment]
        opts = space.scale_options(
            self.base.space_options,
            width=self.base_width * width,
            depth=depth,
            resolution=resolution,
            **extra,
        )
        return Arch(
            space=self.base.space,
            genotype=dict(self.base.genotype),
            resolution=resolution,
            num_classes=self.base.num_classes,
            space_options=opts,
        )

    def scaled(self, point: Point, phi: float, *, num_classes: int) -> Arch:
        """The base scaled by ``point`` at ``phi``, an architecture of the base's space."""
        member = self._member(
            width=point.beta**phi,
            depth=point.alpha**phi,
            resolution=round_resolution(self.resolution * point.gamma**phi),  # type: ignore[operator]
        )
        return replace(member, num_classes=num_classes)

    def resolution_at(self, point: Point, phi: float) -> int:
        """Input resolution of the member at ``phi``."""
        return round_resolution(self.resolution * point.gamma**phi)  # type: ignore[operator]

    def family(self, point: Point, *, max_phi: int, num_classes: int) -> list[tuple[int, Arch]]:
        """φ = 0..max_phi scaled by ``point`` (φ = 0 is the base itself)."""
        return [
            (phi, self.scaled(point, phi, num_classes=num_classes)) for phi in range(max_phi + 1)
        ]

    def official(self, *, num_classes: int) -> list[tuple[int, Arch]]:
        """The published B0..B7 multipliers applied to the base (φ = i for B_i).

        Width and depth multiply the base's (and ``base_width``); the resolution is the
        family's times r_i / 224, rounded to an integer, so at full scale from B0 it is the
        published one (the published 260, 300, 380 are not multiples of 8). Dropout is the
        table's.
        """
        archs = []
        for i, (variant, (width, depth, res, dropout)) in enumerate(
            sorted(EFFICIENTNET_TABLE.items())
        ):
            if variant != f"b{i}":
                raise ValueError(f"EFFICIENTNET_TABLE is not b0..b{i}: found {variant!r}")
            resolution = round(self.resolution * res / EFFICIENTNET_TABLE["b0"][2])  # type: ignore[operator]
            member = self._member(width=width, depth=depth, resolution=resolution, dropout=dropout)
            archs.append((i, replace(member, num_classes=num_classes)))
        return archs


class Size(NamedTuple):
    """Parameters and conv+linear MACs of an architecture's network."""

    params: int
    macs: int


def meta_size(arch: Arch) -> Size:
    """Size of an architecture's network, counted on PyTorch's ``meta`` device.

    No weights are allocated and nothing is computed, so a B7 at 600 px costs about a second
    (thop cannot count on ``meta``; the MACs are the papers' FLOPs / 2, as
    :attr:`nas.measure.Profile.conv_linear_macs`).

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("compound")
        >>> meta_size(space.scaling.official(num_classes=1000)[0][1]).params
        5288548
    """
    with torch.device("meta"):
        model = build_model(arch).eval()
        x = torch.zeros(1, 3, arch.resolution, arch.resolution)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    return Size(sum(p.numel() for p in model.parameters()), int(counter.get_total_flops() // 2))


def blocks(arch: Arch) -> int:
    """Number of blocks of an architecture's network: its stages' layers after depth rounding."""
    with torch.device("meta"):
        model = build_model(arch)
    return sum(s.layers for s in getattr(model, "stage_configs", ()))


class CompoundScalingSpace(SearchSpace):
    """Base class of a compound-scaling space: one choice ``point`` over an admissible grid.

    A subclass's constructor takes its options and calls :meth:`setup` with the scaling of its
    base network, the grid and φ; the genotype ``{"point": key}`` builds the base scaled by
    that point at φ. :func:`nas.run_scaling` runs the two-step procedure on such a space.
    """

    scaling: CompoundScaling
    grid_spec: CompoundGrid
    phi: float

    def setup(self, scaling: CompoundScaling, grid: CompoundGrid, *, phi: float) -> None:
        """Initialise the space (resolution: the scaling's) and declare its one choice."""
        super().__init__(resolution=scaling.resolution)  # type: ignore[arg-type]
        if phi < 0:
            raise ValueError(f"phi must be >= 0, got {phi}")
        self.scaling, self.grid_spec, self.phi = scaling, grid, float(phi)
        self.declare(Choice("point", grid.keys))

    @property
    def points(self) -> tuple[Point, ...]:
        return self.grid_spec.points

    def point(self, genotype: Mapping[str, Primitive]) -> Point:
        """The (α, β, γ) point of a genotype."""
        return self.grid_spec.point(str(self.validate(genotype)["point"]))

    def scaled_arch(self, point: Point, phi: float, *, num_classes: int) -> Arch:
        """The base network scaled by ``point`` at ``phi`` (an architecture of its space)."""
        return self.scaling.scaled(point, phi, num_classes=num_classes)

    def member(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> Arch:
        """The scaled architecture of a genotype at this space's φ."""
        return self.scaled_arch(self.point(genotype), self.phi, num_classes=num_classes)

    def resolution_of(self, genotype: Mapping[str, Primitive]) -> int:
        return self.scaling.resolution_at(self.point(genotype), self.phi)

    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        return build_model(self.member(genotype, num_classes=num_classes))

    def identity(self, genotype: Mapping[str, Primitive]) -> str:
        """Points that round to the same network share one identity (and one evaluation)."""
        member = self.member(genotype, num_classes=1)
        return space_of(member).identity(member.genotype)

    def describe(self, genotype: Mapping[str, Primitive]) -> str:
        p = self.point(genotype)
        return f"alpha={p.alpha:g} beta={p.beta:g} gamma={p.gamma:g}"
