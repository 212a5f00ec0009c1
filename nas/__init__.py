"""nas: hardware-aware neural architecture search.

Search spaces configured with Hydra, explored by Optuna on two objectives (proxy accuracy and
latency measured on the device), EfficientNet's two-step compound scaling, and found
architectures reused as plain ``torch.nn.Module``s.

Example:
    >>> import nas
    >>> model = nas.efficientnet("b0")
    >>> sum(p.numel() for p in model.parameters())
    5288548
"""

from __future__ import annotations

from nas._arch import Arch, ArchFileError, build_model, load_arch, load_model, save_arch
from nas._googlenet import GoogLeNet, googlenet
from nas._mbconvnet import EFFICIENTNET_TABLE, MBConvNet, StageConfig, efficientnet
from nas._profile import Profile, profile
from nas._space import (
    Choice,
    SearchSpace,
    available_spaces,
    get_space,
    make_space,
    register_space,
)

__all__ = [
    "EFFICIENTNET_TABLE",
    "Arch",
    "ArchFileError",
    "Choice",
    "GoogLeNet",
    "MBConvNet",
    "Profile",
    "SearchSpace",
    "StageConfig",
    "available_spaces",
    "build_model",
    "efficientnet",
    "get_space",
    "googlenet",
    "load_arch",
    "load_model",
    "make_space",
    "profile",
    "register_space",
    "save_arch",
]
