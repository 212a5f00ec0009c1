"""From an architecture record to a ``torch.nn.Module``: its space, its network, its weights."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nas._models.reparam import reparameterize
from nas._spaces.arch import Arch, ArchFileError, as_arch
from nas._spaces.base import SearchSpace
from nas._spaces.registry import make_space

ArchLike = Arch | Mapping[str, Any] | str | os.PathLike[str]


def space_of(arch: Arch) -> SearchSpace:
    """The search space an architecture belongs to, rebuilt from its recorded options."""
    return make_space(arch.space, **arch.space_options)


def build_model(arch: ArchLike, *, fused: bool = False) -> nn.Module:
    """Build the ``torch.nn.Module`` of an architecture (file path, mapping or :class:`Arch`).

    Args:
        arch: the architecture.
        fused: return the inference form, in eval mode: every reparameterisable block
            (``nas.layers.RepConvBNAct``) folded into one conv. Train the unfused form, then
            fold it (``load_model(..., fused=True)`` loads the trained weights first).

    Example:
        >>> import nas, torch
        >>> from nas.space import make_space
        >>> model = nas.build_model({"schema_version": 1, "space": "mbconv",
        ...     "space_options": {"resolution": 32},
        ...     "genotype": make_space("mbconv", resolution=32).random_genotype(1),
        ...     "resolution": 32, "num_classes": 10})
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    record = as_arch(arch)
    try:
        space = space_of(record)
        model = space.build(space.validate(record.genotype), num_classes=record.num_classes)
    except ArchFileError:
        raise
    except ValueError as err:
        where = str(arch) if isinstance(arch, str | os.PathLike) else "architecture"
        raise ArchFileError(f"{where}: {err}") from None
    return reparameterize(model) if fused else model


def load_model(
    path: ArchLike, weights: str | os.PathLike[str] | None = None, *, fused: bool = False
) -> nn.Module:
    """Build an architecture's module and, if given, load a saved ``state_dict``.

    Weights are read with ``torch.load(..., weights_only=True)``, which refuses pickled code.
    ``fused``: fold reparameterisable blocks after loading (see :func:`build_model`); the
    weights are those of the unfused (training) form.

    Example:
        >>> import nas, tempfile, torch
        >>> from nas.space import make_space
        >>> d = tempfile.mkdtemp()
        >>> space = make_space("mbconv", resolution=32)
        >>> p = nas.save_arch(space.arch(space.random_genotype(0), num_classes=10), f"{d}/a.yaml")
        >>> torch.save(nas.build_model(p).state_dict(), f"{d}/w.pt")
        >>> isinstance(nas.load_model(p, weights=f"{d}/w.pt"), torch.nn.Module)
        True
    """
    model = build_model(path)
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ArchFileError(f"{weights}: no such weights file") from None
        except Exception as err:  # pickle errors come in many types
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ArchFileError(
                f"{weights}: refused or unreadable weights file ({first})"
            ) from None
        if not isinstance(state, Mapping):
            raise ArchFileError(f"{weights}: expected a state_dict, got {type(state).__name__}")
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            where = path if isinstance(path, str | os.PathLike) else "the architecture"
            raise ArchFileError(f"{weights}: does not fit {where} ({first})") from None
    return reparameterize(model) if fused else model
