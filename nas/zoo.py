"""The model zoo: published networks by name, with their exact reference parameter counts.

Example:
    >>> from nas import zoo
    >>> "efficientnet_b7" in zoo.list_models()
    True
    >>> zoo.create("googlenet", num_classes=10).fc.out_features
    10
"""

from __future__ import annotations

from nas._models.googlenet import GOOGLENET_WIDTHS, googlenet
from nas._models.mbconvnet import B0_STAGES, EFFICIENTNET_TABLE, efficientnet
from nas._models.zoo import create, list_models, register_model

__all__ = [
    "B0_STAGES",
    "EFFICIENTNET_TABLE",
    "GOOGLENET_WIDTHS",
    "create",
    "efficientnet",
    "googlenet",
    "list_models",
    "register_model",
]
