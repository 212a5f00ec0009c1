"""Evaluators by name: what ``conf/evaluator/<name>.yaml`` selects; and the one made of others.

``evaluator=screen`` (:class:`ScreenEvaluator`): cheap scores choose what is trained.

Each network is first ranked by the label-free ensemble (``screen``, an ``ensemble``
evaluator's options): only one that would rank among the best ``keep`` share of the study's
reference population is trained (``train``, a ``proxy`` or ``table`` evaluator's options); the
others are recorded as pruned with their screening figure and never trained. The threshold is
the ensemble's figure that the best ``keep`` share of the reference population itself reaches,
so it means the same with either aggregation, and like the population it is stored with the study:
whether a network is trained depends only on the network, never on the trial order, the
worker or a resume, so the same command trains the same networks.

Screened-out trials are pruned rather than given a made-up accuracy, so no front ever holds a
network that was not trained, and Optuna's samplers treat them as they treat pruned trials
(NSGA-II leaves them out of its population: the sampler proposes more candidates than are
trained). ``search.n_trials`` counts candidates, screened or trained.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from torch import nn

from nas._accuracy.ensemble import EnsembleEvaluator, ScoreEvaluator, ensemble_figures
from nas._accuracy.proxy import (
    NOT_AN_OPTION,
    AccuracyResult,
    Evaluator,
    OnEpoch,
    ProxyEvaluator,
    option_fields,
)
from nas._accuracy.scores import JacobCovEvaluator, SynflowEvaluator
from nas._accuracy.table import BenchmarkEvaluator
from nas._data.data import Dataset

#: Evaluators a screened network may be trained with (their value is an accuracy), by name.
TRAINED: dict[str, type[Evaluator]] = {c.name: c for c in (ProxyEvaluator, BenchmarkEvaluator)}


def evaluator_of(cls: type[Evaluator], options: Mapping[str, Any]) -> Evaluator:
    """``cls(**options)``, naming the first option ``cls`` does not have (``ValueError``)."""
    allowed = [f.name for f in option_fields(cls)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"evaluator {cls.name!r} has no option {unknown[0]!r}; allowed: "
            f"{', '.join(allowed) if allowed else 'none'}"
        )
    return cls(**options)


@dataclass(frozen=True)
class ScreenEvaluator(Evaluator):
    """The ensemble first; training only for networks it ranks in the reference's top ``keep``.

    Args:
        keep: the share of the space trained, in (0, 1]: a network is trained when its
            ensemble figure reaches the reference population's ``1 - keep`` quantile.
        screen: the ensemble's options (``conf/evaluator/ensemble.yaml``'s keys).
        train: the training evaluator's options, with its ``name`` (``proxy`` or ``table``).

    Example:
        >>> from nas import load_data
        >>> from nas.measure import make_evaluator
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32, width_mult=0.25)
        >>> data = load_data(name="synthetic", resolution=32)
        >>> ev = make_evaluator(name="screen", keep=0.5,
        ...                     screen={"scores": ["naswot"], "reference": 4, "batch_size": 16},
        ...                     train={"name": "proxy", "epochs": 1})
        >>> ev = ev.with_state(ev.study_state(space, lambda r: data, num_classes=10, seed=0))
        >>> result = ev(space.build(space.random_genotype(7), num_classes=10), data)
        >>> (result.screened is None) == (result.screen >= ev.threshold)
        True
    """

    name: ClassVar[str] = "screen"

    keep: float = 0.25
    screen: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=lambda: {"name": "proxy"})
    state: Mapping[str, Any] | None = field(
        default=None, compare=False, repr=False, metadata=NOT_AN_OPTION
    )

    def __post_init__(self) -> None:
        keep = self.keep
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
            raise ValueError(f"evaluator option keep must be a share in (0, 1], got {keep!r}")
        screen = {k: v for k, v in dict(self.screen or {}).items() if k != "name"}
        if (self.screen or {}).get("name", "ensemble") != "ensemble":
            raise ValueError(
                f"evaluator option screen.name must be ensemble, got {self.screen['name']!r}"
            )
        train = dict(self.train or {})
        trained = train.pop("name", "proxy")
        if trained not in TRAINED:
            raise ValueError(
                f"evaluator option train.name must be one of {', '.join(TRAINED)}, got {trained!r}"
            )
        try:
            ensemble = evaluator_of(EnsembleEvaluator, screen)
        except ValueError as err:
            raise ValueError(f"evaluator option screen: {err}") from None
        try:
            trainer = evaluator_of(TRAINED[trained], train)
        except ValueError as err:
            raise ValueError(f"evaluator option train: {err}") from None
        assert isinstance(ensemble, EnsembleEvaluator)
        if self.state is not None:
            ensemble = ensemble.with_state(self.state)
        # Stored with their defaults filled in: the study's protocol records every setting.
        object.__setattr__(self, "screen", {"name": "ensemble", **ensemble.options()})
        object.__setattr__(self, "train", {"name": trainer.name, **trainer.options()})
        object.__setattr__(self, "_ensemble", ensemble)
        object.__setattr__(self, "_trainer", trainer)
        object.__setattr__(self, "_threshold", self._reference_threshold())

    @property
    def trainer(self) -> Evaluator:
        """The evaluator that trains the networks that pass (a promotion trains with it)."""
        return self._trainer  # type: ignore[attr-defined,no-any-return]

    @property
    def threshold(self) -> float:
        """The ensemble figure a network must reach to be trained (needs the study state)."""
        if self._threshold is None:  # type: ignore[attr-defined]
            raise RuntimeError("the screen needs its reference population (study_state)")
        return self._threshold  # type: ignore[attr-defined,no-any-return]

    def _reference_threshold(self) -> float | None:
        """What the best ``keep`` share of the reference population reaches (once per state)."""
        if self.state is None:
            return None
        values = self.state["values"]
        own = sorted(ensemble_figures(values, values, self.screen["aggregate"]), reverse=True)
        return float(own[max(1, math.ceil(self.keep * len(own))) - 1])  # the keep share reach it

    def study_state(
        self,
        space: Any,
        data: Callable[[int], Dataset],
        *,
        num_classes: int,
        seed: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """The ensemble's reference population (see :meth:`EnsembleEvaluator.study_state`)."""
        return self._ensemble.study_state(  # type: ignore[attr-defined]
            space, data, num_classes=num_classes, seed=seed, progress=progress
        )

    def with_state(self, state: Mapping[str, Any]) -> ScreenEvaluator:
        return replace(self, state=state)

    def check(self, identity: str) -> None:
        self._trainer.check(identity)  # type: ignore[attr-defined]

    def __call__(
        self,
        model: nn.Module,
        data: Dataset,
        *,
        device: str = "cpu",
        on_epoch: OnEpoch | None = None,
        seed: int | None = None,
        identity: str | None = None,
    ) -> AccuracyResult:
        start = time.perf_counter()
        threshold = self.threshold
        figure = self._ensemble(  # type: ignore[attr-defined]
            model, data, device=device, seed=seed, identity=identity
        ).accuracy
        if figure < threshold:
            return AccuracyResult(
                accuracy=0.0,
                seconds=time.perf_counter() - start,
                stopped=True,
                evaluator=self._trainer.name,  # type: ignore[attr-defined]
                screen=figure,
                screened=(
                    f"screened out: ensemble {figure:.3f} < {threshold:.3f} (trains the "
                    f"reference's top {self.keep:.0%})"
                ),
            )
        screened = time.perf_counter() - start
        result = self._trainer(  # type: ignore[attr-defined]
            model, data, device=device, on_epoch=on_epoch, seed=seed, identity=identity
        )
        return replace(result, screen=figure, seconds=result.seconds + screened)


#: Evaluators by name (the ``name`` key of ``conf/evaluator/<name>.yaml``).
EVALUATORS: dict[str, type[Evaluator]] = {
    cls.name: cls
    for cls in (
        ProxyEvaluator,
        SynflowEvaluator,
        JacobCovEvaluator,
        ScoreEvaluator,
        EnsembleEvaluator,
        ScreenEvaluator,
        BenchmarkEvaluator,
    )
}


def make_evaluator(*, name: str = "proxy", **options: Any) -> Evaluator:
    """Make the evaluator ``name`` from its options (the keys of its config file).

    Raises:
        ValueError: an unknown name (listing the known ones), an unknown option (listing the
            allowed ones) or a bad option value.

    Example:
        >>> from nas.measure import make_evaluator
        >>> make_evaluator(name="proxy", epochs=2).epochs
        2
    """
    if name not in EVALUATORS:
        raise ValueError(f"unknown evaluator {name!r}; known: {', '.join(EVALUATORS)}")
    return evaluator_of(EVALUATORS[name], options)
