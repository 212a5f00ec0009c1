"""The Pareto front of a study's records and its hypervolume (maximise accuracy, minimise ms)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from nas._trials.record import TrialRecord


def _dominates(o: TrialRecord, r: TrialRecord) -> bool:
    return (
        o.accuracy >= r.accuracy  # type: ignore[operator]
        and o.latency_ms <= r.latency_ms  # type: ignore[operator]
        and (o.accuracy > r.accuracy or o.latency_ms < r.latency_ms)  # type: ignore[operator]
    )


def _candidate(record: TrialRecord) -> bool:
    return record.evaluated and record.duplicate_of is None


def _order(record: TrialRecord) -> tuple[float, float]:
    return (record.latency_ms, -(record.accuracy or 0.0))  # type: ignore[return-value]


def pareto_front(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Non-dominated evaluated records, one per network (duplicates left out), by latency.

    Hand-written because Optuna's ``best_trials`` reads objective values, which the MnasNet
    single-objective mode does not hold as two objectives; the rule is the usual one (records
    equal in both objectives are all kept). A sweep by latency, so a study of 10,000 trials
    costs milliseconds.

    Example:
        >>> recs = [TrialRecord(trial=i, state="COMPLETE", accuracy=a, latency_ms=m)
        ...         for i, (a, m) in enumerate([(0.5, 1.0), (0.4, 2.0), (0.9, 3.0)])]
        >>> [r.trial for r in pareto_front(recs)]
        [0, 2]
    """
    front: list[TrialRecord] = []
    best = -float("inf")  # best accuracy among strictly faster records
    candidates = sorted((r for r in records if _candidate(r)), key=_order)
    i = 0
    while i < len(candidates):
        lat = candidates[i].latency_ms
        group = [candidates[i]]
        while i + len(group) < len(candidates) and candidates[i + len(group)].latency_ms == lat:
            group.append(candidates[i + len(group)])
        top = group[0].accuracy  # the group is sorted by accuracy, best first
        if top > best:  # type: ignore[operator]
            front.extend(r for r in group if r.accuracy == top)
            best = top  # type: ignore[assignment]
        i += len(group)
    return front


class ParetoFront:
    """The Pareto front of records added one at a time (:func:`pareto_front`'s rule).

    ``max_latency_ms``: leave out records at or above it (a fixed hypervolume reference).

    Example:
        >>> front = ParetoFront()
        >>> for i, (a, m) in enumerate([(0.5, 1.0), (0.4, 2.0), (0.9, 3.0), (0.6, 0.5)]):
        ...     _ = front.add(TrialRecord(trial=i, state="COMPLETE", accuracy=a, latency_ms=m))
        >>> [r.trial for r in front.records]
        [3, 2]
    """

    def __init__(self, *, max_latency_ms: float | None = None) -> None:
        self.records: list[TrialRecord] = []
        self.max_latency_ms = max_latency_ms

    def add(self, record: TrialRecord) -> bool:
        """Add a record; returns whether it joined the front."""
        if not _candidate(record):
            return False
        if self.max_latency_ms is not None and record.latency_ms >= self.max_latency_ms:  # type: ignore[operator]
            return False
        if any(_dominates(o, record) for o in self.records):
            return False
        self.records = [o for o in self.records if not _dominates(record, o)]
        self.records.append(record)
        self.records.sort(key=_order)
        return True

    def points(self) -> list[tuple[float, float]]:
        """(accuracy, latency ms) of the front's records."""
        return [(r.accuracy, r.latency_ms) for r in self.records]  # type: ignore[misc]


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
    """Hypervolume of the evaluated trials so far, after each trial number.

    Only the front bounds the area, so it is kept as the records come (a study of thousands of
    trials would otherwise sort every earlier point again at every trial).
    """
    history = []
    front = ParetoFront(max_latency_ms=ref_latency_ms)
    area = 0.0
    for r in records:
        if front.add(r):
            area = hypervolume(front.points(), ref_latency_ms)
        history.append((r.trial, area))
    return history
