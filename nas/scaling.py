"""Compound scaling's parts, for a space over EfficientNet's (α, β, γ) grid.

A space whose networks can be scaled implements :class:`CompoundScalable`; a compound-scaling
space subclasses :class:`CompoundScalingSpace` (``search_spaces/compound.py`` is one).
``nas.run_scaling`` runs the two-step procedure on it.

Example:
    >>> from nas.scaling import CompoundGrid
    >>> len(CompoundGrid().points)
    109
"""

from __future__ import annotations

from nas._scaling.compound import (
    PAPER_COEFFICIENTS,
    CompoundGrid,
    CompoundScalable,
    CompoundScaling,
    CompoundScalingSpace,
    Point,
    admissible_points,
    round_resolution,
)

__all__ = [
    "PAPER_COEFFICIENTS",
    "CompoundGrid",
    "CompoundScalable",
    "CompoundScaling",
    "CompoundScalingSpace",
    "Point",
    "admissible_points",
    "round_resolution",
]
