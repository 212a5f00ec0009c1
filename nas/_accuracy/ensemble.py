"""Training-free evaluators: one score (``evaluator=score``), or a label-free ensemble of
several ranked against a reference population (``evaluator=ensemble``).

A network's ensemble score must depend neither on the order of the trials nor on the worker,
and must be the same after a resume. Scores of different kinds (a log-determinant, a count of
FLOPs, an eigenvalue sum) are put on one scale by ranking each against the same reference: a
population of ``reference`` distinct networks drawn from the space with the search's seed when
the study starts. Their scores are computed once, stored with the study (one user attribute)
and read by every worker and every resume (:meth:`EnsembleEvaluator.study_state`).

A score's rank against the reference is a smoothed empirical distribution function (each
reference value a Gaussian of the population's Silverman bandwidth) mapped through the
normal quantile function: monotone, with no ties at the ends (a network better than the whole
reference still ranks above another that is better still). The ensemble is the mean of these
normal scores over its components, mapped back through the normal distribution function: a
figure in (0, 1), higher is better, read as the share of the space's networks this one beats
(0.5: the reference's median). Being positive, it works with the hypervolume's reference
point 0 and with the MnasNet reward. ``aggregate=log`` instead takes the geometric mean of the
components' smoothed percentiles (AZ-NAS's non-linear aggregation): a weak component pulls a
network down, and a component far beyond the reference cannot carry it alone.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from scipy.special import log_ndtr, logsumexp, ndtr, ndtri_exp
from torch import nn

from nas._accuracy.proxy import (
    NOT_AN_OPTION,
    AccuracyResult,
    Evaluator,
    NonFiniteLossError,
    OnEpoch,
    check_number,
)
from nas._accuracy.zero_cost import SCORES, check_scores, compute_scores
from nas._data.data import Dataset

log = logging.getLogger(__name__)

#: The ensemble's components by default: label-free scores (see ``experiments/proxy_ground_truth``
#: for how they were chosen).
DEFAULT_SCORES = (
    "az_expressivity",
    "synflow",
    "jacob_cov",
    "naswot",
    "az_progressivity",
)


@dataclass(frozen=True)
class ScoreEvaluator(Evaluator):
    """One training-free score of :mod:`nas._accuracy.zero_cost` (higher is better).

    Args:
        score: its name (``nas.measure.SCORES``).
        batch_size: training images of the batch (drawn with ``seed``).
        seed: the batch and the score's random draws.

    Example:
        >>> from nas import load_data
        >>> from nas.measure import make_evaluator
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32, width_mult=0.25)
        >>> model = space.build(space.random_genotype(0), num_classes=10)
        >>> data = load_data(name="synthetic", resolution=32)
        >>> make_evaluator(name="score", score="naswot", batch_size=16)(model, data).evaluator
        'score:naswot'
    """

    name: ClassVar[str] = "score"

    score: str = "naswot"
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_scores([self.score])
        check_number("batch_size", self.batch_size, minimum=2, integer=True)
        check_number("seed", self.seed, minimum=0, integer=True)

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
        value = compute_scores(
            model, data, [self.score], batch_size=self.batch_size, seed=self.seed, device=device
        )[self.score]
        if not math.isfinite(value):
            raise NonFiniteLossError(f"{self.score} score is not finite (a dead network?)")
        return AccuracyResult(
            accuracy=value, seconds=time.perf_counter() - start, evaluator=f"score:{self.score}"
        )


def _tails(values: Sequence[float], reference: Sequence[float]) -> list[tuple[float, float]]:
    """Each value's (log CDF, log survival) under the reference's smoothed distribution: a
    Gaussian of Silverman's bandwidth at each reference value. ``nan`` gives (-inf, 0)."""
    ref = np.asarray([v for v in reference if math.isfinite(v)], dtype=np.float64)
    if len(ref) < 2:
        raise ValueError("a reference needs at least two finite values")
    spread = min(float(np.std(ref)), float(np.subtract(*np.percentile(ref, [75, 25]))) / 1.34)
    spread = spread if spread > 0 else float(np.std(ref)) or 1.0
    bandwidth = 0.9 * spread * len(ref) ** -0.2  # Silverman's rule
    out = []
    for x in values:
        if math.isnan(x):
            out.append((-math.inf, 0.0))
            continue
        z = (x - ref) / bandwidth
        # In logs (mean of Φ(±z)), so that neither end rounds to 0 or 1.
        log_cdf = float(logsumexp(log_ndtr(z))) - math.log(len(ref))
        log_sf = float(logsumexp(log_ndtr(-z))) - math.log(len(ref))
        out.append((log_cdf, log_sf))
    return out


def normal_ranks(values: Sequence[float], reference: Sequence[float]) -> list[float]:
    """Each value's rank against ``reference`` on the normal scale (see the module docstring).

    ``nan`` values (a score that failed: a dead network) rank below everything, at ``-inf``.

    Example:
        >>> r = normal_ranks([0.0, 1.0, 100.0, 1000.0], [0.0, 1.0, 2.0, 3.0])
        >>> r == sorted(r) and r[3] > r[2] > 2
        True
    """
    return [
        -math.inf
        if log_cdf == -math.inf
        else (-float(ndtri_exp(log_sf)) if log_sf < log_cdf else float(ndtri_exp(log_cdf)))
        for log_cdf, log_sf in _tails(values, reference)
    ]


def log_percentiles(values: Sequence[float], reference: Sequence[float]) -> list[float]:
    """Each value's log share of the reference below it (smoothed): at most 0, ``-inf`` for
    ``nan``. Saturates above the reference, where :func:`normal_ranks` keeps ranking.

    Example:
        >>> p = log_percentiles([0.0, 1.5, 100.0], [0.0, 1.0, 2.0, 3.0])
        >>> p == sorted(p) and p[2] <= 0.0
        True
    """
    return [log_cdf for log_cdf, _ in _tails(values, reference)]


#: How the ensemble combines its components' ranks (``aggregate``).
AGGREGATES = ("normal", "log")


def ensemble_figures(
    values: Mapping[str, Sequence[float]],
    reference: Mapping[str, Sequence[float]],
    aggregate: str = "normal",
) -> list[float]:
    """The ensemble's figure, in (0, 1), of networks whose component scores are ``values``
    (score name -> one value per network), ranked against the ``reference`` population's.

    ``normal``: Φ of the mean of the components' :func:`normal_ranks` (each clipped at ±8).
    ``log`` (AZ-NAS's
    non-linear aggregation): the geometric mean of the components' smoothed percentiles
    (:func:`log_percentiles`), so that one weak component pulls a network down and one
    extreme component cannot carry it.

    Example:
        >>> ref = {"a": [0.0, 1.0, 2.0, 3.0], "b": [5.0, 6.0, 7.0, 9.0]}
        >>> f = ensemble_figures({"a": [0.0, 3.0], "b": [5.0, 9.0]}, ref)
        >>> 0 < f[0] < 0.5 < f[1] < 1
        True
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    if aggregate == "normal":
        # Clipped at ±8 (beyond the reference by 8 spreads): Φ of a mean above 8.3 rounds to 1,
        # which would tie the best networks.
        per_score = [
            [min(max(z, -8.0), 8.0) if math.isfinite(z) else z for z in normal_ranks(v, ref)]
            for v, ref in ((values[n], reference[n]) for n in values)
        ]
        means = [statistics.fmean(v) for v in zip(*per_score, strict=True)]
        return [float(ndtr(m)) for m in means]
    per_score = [log_percentiles(values[n], reference[n]) for n in values]
    return [math.exp(statistics.fmean(v)) for v in zip(*per_score, strict=True)]


@dataclass(frozen=True)
class EnsembleEvaluator(Evaluator):
    """A label-free ensemble of training-free scores, ranked against a reference population.

    Args:
        scores: the components (``nas.measure.SCORES``).
        reference: networks in the reference population (distinct, drawn from the space).
        aggregate: ``normal`` or ``log`` (:func:`combine`).
        batch_size: training images of the scores' batch.
        seed: the batch, and which networks form the reference.

    Example:
        >>> from nas import load_data
        >>> from nas.measure import make_evaluator
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32, width_mult=0.25)
        >>> data = load_data(name="synthetic", resolution=32)
        >>> ens = make_evaluator(name="ensemble", scores=["naswot", "flops"], reference=4,
        ...                      batch_size=16)
        >>> state = ens.study_state(space, lambda r: data, num_classes=10, seed=0)
        >>> model = space.build(space.random_genotype(7), num_classes=10)
        >>> ens.with_state(state)(model, data).evaluator
        'ensemble'
    """

    name: ClassVar[str] = "ensemble"

    scores: Sequence[str] = DEFAULT_SCORES
    reference: int = 32
    aggregate: str = "normal"
    batch_size: int = 64
    seed: int = 0
    state: Mapping[str, Any] | None = field(
        default=None, compare=False, repr=False, metadata=NOT_AN_OPTION
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", check_scores(self.scores))
        check_number("reference", self.reference, minimum=2, integer=True)
        if self.aggregate not in AGGREGATES:
            raise ValueError(
                f"option aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}"
            )
        check_number("batch_size", self.batch_size, minimum=2, integer=True)
        check_number("seed", self.seed, minimum=0, integer=True)

    def options(self) -> dict[str, Any]:
        opts = super().options()
        opts["scores"] = list(self.scores)
        return opts

    def study_state(
        self,
        space: Any,
        data: Callable[[int], Dataset],
        *,
        num_classes: int,
        seed: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Score the reference population: ``reference`` distinct networks of ``space`` drawn
        with ``seed``, each built as a search builds it. The result is what the study stores."""
        import torch

        from nas._trials.record import network_seed

        genotypes: dict[str, dict[str, Any]] = {}
        draw = 0
        while len(genotypes) < self.reference and draw < 100 * self.reference:
            genotype = space.random_genotype(seed * 100_003 + draw)
            genotypes.setdefault(space.identity(genotype), genotype)
            draw += 1
        values: dict[str, list[float]] = {s: [] for s in self.scores}
        for k, (identity, genotype) in enumerate(sorted(genotypes.items()), start=1):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(network_seed(seed, identity))
                model = space.build(genotype, num_classes=num_classes)
            got = compute_scores(
                model,
                data(space.resolution_of(genotype)),
                self.scores,
                batch_size=self.batch_size,
                seed=self.seed,
            )
            for s in self.scores:
                values[s].append(got[s])
            if progress is not None:
                progress(k, len(genotypes))
        return {"networks": sorted(genotypes), "values": values, "seed": seed}

    def with_state(self, state: Mapping[str, Any]) -> EnsembleEvaluator:
        """This evaluator, ranking against the stored reference ``state``."""
        return replace(self, state=state)

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
        if self.state is None:
            raise RuntimeError("the ensemble needs its reference population (study_state)")
        start = time.perf_counter()
        raw = compute_scores(
            model, data, self.scores, batch_size=self.batch_size, seed=self.seed, device=device
        )
        failed = [s for s in self.scores if not math.isfinite(raw[s])]
        if failed:
            raise NonFiniteLossError(f"{failed[0]} score is not finite (a dead network?)")
        figure = ensemble_figures(
            {s: [raw[s]] for s in self.scores}, self.state["values"], self.aggregate
        )[0]
        return AccuracyResult(
            accuracy=figure,
            seconds=time.perf_counter() - start,
            evaluator=self.name,
        )


def uses_labels(scores: Sequence[str]) -> bool:
    """Whether any of ``scores`` needs the data's labels."""
    return any(SCORES[s].labels for s in scores)
