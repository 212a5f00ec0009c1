"""The presets of conf/conf: each composes, conf=tiny (the tests' preset) runs a search, and
each preset's own run, shortened (synthetic data, two trials, one epoch), runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from optuna.trial import TrialState

import nas
from nas import TrialRecord, compose, run_scaling, run_search
from tests.test_benchmark_spaces import NB201

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


#: Brief latency timing, for the presets that measure latency.
QUICK_TIMING = ["latency.warmup=1", "latency.min_rounds=3", "latency.max_seconds=0.1"]
QUICK = ["search.progress=false", "report.plots=false", "report.remeasure_front=false"]
SMALL_DATA = ["data=synthetic", "data.synthetic_size=160", "evaluator.epochs=1"]
#: The same for a training-free ensemble: a reference population of 4, batches of 16.
SMALL_SCORES = [
    "data=synthetic",
    "data.synthetic_size=160",
    "evaluator.reference=4",
    "evaluator.batch_size=16",
]
#: Each preset with what makes its run short; its space, sampler, evaluator and latency source
#: stay its own. Two trials (conf=effnet_grid: step 1 on a 2x2x2 corner of its grid, then
#: phi = 0..1), one worker.
SHORTENED: dict[str, list[str]] = {
    "tiny": [],
    "mbconv_pareto": [
        *SMALL_DATA,
        "space.width_mult=0.25",
        "space.depth_mult=0.5",
        "space.kernel=[3]",
        "space.expand=[1,3]",
        "space.se=[0.0]",
        *QUICK_TIMING,
    ],
    "inception_widths": [*SMALL_DATA, "space.modules=[3a,3b]", *QUICK_TIMING],
    "nb201_proxy": [*SMALL_SCORES, "space.cells=1", *QUICK_TIMING],
    "nas_bench_macro_proxy": [*SMALL_SCORES, *QUICK_TIMING],
    "nb201_table": [],
    "effnet_grid": [
        "data=synthetic",
        "space.alpha=[1.1,1.2]",
        "space.beta=[1.1,1.2]",
        "space.gamma=[1.1,1.2]",
        "space.step=0.1",
        "scaling.max_phi=1",
        "scaling.accuracy=false",
        "scaling.winner.confirm.top=0",
        "evaluator.max_steps=2",
        "evaluator.batch_size=16",
        *QUICK_TIMING,
    ],
}


def test_every_preset_has_a_shortened_run() -> None:
    assert sorted(SHORTENED) == PRESETS


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_each_presets_own_run_shortened_runs_end_to_end(preset: str, tmp_path) -> None:
    if preset == "nb201_table" and not NB201.is_file():
        pytest.skip(f"{NB201} is not here")
    overrides = [f"conf={preset}", *SHORTENED[preset], *QUICK, "search.n_workers=1"]
    own = compose([f"conf={preset}"])
    cfg = compose([*overrides, "search.n_trials=2"])
    assert (cfg.space.name, cfg.sampler.name) == (own.space.name, own.sampler.name)
    assert cfg.evaluator.name == own.evaluator.name
    if cfg.get("scaling"):
        outcome = run_scaling(cfg, run_dir=tmp_path)
        assert [m.phi for m in outcome.members] == [0, 1]
        assert sorted(p.name for p in (tmp_path / "family").iterdir()) == [
            "phi_0.yaml",
            "phi_1.yaml",
        ]
        trials = outcome.step1.study.get_trials()
    else:
        result = run_search(cfg, run_dir=tmp_path)
        trials = result.study.get_trials()
        assert len(trials) == 2
        assert result.study.study_name == own.search.study_name
    records = TrialRecord.all_of(trials)
    assert all(r.state in ("COMPLETE", "PRUNED") for r in records)
    evaluated = [r for r in records if r.accuracy is not None and r.duplicate_of is None]
    assert evaluated and all(0 <= r.accuracy <= 1 and r.latency_ms > 0 for r in evaluated)
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert doc["front"] and all((tmp_path / r["arch_file"]).is_file() for r in doc["front"])
    for rec in doc["front"]:
        model = nas.build_model(tmp_path / rec["arch_file"]).eval()
        assert model(torch.randn(1, 3, rec["resolution"], rec["resolution"])).shape[0] == 1
