"""``nas.measure_latency`` with no settings measures as a search with the default config does."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from nas import LatencySettings, compose
from nas._config import to_dict
from nas._search.run import latency_from_config


@pytest.mark.parametrize("group", ["cpu", "onnxruntime", "int8"])
def test_python_defaults_equal_the_cpu_configs_but_for_the_backend(group: str) -> None:
    settings = latency_from_config(to_dict(compose([f"latency={group}"]).latency))
    assert isinstance(settings, LatencySettings)
    assert asdict(settings) == asdict(LatencySettings(backend=settings.backend))


def test_the_default_config_measures_with_the_python_defaults() -> None:
    assert latency_from_config(to_dict(compose([]).latency)) == LatencySettings()
    assert LatencySettings().clock == "cpu" and LatencySettings().threads == 1


def test_the_clock_follows_the_device_unless_given() -> None:
    cuda = latency_from_config(to_dict(compose(["latency=cuda"]).latency))
    assert cuda.clock == "wall" and cuda.threads is None
    assert LatencySettings(device="cuda").clock == "wall"
    assert LatencySettings().replace(device="cuda").clock == "wall"
    assert LatencySettings(clock="wall").clock == "wall"
    with pytest.raises(ValueError, match="clock 'cpu' needs device 'cpu'"):
        LatencySettings(device="cuda", clock="cpu")
