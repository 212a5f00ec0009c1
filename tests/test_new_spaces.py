"""The resnet, shufflenet_v2, mobilenet_v1 and mixed spaces: reference counts, points, contract.

Every space also runs through the generic space tests (``tests/test_spaces.py``,
``tests/test_space_contract.py``, ``tests/test_arch.py``) through the ``space`` fixture.
The reference figures are torchvision's (``num_params`` and ``_ops`` of its weights' metadata)
and Keras' (``MobileNet(alpha=1.0).summary()``), which cannot be imported here.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import nas
from nas.space import make_space
from search_spaces.mixed import BLOCKS
from search_spaces.mobilenet_v1 import MOBILENET_V1
from search_spaces.resnet import RESNETS, BasicBlock
from search_spaces.shufflenet_v2 import SHUFFLENETS, ShuffleUnit, channel_shuffle

ROOT = Path(__file__).resolve().parents[1]
NEW_SPACES = ("resnet", "shufflenet_v2", "mobilenet_v1", "mixed")
HAVE_ONNX = all(importlib.util.find_spec(p) for p in ("onnx", "onnxscript", "onnxruntime"))

#: Parameters at 1000 classes: torchvision's ``num_params``; Keras' trainable count for
#: MobileNetV1 (4,253,864 in all, less 21,888 BatchNorm moving statistics).
REFERENCE_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
    "shufflenet_v2_x0_5": 1_366_792,
    "shufflenet_v2_x1_0": 2_278_604,
    "shufflenet_v2_x1_5": 3_503_624,
    "shufflenet_v2_x2_0": 7_393_996,
    "mobilenet_v1": 4_231_976,
}
#: GMACs at 224 px: torchvision's ``_ops``; the MobileNet paper's Table 6 (569, 325, 149, 41 M).
REFERENCE_GMACS = {
    "resnet18": 1.814,
    "resnet34": 3.664,
    "resnet50": 4.089,
    "resnet101": 7.801,
    "resnet152": 11.514,
    "resnext50_32x4d": 4.23,
    "resnext101_32x8d": 16.414,
    "resnext101_64x4d": 15.46,
    "wide_resnet50_2": 11.398,
    "wide_resnet101_2": 22.753,
    "shufflenet_v2_x0_5": 0.04,
    "shufflenet_v2_x1_0": 0.145,
    "shufflenet_v2_x1_5": 0.296,
    "shufflenet_v2_x2_0": 0.583,
    "mobilenet_v1": 0.569,
    "mobilenet_v1_x0_75": 0.325,
    "mobilenet_v1_x0_5": 0.149,
    "mobilenet_v1_x0_25": 0.041,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str) -> nn.Module:
    """A zoo network without memory or initialisation (shapes only): counting is instant."""
    with torch.device("meta"):
        return nas.zoo.create(name)


def yaml_space(name: str, *overrides: str) -> nas.space.SearchSpace:
    """The space as ``conf/space/<name>.yaml`` (and overrides) configures it."""
    options = OmegaConf.to_container(nas.compose([f"space={name}", *overrides]).space)
    options.pop("name")
    return make_space(name, **options)


# --- the canonical networks --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_zoo_networks_have_the_reference_parameter_counts(name: str) -> None:
    assert n_params(meta_model(name)) == REFERENCE_PARAMS[name]


def test_mobilenet_v1_with_batchnorm_statistics_is_keras_total() -> None:
    model = meta_model("mobilenet_v1")
    stats = sum(2 * m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert n_params(model) + stats == 4_253_864


@pytest.mark.parametrize("name", sorted(REFERENCE_GMACS))
def test_zoo_networks_have_the_reference_macs(name: str) -> None:
    model = meta_model(name).eval()
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 224, 224))
    assert counter.get_total_flops() / 2e9 == pytest.approx(REFERENCE_GMACS[name], abs=1e-3)


@pytest.mark.parametrize(
    ("space", "points"),
    [
        ("resnet", ["resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d"]),
        ("shufflenet_v2", sorted(SHUFFLENETS)),
        ("mobilenet_v1", ["mobilenet_v1"]),
    ],
)
def test_canonical_networks_are_points_of_the_configured_space(space: str, points: list) -> None:
    configured = yaml_space(space)
    genotypes = {**RESNETS, **SHUFFLENETS, "mobilenet_v1": MOBILENET_V1}
    for name in points:
        genotype = configured.validate(genotypes[name])
        with torch.device("meta"):
            model = configured.build(genotype, num_classes=1000)
        assert n_params(model) == REFERENCE_PARAMS[name], name
    assert configured.resolution_of(MOBILENET_V1) == 224


def test_torchvision_state_dict_keys() -> None:
    resnet = meta_model("resnet50").state_dict()
    assert {"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight"} <= set(resnet)
    assert {"layer4.2.conv3.weight", "layer4.2.bn3.weight", "fc.bias"} <= set(resnet)
    assert "layer1.1.downsample.0.weight" not in resnet
    shuffle = meta_model("shufflenet_v2_x1_0").state_dict()
    assert {"conv1.0.weight", "stage2.0.branch1.0.weight", "stage2.0.branch1.2.weight"} <= set(
        shuffle
    )
    assert {"stage4.3.branch2.5.weight", "conv5.1.running_mean", "fc.weight"} <= set(shuffle)
    assert not any(k.startswith("stage2.1.branch1") for k in shuffle)  # stride-1 units: empty


def test_zoo_finds_the_spaces_networks_in_a_fresh_process() -> None:
    # Nothing imports search_spaces.resnet first: the zoo finds it by name.
    code = "import nas; print(nas.zoo.create('resnext50_32x4d', num_classes=10).fc.out_features)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "10"
    with pytest.raises(ValueError, match=r"unknown model 'resnet51'; known: .*resnet50"):
        nas.zoo.create("resnet51")


# --- resnet ------------------------------------------------------------------------------------


def test_basic_blocks_ignore_the_cardinality() -> None:
    space = make_space("resnet", resolution=32, width_mult=0.25, stem="cifar")
    one = {**RESNETS["resnet18"], "s1.cardinality": "1x64d"}
    other = {**one, "s1.cardinality": "32x4d"}
    assert space.identity(one) == space.identity(other)
    bottleneck = {**RESNETS["resnet50"], "s1.cardinality": "32x4d"}
    assert space.identity(bottleneck) != space.identity(RESNETS["resnet50"])


def test_zero_init_makes_blocks_their_shortcut() -> None:
    space = make_space("resnet", resolution=32, width_mult=0.25, stem="cifar")
    model = space.build(RESNETS["resnet18"], num_classes=10).eval()
    model.zero_init_residual()
    x = torch.rand(1, 16, 8, 8)  # >= 0: ReLU(x + 0) == x
    with torch.no_grad():
        torch.testing.assert_close(model.layer1[1](x), x)


def test_cifar_stem_keeps_the_resolution() -> None:
    imagenet = make_space("resnet", resolution=32).build(RESNETS["resnet18"], num_classes=10)
    cifar = make_space("resnet", resolution=32, stem="cifar").build(
        RESNETS["resnet18"], num_classes=10
    )
    assert (imagenet.total_stride, cifar.total_stride) == (32, 8)
    rows = cifar.layer_table(32)
    assert [r["input"] for r in rows] == ["32x32", "32x32", "32x32", "16x16", "8x8", "4x4"]


# --- shufflenet_v2 -----------------------------------------------------------------------------


def test_channel_shuffle_interleaves_the_two_halves() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_shuffle_unit_split_passes_half_the_channels_through() -> None:
    unit = ShuffleUnit(8, 8, stride=1, kernel=5).eval()
    assert unit.split and len(unit.branch1) == 0
    assert [m.kernel_size for m in unit.modules() if isinstance(m, nn.Conv2d) and m.groups > 1] == [
        (5, 5)
    ]
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        out = unit(x)
    torch.testing.assert_close(out[:, 0::2], x[:, :4])  # after the shuffle: even channels
    down = ShuffleUnit(8, 16, stride=2, kernel=7)
    assert not down.split
    kernels = [m.kernel_size for m in down.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert kernels == [(7, 7), (7, 7)]  # both branches' depthwise convs


# --- mobilenet_v1 ------------------------------------------------------------------------------


def test_mobilenet_resolution_is_a_choice() -> None:
    space = yaml_space("mobilenet_v1")
    assert space.grid()["resolution"] == [128, 160, 192, 224]
    genotype = {**MOBILENET_V1, "resolution": 160, "width": 0.25}
    arch = space.arch(genotype, num_classes=10)
    assert arch.resolution == 160
    model = nas.build_model(arch)
    assert model(torch.zeros(1, 3, 160, 160)).shape == (1, 10)
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert widths[:3] == [8, 8, 16] and widths[-1] == 256  # int(channels * 0.25), as Keras
    assert space.identity(genotype) != space.identity({**genotype, "resolution": 128})


# --- mixed -------------------------------------------------------------------------------------


def test_mixed_ignores_what_a_family_does_not_read() -> None:
    space = make_space("mixed")
    base = space.random_genotype(3)
    for block, same, differs in (
        ("basic", ("kernel", "expand"), ()),
        ("shuffle", ("expand",), ("kernel",)),
        ("mbconv", (), ("kernel", "expand")),
    ):
        g = {**base, "s2.block": block, "s2.kernel": 3, "s2.expand": 3.0}
        for key in same:
            assert space.identity(g) == space.identity(
                {**g, f"s2.{key}": space.grid()[f"s2.{key}"][-1]}
            )
        for key in differs:
            assert space.identity(g) != space.identity(
                {**g, f"s2.{key}": space.grid()[f"s2.{key}"][-1]}
            )


def test_mixed_builds_every_family_in_every_stage() -> None:
    space = make_space("mixed", blocks=list(BLOCKS))
    for block in BLOCKS:
        genotype = {**space.random_genotype(0), **{f"s{i}.block": block for i in range(1, 5)}}
        model = space.build(genotype, num_classes=10).eval()
        assert model.families() == [block] * 4
        model.zero_init_residual()
        with torch.no_grad():
            assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    kinds = {type(b) for b in model.latency_units()}
    assert BasicBlock in kinds


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (
            "resnet",
            {"blocks": ["basic", "dense"]},
            r"blocks must be a non-empty subset of \['basic', 'bottleneck'\]",
        ),
        ("resnet", {"cardinality": ["32x4"]}, "cardinality must look like '32x4d'"),
        ("resnet", {"stem": "deep"}, r"stem must be one of \['imagenet', 'cifar'\]"),
        ("resnet", {"widths": [[64]]}, r"widths must have one list per stage \(4\)"),
        ("shufflenet_v2", {"out": [[47], [96], [192]]}, "out must be even channel counts"),
        (
            "shufflenet_v2",
            {"kernels": [3, 9]},
            r"kernels must be a non-empty subset of \[3, 5, 7\]",
        ),
        ("mobilenet_v1", {"resolutions": [128, 160]}, "resolution must be one of resolutions"),
        ("mobilenet_v1", {"widths": [0]}, r"widths must be multipliers in \(0, 4\]"),
        (
            "mixed",
            {"blocks": ["mbconv", "mobileone"]},
            r"blocks must be a non-empty subset of \['mbconv', 'shuffle', 'rep', 'basic'\]",
        ),
        ("mixed", {"strides": [1, 3]}, "strides must be a non-empty list of 1 and 2"),
    ],
)
def test_bad_options_name_the_option(name: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_space(name, **options)


# --- show, lookup table, export, search --------------------------------------------------------


def _small(name: str) -> nas.space.SearchSpace:
    small = {
        "resnet": {"width_mult": 0.25, "stem": "cifar", "depths": [[1, 2]] * 4},
        "shufflenet_v2": {"width_mult": 0.25, "stem": "cifar"},
        "mobilenet_v1": {"widths": [0.25], "stem": "cifar"},
        "mixed": {},
    }[name]
    return make_space(name, resolution=32, **small)


@pytest.mark.parametrize("name", NEW_SPACES)
def test_show_prints_the_layer_table(name: str) -> None:
    space = _small(name)
    text = nas.describe_arch(space.arch(space.random_genotype(1), num_classes=10))
    model = space.build(space.random_genotype(1), num_classes=10)
    assert model.layer_table_title in text and f"{n_params(model):,}" in text


def test_lookup_table_predicts_the_mixed_network() -> None:
    space = _small("mixed")
    model = space.build(space.random_genotype(2), num_classes=10)
    table = nas.measure.BlockLatencyPredictor(None, max_seconds=0.05, warmup=1, min_rounds=3)
    assert table.predict(model, resolution=32) > 0
    assert len(table) == len(model.latency_units())


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW_SPACES)
def test_lookup_table_and_onnx_export(name: str, tmp_path: Path) -> None:
    space = _small(name)
    model = space.build(space.random_genotype(4), num_classes=10)
    table = nas.measure.BlockLatencyPredictor(None, max_seconds=0.05, warmup=1, min_rounds=3)
    assert table.predict(model, resolution=32) > 0
    if not HAVE_ONNX:
        pytest.skip('needs pip install "nas[onnx]" onnxruntime')
    path = nas.save_arch(space.arch(space.random_genotype(4), num_classes=10), tmp_path / "a.yaml")
    assert nas.export_model(path, format="onnx").name == "a.onnx"  # checked in onnxruntime


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW_SPACES)
def test_a_short_grid_search_round_trips(name: str, tmp_path: Path) -> None:
    # Narrowed to a grid of a few thousand points: sampler=grid enqueues the whole grid.
    options = {
        "resnet": ["space.width_mult=0.25", "space.stem=cifar", "space.depths=[[1],[1],[1],[1]]"],
        "shufflenet_v2": [
            "space.width_mult=0.25",
            "space.stem=cifar",
            "space.repeats=[[1],[1],[1]]",
        ],
        "mobilenet_v1": [
            "space.widths=[0.25]",
            "space.kernels=[3,5]",
            "space.stem=cifar",
            "space.resolutions=null",
        ],
        "mixed": ["space.depths=[[1],[1],[1],[1]]", "space.expand=[3]"],
    }[name]
    cfg = nas.compose(
        [
            f"space={name}",
            "space.resolution=32",
            *options,
            "data=synthetic",
            "data.synthetic_size=160",
            "sampler=grid",
            "search.n_trials=2",
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
    for record in result.results.front:
        path = tmp_path / result.results.arch_file(record.trial)
        model = nas.build_model(path)
        assert n_params(model) == record.params
        assert nas.load_arch(path).space == name
