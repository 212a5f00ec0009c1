"""Architecture files: what a found network is (space, options, genotype), saved as YAML.

The record is plain data; building its network is :mod:`nas._spaces.build`'s job, which needs
the registry of spaces.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from nas._io import atomic_write_text

Primitive = bool | int | float | str
Genotype = dict[str, Primitive]

SCHEMA_VERSION = 1
_REQUIRED = ("schema_version", "space", "genotype", "resolution", "num_classes")


class ArchFileError(ValueError):
    """An architecture file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Arch:
    """A found architecture: the space, its options, the genotype, resolution and classes.

    Example:
        >>> import nas, torch
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32)
        >>> arch = space.arch(space.random_genotype(0), num_classes=10)
        >>> nas.build_model(arch).eval()(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """

    space: str
    genotype: dict[str, Primitive]
    resolution: int
    num_classes: int
    space_options: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (the YAML file's content)."""
        d = asdict(self)
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "architecture") -> Arch:
        """Validate a mapping (for example a loaded YAML file) and build the record."""
        if not isinstance(data, Mapping):
            raise ArchFileError(f"{source}: expected a mapping, got {type(data).__name__}")
        # The version first: another version's keys are not this one's, and a file of a newer
        # nas must say so rather than that a key is unknown or missing.
        if "schema_version" in data and data["schema_version"] != SCHEMA_VERSION:
            raise ArchFileError(
                f"{source}: schema_version {data['schema_version']!r} is not supported "
                f"(this nas reads version {SCHEMA_VERSION})"
            )
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ArchFileError(f"{source}: missing key {missing[0]!r}")
        known = {*_REQUIRED, "space_options", "metrics"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArchFileError(f"{source}: unknown key {unknown[0]!r}")
        for key in ("resolution", "num_classes"):
            if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1:
                raise ArchFileError(
                    f"{source}: {key} must be a positive integer, got {data[key]!r}"
                )
        for key in ("genotype", "space_options", "metrics"):
            if not isinstance(data.get(key, {}), Mapping):
                raise ArchFileError(f"{source}: {key} must be a mapping")
        if not isinstance(data["space"], str):
            raise ArchFileError(f"{source}: space must be a string, got {data['space']!r}")
        return cls(
            space=data["space"],
            genotype=dict(data["genotype"]),
            resolution=data["resolution"],
            num_classes=data["num_classes"],
            space_options=dict(data.get("space_options") or {}),
            metrics=dict(data.get("metrics") or {}),
        )

    def with_metrics(self, **metrics: Any) -> Arch:
        """A copy with ``metrics`` (what a results file records beside the architecture)."""
        return replace(self, metrics=dict(metrics))


def load_arch(path: str | os.PathLike[str]) -> Arch:
    """Read an architecture file with YAML's safe loader.

    Raises:
        ArchFileError: naming the file and what is wrong with it.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ArchFileError(f"{path}: no such architecture file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise ArchFileError(f"{path}: cannot read architecture file ({err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ArchFileError(f"{path}: not valid YAML ({first})") from None
    try:
        return Arch.from_dict(data, source=str(path))
    except ArchFileError:
        raise
    except ValueError as err:
        raise ArchFileError(f"{path}: {err}") from None


def save_arch(arch: Arch, path: str | os.PathLike[str]) -> Path:
    """Write an architecture file atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(arch.to_dict(), sort_keys=False))
    return path


def as_arch(arch: Arch | Mapping[str, Any] | str | os.PathLike[str]) -> Arch:
    """Accept an :class:`Arch`, a mapping or a path to an architecture file."""
    if isinstance(arch, Arch):
        return arch
    if isinstance(arch, Mapping):
        try:
            return Arch.from_dict(arch)
        except ArchFileError:
            raise
        except ValueError as err:
            raise ArchFileError(f"architecture: {err}") from None
    if isinstance(arch, str | os.PathLike):
        return load_arch(arch)
    raise TypeError(f"arch must be an Arch, a mapping or a path, got {type(arch).__name__}")
