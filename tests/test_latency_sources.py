"""Latency sources behind one protocol: measured, benchmark table, block predictor, and a new one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from omegaconf import OmegaConf, open_dict
from torch import nn

from nas import LatencySettings, compose, run_search
from nas._config import ConfigError, to_dict
from nas._latency.source import (
    LatencySource,
    PredictedLatency,
    latency_of,
    register_latency_source,
)
from nas._search.run import latency_from_config
from nas._trials.latency import LatencyResult
from nas._trials.record import TrialRecord
from nas.space import make_space


def test_each_source_is_selected_by_the_config() -> None:
    measured = latency_from_config(to_dict(compose(["latency=cpu"]).latency))
    predicted = latency_from_config(to_dict(compose(["latency=predictor"]).latency))
    assert isinstance(measured, LatencySettings) and measured.measured
    assert isinstance(predicted, PredictedLatency) and not predicted.measured
    assert isinstance(predicted, LatencySource)
    assert predicted.settings == measured, "blocks are measured with latency/cpu.yaml's settings"


def test_the_predictor_sums_measured_blocks() -> None:
    source = PredictedLatency(settings=LatencySettings(max_seconds=0.2, min_rounds=3))
    space = make_space("mbconv", resolution=32, width_mult=0.25)
    model = space.build(space.random_genotype(0), num_classes=10)
    r = latency_of(source, model, identity="x", resolution=32)
    assert r.median_ms > 0 and r.relative is not None and r.relative > 0
    assert r.reference == "efficientnet_b0" and "predicted" in r.device


def test_a_bad_predictor_option_is_named() -> None:
    with pytest.raises(ConfigError, match="latency: 'thread' is not a latency setting"):
        latency_from_config({"source": "predictor", "thread": 2})


@dataclass(frozen=True)
class ParamsLatency:
    """A made-up source: one millisecond per thousand parameters."""

    ms_per_kparam: float = 1.0
    measured: ClassVar[bool] = False

    def latency_of(
        self, model: nn.Module, *, identity: str, resolution: int, images: Any = None
    ) -> LatencyResult:
        ms = self.ms_per_kparam * sum(p.numel() for p in model.parameters()) / 1000
        return LatencyResult(
            median_ms=ms,
            iqr_ms=0.0,
            runs=1,
            relative=None,
            reference_ms=None,
            device="params",
            threads=0,
            torch_version=torch.__version__,
            batch_size=1,
            resolution=resolution,
            clock="params",
            wall_ms=math.nan,
        )


def test_a_new_source_is_one_class_and_one_registration(tmp_path: Path, monkeypatch) -> None:
    import nas._latency.source as sources

    monkeypatch.setattr(sources, "_SOURCES", dict(sources._SOURCES))
    register_latency_source("params", ParamsLatency)
    with pytest.raises(ValueError, match="already registered"):
        register_latency_source("params", PredictedLatency)
    cfg = compose(["conf=tiny", "search.n_trials=2"])
    with open_dict(cfg):  # what a conf/latency/params.yaml selected with latency=params holds
        cfg.latency = OmegaConf.create({"source": "params", "ms_per_kparam": 2.0})
    result = run_search(cfg, run_dir=tmp_path)
    records = [TrialRecord.of(t) for t in result.study.get_trials() if t.values]
    assert records
    for r in records:
        assert r.latency is not None and r.latency.clock == "params"
        assert r.latency.median_ms == pytest.approx(2.0 * r.params / 1000)
