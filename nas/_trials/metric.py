"""What a study's first objective is: an accuracy in [0, 1], or a training-free score.

The record keeps the first objective in :attr:`TrialRecord.accuracy` whatever the evaluator (so
that studies and files of earlier versions read back unchanged); the evaluator's name, stored
with each record and in the study's protocol, says what the number is. Every output (tables,
plots, results files, Optuna's metric names, wandb, the progress bar) names and formats it
through :class:`FirstObjective`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from nas._trials.record import TrialRecord
from nas._trials.study import StudyProtocol

#: Evaluators whose value is an accuracy in [0, 1] (a proxy training's, a benchmark table's).
ACCURACY_EVALUATORS = ("proxy", "table")
#: The prefix of a single score evaluator's name (``score:naswot``).
SCORE_PREFIX = "score:"


@dataclass(frozen=True)
class FirstObjective:
    """The first objective's meaning: its kind, its name and how people read it.

    Attributes:
        key: ``accuracy`` or ``score``: the key results files use for it.
        name: the metric's name (``accuracy``, ``ensemble_score``, ``naswot_score``).
        label: an axis label (``proxy accuracy (%)``, ``ensemble score``).

    Example:
        >>> acc, score = first_objective(["proxy"]), first_objective(["score:naswot"])
        >>> acc.header, acc.show(0.73125), score.header, score.show(-1234.5678)
        ('accuracy %', '73.12', 'naswot score', '-1235')
    """

    key: str = "accuracy"
    name: str = "accuracy"
    label: str = "proxy accuracy (%)"

    @property
    def percent(self) -> bool:
        """Whether values are fractions shown as percentages (an accuracy)."""
        return self.key == "accuracy"

    @property
    def noun(self) -> str:
        """What it is, in words (``accuracy``, ``ensemble score``)."""
        return "accuracy" if self.percent else self.label

    @property
    def header(self) -> str:
        """A table's column header."""
        return "accuracy %" if self.percent else self.noun

    def scaled(self, value: float) -> float:
        """The value as plotted: a percentage for an accuracy, the score itself otherwise."""
        return 100 * value if self.percent else value

    def show(self, value: float | None) -> str:
        """A table cell: an accuracy in percent (two decimals), a score to 4 significant digits."""
        if value is None:
            return ""
        return f"{100 * value:.2f}" if self.percent else f"{value:.4g}"

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "name": self.name, "label": self.label}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FirstObjective:
        """The objective a results file recorded (:meth:`to_dict`)."""
        return cls(**{k: str(data[k]) for k in ("key", "name", "label") if k in data})


def first_objective(evaluators: Iterable[str | None]) -> FirstObjective:
    """The first objective of trials evaluated by these evaluators (their recorded names).

    An accuracy when every name is ``proxy`` or ``table`` or unknown (``None``: records of
    earlier versions, trials stopped before evaluation); otherwise a score, named by the first
    other evaluator (a study's protocol forbids mixing them).

    Example:
        >>> first_objective(["table", None]).label
        'accuracy (%)'
        >>> first_objective([None, "proxy", "ensemble"]).name
        'ensemble_score'
    """
    names = [n for n in evaluators if n]
    others = [n for n in names if n not in ACCURACY_EVALUATORS]
    if others:
        score = others[0].removeprefix(SCORE_PREFIX)
        name = re.sub(r"\W+", "_", score)
        return FirstObjective(key="score", name=f"{name}_score", label=f"{score} score")
    if names and set(names) == {"table"}:
        return FirstObjective(label="accuracy (%)")  # a benchmark's full-training accuracy
    return FirstObjective()


def evaluator_name(settings: Mapping[str, Any]) -> str | None:
    """The name an evaluator records on its trials, from its protocol settings.

    Example:
        >>> evaluator_name({"name": "score", "score": "naswot"}), evaluator_name({"name": "proxy"})
        ('score:naswot', 'proxy')
    """
    name = settings.get("name")
    if name == "score" and settings.get("score"):
        return f"{SCORE_PREFIX}{settings['score']}"
    if name == "screen" and isinstance(settings.get("train"), Mapping):
        return evaluator_name(settings["train"])  # its trials hold the training's accuracy
    return None if name is None else str(name)


def study_objective(study: optuna.Study, records: Iterable[TrialRecord] = ()) -> FirstObjective:
    """The first objective of a study: its protocol's evaluator and its records' evaluators."""
    protocol = StudyProtocol.from_attrs(study.user_attrs)
    recorded = evaluator_name(protocol.evaluator) if protocol is not None else None
    return first_objective([recorded, *(r.evaluator for r in records)])
