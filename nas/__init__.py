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
from nas._config import ConfigError, compose
from nas._data import DataError, Dataset, load_data
from nas._export import describe_arch, export_model
from nas._googlenet import GoogLeNet, googlenet
from nas._latency import LatencyResult, LatencyTable, measure_latencies, measure_latency
from nas._mbconvnet import EFFICIENTNET_TABLE, MBConvNet, StageConfig, efficientnet
from nas._profile import Profile, profile
from nas._proxy import AccuracyResult, NonFiniteLossError, make_evaluator
from nas._search import SearchResult, run_search
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
    "AccuracyResult",
    "Arch",
    "ArchFileError",
    "Choice",
    "ConfigError",
    "DataError",
    "Dataset",
    "GoogLeNet",
    "LatencyResult",
    "LatencyTable",
    "MBConvNet",
    "NonFiniteLossError",
    "Profile",
    "SearchResult",
    "SearchSpace",
    "StageConfig",
    "available_spaces",
    "build_model",
    "compose",
    "describe_arch",
    "efficientnet",
    "export_model",
    "get_space",
    "googlenet",
    "load_arch",
    "load_data",
    "load_model",
    "make_evaluator",
    "make_space",
    "measure_latencies",
    "measure_latency",
    "profile",
    "register_space",
    "run_search",
    "save_arch",
]
