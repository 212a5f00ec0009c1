"""The model zoo: published networks built by name (``create("efficientnet_b3")``).

Each entry is a function ``(*, num_classes, **options) -> nn.Module`` registered under a
name; the built-in ones reproduce the reference implementations' parameter counts exactly.
A module of ``search_spaces/`` may register the published networks of its space when it is
imported (``search_spaces/resnet.py`` registers ``resnet50``, ...): :func:`create` and
:func:`list_models` import those modules by name when they need them, as ``get_space`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from nas._models.googlenet import googlenet
from nas._models.mbconvnet import EFFICIENTNET_TABLE, efficientnet
from nas._plugins import import_plugins

ModelFactory = Callable[..., nn.Module]

_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str, factory: ModelFactory) -> None:
    """Add ``factory`` to the zoo under ``name``.

    Raises:
        ValueError: another factory is registered under that name.
    """
    existing = _MODELS.get(name)
    if existing is not None and existing is not factory:
        raise ValueError(f"a model named {name!r} is already in the zoo: {existing}")
    _MODELS[name] = factory


def list_models() -> list[str]:
    """Names :func:`create` accepts, sorted (those the spaces register included)."""
    import_plugins()
    return sorted(_MODELS)


def create(name: str, *, num_classes: int = 1000, **options: Any) -> nn.Module:
    """Build the published network ``name`` (freshly initialised).

    Raises:
        ValueError: an unknown name (listing the known ones).

    Example:
        >>> from nas.zoo import create
        >>> sum(p.numel() for p in create("efficientnet_b0").parameters())
        5288548
    """
    if name not in _MODELS:
        import_plugins()
    factory = _MODELS.get(name)
    if factory is None:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return factory(num_classes=num_classes, **options)


def _efficientnet(variant: str) -> ModelFactory:
    def factory(*, num_classes: int = 1000) -> nn.Module:
        return efficientnet(variant, num_classes=num_classes)

    factory.__doc__ = f"EfficientNet-{variant.upper()} (Tan & Le 2019)."
    return factory


for _variant in EFFICIENTNET_TABLE:
    register_model(f"efficientnet_{_variant}", _efficientnet(_variant))
register_model("googlenet", googlenet)
