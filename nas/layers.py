"""Blocks and networks, for building search spaces and models by hand (as timm's ``layers``).

Example:
    >>> import torch
    >>> from nas.layers import MBConv
    >>> MBConv(16, 24, kernel_size=3, stride=2, expand_ratio=4, se_ratio=0.25)(
    ...     torch.zeros(1, 16, 32, 32)).shape
    torch.Size([1, 24, 16, 16])
"""

from __future__ import annotations

from nas._models.blocks import (
    ACTIVATIONS,
    ConvBNAct,
    InceptionAux,
    InceptionModule,
    MBConv,
    RepConvBNAct,
    SqueezeExcite,
    StochasticDepth,
    make_activation,
    make_divisible,
)
from nas._models.googlenet import GOOGLENET_WIDTHS, WIDTH_KEYS, GoogLeNet
from nas._models.mbconvnet import (
    B0_STAGES,
    MBConvNet,
    StageConfig,
    round_channels,
    round_layers,
    scale_stages,
)
from nas._models.network import Network, input_sizes, n_params, total_stride
from nas._models.reparam import reparameterize

__all__ = [
    "ACTIVATIONS",
    "B0_STAGES",
    "GOOGLENET_WIDTHS",
    "WIDTH_KEYS",
    "ConvBNAct",
    "GoogLeNet",
    "InceptionAux",
    "InceptionModule",
    "MBConv",
    "MBConvNet",
    "Network",
    "RepConvBNAct",
    "SqueezeExcite",
    "StageConfig",
    "StochasticDepth",
    "input_sizes",
    "make_activation",
    "make_divisible",
    "n_params",
    "reparameterize",
    "round_channels",
    "round_layers",
    "scale_stages",
    "total_stride",
]
