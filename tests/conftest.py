"""Shared fixtures: every registered search space, made small enough for fast CPU tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

# One intra-op thread for the tests and the CLI subprocesses they start: on a loaded 2-core
# machine two OpenMP threads spin against each other and ran these tests 6x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

import nas

torch.set_num_threads(1)

#: Options that make each known space cheap to build and run; a space not listed here is
#: still tested, with ``resolution=32`` and its own defaults.
SMALL_OPTIONS: dict[str, dict[str, Any]] = {
    "mbconv": {"resolution": 32, "width_mult": 0.25, "depth_mult": 0.5},
    "inception": {
        "resolution": 32,
        "width_mult": 0.25,
        "modules": ["3a", "4e"],
        "widths": [0.5, 1.0],
    },
    "compound": {"resolution": 32, "base_width": 0.25},
    "nb201": {"resolution": 32, "channels": 4, "cells": 1},
}


def _small_space(name: str) -> nas.space.SearchSpace:
    return nas.space.make_space(name, **SMALL_OPTIONS.get(name, {"resolution": 32}))


@pytest.fixture
def make_small_space() -> Callable[[str], nas.space.SearchSpace]:
    """A function that makes a named space with the small options above."""
    return _small_space


@pytest.fixture(params=nas.space.available_spaces())
def space(request: pytest.FixtureRequest) -> nas.space.SearchSpace:
    """Each registered space in turn, small."""
    return _small_space(request.param)
