"""The study index: each finished trial read once, and the same answers as a full scan.

The framework's time per trial must not grow with the study. Timings do not belong in tests,
so the test counts work instead: how many trial records a search of N trials reads (a scan of
every trial at every trial reads about N²/2).
"""

from __future__ import annotations

import dataclasses
import random

import optuna
import pytest
import torch
from optuna.trial import TrialState

import nas
from nas import TrialRecord
from nas._storage.recovery import budget_used
from nas._trials.index import StudyIndex
from nas._trials.pareto import ParetoFront, pareto_front
from tests.test_search import scripted_evaluator, tiny


def brute_front(records: list[TrialRecord]) -> list[TrialRecord]:
    """The definition: evaluated, not a duplicate, and no other record dominates it."""
    cands = [r for r in records if r.evaluated and r.duplicate_of is None]
    front = [
        r
        for r in cands
        if not any(
            o.accuracy >= r.accuracy
            and o.latency_ms <= r.latency_ms
            and (o.accuracy > r.accuracy or o.latency_ms < r.latency_ms)
            for o in cands
        )
    ]
    return sorted(front, key=lambda r: (r.latency_ms, -r.accuracy))


def random_records(rng: random.Random, n: int) -> list[TrialRecord]:
    # Few distinct values, so that ties in one or both objectives are common.
    return [
        TrialRecord(
            trial=i,
            state=rng.choice(["COMPLETE"] * 4 + ["PRUNED", "FAIL"]),
            accuracy=rng.choice([0.5, 0.6, 0.7, 0.8, 0.9]),
            latency_ms=rng.choice([1.0, 2.0, 3.0, 4.0]),
            duplicate_of=rng.choice([None] * 5 + [0]),
            constraints=rng.choice([[0.0, 0.0, 0.0]] * 5 + [[0.5, 0.0, 0.0]]),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("seed", range(30))
def test_the_sweep_front_and_the_incremental_front_equal_the_definition(seed):
    rng = random.Random(seed)
    records = random_records(rng, rng.randint(0, 40))
    expected = [r.trial for r in brute_front(records)]
    assert [r.trial for r in pareto_front(records)] == expected
    front = ParetoFront()
    for r in records:
        front.add(r)
    assert sorted(r.trial for r in front.records) == sorted(expected)


def test_a_bounded_front_leaves_out_records_at_or_above_the_bound():
    front = ParetoFront(max_latency_ms=3.0)
    for i, (acc, lat) in enumerate([(0.9, 3.0), (0.5, 1.0), (0.7, 2.0)]):
        front.add(TrialRecord(trial=i, state="COMPLETE", accuracy=acc, latency_ms=lat))
    assert [r.trial for r in front.records] == [1, 2]


def _trial(state: TrialState, *, values=None, **attrs) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=state, values=values, user_attrs=attrs)


def test_the_index_agrees_with_a_full_scan_as_trials_arrive_in_any_order():
    study = optuna.create_study(directions=["maximize", "minimize"])
    index = StudyIndex.of(study)
    assert StudyIndex.of(study) is index
    ok = {"accuracy": 0.8, "latency_ms": 2.0, "curve": [0.8], "genotype_key": "a"}
    study.add_trial(_trial(TrialState.COMPLETE, values=[0.8, 2.0], **ok))
    study.add_trial(_trial(TrialState.FAIL, genotype_key="b"))
    study.enqueue_trial({}, user_attrs={"retry_of": 1})  # WAITING: retries trial 1
    running = study.ask()  # takes the waiting retry (trial 2)
    assert running.number == 2
    study.add_trial(_trial(TrialState.PRUNED, genotype_key="c", curve=[0.1]))
    study.add_trial(
        _trial(TrialState.COMPLETE, values=[0.9, 1.0], **{**ok, "accuracy": 0.9, "latency_ms": 1.0})
    )
    new = index.refresh()
    assert [r.trial for r in new] == [0, 1, 3, 4]
    trials = study.get_trials(deepcopy=False)
    assert index.budget_used() == budget_used(trials) == 4  # 0, 2 (running), 3, 4; 1 retried
    assert index.budget_used(running=False) == 3
    assert index.first_of("a").trial == 0 and index.first_of("c").trial == 3
    assert index.first_of("b") is None  # a failure is not reused
    assert [r.trial for r in index.front.records] == [4]
    assert [r.trial for r in index.curves] == [0, 4]
    assert [t.number for t in index.open] == [2]
    study.tell(running, [0.95, 3.0])
    assert [r.trial for r in index.refresh()] == [2]
    assert index.refresh() == []
    assert index.budget_used() == budget_used(study.get_trials()) == 4


def test_each_finished_trial_is_read_once_so_the_work_per_trial_does_not_grow(
    tmp_path, monkeypatch
):
    # A search reads records for its budget check, dedupe, early stopping and progress bar.
    # Scanning every trial at every trial would read about n²/2 records (1,800 for 60 trials);
    # the index reads each finished trial once per consumer study object.
    calls = {"n": 0}
    of = TrialRecord.of.__func__

    def counting(cls, trial):
        calls["n"] += 1
        return of(cls, trial)

    monkeypatch.setattr(TrialRecord, "of", classmethod(counting))
    # Building, profiling, timing and training replaced by constants: only the framework runs.
    import nas._latency.source as latency_source
    import nas._search.objective as objective_module
    import nas._search.run as search_run

    rng = random.Random(0)
    monkeypatch.setattr(
        search_run, "make_evaluator", scripted_evaluator([rng.random() for _ in range(100)])
    )
    model = torch.nn.Linear(1, 1)
    monkeypatch.setattr(
        objective_module, "profile", lambda m, resolution: nas.measure.Profile(1, 1, 1, resolution)
    )
    latency = nas.measure_latency(model, resolution=1, min_rounds=1, max_seconds=0.01)
    monkeypatch.setattr(
        latency_source,
        "measure_latency",
        lambda *a, **kw: dataclasses.replace(latency, median_ms=rng.uniform(1, 5)),
    )
    n = 60
    cfg = tiny(f"search.n_trials={n}", "sampler=random", "space.kernel=[3,5]")
    result = nas.run_search(cfg, run_dir=tmp_path)
    assert len(result.study.get_trials()) == n
    # Once per finished trial in the index, at most a few times for the trial that is running,
    # and once more per trial when the results are written.
    assert calls["n"] < 6 * n, calls["n"]
