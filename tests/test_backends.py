"""Latency backends: each one orders networks by size, records its runtime, fails in one line."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import nas
from nas import LatencyResult, LatencySettings, measure_latencies
from nas._latency.backends import BACKENDS, MissingBackendError, require_backend
from nas.measure import BlockLatencyPredictor

ROOT = Path(__file__).resolve().parents[1]
FAST = {"max_seconds": 0.3, "min_rounds": 5, "reference_resolution": 32, "threads": 1}
#: Lowering to XNNPACK takes about 10 s a network here: end to end only in the slow suite.
SLOW_BACKENDS = {"executorch"}


def installed(name: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in BACKENDS[name].packages)


def backend_param(name: str):
    marks = [pytest.mark.skipif(not installed(name), reason=f"pip install 'nas[{name}]'")]
    if name in SLOW_BACKENDS:
        marks.append(pytest.mark.slow)
    return pytest.param(name, marks=marks, id=name)


MEASURED = [backend_param(name) for name in BACKENDS if name != "torch"]


def tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    )


def wide_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 96, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(96, 96, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(96, 96, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(96, 10),
    )


@pytest.mark.parametrize("backend", [pytest.param("torch", id="torch"), *MEASURED])
def test_a_larger_network_measures_slower_in_every_backend(backend: str) -> None:
    small, big = tiny_net(), wide_net()
    assert nas.profile(big, resolution=64).macs > 1000 * nas.profile(small, resolution=64).macs
    a, b = measure_latencies([small, big], resolution=64, backend=backend, clock="cpu", **FAST)
    assert b.median_ms > a.median_ms and b.relative > a.relative
    assert a.rounds == b.rounds  # interleaved with each other and the reference
    for r in (a, b):
        assert r.backend == backend and r.runtime_version
        assert r.runtime_version.split()[0] == BACKENDS[backend].runtime
        assert r.reference == "efficientnet_b0" and r.reference_ms > 0  # in the same backend
        assert r.device and r.threads == 1 and r.runs >= 1 and math.isfinite(r.iqr_ms)
        assert len(r.raw["reference_cpu"]) == r.rounds + 1


def test_results_record_the_backend_and_read_old_records_as_torch() -> None:
    r = nas.measure_latency(tiny_net(), resolution=32, reference=None, max_seconds=0.1)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["backend"] == "torch" and d["runtime_version"] == f"torch {torch.__version__}"
    old = {k: v for k, v in d.items() if k not in ("backend", "runtime_version")}
    again = LatencyResult.from_dict(old)  # a record written before backends existed
    assert again.backend == "torch" and again.runtime_version is None


@pytest.mark.parametrize("backend", ["onnxruntime", "onnxruntime_int8", "openvino", "executorch"])
def test_a_missing_package_fails_in_one_line_naming_the_extra(backend, monkeypatch) -> None:
    package = BACKENDS[backend].packages[-1]
    monkeypatch.setitem(sys.modules, package, None)  # find_spec answers None: not installed
    with pytest.raises(MissingBackendError) as err:
        LatencySettings(backend=backend)
    message = str(err.value)
    assert "\n" not in message and f"pip install 'nas[{BACKENDS[backend].extra}]'" in message
    assert package in message and backend in message
    with pytest.raises(ImportError, match=r"nas\["):
        nas.measure_latency(tiny_net(), resolution=32, backend=backend)


def test_unknown_backend_and_a_gpu_backend_are_refused() -> None:
    with pytest.raises(ValueError, match=r"backend must be one of \['torch', 'onnxruntime'"):
        LatencySettings(backend="tflite")
    with pytest.raises(ValueError, match="runs on device 'cpu'"):
        LatencySettings(backend="onnxruntime", device="cuda")
    assert require_backend("torch").name == "torch"


#: The search command with a backend's package hidden from the interpreter.
_HIDDEN = """
import sys
sys.modules[sys.argv[1]] = None
from nas.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


def test_the_search_command_stops_before_the_study_opens(tmp_path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _HIDDEN,
            "onnxruntime",
            "search",
            "conf=mbconv_pareto",
            "latency=onnxruntime",
            "data=synthetic",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "nas search: error: latency: backend 'onnxruntime' needs onnxruntime, not installed "
        "here: pip install 'nas[onnx]'"
    ], proc.stderr
    assert not any(run_dir.rglob("*journal*")), "no study was opened"


@pytest.mark.skipif(not installed("onnxruntime"), reason="pip install 'nas[onnx]'")
def test_the_lookup_table_is_keyed_by_backend(tmp_path) -> None:
    path = tmp_path / "lut.json"
    space = nas.space.make_space("mbconv", resolution=32, width_mult=0.25, head_channels=128)
    model = space.build(space.random_genotype(3), num_classes=10)
    options = {"max_seconds": 0.05, "min_rounds": 3, "reference_resolution": 32, "threads": 1}
    eager = BlockLatencyPredictor(path, **options)
    ort = BlockLatencyPredictor(path, backend="onnxruntime", **options)
    assert "backend=" not in eager.namespace and "backend=onnxruntime" in ort.namespace
    assert "onnxruntime 1." in ort.namespace
    assert eager.predict(model, resolution=32) > 0
    assert len(BlockLatencyPredictor(path, backend="onnxruntime", **options)) == 0  # nothing shared
