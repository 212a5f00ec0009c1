"""Blocks and builders: reference parameter counts and the behaviour the papers prescribe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nas
from nas.layers import (
    GOOGLENET_WIDTHS,
    ConvBNAct,
    GoogLeNet,
    InceptionAux,
    InceptionModule,
    MBConv,
    SqueezeExcite,
    StochasticDepth,
    make_divisible,
)
from search_spaces.mbconv import MOBILENET_V2_GENOTYPE, MOBILENET_V2_OPTIONS


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- reference parameter counts (torchvision's models, 1000 classes) ---------------------------

#: torchvision.models.efficientnet_b0 .. b7, which the paper's TensorFlow code also gives.
EFFICIENTNET_PARAMS = {
    "b0": 5_288_548,
    "b1": 7_794_184,
    "b2": 9_109_994,
    "b3": 12_233_232,
    "b4": 19_341_616,
    "b5": 30_389_784,
    "b6": 43_040_704,
    "b7": 66_347_960,
}


@pytest.mark.parametrize("variant", sorted(EFFICIENTNET_PARAMS))
def test_efficientnet_parameter_count_matches_reference(variant: str) -> None:
    assert n_params(nas.zoo.efficientnet(variant)) == EFFICIENTNET_PARAMS[variant]


def test_efficientnet_variant_table_and_errors() -> None:
    assert nas.zoo.EFFICIENTNET_TABLE["b0"] == (1.0, 1.0, 224, 0.2)
    assert nas.zoo.EFFICIENTNET_TABLE["b7"] == (2.0, 3.1, 600, 0.5)
    assert n_params(nas.zoo.efficientnet("B0")) == EFFICIENTNET_PARAMS["b0"]
    with pytest.raises(ValueError, match=r"variant must be one of .*'b8'"):
        nas.zoo.efficientnet("b8")


def test_efficientnet_b0_stage_table() -> None:
    model = nas.zoo.efficientnet("b0")
    rows = [
        (s.expand_ratio, s.kernel, s.stride, s.out_channels, s.layers) for s in model.stage_configs
    ]
    assert rows == [
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    ]
    assert model.total_stride == 32
    assert model.classifier[1].in_features == 1280


def test_width_rounding_rule() -> None:
    # Multiples of 8, never below 90% of the exact value.
    assert make_divisible(32 * 1.1) == 32  # 35.2 -> 32 (>= 31.68)
    assert make_divisible(16 * 1.4) == 24  # 22.4 -> 24
    assert make_divisible(36) == 40  # nearest, ties up
    assert make_divisible(11) == 16  # 8 would be < 0.9 * 11
    assert make_divisible(3) == 8  # never below one divisor


def test_googlenet_3x3_form_matches_torchvision() -> None:
    # torchvision's GoogLeNet uses a 3x3 conv in the "5x5" branch (a known deviation from the
    # paper), with BN after every conv: 6,624,904 parameters, 13,004,888 with the aux heads.
    forms = dict.fromkeys(GOOGLENET_WIDTHS, "3x3")
    assert n_params(GoogLeNet(branch5x5=forms)) == 6_624_904
    assert n_params(GoogLeNet(branch5x5=forms, aux_logits=True)) == 13_004_888


def test_googlenet_paper_form_differs_by_the_5x5_weights() -> None:
    # The paper's 5x5 branch has 25 - 9 = 16 more weights per (reduce, out) channel pair.
    extra = sum(16 * w[3] * w[4] for w in GOOGLENET_WIDTHS.values())
    assert n_params(nas.zoo.googlenet()) == 6_624_904 + extra == 7_005_832


def test_mobilenet_v2_genotype_matches_torchvision() -> None:
    space = nas.space.make_space("mbconv", resolution=224, **MOBILENET_V2_OPTIONS)
    model = space.build(MOBILENET_V2_GENOTYPE, num_classes=1000)
    assert n_params(model) == 3_504_872
    assert not any(isinstance(m, SqueezeExcite) for m in model.modules())
    assert not any(isinstance(m, nn.SiLU) for m in model.modules())
    assert any(isinstance(m, nn.ReLU6) for m in model.modules())


# --- Inception module --------------------------------------------------------------------------

#: The classic worked example: input 128; 1x1 -> 64; 1x1 -> 96, 3x3 -> 128; 1x1 -> 16, 5x5 -> 32.
WORKED = {"c1x1": 64, "c3x3_reduce": 96, "c3x3": 128, "c5x5_reduce": 16, "c5x5": 32}


def test_inception_module_reproduces_worked_example() -> None:
    # 128*64 + 128*96 + 96*128*9 + 128*16 + 16*32*25 = 145,920 weights. Without BN the convs
    # carry a bias (336 = 64+96+128+16+32 more) unless bias=False; with BN they do not and
    # each BN adds a weight and a bias per channel.
    plain = InceptionModule(128, **WORKED, pool_proj=0, bn=False)
    conv_weights = sum(m.weight.numel() for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert conv_weights == 145_920
    assert n_params(plain) == 145_920 + 336
    with_bn = InceptionModule(128, **WORKED, pool_proj=0)
    assert all(m.bias is None for m in with_bn.modules() if isinstance(m, nn.Conv2d))
    assert n_params(with_bn) == 145_920 + 2 * 336

    no_bias = InceptionModule(128, **WORKED, pool_proj=0, bn=False, bias=False)
    assert n_params(no_bias) == 145_920, "bias=False: the paper's arithmetic, weights alone"

    x = torch.randn(2, 128, 7, 7)
    assert plain(x).shape == (2, 64 + 128 + 32, 7, 7)
    assert with_bn.eval()(x).shape == (2, 224, 7, 7)


@pytest.mark.parametrize(
    ("form", "tail_weights"),
    [("5x5", 16 * 32 * 25), ("3x3", 16 * 32 * 9), ("3x3x2", 16 * 32 * 9 + 32 * 32 * 9)],
)
def test_inception_branch_forms(form: str, tail_weights: int) -> None:
    module = InceptionModule(128, **WORKED, pool_proj=32, branch5x5=form, bn=False)
    tail = module.branch3[1:]
    assert sum(m.weight.numel() for m in tail.modules() if isinstance(m, nn.Conv2d)) == (
        tail_weights
    )
    assert module.eval()(torch.randn(1, 128, 5, 5)).shape == (1, 256, 5, 5)


def test_inception_module_rejects_bad_widths() -> None:
    with pytest.raises(ValueError, match="branch5x5 must be one of"):
        InceptionModule(8, **WORKED, pool_proj=0, branch5x5="7x7")
    with pytest.raises(ValueError, match="c1x1 must be >= 0"):
        InceptionModule(8, **{**WORKED, "c1x1": -1}, pool_proj=0)
    with pytest.raises(ValueError, match="reduce width"):
        InceptionModule(8, **{**WORKED, "c3x3_reduce": 0}, pool_proj=0)


# --- MBConv ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cin", "cout", "stride", "residual"),
    [(16, 16, 1, True), (16, 24, 1, False), (16, 16, 2, False)],
)
def test_mbconv_residual_only_when_stride_1_and_same_width(
    cin: int, cout: int, stride: int, residual: bool
) -> None:
    block = MBConv(cin, cout, kernel_size=3, stride=stride, expand_ratio=6).eval()
    assert block.use_residual is residual
    # With the projection BN zeroed the branch outputs 0: what remains is the skip connection.
    project_bn = block.block[-1][1]
    nn.init.zeros_(project_bn.weight)
    nn.init.zeros_(project_bn.bias)
    x = torch.randn(2, cin, 8, 8)
    with torch.no_grad():
        out = block(x)
    if residual:
        torch.testing.assert_close(out, x)
    else:
        assert out.abs().max() == 0


def test_mbconv_has_no_expand_conv_at_expansion_1() -> None:
    plain = MBConv(32, 16, kernel_size=3, stride=1, expand_ratio=1)
    first = plain.block[0][0]
    assert first.groups == 32 and first.kernel_size == (3, 3)  # depthwise straight away
    assert sum(isinstance(m, ConvBNAct) for m in plain.block) == 2

    expanded = MBConv(16, 24, kernel_size=5, stride=2, expand_ratio=6)
    first = expanded.block[0][0]
    assert first.kernel_size == (1, 1) and first.out_channels == 96
    assert sum(isinstance(m, ConvBNAct) for m in expanded.block) == 3


@pytest.mark.parametrize(("cin", "squeeze"), [(40, 10), (10, 2), (3, 1), (1, 1)])
def test_se_squeeze_width_follows_block_input(cin: int, squeeze: int) -> None:
    # max(1, int(in * 0.25)) of the block input, not of the expanded width (EfficientNet).
    block = MBConv(cin, cin, kernel_size=3, stride=1, expand_ratio=6, se_ratio=0.25)
    se = next(m for m in block.modules() if isinstance(m, SqueezeExcite))
    assert se.fc1.out_channels == squeeze
    assert se.fc1.in_channels == make_divisible(cin * 6)
    no_se = MBConv(cin, cin, kernel_size=3, stride=1, expand_ratio=6, se_ratio=0.0)
    assert not any(isinstance(m, SqueezeExcite) for m in no_se.modules())


def test_mbconv_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kernel_size"):
        MBConv(8, 8, kernel_size=4, stride=1, expand_ratio=1)
    with pytest.raises(ValueError, match="stride"):
        MBConv(8, 8, kernel_size=3, stride=3, expand_ratio=1)
    with pytest.raises(ValueError, match="expand_ratio"):
        MBConv(8, 8, kernel_size=3, stride=1, expand_ratio=0.5)
    with pytest.raises(ValueError, match="activation must be one of"):
        MBConv(8, 8, kernel_size=3, stride=1, expand_ratio=1, activation="gelu")


# --- stochastic depth --------------------------------------------------------------------------


def test_stochastic_depth_grows_linearly_with_block_index() -> None:
    model = nas.zoo.efficientnet("b0")
    blocks = [m for m in model.modules() if isinstance(m, MBConv)]
    assert len(blocks) == 16
    for i, block in enumerate(blocks):
        expected = 0.2 * i / 16 if block.use_residual else 0.0
        assert block.stochastic_depth.p == pytest.approx(expected)
    residual_ps = [b.stochastic_depth.p for b in blocks if b.use_residual]
    assert residual_ps == sorted(residual_ps) and residual_ps[-1] == pytest.approx(0.2 * 14 / 16)


def test_stochastic_depth_is_identity_in_eval_and_drops_whole_samples_in_training() -> None:
    drop = StochasticDepth(0.5)
    x = torch.randn(64, 4, 3, 3)
    assert drop.eval()(x) is x
    torch.manual_seed(0)
    out = drop.train()(x)
    kept = (out != 0).flatten(1).all(1)
    dropped = (out == 0).flatten(1).all(1)
    assert bool((kept | dropped).all())
    assert 0 < int(kept.sum()) < 64
    torch.testing.assert_close(out[kept], x[kept] * 2)
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
            StochasticDepth(p)


def test_eval_forward_is_deterministic_with_stochastic_depth() -> None:
    model = nas.space.make_space("mbconv", resolution=32, stochastic_depth=0.5)
    net = model.build(model.random_genotype(0), num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)


# --- conv bias and BN, everywhere --------------------------------------------------------------


def _leaf_order(model: nn.Module, x: torch.Tensor) -> list[nn.Module]:
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, _: order.append(mod))
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return order


def _inception_3x3x2() -> nn.Module:
    space = nas.space.make_space(
        "inception", resolution=64, width_mult=0.25, aux_logits=True, branch5x5=["3x3x2"]
    )
    return space.build(space.random_genotype(0), num_classes=10)


def _mobilenet_v2() -> nn.Module:
    space = nas.space.make_space("mbconv", resolution=32, **MOBILENET_V2_OPTIONS)
    return space.build(MOBILENET_V2_GENOTYPE, num_classes=10)


MODELS = {
    "efficientnet-b0": (lambda: nas.zoo.efficientnet("b0", num_classes=10), 32),
    "mobilenet-v2": (_mobilenet_v2, 32),
    "googlenet+aux": (lambda: nas.zoo.googlenet(num_classes=10, aux_logits=True), 64),
    "inception-3x3x2": (_inception_3x3x2, 64),
    "inception-no-bn": (lambda: InceptionModule(16, **WORKED, pool_proj=8, bn=False), 8),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_conv_has_bias_exactly_when_no_bn_follows(name: str) -> None:
    factory, res = MODELS[name]
    model = factory()
    channels = 16 if name == "inception-no-bn" else 3
    # Training mode so that the auxiliary heads run too.
    order = _leaf_order(model.train(), torch.randn(2, channels, res, res))
    convs = [(i, m) for i, m in enumerate(order) if isinstance(m, nn.Conv2d)]
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in model.modules())
    for i, conv in convs:
        followed_by_bn = i + 1 < len(order) and isinstance(order[i + 1], nn.BatchNorm2d)
        assert (conv.bias is None) == followed_by_bn, f"{name}: {conv}"
    for i, m in enumerate(order):
        if isinstance(m, nn.BatchNorm2d):
            assert isinstance(order[i - 1], nn.Conv2d), f"{name}: BN without a conv before it"


# --- auxiliary heads and latency units ---------------------------------------------------------


def test_aux_heads_in_training_output_only() -> None:
    space = nas.space.make_space("inception", resolution=32, width_mult=0.25, aux_logits=True)
    net = space.build(space.random_genotype(1), num_classes=10)
    assert net.aux_loss_weight == 0.3
    heads = [m for m in net.modules() if isinstance(m, InceptionAux)]
    assert len(heads) == 2
    assert all(h.dropout.p == 0.7 and h.fc1.out_features == 1024 for h in heads)
    x = torch.randn(2, 3, 32, 32)
    logits, aux = net.train()(x)
    assert logits.shape == (2, 10) and [a.shape for a in aux] == [(2, 10), (2, 10)]
    out = net.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


@pytest.mark.parametrize("space_name", ["mbconv", "inception"])
def test_latency_units_compose_to_the_eval_forward(space_name: str, make_small_space) -> None:
    space = make_small_space(space_name)
    net = space.build(space.random_genotype(3), num_classes=10).eval()
    x = torch.randn(2, 3, space.resolution, space.resolution)
    with torch.no_grad():
        y = x
        for unit in net.latency_units():
            y = unit(y)
        torch.testing.assert_close(y, net(x))
