"""Plugin discovery, in one place: the package whose modules are search spaces (and register
the networks they publish in the zoo). Nothing else in ``nas/`` names it."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

#: The package searched for plugins: ``search_spaces.<name>`` defines the space ``name``.
PLUGINS = "search_spaces"


def plugin_names() -> list[str]:
    """Names of the plugin package's modules, sorted (none when the package is absent)."""
    spec = importlib.util.find_spec(PLUGINS)
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(m.name for m in pkgutil.iter_modules(spec.submodule_search_locations))


def import_plugin(name: str) -> bool:
    """Import ``search_spaces.<name>``; False when no such module exists (its own errors raise)."""
    try:
        importlib.import_module(f"{PLUGINS}.{name}")
    except ModuleNotFoundError as err:
        if err.name not in (f"{PLUGINS}.{name}", PLUGINS):
            raise
        return False
    return True


def import_plugins() -> None:
    """Import every plugin module (spaces register themselves and their published networks)."""
    for name in plugin_names():
        import_plugin(name)
