"""evaluator=screen: the ensemble chooses what is trained, the same networks whatever the
workers and across a resume."""

from __future__ import annotations

import csv
from typing import Any

import pytest
from optuna.trial import TrialState

from nas import load_data, run_search
from nas.__main__ import main
from nas.measure import ensemble_figures, make_evaluator
from nas.space import make_space
from tests.test_distributed import GRID8
from tests.test_search import tiny

#: A screen over conf=tiny: 4 reference networks, one scored pass, one epoch of training.
SCREEN = [
    "evaluator=screen",
    "~evaluator.epochs",
    "evaluator.train.epochs=1",
    "evaluator.screen.reference=4",
    "evaluator.screen.scores=[naswot,synflow]",
    "evaluator.screen.batch_size=16",
    "evaluator.keep=0.5",
    "search.early_stop.enabled=false",
]


def screen(**options: Any) -> Any:
    base = {
        "keep": 0.5,
        "screen": {"scores": ["naswot", "synflow"], "reference": 4, "batch_size": 16},
        "train": {"name": "proxy", "epochs": 1},
    }
    return make_evaluator(name="screen", **{**base, **options})


def test_only_networks_at_the_reference_quantile_are_trained(monkeypatch):
    space = make_space("mbconv", resolution=32, width_mult=0.25, depth_mult=0.5)
    data = load_data(name="synthetic", resolution=32, synthetic_size=64)
    ev = screen()
    ev = ev.with_state(ev.study_state(space, lambda r: data, num_classes=10, seed=0))
    trained = []
    original = type(ev._trainer).__call__

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        trained.append(True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(ev._trainer), "__call__", spy)
    results = []
    for k in range(8):
        model = space.build(space.random_genotype(k), num_classes=10)
        results.append(ev(model, data, seed=k))
    passed = [r.screen >= ev.threshold for r in results]
    assert 0 < sum(passed) < 8, "both kinds among eight networks"
    assert len(trained) == sum(passed)
    for r, ok in zip(results, passed, strict=True):
        assert (r.screened is None) == ok
        assert r.evaluator == "proxy"
        if ok:
            assert r.curve and not r.stopped
        else:
            assert r.stopped and r.curve == [] and r.screened.startswith("screened out")
    # The threshold is the reference's own 1 - keep quantile: half of it passes.
    values = ev.state["values"]
    figures = ensemble_figures(values, values, "normal")
    assert sum(f >= ev.threshold for f in figures) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"keep": 0}, "keep must be a share in (0, 1], got 0"),
        ({"keep": 1.5}, "keep must be a share in (0, 1], got 1.5"),
        ({"screen": {"name": "proxy"}}, "screen.name must be ensemble, got 'proxy'"),
        ({"train": {"name": "ensemble"}}, "train.name must be one of proxy, table"),
        ({"train": {"name": "proxy", "epoch": 1}}, "evaluator 'proxy' has no option 'epoch'"),
        ({"screen": {"scores": ["zen"]}}, "unknown score 'zen'"),
    ],
)
def test_bad_screen_options_are_named(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        screen(**options)


def trained_keys(result: Any) -> set[str]:
    return {
        t.user_attrs["genotype_key"]
        for t in result.study.get_trials()
        if t.state == TrialState.COMPLETE and t.user_attrs.get("duplicate_of") is None
    }


@pytest.mark.slow
def test_one_and_two_workers_and_a_resume_train_the_same_networks(tmp_path):
    def grid(*extra: str) -> Any:
        return tiny(*SCREEN, *GRID8, *extra)

    alone = run_search(grid("search.n_trials=8"), run_dir=tmp_path / "alone")
    trials = alone.study.get_trials()
    assert len(trials) == 8
    screened = [t for t in trials if t.state == TrialState.PRUNED]
    assert screened and len(trained_keys(alone)) == 8 - len(screened)
    assert all(t.user_attrs["pruned"].startswith("screened out") for t in screened)
    assert all("accuracy" not in t.user_attrs for t in screened)
    assert all(isinstance(t.user_attrs.get("screen"), float) for t in trials)
    two = run_search(grid("search.n_trials=8", "search.n_workers=2"), run_dir=tmp_path / "two")
    assert trained_keys(two) == trained_keys(alone)
    run_search(grid("search.n_trials=3"), run_dir=tmp_path / "resumed")
    resumed = run_search(grid("search.n_trials=8"), run_dir=tmp_path / "resumed")
    assert trained_keys(resumed) == trained_keys(alone)
    with (tmp_path / "alone" / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["objective"] for r in rows} == {"accuracy"}
    assert all(r["screen"] for r in rows)
    assert {r["note"] for r in rows if r["state"] == "PRUNED"} == {
        t.user_attrs["pruned"] for t in screened
    }


def test_a_bad_screen_option_on_the_command_line_is_one_line(tmp_path, capsys):
    code = main(
        [
            "search",
            "conf=tiny",
            "evaluator=screen",
            "~evaluator.epochs",
            "+evaluator.train.foo=1",
            f"hydra.run.dir={tmp_path}",
        ]
    )
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("nas search: error: evaluator option train: evaluator 'proxy' has no")
