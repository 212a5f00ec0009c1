"""The space author's contract: options recorded, choices declared once, one file and one YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import nas
from nas.layers import Network
from nas.space import Choice, SearchSpace, make_space, register_space

ROOT = Path(__file__).resolve().parents[1]


def test_options_round_trip_to_the_same_space(space: SearchSpace) -> None:
    again = make_space(space.name, **space.options())
    assert again.options() == space.options()
    assert again.grid() == space.grid()
    for seed in range(3):
        genotype = space.random_genotype(seed)
        assert again.identity(genotype) == space.identity(genotype)
        assert again.resolution_of(genotype) == space.resolution_of(genotype)
    json.dumps(space.options())  # what a study and an architecture file store


def test_options_are_the_constructor_arguments_defaults_included() -> None:
    space = make_space("mbconv", resolution=32, kernel=(3, 5))
    options = space.options()
    assert options["resolution"] == 32 and options["kernel"] == [3, 5]  # tuples become lists
    assert options["width_mult"] == 1.0 and options["layers"] is None  # defaults recorded
    options["kernel"].append(7)
    assert space.options()["kernel"] == [3, 5], "options() hands out a copy"


def test_networks_follow_the_network_protocol(space: SearchSpace) -> None:
    genotype = space.random_genotype(0)
    model = space.build(genotype, num_classes=10).eval()
    if hasattr(model, "layer_table"):  # optional: nas show falls back to the units
        assert isinstance(model, Network)
    assert model.total_stride > 1
    r = space.resolution_of(genotype)
    x = torch.randn(1, 3, r, r)
    with torch.no_grad():
        y = x
        for unit in model.latency_units():
            y = unit(y)
        torch.testing.assert_close(y, model(x))


class _Two(SearchSpace):
    def __init__(self, *, resolution: int = 8, twice: bool = False) -> None:
        super().__init__(resolution=resolution)
        self.declare(Choice("k", (1, 2)))
        if twice:
            self.declare(Choice("k", (3,)))

    def build(self, genotype, *, num_classes):  # type: ignore[no-untyped-def]
        return nn.Linear(3, num_classes)


class _Nothing(_Two):
    def __init__(self, *, resolution: int = 8) -> None:
        SearchSpace.__init__(self, resolution=resolution)


def test_declaration_mistakes_are_refused() -> None:
    with pytest.raises(ValueError, match="choice 'k' is declared twice"):
        _Two(twice=True)
    with pytest.raises(TypeError, match="keyword arguments only"):
        _Two(8)
    with pytest.raises(ValueError, match="declares no choices"):
        _Nothing()
    assert _Two().options() == {"resolution": 8, "twice": False}


def test_a_bare_decorator_names_the_space_after_its_module(monkeypatch) -> None:
    import nas._spaces.registry as registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    cls = type("Mine", (_Two,), {"__module__": "search_spaces.my_space"})
    assert register_space(cls).name == "my_space"
    assert nas.space.get_space("my_space") is cls


def test_the_example_space_is_one_short_file_and_one_yaml() -> None:
    source = (ROOT / "search_spaces" / "tiny_cnn.py").read_text()
    assert source.count("\n") < 80
    assert "nas._" not in source
    assert (ROOT / "conf" / "space" / "tiny_cnn.yaml").is_file()


def test_the_example_space_searches_and_round_trips(tmp_path: Path) -> None:
    cfg = nas.compose(
        [
            "space=tiny_cnn",
            "space.widths=[8,16]",
            "data=synthetic",
            "data.synthetic_size=160",
            "sampler=random",
            "search.n_trials=3",
            "evaluator.epochs=1",
            "latency.warmup=1",
            "latency.min_rounds=3",
            "latency.max_seconds=0.1",
            "search.progress=false",
            "report.plots=false",
            "report.remeasure_front=false",
        ]
    )
    result = nas.run_search(cfg, run_dir=tmp_path)
    assert result.results.front
    for record in result.results.front:
        path = tmp_path / result.results.arch_file(record.trial)
        arch = nas.load_arch(path)
        assert arch.space == "tiny_cnn" and arch.genotype == record.genotype
        model = nas.build_model(path).eval()
        assert sum(p.numel() for p in model.parameters()) == record.params
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
