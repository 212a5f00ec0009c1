"""The latency objective: the reference-normalised figure in ms of the study's reference."""

from __future__ import annotations

import importlib.util

import optuna
import pytest
import torch
from omegaconf import OmegaConf
from optuna.trial import TrialState

import nas
from nas import TrialRecord, compose, run_search
from nas._search.objective import LATENCY_SCALE, Objective

TINY = [
    "conf=tiny",
    "evaluator.epochs=1",
    "latency.reference_resolution=32",
    "sampler=random",
]


def measured(study: optuna.Study) -> list[TrialRecord]:
    return [r for r in TrialRecord.all_of(study.get_trials()) if r.latency is not None]


def test_the_objective_is_relative_times_the_studys_reference_ms(tmp_path) -> None:
    result = run_search(compose([*TINY, "search.n_trials=4"]), run_dir=tmp_path)
    study = result.study
    scale = study.user_attrs[LATENCY_SCALE]
    rows = measured(study)
    assert rows and scale["backend"] == "torch" and scale["reference"] == "efficientnet_b0"
    first = min(rows, key=lambda r: r.trial)
    assert scale["ms"] == first.latency.reference_ms  # the study's first measurement
    for r in rows:
        assert r.latency_scale_ms == scale["ms"]
        assert r.latency_ms == pytest.approx(r.latency.relative * scale["ms"])
        assert r.latency.median_ms > 0  # raw milliseconds kept in the record
        t = study.trials[r.trial]
        if t.state == TrialState.COMPLETE:
            assert t.values[1] == pytest.approx(r.latency_ms)  # what the sampler sees
    # Resuming keeps the scale: later trials compare with the earlier ones.
    again = run_search(compose([*TINY, "search.n_trials=6"]), run_dir=tmp_path)
    assert again.study.user_attrs[LATENCY_SCALE] == scale
    assert {r.latency_scale_ms for r in measured(again.study)} == {scale["ms"]}


def test_a_study_begun_with_raw_milliseconds_keeps_them(tmp_path, monkeypatch) -> None:
    with monkeypatch.context() as m:  # an earlier version: raw ms, no scale on the study
        m.setattr(Objective, "_latency_scale", staticmethod(lambda trial, lat: None))
        old = run_search(compose([*TINY, "search.n_trials=2"]), run_dir=tmp_path)
    assert LATENCY_SCALE not in old.study.user_attrs
    resumed = run_search(compose([*TINY, "search.n_trials=4"]), run_dir=tmp_path)
    assert resumed.study.user_attrs[LATENCY_SCALE]["ms"] is None
    rows = measured(resumed.study)
    assert len({r.origin for r in rows if r.trial >= 2}) >= 1, "new trials were measured"
    for r in rows:
        assert r.latency_scale_ms is None and r.latency_ms == r.latency.median_ms


def test_without_a_reference_the_objective_is_raw_milliseconds(tmp_path) -> None:
    cfg = compose([*TINY, "search.n_trials=2", "latency.reference=null"])
    result = run_search(cfg, run_dir=tmp_path)
    rows = measured(result.study)
    assert rows and LATENCY_SCALE not in result.study.user_attrs
    for r in rows:
        assert r.latency.relative is None and r.latency_scale_ms is None
        assert r.latency_ms == r.latency.median_ms


def test_a_study_of_another_backend_refuses_to_mix_figures(tmp_path) -> None:
    first = run_search(compose([*TINY, "search.n_trials=1"]), run_dir=tmp_path)
    scale = {**first.study.user_attrs[LATENCY_SCALE], "backend": "onnxruntime"}
    first.study.set_user_attr(LATENCY_SCALE, scale)
    resumed = run_search(compose([*TINY, "search.n_trials=2"]), run_dir=tmp_path)
    last = TrialRecord.of(resumed.study.get_trials()[-1])
    assert last.state == "FAIL"
    assert "backend 'onnxruntime' (this run: 'torch')" in last.failure


@pytest.mark.slow
@pytest.mark.skipif(
    not all(importlib.util.find_spec(p) for p in ("onnx", "onnxscript", "onnxruntime")),
    reason="pip install 'nas[onnx]'",
)
def test_a_search_takes_int8_latency_as_its_objective(tmp_path, monkeypatch) -> None:
    import nas._latency.source as objective_module

    seen = []
    original = objective_module.measure_latency

    def spy(model, **kw):
        seen.append(kw["calibration"])
        return original(model, **kw)

    monkeypatch.setattr(objective_module, "measure_latency", spy)
    cfg = compose([*TINY, "search.n_trials=2", "latency=int8"])
    result = run_search(cfg, run_dir=tmp_path)
    rows = measured(result.study)
    assert rows and all(r.latency.backend == "onnxruntime_int8" for r in rows)
    assert result.study.user_attrs[LATENCY_SCALE]["backend"] == "onnxruntime_int8"
    data = nas.load_data(resolution=32, **OmegaConf.to_container(cfg.data, resolve=True))
    for images in seen:  # calibrated on the first training images, not on noise
        assert torch.equal(images, data.x_train[:32])
