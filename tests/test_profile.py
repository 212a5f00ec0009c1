"""Parameters and MACs: the paper's figure for B0, thop cross-checked, the model left untouched."""

from __future__ import annotations

import contextlib
import copy
import io

import pytest
import torch
from thop import profile as thop_profile
from torch import nn

import nas


@pytest.fixture(scope="module")
def b0_profile() -> nas.measure.Profile:
    return nas.profile(nas.zoo.efficientnet("b0"), resolution=224)


def test_b0_macs_match_the_paper(b0_profile: nas.measure.Profile) -> None:
    # The paper quotes 0.39 B FLOPs (multiply-adds) for B0 at 224, counting conv and linear.
    assert b0_profile.params == 5_288_548
    assert b0_profile.resolution == 224
    assert b0_profile.conv_linear_macs == pytest.approx(0.39e9, abs=0.02e9)


def test_thop_total_is_conv_linear_plus_the_cheap_ops(b0_profile: nas.measure.Profile) -> None:
    # thop also counts BN, activations, pooling and the SE scaling: 415.1 M against 385.8 M
    # for conv and linear alone, 7.6% more.
    ratio = b0_profile.macs / b0_profile.conv_linear_macs
    assert 1.0 < ratio < 1.1


def test_thop_conv_linear_agrees_with_the_flop_counter(b0_profile: nas.measure.Profile) -> None:
    # Counting nothing but conv and linear, thop and torch's flop counter agree exactly.
    def count_nothing(module: nn.Module, inputs: object, output: object) -> None:
        module.total_ops += torch.zeros(1, dtype=torch.float64)

    cheap = (nn.BatchNorm2d, nn.SiLU, nn.Sigmoid, nn.AdaptiveAvgPool2d, nn.Dropout)
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        macs, _ = thop_profile(
            nas.zoo.efficientnet("b0").eval(),
            inputs=(torch.zeros(1, 3, 224, 224),),
            custom_ops=dict.fromkeys(cheap, count_nothing),
            verbose=False,
        )
    assert int(macs) == b0_profile.conv_linear_macs


def test_small_network_by_hand() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    p = nas.profile(net, resolution=16)
    assert p.params == 3 * 8 * 9 + 2 * 8 + 8 * 5 + 5
    assert p.conv_linear_macs == 16 * 16 * 8 * 3 * 9 + 8 * 5
    assert p.macs >= p.conv_linear_macs
    assert p.to_dict() == {
        "params": p.params,
        "macs": p.macs,
        "conv_linear_macs": p.conv_linear_macs,
        "resolution": 16,
    }


def test_profile_leaves_the_model_untouched(make_small_space) -> None:
    space = make_small_space("inception")
    model = space.build(space.random_genotype(0), num_classes=10).train()
    frozen = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).eval()
    before = copy.deepcopy(model.state_dict())
    nas.profile(model, resolution=32)
    assert model.training and not frozen.training  # every module's flag as it was
    after = model.state_dict()
    assert list(after) == list(before)  # thop's total_ops / total_params buffers not added
    assert all(torch.equal(after[k], before[k]) for k in before)  # BN running stats unchanged
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("resolution", [0, -1, 32.0, "224"])
def test_bad_resolution(resolution: object) -> None:
    with pytest.raises(ValueError, match="resolution must be a positive integer"):
        nas.profile(nn.Linear(2, 2), resolution=resolution)


def test_mobilenet_v2_macs_match_the_reference() -> None:
    # torchvision documents 0.30 GFLOPS (multiply-adds) for mobilenet_v2 at 224.
    from search_spaces.mbconv import MOBILENET_V2_GENOTYPE, MOBILENET_V2_OPTIONS

    space = nas.space.make_space("mbconv", resolution=224, **MOBILENET_V2_OPTIONS)
    p = nas.profile(space.build(MOBILENET_V2_GENOTYPE, num_classes=1000), resolution=224)
    assert p.params == 3_504_872
    assert p.conv_linear_macs == pytest.approx(0.30e9, abs=0.01e9)
