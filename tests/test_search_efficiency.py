"""The search-efficiency benchmark's measure: hypervolume found / the true front's."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import nas
from nas._search.run import space_from_config
from nas._search.study import open_study
from tests.test_benchmark_spaces import needs_nb201

ROOT = Path(__file__).resolve().parents[1]


def bench():
    spec = importlib.util.spec_from_file_location(
        "bench", ROOT / "experiments" / "search_efficiency" / "bench.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def raspi4():
    """The benchmark module, NAS-Bench-201 on raspi4, its reference points and true areas."""
    b = bench()
    nb = b.nb201("raspi4")
    refs = b.references(nb.values, 90.0)
    return b, nb, refs, b.true_areas(nb.values, refs)


@needs_nb201
def test_the_exhaustive_front_has_ratio_exactly_one_and_a_search_at_most_one():
    b = bench()
    table = b.values("raspi4")
    assert len(table) == 6466  # the isomorphism classes
    refs = b.references(table, 90.0)
    truth = b.true_areas(table, refs)
    points = list(table.values())
    front = [p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)]
    for name, ref in refs.items():
        assert b.area(front, ref) / truth[name] == 1.0
        assert b.area(front[: len(front) // 2], ref) / truth[name] < 1.0
    run = b.run("random", 0, table, refs, truth, evals=40, max_trials=1000)
    assert run["distinct"] == 40 and len(run["ratio"]["headline"]) == 4
    for curve in run["ratio"].values():
        assert all(0.0 <= r <= 1.0 for r in curve)
        assert curve == sorted(curve)  # more networks never lose area


def test_the_area_counts_only_networks_above_the_floor():
    b = bench()
    assert b.area([(95.0, 1.0), (89.0, 0.5)], (90.0, 2.0)) == pytest.approx(5.0)
    assert nas.hypervolume([], 1.0) == 0.0


@needs_nb201
def test_early_stopping_leaves_a_random_search_unchanged_and_costs_fewer_epochs():
    # Random sampling ignores what it is told, so with and without early stopping it draws the
    # same networks: the stop rule may only leave fronts members out and must save epochs.
    b, nb, refs, truth = raspi4()
    off = b.run("random", 0, nb, refs, truth, evals=60, max_trials=1000)
    on = b.run("random", 0, nb, refs, truth, evals=60, max_trials=1000, early_stop=True)
    assert off["trials"] == on["trials"] and on["stopped"] > 0 and off["stopped"] == 0
    assert off["epochs"][-1] == 60 * 200
    assert on["epochs"][-1] == (60 - on["stopped"]) * 200 + on["stopped"] * 12
    pairs = zip(off["ratio"]["headline"], on["ratio"]["headline"], strict=True)
    assert all(a >= b_ for a, b_ in pairs)


def test_the_benchmarks_default_sampler_is_the_projects_config():
    b = bench()
    expected = {"name": "tpe", "multivariate": True, "n_startup_trials": 16}
    assert b.sampler_options("default") == expected
    assert b.sampler_options("tpe:multivariate=true,n_startup_trials=16") == expected


def test_the_default_sampler_is_multivariate_tpe_after_16_random_trials(tmp_path):
    """The sampler a default search opens its study with samples all choices jointly (one
    density; independent TPE infers no joint search space) and only from the 17th network on
    (the first 16 are random: no relative sample)."""
    cfg = nas.compose(["storage=memory"])
    space = space_from_config(cfg.space)
    study, _ = open_study(cfg, run_dir=tmp_path, space=space, num_classes=10)
    sampler = study.sampler
    assert isinstance(sampler, optuna.samplers.TPESampler)
    distributions = {
        "a": optuna.distributions.CategoricalDistribution([3, 5, 7]),
        "b": optuna.distributions.CategoricalDistribution([1, 3, 4, 6]),
    }
    rng = random.Random(0)

    def finish_one() -> None:
        params = {k: rng.choice(d.choices) for k, d in distributions.items()}
        values = [rng.random(), rng.random()]
        trial = optuna.trial.create_trial(params=params, distributions=distributions, values=values)
        study.add_trial(trial)

    def relative_sample() -> dict:
        study.ask()
        trial = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[-1]
        joint = sampler.infer_relative_search_space(study, trial)
        assert joint == distributions, "multivariate: one search space over every choice"
        return sampler.sample_relative(study, trial, joint)

    for _ in range(15):
        finish_one()
    assert relative_sample() == {}, "the 16th network is still a random one"
    finish_one()
    assert set(relative_sample()) == set(distributions), "the 17th is sampled from the model"


class _TruthScores:
    """A stand-in for ``ensemble_scores.EnsembleScores`` whose figure is the table's accuracy:
    the screen's rule is checked here, not the ensemble (computing it is seconds a network)."""

    def __init__(self, table: dict[str, tuple[float, float]]) -> None:
        self.table, self.calls = table, 0

    def row(self, identity, genotype):
        self.calls += 1
        return {"values": {"acc": self.table[identity][0]}, "cpu_seconds": 2.0}

    def figure(self, values):
        return values["acc"]

    def threshold(self, keep):
        return sorted((a for a, _ in self.table.values()), reverse=True)[
            int(keep * len(self.table))
        ]

    def reference(self):
        return {}, 64.0


@needs_nb201
def test_a_screened_search_trains_only_what_passes_and_counts_what_it_paid():
    # Random sampling ignores what it is told: with and without the screen it draws the same
    # candidates; the screen trains only those at or above its threshold, and a network it
    # leaves out can only lower the found front, never raise it.
    b, nb, refs, truth = raspi4()
    scores = _TruthScores(nb.values)
    off = b.run("random", 0, nb, refs, truth, evals=100, max_trials=1000)
    keep = 0.7  # its threshold is above the headline's accuracy floor of 90% (asserted)
    assert scores.threshold(keep) < 90.0 < scores.threshold(0.25)
    on = b.run("random", 0, nb, refs, truth, evals=100, max_trials=1000, screen=(scores, keep))
    low = b.run("random", 0, nb, refs, truth, evals=100, max_trials=1000, screen=(scores, 0.25))
    assert off["trials"] == on["trials"] and off["trained"] == 100
    assert scores.calls == 200 and 0 < low["trained"] < on["trained"] < 100 and on["stopped"] == 0
    assert on["trained_at"][-1] == on["trained"] and on["trained_at"] == sorted(on["trained_at"])
    assert on["score_seconds_at"][-1] == 64.0 + 2.0 * 100
    assert on["epochs"][-1] == on["trained"] * 200
    # Screening on the truth itself with a threshold below the floor leaves out no network that
    # counts in the headline area; one above the floor (keep 0.25) does.
    assert on["ratio"]["headline"] == off["ratio"]["headline"]
    assert low["ratio"]["headline"][-1] < off["ratio"]["headline"][-1]
