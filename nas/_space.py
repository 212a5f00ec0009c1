"""Search spaces: a choice declared once, a base class, and a registry of spaces by name.

A space declares its choices (label -> allowed primitive values) once; sampling from an Optuna
trial, the grid for Optuna's GridSampler, validation and random sampling all read that one
declaration. Spaces live in ``search_spaces/<name>.py`` and register themselves with
:func:`register_space`; :func:`get_space` imports ``search_spaces.<name>`` on first use, so a new
space needs no change to ``nas/``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

if TYPE_CHECKING:
    import optuna

    from nas._arch import Arch

Primitive = bool | int | float | str
Genotype = dict[str, Primitive]


@dataclass(frozen=True)
class Choice:
    """One architectural decision: a stable label and its allowed values (primitives)."""

    label: str
    values: tuple[Primitive, ...]

    def __post_init__(self) -> None:
        if not self.label or not isinstance(self.label, str):
            raise ValueError(f"a choice label must be a non-empty string, got {self.label!r}")
        values = tuple(self.values)
        if not values:
            raise ValueError(f"choice {self.label!r} has no values")
        for v in values:
            if not isinstance(v, bool | int | float | str):
                raise ValueError(
                    f"choice {self.label!r}: values must be bool, int, float or str, got {v!r}"
                )
        if len(set(values)) != len(values):
            raise ValueError(f"choice {self.label!r} has duplicate values: {list(values)}")
        object.__setattr__(self, "values", values)

    def contains(self, value: object) -> bool:
        """Whether ``value`` is an allowed value (1 and 1.0 are equal; True and 1 are not)."""
        return any(_same_kind(value, v) and value == v for v in self.values)


def _same_kind(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return type(a) is type(b)


class SearchSpace(ABC):
    """Base class of every search space.

    Subclasses set ``name``, take their options as keyword-only constructor arguments (these are
    the YAML keys of ``conf/space/<name>.yaml``), and implement :attr:`choices` and
    :meth:`build`. :meth:`options` must return the constructor arguments so that an
    architecture file can rebuild the same space.
    """

    name: ClassVar[str] = ""

    def __init__(self, *, resolution: int) -> None:
        if not isinstance(resolution, int) or resolution < 8:
            raise ValueError(f"resolution must be an integer >= 8, got {resolution!r}")
        self.resolution = resolution

    @property
    @abstractmethod
    def choices(self) -> tuple[Choice, ...]:
        """Every choice of the space, in a stable order."""

    @abstractmethod
    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        """Build the network of a (validated) genotype."""

    @abstractmethod
    def options(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this space (JSON/YAML-serialisable)."""

    def resolution_of(self, genotype: Mapping[str, Primitive]) -> int:
        """Input resolution of a genotype's network (the space's, unless a choice changes it)."""
        return self.resolution

    def sample(self, trial: optuna.trial.BaseTrial) -> Genotype:
        """Sample a genotype from an Optuna trial, one categorical per choice."""
        return {c.label: trial.suggest_categorical(c.label, list(c.values)) for c in self.choices}

    def grid(self) -> dict[str, list[Primitive]]:
        """The full grid, for ``optuna.samplers.GridSampler``."""
        return {c.label: list(c.values) for c in self.choices}

    def grid_size(self) -> int:
        """Number of points of the full grid."""
        size = 1
        for c in self.choices:
            size *= len(c.values)
        return size

    def random_genotype(self, rng: random.Random | int | None = None) -> Genotype:
        """A uniformly random genotype (without Optuna)."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        return {c.label: rng.choice(c.values) for c in self.choices}

    def validate(self, genotype: Mapping[str, object]) -> Genotype:
        """Check a genotype against the declared choices and return a plain copy.

        Raises:
            ValueError: naming the first missing, unknown or out-of-choice key.
        """
        if not isinstance(genotype, Mapping):
            raise ValueError(f"genotype must be a mapping, got {type(genotype).__name__}")
        declared = {c.label: c for c in self.choices}
        unknown = sorted(set(genotype) - set(declared))
        if unknown:
            raise ValueError(
                f"genotype key {unknown[0]!r} is not a choice of space {self.name!r} "
                f"(choices: {', '.join(declared)})"
            )
        missing = [label for label in declared if label not in genotype]
        if missing:
            raise ValueError(f"genotype is missing key {missing[0]!r} of space {self.name!r}")
        for label, choice in declared.items():
            if not choice.contains(genotype[label]):
                raise ValueError(
                    f"genotype[{label!r}] = {genotype[label]!r} is not one of {list(choice.values)}"
                )
        return {label: genotype[label] for label in declared}  # type: ignore[misc]

    def arch(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> Arch:
        """The architecture record of a genotype (what an architecture file holds)."""
        from nas._arch import Arch

        genotype = self.validate(genotype)
        return Arch(
            space=self.name,
            genotype=genotype,
            resolution=self.resolution_of(genotype),
            num_classes=num_classes,
            space_options=self.options(),
        )

    def identity(self, genotype: Mapping[str, Primitive]) -> str:
        """A key equal for genotypes that build the same network (the genotype by default).

        Spaces whose rounding makes several genotypes build one network override this, so the
        search evaluates that network once.
        """
        return json.dumps(dict(genotype), sort_keys=True, separators=(",", ":"))

    def describe(self, genotype: Mapping[str, Primitive]) -> str:
        """A compact one-line string of a genotype (for tables and logs)."""
        return " ".join(f"{k}={v}" for k, v in genotype.items())


_REGISTRY: dict[str, type[SearchSpace]] = {}


def register_space(name: str) -> Callable[[type[SearchSpace]], type[SearchSpace]]:
    """Class decorator that registers a search space under ``name``.

    Raises:
        ValueError: if another class is already registered under that name.
    """

    def decorator(cls: type[SearchSpace]) -> type[SearchSpace]:
        existing = _REGISTRY.get(name)
        if existing is not None and (existing.__module__, existing.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise ValueError(f"a search space named {name!r} is already registered: {existing}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def get_space(name: str) -> type[SearchSpace]:
    """The space class registered as ``name``, importing ``search_spaces.<name>`` if needed."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"unknown search space {name!r}; known: {available_spaces()}")
    if name not in _REGISTRY:
        try:
            importlib.import_module(f"search_spaces.{name}")
        except ModuleNotFoundError as err:
            if err.name not in (f"search_spaces.{name}", "search_spaces"):
                raise
    if name not in _REGISTRY:
        raise ValueError(f"unknown search space {name!r}; known: {available_spaces()}")
    return _REGISTRY[name]


def available_spaces() -> list[str]:
    """Names of the registered spaces and of the modules in ``search_spaces/``."""
    names = set(_REGISTRY)
    try:
        import pkgutil

        import search_spaces

        names.update(m.name for m in pkgutil.iter_modules(search_spaces.__path__))
    except ImportError:
        pass
    return sorted(names)


def make_space(name: str, **options: Any) -> SearchSpace:
    """Instantiate space ``name`` from its options, rejecting unknown option keys by name.

    Example:
        >>> from nas import make_space
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


def as_tuple_of_lists(
    value: Sequence[Sequence[Any]] | None, *, key: str, length: int
) -> list[tuple[Any, ...]] | None:
    """Validate an optional per-stage list of choice lists (``None`` keeps it fixed)."""
    if value is None:
        return None
    rows = [tuple(v) for v in value]
    if len(rows) != length:
        raise ValueError(f"{key} must have one list per stage ({length}), got {len(rows)}")
    for i, row in enumerate(rows, start=1):
        if not row:
            raise ValueError(f"{key}[{i}] must not be empty")
    return rows
