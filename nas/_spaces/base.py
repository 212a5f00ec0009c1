"""Search spaces: a choice declared once, and the base class every space derives from.

A space declares its choices (label -> allowed primitive values) once, with
:meth:`SearchSpace.declare`; sampling from an Optuna trial, the grid for a grid search,
validation and random sampling all read that one declaration. Its options are the keyword
arguments of its constructor, recorded when it is made (:meth:`SearchSpace.options`), so an
architecture file rebuilds the same space without the space repeating them by hand.
"""

from __future__ import annotations

import inspect
import json
import random
from abc import ABCMeta, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from nas._spaces.arch import Arch, Genotype, Primitive

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Choice:
    """One architectural decision: a stable label and its allowed values (primitives).

    Example:
        >>> Choice("s1.kernel", (3, 5, 7)).contains(5.0)
        True
    """

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


class _SpaceMeta(ABCMeta):
    """Records a space's constructor arguments (defaults included) as its options."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError(
                f"{cls.__name__} takes keyword arguments only (the keys of its config file)"
            )
        space = super().__call__(**kwargs)
        bound = inspect.signature(cls.__init__).bind(space, **kwargs)
        bound.apply_defaults()
        options: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            kind = inspect.signature(cls.__init__).parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                options.update(value)
            else:
                options[name] = value
        try:
            # Plain JSON values (tuples become lists): what a YAML file or a study stores.
            space._options = json.loads(json.dumps(options))
        except (TypeError, ValueError) as err:
            raise ValueError(f"space {cls.name!r}: options must be JSON values ({err})") from None
        if not space.choices:
            raise ValueError(f"space {cls.name!r} declares no choices")
        return space


class SearchSpace(metaclass=_SpaceMeta):
    """Base class of every search space.

    A subclass takes its options as keyword-only constructor arguments (the YAML keys of
    ``conf/space/<name>.yaml``), calls ``super().__init__(resolution=...)``, declares its
    choices with :meth:`declare` and implements :meth:`build`. It may override
    :meth:`identity` (when several genotypes build one network), :meth:`resolution_of` (when
    a choice changes the input size) and :meth:`describe`.

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32)
        >>> space.options()["resolution"], len(space.choices)
        (32, 21)
    """

    name: ClassVar[str] = ""

    def __init__(self, *, resolution: int) -> None:
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
            raise ValueError(f"resolution must be an integer >= 8, got {resolution!r}")
        self.resolution = resolution
        self._choices: tuple[Choice, ...] = ()
        self._options: dict[str, Any] = {}

    def declare(self, *choices: Choice) -> None:
        """Add choices to the space, in order.

        Raises:
            ValueError: a label is declared twice.
        """
        labels = {c.label for c in self._choices}
        for choice in choices:
            if choice.label in labels:
                raise ValueError(f"choice {choice.label!r} is declared twice")
            labels.add(choice.label)
        self._choices = (*self._choices, *choices)

    @property
    def choices(self) -> tuple[Choice, ...]:
        """Every choice of the space, in a stable order."""
        return self._choices

    @abstractmethod
    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        """Build the network of a (validated) genotype."""

    def options(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this space (JSON values, defaults included)."""
        return json.loads(json.dumps(self._options))

    def resolution_of(self, genotype: Mapping[str, Primitive]) -> int:
        """Input resolution of a genotype's network (the space's, unless a choice changes it)."""
        return self.resolution

    def sample(self, trial: optuna.trial.BaseTrial) -> Genotype:
        """Sample a genotype from an Optuna trial, one categorical per choice."""
        return {c.label: trial.suggest_categorical(c.label, list(c.values)) for c in self.choices}

    def grid(self) -> dict[str, list[Primitive]]:
        """The full grid: every value of every choice."""
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


def stage_lists(value: Any, *, key: str, length: int) -> list[tuple[Any, ...]] | None:
    """Validate an optional per-stage list of choice lists (``None`` keeps the stages fixed).

    Example:
        >>> stage_lists([[1, 2], [3]], key="layers", length=2)
        [(1, 2), (3,)]
    """
    if value is None:
        return None
    rows = [tuple(v) for v in value]
    if len(rows) != length:
        raise ValueError(f"{key} must have one list per stage ({length}), got {len(rows)}")
    for i, row in enumerate(rows, start=1):
        if not row:
            raise ValueError(f"{key}[{i}] must not be empty")
    return rows
