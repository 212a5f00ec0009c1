"""The space author's contract: everything a module in ``search_spaces/`` needs, in one place.

A space is one file, ``search_spaces/<name>.py``, and one config, ``conf/space/<name>.yaml``:

.. code-block:: python

    from nas.layers import ConvBNAct
    from nas.space import Choice, SearchSpace, register_space

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
example in under 80 lines. Blocks and networks are in :mod:`nas.layers`, compound scaling's
parts in :mod:`nas.scaling`.

A block with a ``reparameterize()`` method (``RepConvBNAct``: branches in training, one
conv for inference; in :mod:`nas.layers`) is folded by ``nas.layers.reparameterize`` wherever the deployed form counts:
latency, export and ``nas.build_model(..., fused=True)``.

A network may declare ``total_stride``, ``latency_units()`` and ``layer_table(resolution)``
(``nas.layers.Network``): the framework then refuses too small resolutions up front, can use the
latency lookup table, and ``nas show`` prints its layer table.
"""

from __future__ import annotations

from nas._spaces.arch import Arch, Genotype, Primitive, as_arch
from nas._spaces.base import Choice, SearchSpace, stage_lists
from nas._spaces.build import build_model, space_of
from nas._spaces.registry import available_spaces, get_space, make_space, register_space

__all__ = [
    "Arch",
    "Choice",
    "Genotype",
    "Primitive",
    "SearchSpace",
    "as_arch",
    "available_spaces",
    "build_model",
    "get_space",
    "make_space",
    "register_space",
    "space_of",
    "stage_lists",
]
