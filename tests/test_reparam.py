"""Reparameterisable blocks: branches in training, one conv for inference, the same function."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest
import torch
from torch import nn

import nas
from nas.layers import MBConv, RepConvBNAct, reparameterize
from nas.space import make_space

HAVE_ONNX = all(importlib.util.find_spec(p) for p in ("onnx", "onnxscript", "onnxruntime"))


def randomise_norms(model: nn.Module, seed: int = 0, *, spread: float = 1.0) -> nn.Module:
    """BatchNorm statistics and affine parameters away from their initial values, as training
    leaves them (``spread`` scales how far: deep networks keep their logits near 1 with less).
    """
    gen = torch.Generator().manual_seed(seed)

    def uniform(n: int, centre: float) -> torch.Tensor:
        return centre + spread * (torch.rand(n, generator=gen) - 0.5)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(uniform(n, 0.0) * 2)
                m.running_var.copy_(uniform(n, 1.25))
                m.weight.copy_(uniform(n, 1.0))
                m.bias.copy_(uniform(n, 0.0) * 2)
    return model


@pytest.mark.parametrize(
    ("cin", "cout", "kernel", "stride", "groups", "branches"),
    [
        (8, 8, 3, 1, 1, 1),  # RepVGG: 3x3, 1x1 and identity
        (8, 8, 3, 1, 8, 1),  # MobileOne's depthwise form
        (16, 16, 7, 1, 16, 3),  # over-parameterised: three kxk branches
        (8, 16, 5, 2, 1, 1),  # strided, widening: no identity
        (16, 16, 1, 1, 1, 2),  # pointwise: kxk is 1x1, no scale branch
        (8, 16, 3, 1, 2, 1),  # grouped
    ],
)
def test_fused_equals_unfused(cin, cout, kernel, stride, groups, branches) -> None:
    block = RepConvBNAct(
        cin, cout, kernel_size=kernel, stride=stride, groups=groups, conv_branches=branches
    )
    block = randomise_norms(block).eval()
    x = torch.randn(4, cin, 17, 17, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = block(x)
        reparameterize(block)
        after = block(x)
    assert block.fused is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    assert after.shape == before.shape
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


def test_the_identity_branch_exists_only_when_the_shape_is_kept() -> None:
    assert RepConvBNAct(8, 8).identity is not None
    assert RepConvBNAct(8, 8, stride=2).identity is None
    assert RepConvBNAct(8, 16).identity is None
    assert RepConvBNAct(8, 8, kernel_size=1).scale is None
    with pytest.raises(ValueError, match="kernel_size must be an odd integer"):
        RepConvBNAct(8, 8, kernel_size=4)
    with pytest.raises(ValueError, match="conv_branches must be >= 1"):
        RepConvBNAct(8, 8, conv_branches=0)


def rep_arch(tmp_path, rep=(True,)):
    space = make_space("mbconv", resolution=32, width_mult=0.25, rep=list(rep))
    return nas.save_arch(space.arch(space.random_genotype(5), num_classes=10), tmp_path / "a.yaml")


def test_a_reparameterised_mbconv_network_folds_to_the_same_function(tmp_path) -> None:
    path = rep_arch(tmp_path)
    model = randomise_norms(nas.build_model(path), spread=0.2).eval()
    assert any(isinstance(m, RepConvBNAct) for m in model.modules())
    torch.save(model.state_dict(), tmp_path / "w.pt")  # trained weights: the unfused form
    fused = nas.load_model(path, weights=tmp_path / "w.pt", fused=True)
    assert not fused.training
    assert all(m.fused is not None for m in fused.modules() if isinstance(m, RepConvBNAct))
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
        assert expected.abs().max() > 0.1  # not a trivially small output
        torch.testing.assert_close(fused(x), expected, rtol=0, atol=1e-5)
    n_params = sum(p.numel() for p in fused.parameters())
    assert n_params < sum(p.numel() for p in model.parameters())
    assert nas.profile(model, resolution=32).params == n_params  # the deployed form is counted


def test_build_model_fused_returns_the_inference_form(tmp_path) -> None:
    model = nas.build_model(rep_arch(tmp_path), fused=True)
    assert not model.training
    assert not any(
        isinstance(m, nn.BatchNorm2d)
        for m in model.modules()
        if m is not model and isinstance(m, RepConvBNAct)
    )
    plain = nas.build_model(rep_arch(tmp_path, rep=(False,)), fused=True)
    assert not any(isinstance(m, RepConvBNAct) for m in plain.modules())


def test_rep_is_a_choice_of_the_mbconv_space_and_old_identities_are_kept() -> None:
    space = make_space("mbconv", resolution=32, rep=[False, True])
    assert space.grid()["s1.rep"] == [False, True]
    plain = make_space("mbconv", resolution=32)
    g = plain.random_genotype(0)
    assert "rep" not in plain.identity(g)  # studies of earlier versions keep their identities
    on = {**g, **{f"s{i}.rep": True for i in range(1, 8)}}
    off = {**g, **{f"s{i}.rep": False for i in range(1, 8)}}
    assert space.identity(off) == plain.identity(g) != space.identity(on)
    assert space.describe(on).startswith("rep") and "rep" not in space.describe(off)
    table = nas.describe_arch(space.arch(on, num_classes=10))
    assert "RepMBConv" in table
    with pytest.raises(ValueError, match="rep must be"):
        make_space("mbconv", rep=[1])


def test_mbconv_rep_uses_the_depthwise_rep_block() -> None:
    block = MBConv(16, 16, kernel_size=5, stride=1, expand_ratio=4, rep=True)
    rep = [m for m in block.modules() if isinstance(m, RepConvBNAct)]
    assert len(rep) == 1 and rep[0].groups == rep[0].in_channels == 64


def test_the_mixed_space_has_a_rep_family() -> None:
    from search_spaces.mixed import BLOCKS

    assert "rep" in BLOCKS
    space = make_space("mixed", blocks=["rep", "basic"])
    genotype = {**space.random_genotype(0), **{f"s{i}.block": "rep" for i in range(1, 5)}}
    model = randomise_norms(space.build(genotype, num_classes=10), spread=0.2).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model(x)
        torch.testing.assert_close(reparameterize(model)(x), before, rtol=0, atol=1e-5)
    assert "rep" not in make_space("mixed").grid()["s1.block"]  # offered only when listed


@pytest.mark.skipif(not HAVE_ONNX, reason="pip install 'nas[onnx]'")
def test_the_exported_onnx_file_has_no_branch(tmp_path) -> None:
    import onnx

    path = rep_arch(tmp_path)
    out = nas.export_model(path, format="onnx")  # checked against the module in onnxruntime
    graph = onnx.load(str(out)).graph
    ops = Counter(node.op_type for node in graph.node)
    fused = nas.build_model(path, fused=True)
    convs = sum(isinstance(m, nn.Conv2d) for m in fused.modules())
    residuals = sum(isinstance(m, MBConv) and m.use_residual for m in fused.modules())
    assert ops["Conv"] == convs  # one conv per folded block: no kxk + 1x1 + identity branches
    assert ops["Add"] == residuals  # the only sums left are the blocks' residual connections
    assert ops["BatchNormalization"] == 0
