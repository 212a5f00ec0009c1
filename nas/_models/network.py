"""The network protocol: what the framework asks of a network that a space builds.

A space may build any ``nn.Module`` that maps an image batch to logits. Three optional members
make the rest of ``nas`` work better with it, and are read only through this module:

* ``total_stride`` (int): the product of the network's strides. Resolutions below it are
  refused before a search starts instead of failing inside a trial.
* ``latency_units()``: modules whose sequential composition is the eval-mode network; the
  latency lookup table measures and sums them.
* ``layer_table(resolution)``: rows (mappings of column -> value) of a readable layer table,
  with a ``title`` attribute on the network, for ``nas show ARCH.yaml``. Networks without one
  get a table of their latency units (or of their children).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Network(Protocol):
    """A network with all three members (the built-in networks are); see the module docstring.

    The framework accepts any ``nn.Module`` and reads each member through the functions below,
    so a network may leave out any of them.
    """

    total_stride: int

    def latency_units(self) -> list[nn.Module]:
        """Modules whose sequential composition is the eval-mode network."""
        ...

    def layer_table(self, resolution: int) -> list[dict[str, Any]]:
        """Rows of a readable layer table at ``resolution``."""
        ...


def total_stride(model: nn.Module) -> int:
    """The network's total stride (1 when it does not declare one)."""
    return int(getattr(model, "total_stride", 1))


def latency_units(model: nn.Module) -> list[nn.Module]:
    """The network's latency units.

    Raises:
        ValueError: the network declares none.
    """
    get = getattr(model, "latency_units", None)
    if get is None:
        raise ValueError(
            f"{type(model).__name__} has no latency_units(); the lookup table needs the list of "
            "modules whose sequential composition is the network"
        )
    return list(get())


def layer_table(model: nn.Module, resolution: int) -> tuple[str, list[dict[str, Any]]]:
    """The network's layer table and its title (a table of its units when it has none)."""
    table = getattr(model, "layer_table", None)
    if table is not None:
        return getattr(model, "layer_table_title", "layers"), list(table(resolution))
    get = getattr(model, "latency_units", None)
    units = list(get()) if get is not None else list(model.children())
    named = {f"u{i}": u for i, u in enumerate(units, start=1)}
    sizes = input_sizes(model, named, resolution)
    rows = [
        {"stage": key, "operator": type(u).__name__, "input": sizes.get(key), "params": n_params(u)}
        for key, u in named.items()
    ]
    return "layers", rows


def n_params(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


def in_channels(model: nn.Module) -> int:
    """Input channels of a network: those of its first convolution (3 without one)."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return 3 if first is None else first.in_channels


def input_sizes(
    model: nn.Module, modules: Mapping[str, nn.Module], resolution: int
) -> dict[str, str]:
    """``HxW`` of each named module's input, from one eval forward pass at batch 1.

    The model's training flags are restored afterwards.
    """
    sizes: dict[str, str] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            sizes.setdefault(name, "x".join(str(d) for d in args[0].shape[2:]) or "1")

        return record

    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_pre_hook(hook(name)) for name, m in modules.items()]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_channels(model), resolution, resolution))
    finally:
        for m, mode in modes.items():
            m.training = mode
        for h in handles:
            h.remove()
    return sizes
