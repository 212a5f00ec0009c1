"""The spaces of NAS-Bench-201 and NAS-Bench-Macro build the benchmarks' networks.

Checked against the benchmarks' own files in ``../shared/data`` (see its README): the identity
of NAS-Bench-201's cells is its ``unique_str``, and every NAS-Bench-Macro key builds with the
parameter count the benchmark lists.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from collections import defaultdict
from pathlib import Path

import pytest
import torch

import nas
from nas.space import make_space
from search_spaces import nas_bench_macro, nb201

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NB201 = DATA / "nb201" / "nb201.csv.gz"
MACRO = DATA / "nas_bench_macro" / "nas-bench-macro_cifar10.json.gz"
needs_nb201 = pytest.mark.skipif(not NB201.is_file(), reason=f"{NB201} is not here")
needs_macro = pytest.mark.skipif(not MACRO.is_file(), reason=f"{MACRO} is not here")


@pytest.fixture(scope="module")
def nb201_rows() -> list[dict[str, str]]:
    with gzip.open(NB201, "rt") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def macro() -> dict[str, dict]:
    with gzip.open(MACRO, "rt") as fh:
        return json.load(fh)


@needs_nb201
def test_nb201_identity_is_the_benchmarks_isomorphism_class(nb201_rows) -> None:
    space = make_space("nb201")
    assert space.grid_size() == len(nb201_rows) == 15625
    classes: dict[str, set[str]] = defaultdict(set)
    for row in nb201_rows:
        genotype = nb201.genotype_of(row["arch_str"])
        assert space.validate(genotype) == genotype
        assert nb201.arch_str(genotype) == row["arch_str"]
        assert space.identity(genotype) == row["unique_str"]
        classes[space.identity(genotype)].add(row["index"])
    assert len(classes) == 6466


@pytest.mark.parametrize(
    ("cell", "params"),
    [
        # The benchmark's largest and smallest networks (1.531546 and 0.073306 MB in its API).
        (
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
            "nor_conv_3x3~2|",
            1_531_546,
        ),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", 73_306),
    ],
)
def test_nb201_networks_have_the_benchmarks_size_and_run(cell: str, params: int) -> None:
    space = make_space("nb201")
    model = space.build(nb201.genotype_of(cell), num_classes=10).eval()
    assert sum(p.numel() for p in model.parameters()) == params
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_nb201_zero_cells_output_zeros_and_isomorphic_cells_compute_the_same() -> None:
    space = make_space("nb201", channels=4, cells=1)
    dead = nb201.genotype_of("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    cell = space.build(dead, num_classes=3)[1]
    assert torch.equal(cell(torch.randn(1, 4, 8, 8)), torch.zeros(1, 4, 8, 8))
    # skip then conv, or conv directly: one class, and with equal weights one function
    a = nb201.genotype_of("|skip_connect~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|")
    b = nb201.genotype_of("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    assert space.identity(a) == space.identity(b)
    torch.manual_seed(0)
    net_a = space.build(a, num_classes=3).eval()
    net_b = space.build(b, num_classes=3).eval()
    net_b.load_state_dict({k.replace("3_1", "3_0"): v for k, v in net_a.state_dict().items()})
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(net_a(x), net_b(x))


@needs_macro
def test_macro_keys_build_with_the_benchmarks_parameter_counts(macro) -> None:
    space = make_space("nas_bench_macro")
    assert space.grid_size() == len(macro) == 6561
    for key in random.Random(0).sample(sorted(macro), 300):
        with torch.device("meta"):
            model = space.build(nas_bench_macro.genotype_of(key), num_classes=10)
        assert sum(p.numel() for p in model.parameters()) == macro[key]["params"], key


@needs_macro
@pytest.mark.slow
def test_every_macro_key_builds_with_the_benchmarks_parameter_count(macro) -> None:
    space = make_space("nas_bench_macro")
    for key, entry in macro.items():
        with torch.device("meta"):
            model = space.build(nas_bench_macro.genotype_of(key), num_classes=10)
        assert sum(p.numel() for p in model.parameters()) == entry["params"], key


@needs_macro
def test_macro_identity_collapses_exactly_the_keys_the_benchmark_trained_once(macro) -> None:
    space = make_space("nas_bench_macro")
    results: dict[str, set[float]] = defaultdict(set)
    for key, entry in macro.items():
        results[space.identity(nas_bench_macro.genotype_of(key))].add(entry["mean_acc"])
    assert len(results) == 3969
    assert all(len(accs) == 1 for accs in results.values()), "one network, one result"


def test_macro_network_runs() -> None:
    space = make_space("nas_bench_macro")
    model = space.build(nas_bench_macro.genotype_of("22212220"), num_classes=10).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("preset", "results"),
    [("nb201_proxy", "nb201-deep16"), ("nas_bench_macro_proxy", "macro-tuned")],
)
def test_the_proxy_training_measured_is_evaluator_proxy_cifar(preset, results):
    """experiments/proxy_ground_truth quotes the proxy training's figures from these runs: the
    preset with evaluator=proxy_cifar and the recorded network reduction is what they ran."""
    root = Path(__file__).resolve().parents[1]
    measured = json.loads(
        (root / "experiments/proxy_ground_truth/results" / f"{results}.settings.json").read_text()
    )
    reduction = [f"space.{k}={v}" for k, v in measured["space"].items()]
    resolution = f"space.resolution={measured['resolution']}"
    cfg = nas.compose([f"conf={preset}", "evaluator=proxy_cifar", resolution, *reduction])
    assert cfg.evaluator.name == "proxy"
    for key, value in measured["evaluator"].items():
        assert cfg.evaluator[key] == value, key
    for key, value in measured["data"].items():
        assert cfg.data[key] == value, key
    assert nas.compose([f"conf={preset}"]).evaluator.name == "ensemble"
    assert cfg.data.path.endswith("cifar10_subset.npz") and cfg.data.split == "train"
