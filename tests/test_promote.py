"""search.promote: networks that may reach the front are trained again from the next seeds;
their accuracy is the mean of the trainings, and the record says how many."""

from __future__ import annotations

import csv
import json
import statistics
import uuid
from collections.abc import Iterator

import pytest
from omegaconf import OmegaConf, open_dict
from optuna.trial import TrialState

from nas import run_search
from nas.__main__ import main
from nas._trials.record import TrialRecord
from nas.measure import register_latency_source
from tests.test_distributed import GRID8, POSTGRES_URL, needs_postgres
from tests.test_latency_sources import ParamsLatency
from tests.test_search import tiny

PROMOTE = ["search.promote.seeds=3", "search.early_stop.enabled=false", "sampler=random"]


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Six trials whose latency is a made-up function of the parameters: which trials are
    promoted must not depend on a timing (measured latency decided it differently in CI)."""
    import nas._latency.source as sources

    run_dir = tmp_path_factory.mktemp("promote")
    saved = dict(sources._SOURCES)
    register_latency_source("params", ParamsLatency)
    cfg = tiny(*PROMOTE, "search.n_trials=6")
    with open_dict(cfg):
        cfg.latency = OmegaConf.create({"source": "params", "ms_per_kparam": 1.0})
    try:
        result = run_search(cfg, run_dir=run_dir)
    finally:
        sources._SOURCES.clear()
        sources._SOURCES.update(saved)
    records = TrialRecord.all_of(result.study.get_trials())
    yield {"run_dir": run_dir, "records": records, "result": result}


def test_a_promoted_trial_reports_the_mean_of_all_its_trainings(promoted: dict) -> None:
    records = [r for r in promoted["records"] if r.state == TrialState.COMPLETE.name]
    assert len(records) == 6
    budgets = [r.budget for r in records]
    assert budgets[0] == 3, "the first trial faces an empty front: always promoted"
    assert set(budgets) <= {1, 2, 3} and min(budgets) < 3, "some are not promoted"
    for r in records:
        assert len(r.accuracies) == r.budget
        assert r.accuracies[0] == r.curve[-1], "the first training is the one with a curve"
        assert r.accuracy == pytest.approx(statistics.fmean(r.accuracies))
    assert len({tuple(r.accuracies) for r in records if r.budget > 1}) == sum(
        r.budget > 1 for r in records
    )


def test_the_promotion_rule_stops_at_a_faster_more_accurate_front_member(promoted: dict) -> None:
    """A trial left at fewer trainings than allowed was beaten, when it stopped, by a front
    member at equal or lower latency at least as accurate as its mean: with one worker, an
    earlier trial."""
    records = [r for r in promoted["records"] if r.state == TrialState.COMPLETE.name]
    for r in records:
        if r.budget < 3:
            mean = statistics.fmean(r.accuracies)
            earlier = [o for o in records if o.trial < r.trial]
            assert any(
                o.latency_ms <= r.latency_ms and o.accuracy >= mean - 1e-9 for o in earlier
            ), r


def test_results_files_report_each_members_budget(promoted: dict) -> None:
    run_dir = promoted["run_dir"]
    by_trial = {r.trial: r for r in promoted["records"]}
    doc = json.loads((run_dir / "pareto.json").read_text())
    assert doc["front"]
    for member in doc["front"]:
        record = by_trial[member["trial"]]
        assert member["budget"] == record.budget
        assert member["accuracies"] == record.accuracies
        assert member["accuracy"] == pytest.approx(statistics.fmean(record.accuracies))
    with (run_dir / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["budget"]) for r in rows] == [r.budget for r in promoted["records"]]


def test_a_resume_with_other_promotion_is_refused_in_one_line(promoted: dict, capsys) -> None:
    run_dir = promoted["run_dir"]
    code = main(
        [
            "search",
            "conf=tiny",
            *PROMOTE[1:],
            "search.promote.seeds=2",
            "search.n_trials=7",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "search.promote.seeds=3; this run has search.promote.seeds=2" in line


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("search.promote.seeds=0", "search.promote.seeds must be >= 1, got 0"),
        ("search.promote.margin=-0.1", "search.promote.margin must be >= 0, got -0.1"),
    ],
)
def test_bad_promotion_values_are_named(tmp_path, capsys, override: str, message: str) -> None:
    assert main(["search", "conf=tiny", override, f"hydra.run.dir={tmp_path}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"nas search: error: {message}"


def _trainings(result) -> dict[str, list[float]]:
    """Each trained network's trainings (its figure at each budget), by network."""
    out = {}
    for t in result.study.get_trials():
        if t.state == TrialState.COMPLETE and t.user_attrs.get("duplicate_of") is None:
            record = TrialRecord.of(t)
            assert len(record.accuracies) == record.budget
            assert record.accuracy == pytest.approx(statistics.fmean(record.accuracies))
            out[t.user_attrs["genotype_key"]] = record.accuracies
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", pytest.param("postgres", marks=needs_postgres)])
def test_two_workers_and_a_resume_give_every_network_the_same_trainings(tmp_path, backend):
    """With early stopping on, two workers (on PostgreSQL too) and a resume: which trials are
    promoted may differ with the order trials finish in, but a network's k-th training is the
    same figure in every run, and every reported accuracy is the mean of its trainings."""
    names = {"two": uuid.uuid4().hex[:8], "resumed": uuid.uuid4().hex[:8]}

    def storage(run: str) -> list[str]:
        if backend == "journal":
            return []
        return [f"storage.url={POSTGRES_URL}", f"search.study_name=promote_{names[run]}"]

    def grid(*extra: str):
        return tiny("search.promote.seeds=2", *GRID8, *extra)

    alone = _trainings(run_search(grid("search.n_trials=8"), run_dir=tmp_path / "alone"))
    assert alone and any(len(a) == 2 for a in alone.values())
    two = run_search(
        grid("search.n_trials=8", "search.n_workers=2", *storage("two")), run_dir=tmp_path / "two"
    )
    run_search(grid("search.n_trials=3", *storage("resumed")), run_dir=tmp_path / "resumed")
    resumed = run_search(
        grid("search.n_trials=8", *storage("resumed")), run_dir=tmp_path / "resumed"
    )
    for other in (_trainings(two), _trainings(resumed)):
        assert other
        for key, accuracies in other.items():
            if key in alone:
                k = min(len(accuracies), len(alone[key]))
                assert accuracies[:k] == alone[key][:k], key
