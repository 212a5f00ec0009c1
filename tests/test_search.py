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
from nas._search.run import space_from_config
from nas._trials.pareto import hypervolume, pareto_front

# conf/conf/tiny.yaml: a tiny MBConv space on synthetic data, so that a trial takes about a second.
TINY = ["conf=tiny"]


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

    original = nas.measure.make_evaluator

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
        # The record holds the earlier result; the sampler is told "pruned" (a known point).
        assert t.state == TrialState.PRUNED and t.values is None
        assert t.user_attrs["accuracy"] == first.user_attrs["accuracy"]
        assert t.user_attrs["latency_ms"] == first.user_attrs["latency_ms"]
        assert t.user_attrs["pruned"].startswith(f"duplicate of trial {first.number}")
    assert result.results.counts["duplicates"] == 5 and result.results.counts["COMPLETE"] == 1


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


def scripted_evaluator(accuracies):
    """A ``make_evaluator`` whose evaluator returns these accuracies, one per trial it trains.

    It keeps the evaluator contract (two epochs, ``on_epoch`` after each, stop when it says
    so), so the search around it runs for real: sampling, latency, dedupe, early stopping.
    """
    queue = list(accuracies)

    def make(**options):
        def evaluate(model, data, *, device="cpu", on_epoch=None, seed=None, identity=None):
            acc = queue.pop(0)
            curve = []
            for epoch in (1, 2):
                curve.append(acc)
                if on_epoch is not None and on_epoch(epoch, acc):
                    return nas.measure.AccuracyResult(acc, curve, epochs=epoch, stopped=True)
            return nas.measure.AccuracyResult(acc, curve, epochs=2)

        return evaluate

    return make


def test_dominated_trials_are_stopped_and_recorded_as_pruned(tmp_path, monkeypatch):
    # Each trial is 0.03 less accurate than the one before it, so a trial is stopped exactly
    # when an earlier trial at least as fast is two or more trials older (better by the margin).
    import nas._search.run as search_run

    monkeypatch.setattr(
        search_run, "make_evaluator", scripted_evaluator([0.9 - 0.03 * k for k in range(8)])
    )
    margin = 0.05
    result = run_search(
        tiny(
            "search.n_trials=8",
            "sampler=random",
            "space.kernel=[3,5]",
            "search.early_stop.min_finished=2",
            "search.early_stop.min_dominators=1",
            f"search.early_stop.margin={margin}",
        ),
        run_dir=tmp_path,
    )
    rows = {r.trial: r for r in TrialRecord.all_of(result.study.get_trials())}
    pruned = [r for r in rows.values() if r.state == "PRUNED" and r.duplicate_of is None]
    assert pruned
    for r in pruned:
        assert r.pruned.startswith("dominated at epoch 1"), r.pruned
        dominators = [int(n) for n in r.pruned.split("[")[1].split("]")[0].split(",")]
        for d in dominators:
            assert rows[d].latency_ms <= r.latency_ms, "dominators are at least as fast"
            assert rows[d].curve[0] >= r.curve[0] + margin, "and better by the margin"
        assert r.curve == [r.curve[0]], "stopped after the first epoch"
    complete = [r for r in rows.values() if r.state == "COMPLETE" and r.duplicate_of is None]
    for r in complete[2:]:
        earlier = [o for o in complete if o.trial < r.trial and o.latency_ms <= r.latency_ms]
        assert not [o for o in earlier if o.curve[0] >= r.curve[0] + margin], "not dominated"
    assert {r.trial for r in result.results.front}.isdisjoint({r.trial for r in pruned})


def _finished(trial: int, latency_ms: float, curve: list[float]) -> TrialRecord:
    return TrialRecord(trial=trial, state="COMPLETE", latency_ms=latency_ms, curve=curve)


def test_the_dominance_rule_counts_only_faster_trials_better_by_the_margin():
    from nas._config import EarlyStopConfig
    from nas._search.early_stop import DominanceStopper

    stopper = DominanceStopper(EarlyStopConfig(min_finished=3, min_dominators=2, margin=0.05))
    finished = [
        _finished(0, 1.0, [0.80, 0.90]),  # faster, better by 0.2
        _finished(1, 3.0, [0.95, 0.97]),  # better but slower: does not count
        _finished(2, 2.0, [0.62, 0.70]),  # faster but within the margin at epoch 1
        _finished(3, 2.0, [0.70, 0.90]),  # faster, better by 0.1
    ]
    rule = stopper.rule(finished, latency_ms=2.0)
    assert rule(1, 0.60) == (
        "dominated at epoch 1: accuracy 0.6000 below trials [0, 3] at equal or lower latency"
    )
    assert rule(1, 0.70) is None  # only trial 0 is better by the margin now
    assert rule(2, 0.60) is not None  # at epoch 2, trials 0, 2 and 3 all are
    # Faster than all of them: nothing is at least as fast, nothing dominates.
    assert stopper.rule(finished, latency_ms=0.5)(1, 0.0) is None
    assert stopper.rule(finished[:2], latency_ms=2.0) is None  # fewer than min_finished
    late = DominanceStopper(EarlyStopConfig(min_finished=1, min_dominators=1, min_epoch=2))
    assert late.rule(finished, latency_ms=2.0)(1, 0.0) is None  # before min_epoch
    assert DominanceStopper(EarlyStopConfig(enabled=False)).rule(finished, latency_ms=9) is None


def test_the_mnas_pruner_stops_a_trial_below_the_median(tmp_path, monkeypatch):
    # Trial 1 is far less accurate than trial 0 at epoch 1: Optuna's MedianPruner, given one
    # startup trial, must stop it there.
    import nas._search.run as search_run

    monkeypatch.setattr(search_run, "make_evaluator", scripted_evaluator([0.9, 0.1, 0.95]))
    result = run_search(
        tiny(
            "search.n_trials=3",
            "sampler=random",
            "space.kernel=[3,5]",
            "search.objective=mnas",
            "search.mnas.target_ms=1.0",
            "search.mnas.startup_trials=1",
        ),
        run_dir=tmp_path,
    )
    study = result.study
    assert len(study.directions) == 1
    assert isinstance(study.pruner, optuna.pruners.MedianPruner)
    first, second, third = study.get_trials()
    assert first.state == TrialState.COMPLETE
    a = first.user_attrs
    expected = a["accuracy"] * (a["latency_ms"] / 1.0) ** -0.07
    assert math.isclose(first.value, expected, rel_tol=1e-9)
    assert first.intermediate_values, "mnas trials report to Optuna's pruner each epoch"
    assert second.state == TrialState.PRUNED
    assert second.user_attrs["pruned"] == "pruned by the study's pruner at epoch 1"
    assert list(second.intermediate_values) == [1]
    assert third.state == TrialState.COMPLETE  # above the median: trained to the end


@pytest.mark.parametrize(
    ("sampler", "kind"),
    [
        ("nsga2", optuna.samplers.NSGAIISampler),
        ("tpe", optuna.samplers.TPESampler),
        ("nsga3", optuna.samplers.NSGAIIISampler),
        ("random", optuna.samplers.RandomSampler),
        ("gp", optuna.samplers.GPSampler),
        ("grid", optuna.samplers.RandomSampler),  # grid points are enqueued; see below
    ],
)
def test_every_sampler_runs(tmp_path, sampler, kind):
    result = run_search(tiny("search.n_trials=2", f"sampler={sampler}"), run_dir=tmp_path)
    trials = result.study.get_trials()
    assert len(trials) == 2
    assert type(result.study.sampler) is kind
    if sampler == "grid":
        grid = nas.space.make_space(**result.study.user_attrs["space_options"], name="mbconv")
        points = [t.system_attrs["fixed_params"] for t in trials]
        assert [t.params for t in trials] == points, "each trial is an enqueued grid point"
        assert len({json.dumps(p, sort_keys=True) for p in points}) == 2
        assert all(grid.validate(p) == p for p in points)


def test_sampler_options_reach_the_sampler():
    from nas._search.samplers import make_sampler

    sampler = make_sampler({"name": "nsga2", "population_size": 12}, seed=0, constrained=True)
    assert sampler._population_size == 12  # Optuna keeps it private; the option must arrive
    with pytest.raises(ConfigError, match=r"sampler\.populaton_size is not an option"):
        make_sampler({"name": "nsga2", "populaton_size": 12}, seed=0, constrained=False)


def test_latency_and_macs_limits_make_trials_infeasible_and_untrained(tmp_path):
    result = run_search(
        tiny("search.n_trials=3", "sampler=random", "search.constraints.max_latency_ms=1e-6"),
        run_dir=tmp_path / "latency",
    )
    for r in TrialRecord.all_of(result.study.get_trials()):
        assert not r.feasible and r.constraints[0] > 0
        assert r.infeasible.startswith("latency ") and "ms > 1e-06 ms" in r.infeasible
        assert r.accuracy == 0.0 and not r.curve, "never trained"
        assert r.latency is not None, "measured: the latency is what is over the limit"
    assert result.results.front == []

    space = space_from_config(tiny().space)
    macs = sorted(
        nas.profile(space.build(space.random_genotype(i), num_classes=4), resolution=32).macs
        for i in range(30)
    )
    limit = (macs[0] + macs[-1]) // 2
    result = run_search(
        tiny("search.n_trials=8", "sampler=random", f"search.constraints.max_macs={limit}"),
        run_dir=tmp_path / "macs",
    )
    rows = TrialRecord.all_of(result.study.get_trials())
    infeasible = [r for r in rows if not r.feasible]
    assert infeasible and len(infeasible) < len(rows)
    for r in infeasible:
        assert r.macs > limit and "macs" in r.note
        assert r.latency is None and not r.curve, "neither timed nor trained"
    assert all(r.macs <= limit for r in result.results.front)


def test_timeout_stops_the_search_and_writes_results(tmp_path):
    result = run_search(
        tiny("search.n_trials=100", "sampler=random", "search.timeout=0.01"), run_dir=tmp_path
    )
    trials = result.study.get_trials()
    # The budget is checked before each trial: the first runs, none after the time is up.
    assert len(trials) == 1
    assert (tmp_path / "pareto.json").is_file()


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


def test_results_are_strict_json_and_files_readable_by_others(tmp_path):
    import os
    import stat

    run_search(tiny("search.n_trials=3", "sampler=random", "report.plots=true"), run_dir=tmp_path)

    def refuse(value: str) -> None:
        raise ValueError(f"non-standard JSON constant {value}")

    json.loads((tmp_path / "pareto.json").read_text(), parse_constant=refuse)
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    for name in ("pareto.json", "trials.csv", "pareto.png", "hypervolume.png", "pareto.html"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


# --- reproducible evaluation -------------------------------------------------------------------

#: Four networks (two stages, kernel 3 or 5 each), with dropout and stochastic depth on (random
#: layers during training); the second stage's block is residual.
FOUR = [
    "space.stages=[[1,3,1,32,16,1],[6,3,1,16,16,2]]",
    "space.kernel=[3,5]",
    "space.expand=[3]",
    "space.se=[0.0]",
    "space.stochastic_depth=0.2",
    "evaluator.epochs=1",
]


def accuracies(result) -> dict[str, tuple[float, list[float]]]:
    """Accuracy and curve of every network a search evaluated, by the network's identity."""
    return {
        r.genotype_key: (r.accuracy, r.curve)
        for r in result.results.rows
        if r.state == "COMPLETE" and r.duplicate_of is None
    }


def test_a_networks_accuracy_does_not_depend_on_what_ran_before(tmp_path):
    grid = tiny(*FOUR, "sampler=grid", "search.n_trials=4", "search.early_stop.enabled=false")
    first = accuracies(run_search(grid, run_dir=tmp_path / "a"))
    assert len(first) == 4
    torch.rand(1000)  # the process's random stream moves on
    nas.space.make_space("mbconv", resolution=32).build(  # ... and a network is built
        nas.space.make_space("mbconv", resolution=32).random_genotype(5), num_classes=10
    )
    again = accuracies(run_search(grid, run_dir=tmp_path / "b"))
    assert again == first
    # Another order: random sampling (with duplicates) visits them differently.
    shuffled = tiny(*FOUR, "sampler=random", "search.n_trials=5", "search.early_stop.enabled=false")
    other = accuracies(run_search(shuffled, run_dir=tmp_path / "c"))
    assert other and all(other[k] == first[k] for k in other)
    # Another search.seed seeds the networks differently (and so may change accuracies).
    reseeded = accuracies(run_search(_with(grid, "search.seed", 1), run_dir=tmp_path / "d"))
    assert reseeded.keys() == first.keys() and reseeded != first


def _with(cfg, key, value):
    from omegaconf import OmegaConf

    cfg = cfg.copy()
    OmegaConf.update(cfg, key, value)
    return cfg
