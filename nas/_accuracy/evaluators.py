"""Evaluators by name: what ``conf/evaluator/<name>.yaml`` selects."""

from __future__ import annotations

from typing import Any

from nas._accuracy.ensemble import EnsembleEvaluator, ScoreEvaluator
from nas._accuracy.proxy import Evaluator, ProxyEvaluator, option_fields
from nas._accuracy.scores import JacobCovEvaluator, SynflowEvaluator
from nas._accuracy.table import BenchmarkEvaluator

#: Evaluators by name (the ``name`` key of ``conf/evaluator/<name>.yaml``).
EVALUATORS: dict[str, type[Evaluator]] = {
    cls.name: cls
    for cls in (
        ProxyEvaluator,
        SynflowEvaluator,
        JacobCovEvaluator,
        ScoreEvaluator,
        EnsembleEvaluator,
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
    cls = EVALUATORS[name]
    allowed = [f.name for f in option_fields(cls)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"evaluator {name!r} has no option {unknown[0]!r}; allowed: "
            f"{', '.join(allowed) if allowed else 'none'}"
        )
    return cls(**options)
