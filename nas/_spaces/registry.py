"""The registry of search spaces by name.

Spaces live in ``search_spaces/<name>.py`` and register themselves with :func:`register_space`,
which names them after their module, so the file name is the one place a space's name is
said (a config file refers to it with ``name:``). :func:`get_space` imports
``search_spaces.<name>`` on first use: a new space needs no change to ``nas/``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from nas._plugins import import_plugin, plugin_names
from nas._spaces.base import SearchSpace

S = TypeVar("S", bound=type[SearchSpace])

#: The package the spaces live in, one module each.

_REGISTRY: dict[str, type[SearchSpace]] = {}


@overload
def register_space(name_or_class: S) -> S: ...
@overload
def register_space(name_or_class: str) -> Callable[[S], S]: ...


def register_space(name_or_class: str | S) -> S | Callable[[S], S]:
    """Class decorator that registers a search space.

    Bare (``@register_space``), the space is named after its module (``search_spaces/foo.py``
    registers ``foo``); ``@register_space("name")`` names it explicitly, for spaces that live
    elsewhere.

    Raises:
        ValueError: if another class is already registered under that name.
    """
    if isinstance(name_or_class, str):
        name = name_or_class

        def decorator(cls: S) -> S:
            return _register(name, cls)

        return decorator
    cls = name_or_class
    return _register(cls.__module__.rsplit(".", 1)[-1], cls)


def _register(name: str, cls: S) -> S:
    existing = _REGISTRY.get(name)
    if existing is not None and (existing.__module__, existing.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise ValueError(f"a search space named {name!r} is already registered: {existing}")
    cls.name = name
    _REGISTRY[name] = cls
    return cls


def get_space(name: str) -> type[SearchSpace]:
    """The space class registered as ``name``, importing ``search_spaces.<name>`` if needed."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"unknown search space {name!r}; known: {available_spaces()}")
    if name not in _REGISTRY:
        import_plugin(name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown search space {name!r}; known: {available_spaces()}")
    return _REGISTRY[name]


def available_spaces() -> list[str]:
    """Names of the registered spaces and of the modules in ``search_spaces/``."""
    names = set(_REGISTRY)
    # Found by name, as get_space imports them: nas/ never imports a plugin itself.
    names.update(plugin_names())
    return sorted(names)


def make_space(name: str, **options: Any) -> SearchSpace:
    """Instantiate space ``name`` from its options, rejecting unknown option keys by name.

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32)
        >>> "s1.kernel" in space.grid()
        True
    """
    cls = get_space(name)
    params = inspect.signature(cls.__init__).parameters
    allowed = [
        p for p in params if p != "self" and params[p].kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"space {name!r} has no option {unknown[0]!r}; allowed: {', '.join(allowed)}"
        )
    return cls(**options)
