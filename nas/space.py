"""The space author's contract: everything a module in ``search_spaces/`` needs, in one place.

A space is one file, ``search_spaces/<name>.py``, and one config, ``conf/space/<name>.yaml``:

.. code-block:: python

    from nas.space import Choice, ConvBNAct, SearchSpace, register_space

    @register_space                      # registered as the module's name
    class MySpace(SearchSpace):
        def __init__(self, *, resolution: int = 32, widths=(16, 32)) -> None:
            super().__init__(resolution=resolution)
            self.declare(Choice("width", tuple(widths)))   # each choice once

        def build(self, genotype, *, num_classes):
            ...                          # any nn.Module; see Network for what helps

The constructor's keyword arguments are the space's options (the YAML keys); they are
recorded when the space is made, so an architecture file rebuilds the same space
(:meth:`SearchSpace.options`). Sampling, the grid, validation, architecture files, the search
and the reports all read the declared choices. ``search_spaces/tiny_cnn.py`` is a complete
example in under 80 lines.

A block with a ``reparameterize()`` method (:class:`RepConvBNAct`: branches in training, one
conv for inference) is folded by :func:`reparameterize` wherever the deployed form counts:
latency, export and ``nas.build_model(..., fused=True)``.

A network may declare ``total_stride``, ``latency_units()`` and ``layer_table(resolution)``
(:class:`Network`): the framework then refuses too small resolutions up front, can use the
latency lookup table, and ``nas show`` prints its layer table.
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
from nas._spaces.arch import Arch, Genotype, Primitive, as_arch
from nas._spaces.base import Choice, SearchSpace, stage_lists
from nas._spaces.build import build_model, space_of
from nas._spaces.registry import available_spaces, get_space, make_space, register_space

__all__ = [
    "ACTIVATIONS",
    "B0_STAGES",
    "GOOGLENET_WIDTHS",
    "PAPER_COEFFICIENTS",
    "WIDTH_KEYS",
    "Arch",
    "Choice",
    "CompoundGrid",
    "CompoundScalable",
    "CompoundScaling",
    "CompoundScalingSpace",
    "ConvBNAct",
    "Genotype",
    "GoogLeNet",
    "InceptionAux",
    "InceptionModule",
    "MBConv",
    "MBConvNet",
    "Network",
    "Point",
    "Primitive",
    "RepConvBNAct",
    "SearchSpace",
    "SqueezeExcite",
    "StageConfig",
    "StochasticDepth",
    "admissible_points",
    "as_arch",
    "available_spaces",
    "build_model",
    "get_space",
    "input_sizes",
    "make_activation",
    "make_divisible",
    "make_space",
    "n_params",
    "register_space",
    "reparameterize",
    "round_channels",
    "round_layers",
    "round_resolution",
    "scale_stages",
    "space_of",
    "stage_lists",
    "total_stride",
]
