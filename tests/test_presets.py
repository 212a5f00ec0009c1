"""The presets of conf/conf: each composes, and conf=tiny (the tests' preset) runs a search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from nas import compose, run_search

PRESETS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "conf").glob("*.yaml")
)

#: What conf=tiny is: conf=mbconv_pareto with these overrides (the list the tests once copied).
TINY_OVERRIDES = [
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


def test_the_presets_are_found() -> None:
    assert {"tiny", "mbconv_pareto", "inception_widths", "effnet_grid"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_with_its_own_study_name(preset: str) -> None:
    cfg = compose([f"conf={preset}"])
    choices = compose([f"conf={preset}"], return_hydra_config=True).hydra.runtime.choices
    assert choices.conf == preset
    assert cfg.space.name and cfg.sampler.name and cfg.data.name
    assert cfg.search.n_trials >= 1
    # Every preset names its study (runs of two presets never share outputs/search), except
    # conf=tiny: it is conf=mbconv_pareto shrunk.
    expected = "mbconv_pareto" if preset == "tiny" else preset
    assert cfg.search.study_name == expected


def test_conf_tiny_is_mbconv_pareto_with_the_tests_overrides() -> None:
    tiny = OmegaConf.to_container(compose(["conf=tiny"]))
    spelt_out = OmegaConf.to_container(compose(["conf=mbconv_pareto", *TINY_OVERRIDES]))
    assert tiny == spelt_out


def test_overrides_on_top_of_conf_tiny_win() -> None:
    cfg = compose(["conf=tiny", "data=digits", "space.kernel=[3,5]", "evaluator.epochs=1"])
    assert cfg.data.name == "digits" and cfg.data.num_classes == 10
    assert list(cfg.space.kernel) == [3, 5] and cfg.evaluator.epochs == 1


def test_conf_tiny_runs_a_search_end_to_end(tmp_path) -> None:
    result = run_search(compose(["conf=tiny", "search.n_trials=3"]), run_dir=tmp_path)
    trials = result.study.get_trials()
    assert len(trials) == 3
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert doc["study_name"] == "mbconv_pareto" and doc["front"]
    assert (tmp_path / "study.journal").is_file() and (tmp_path / "trials.csv").is_file()
    assert not (tmp_path / "pareto.png").exists(), "conf=tiny writes no plots"
