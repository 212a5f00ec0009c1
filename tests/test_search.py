"""The search engine: study set-up, dedupe, constraints, early stopping, resume, results."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

import nas
from nas import ConfigError, TrialRecord, compose, run_search
from nas._report.pareto import hypervolume, pareto_front
from nas._search.run import space_from_config

# A tiny MBConv space on synthetic data, so that a trial takes about a second.
TINY = [
    "conf=mbconv_pareto",
    "data=synthetic",
    "data.synthetic_size=160",
    "space.resolution=32",
    "space.width_mult=0.25",
    "space.depth_mult=0.5",
    "space.kernel=[3]",
    "space.expand=[1,3]",
    "space.se=[0.0]",
    "space.stochastic_depth=0.0",
    "evaluator.epochs=2",
    "latency.warmup=1",
    "latency.min_rounds=3",
    "latency.max_seconds=0.1",
    "search.progress=false",
    "report.plots=false",
    "report.remeasure_front=false",
]


def tiny(*extra: str):
    return compose([*TINY, *extra])


def test_search_records_every_trial_and_writes_results(tmp_path):
    result = run_search(tiny("search.n_trials=5", "sampler=random"), run_dir=tmp_path)
    trials = result.study.get_trials()
    assert len(trials) == 5
    for t in trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        a = t.user_attrs
        assert set(a["genotype"]) == set(nas.space.make_space("mbconv", resolution=32).grid())
        if t.state == TrialState.COMPLETE and a.get("duplicate_of") is None:
            assert a["params"] > 0 and a["macs"] > 0
            assert a["latency"]["median_ms"] > 0 and a["latency"]["runs"] >= 1
            assert 0.0 <= a["accuracy"] <= 1.0 and len(a["curve"]) == 2
            assert a["seconds"]["total"] > 0
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert doc["front"], "a search with complete trials has a non-empty front"
    for rec in doc["front"]:
        model = nas.build_model(tmp_path / rec["arch_file"]).eval()
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, doc["num_classes"])
    assert (tmp_path / "trials.csv").read_text().count("\n") == 6


def test_duplicate_genotype_is_not_retrained(tmp_path, monkeypatch):
    calls = []
    import nas._search.run as search_run

    original = nas.make_evaluator

    def counting_make_evaluator(**options):
        evaluator = original(**options)

        def wrapped(model, data, **kw):
            calls.append(1)
            return evaluator(model, data, **kw)

        return wrapped

    monkeypatch.setattr(search_run, "make_evaluator", counting_make_evaluator)
    # A space of one genotype: all six trials are the same network.
    cfg = tiny(
        "search.n_trials=6", "sampler=random", "space.expand=[3]", "search.early_stop.enabled=false"
    )
    result = run_search(cfg, run_dir=tmp_path)
    trials = result.study.get_trials()
    keys = {t.user_attrs["genotype_key"] for t in trials}
    dups = [t for t in trials if t.user_attrs.get("duplicate_of") is not None]
    assert len(keys) == 1
    assert len(calls) == 1 and len(dups) == 5
    first = trials[0]
    for t in dups:
        assert t.user_attrs["duplicate_of"] == first.number
        assert t.values == first.values


def test_constraint_violating_trials_are_infeasible_and_off_the_front(tmp_path):
    # A params limit between the smallest and largest networks of the space.
    space = space_from_config(tiny().space)
    sizes = sorted(
        sum(p.numel() for p in space.build(space.random_genotype(i), num_classes=10).parameters())
        for i in range(30)
    )
    limit = (sizes[0] + sizes[-1]) // 2
    result = run_search(
        tiny("search.n_trials=8", "sampler=random", f"search.constraints.max_params={limit}"),
        run_dir=tmp_path,
    )
    rows = TrialRecord.all_of(result.study.get_trials())
    infeasible = [r for r in rows if not r.feasible]
    assert infeasible, "the limit should make some trials infeasible"
    for r in infeasible:
        assert r.params > limit
        assert not r.curve and "train" not in r.seconds, "infeasible trials are never trained"
        assert "params" in r.note
    front_ids = {
        rec["trial"] for rec in json.loads((tmp_path / "pareto.json").read_text())["front"]
    }
    assert front_ids.isdisjoint({r.trial for r in infeasible})
    assert all(r.params <= limit for r in result.results.front)


def test_resume_continues_numbering_and_keeps_finished_trials(tmp_path):
    first = run_search(tiny("search.n_trials=3", "sampler=random"), run_dir=tmp_path)
    before = {t.number: (t.state, t.values) for t in first.study.get_trials()}
    second = run_search(tiny("search.n_trials=5", "sampler=random"), run_dir=tmp_path)
    trials = second.study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    for t in trials[:3]:
        assert (t.state, t.values) == before[t.number]
    # A budget already reached runs nothing more.
    third = run_search(tiny("search.n_trials=5", "sampler=random"), run_dir=tmp_path)
    assert len(third.study.get_trials()) == 5


def test_resume_with_another_space_is_refused(tmp_path):
    run_search(tiny("search.n_trials=1"), run_dir=tmp_path)
    with pytest.raises(ConfigError, match="different space_options"):
        run_search(tiny("search.n_trials=2", "space.kernel=[5]"), run_dir=tmp_path)


def test_dominated_trials_are_stopped_and_recorded_as_pruned(tmp_path):
    # With a huge margin below zero every slower trial counts as dominated once enough finished.
    result = run_search(
        tiny(
            "search.n_trials=7",
            "sampler=random",
            "search.early_stop.min_finished=2",
            "search.early_stop.min_dominators=1",
            "search.early_stop.margin=-2.0",
        ),
        run_dir=tmp_path,
    )
    pruned = [t for t in result.study.get_trials() if t.state == TrialState.PRUNED]
    assert pruned
    for t in pruned:
        assert "dominated at epoch 1" in t.user_attrs[
            "pruned"
        ] or "pruned trial" in t.user_attrs.get("pruned", "same genotype as pruned trial")
    rows = TrialRecord.all_of(result.study.get_trials())
    assert {r.trial for r in result.results.front}.isdisjoint({t.number for t in pruned})
    assert any(r.state == "PRUNED" for r in rows)


def test_mnas_objective_uses_optunas_pruner(tmp_path):
    result = run_search(
        tiny("search.n_trials=3", "search.objective=mnas", "search.mnas.target_ms=1.0"),
        run_dir=tmp_path,
    )
    study = result.study
    assert len(study.directions) == 1
    t = next(t for t in study.get_trials() if t.state == TrialState.COMPLETE)
    a = t.user_attrs
    expected = a["accuracy"] * (a["latency_ms"] / 1.0) ** -0.07
    assert math.isclose(t.value, expected, rel_tol=1e-9)
    assert t.intermediate_values, "mnas trials report to Optuna's pruner each epoch"


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "nsga3", "grid"])
def test_every_sampler_runs(tmp_path, sampler):
    result = run_search(tiny("search.n_trials=2", f"sampler={sampler}"), run_dir=tmp_path)
    assert len(result.study.get_trials()) == 2


def test_pareto_front_and_hypervolume_by_hand():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for acc, lat in [(0.5, 1.0), (0.7, 2.0), (0.6, 3.0), (0.9, 4.0)]:
        study.add_trial(
            optuna.trial.create_trial(
                values=[acc, lat],
                distributions={},
                params={},
                user_attrs={"accuracy": acc, "latency_ms": lat, "params": 1, "macs": 1},
            )
        )
    front = pareto_front(TrialRecord.all_of(study.get_trials()))
    assert [(r.accuracy, r.latency_ms) for r in front] == [(0.5, 1.0), (0.7, 2.0), (0.9, 4.0)]
    # Reference latency 5: 0.5*(2-1) + 0.7*(4-2) + 0.9*(5-4).
    assert hypervolume([(r.accuracy, r.latency_ms) for r in front], 5.0) == pytest.approx(2.8)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("search.objective=fast", "search.objective"),
        ("search.n_trials=0", "search.n_trials"),
        ("+sampler.populaton_size=3", "sampler.populaton_size"),
        ("+space.kernal=[3]", "kernal"),
        ("+evaluator.epoch=1", "epoch"),
        ("+latency.rounds=3", "latency.rounds"),
        ("storage.url=redis://localhost/0", "unsupported scheme"),
        ("storage.url=/no/such/folder/study.journal", "does not exist"),
    ],
)
def test_bad_config_values_name_the_key(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        run_search(tiny(override), run_dir=tmp_path)


def test_resolution_below_the_networks_stride_fails_before_any_trial(tmp_path):
    with pytest.raises(
        ValueError, match="resolution 16 is smaller than the network's total stride 32"
    ):
        run_search(tiny("space.resolution=16"), run_dir=tmp_path)
    assert not (tmp_path / "study.journal").exists()


def test_misspelt_key_fails_at_composition():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="n_trails"):
        compose([*TINY, "search.n_trails=3"])
