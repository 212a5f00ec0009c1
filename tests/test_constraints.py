"""Hard limits: search.constraints.max_latency_ms is in milliseconds of the latency objective;
a network above it is infeasible (recorded as such, never trained), one below it feasible."""

from __future__ import annotations

import math

import nas
from nas import TrialRecord, compose, run_search

WIDTHS = {"fast": 1, "slow": 128}
#: Two networks 10x or more apart in latency: one 3x3 conv of one channel and a stack of
#: 128-channel ones.
TWO_NETWORKS = [
    "space=tiny_cnn",
    "space.stages=1",
    f"space.widths=[{WIDTHS['fast']},{WIDTHS['slow']}]",
    "space.kernels=[3]",
    "space.depths=[3]",
    "data=synthetic",
    "evaluator.epochs=1",
    "sampler=grid",
    "search.n_trials=2",
    "latency.warmup=1",
    "latency.min_rounds=3",
    "latency.max_seconds=0.1",
    "search.progress=false",
    "report.plots=false",
    "report.remeasure_front=false",
]
LATENCY = {"threads": 1, "warmup": 1, "min_rounds": 3, "max_seconds": 0.1}


def test_max_latency_ms_is_in_milliseconds_and_splits_feasible_from_infeasible(tmp_path):
    widths = list(WIDTHS.values())
    space = nas.space.make_space("tiny_cnn", stages=1, widths=widths, kernels=[3], depths=[3])
    models = {
        name: space.build({"s1.width": w, "s1.kernel": 3, "s1.depth": 3}, num_classes=4)
        for name, w in WIDTHS.items()
    }
    # Measured apart from the search, in milliseconds; the limit lies halfway (in log) between.
    fast, slow = nas.measure_latencies(list(models.values()), resolution=32, **LATENCY)
    assert slow.median_ms > 4 * fast.median_ms
    limit_ms = math.sqrt(fast.median_ms * slow.median_ms)
    cfg = compose([*TWO_NETWORKS, f"search.constraints.max_latency_ms={limit_ms}"])
    result = run_search(cfg, run_dir=tmp_path)
    records = {r.genotype["s1.width"]: r for r in TrialRecord.all_of(result.study.get_trials())}
    assert sorted(records) == sorted(WIDTHS.values())
    below, above = records[WIDTHS["fast"]], records[WIDTHS["slow"]]
    # The objective is in ms: the figures measured apart, not their seconds or microseconds.
    assert 0.5 < below.latency_ms / fast.median_ms < 2
    assert 0.5 < above.latency_ms / slow.median_ms < 2
    assert below.latency_ms < limit_ms < above.latency_ms
    assert below.infeasible is None and below.constraints[0] <= 0
    assert below.curve and below.accuracy == below.curve[-1], "feasible: trained"
    assert above.infeasible == f"latency {above.latency_ms:.3f} ms > {limit_ms} ms"
    assert above.constraints[0] > 0 and above.accuracy == 0.0 and above.curve == []
    front = nas.pareto_front(list(records.values()))
    assert [r.trial for r in front] == [below.trial], "an infeasible network is never on the front"
