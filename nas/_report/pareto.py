"""The Pareto front of a study's records and its hypervolume (maximise accuracy, minimise ms)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from nas._record import TrialRecord


def pareto_front(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Non-dominated evaluated records, one per network (duplicates left out), by latency.

    Hand-written because Optuna's ``best_trials`` reads objective values, which the MnasNet
    single-objective mode does not hold as two objectives; the rule is the usual one.

    Example:
        >>> recs = [TrialRecord(trial=i, state="COMPLETE", accuracy=a, latency_ms=m)
        ...         for i, (a, m) in enumerate([(0.5, 1.0), (0.4, 2.0), (0.9, 3.0)])]
        >>> [r.trial for r in pareto_front(recs)]
        [0, 2]
    """
    candidates = [r for r in records if r.evaluated and r.duplicate_of is None]
    front = [
        r
        for r in candidates
        if not any(
            o.accuracy >= r.accuracy  # type: ignore[operator]
            and o.latency_ms <= r.latency_ms  # type: ignore[operator]
            and (o.accuracy > r.accuracy or o.latency_ms < r.latency_ms)  # type: ignore[operator]
            for o in candidates
        )
    ]
    return sorted(front, key=lambda r: (r.latency_ms, -(r.accuracy or 0.0)))


def hypervolume(points: Iterable[tuple[float, float]], ref_latency_ms: float) -> float:
    """Area dominated by (accuracy, latency) points, bounded by accuracy 0 and ``ref_latency_ms``.

    Two objectives only, so the exact area is a sweep over the points sorted by latency
    (Optuna's hypervolume code is private API).

    Example:
        >>> hypervolume([(0.5, 1.0), (0.7, 2.0), (0.9, 4.0)], 5.0)
        2.8
    """
    pts = sorted((lat, acc) for acc, lat in points if lat < ref_latency_ms and acc > 0)
    area, best_acc = 0.0, 0.0
    for i, (lat, acc) in enumerate(pts):
        best_acc = max(best_acc, acc)
        next_lat = pts[i + 1][0] if i + 1 < len(pts) else ref_latency_ms
        area += best_acc * (next_lat - lat)
    return area


def reference_latency(records: Sequence[TrialRecord], fixed: float | None) -> float:
    """The hypervolume reference latency: the configured one, else 1.1x the slowest evaluated."""
    if fixed is not None:
        return float(fixed)
    lats = [r.latency_ms for r in records if r.evaluated]
    return 1.1 * max(lats) if lats else 1.0  # type: ignore[type-var]


def hypervolume_history(
    records: Sequence[TrialRecord], ref_latency_ms: float
) -> list[tuple[int, float]]:
    """Hypervolume of the evaluated trials so far, after each trial number."""
    history, points = [], []
    for r in records:
        if r.evaluated:
            points.append((r.accuracy, r.latency_ms))
        history.append((r.trial, hypervolume(points, ref_latency_ms)))  # type: ignore[arg-type]
    return history
