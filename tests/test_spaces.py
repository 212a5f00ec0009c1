"""Search spaces: every registered space builds and runs; sampling, grid and validation agree."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import nas
import nas._spaces.registry
from nas.scaling import Point, admissible_points
from search_spaces.mbconv import B0_GENOTYPE, MOBILENET_V2_GENOTYPE, MOBILENET_V2_OPTIONS

optuna.logging.set_verbosity(optuna.logging.WARNING)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- every registered space --------------------------------------------------------------------


def test_the_known_spaces_are_registered() -> None:
    assert {"mbconv", "inception", "compound"} <= set(nas.space.available_spaces())


@pytest.mark.parametrize("seed", [0, 1])
def test_random_genotypes_build_and_run(space: nas.space.SearchSpace, seed: int) -> None:
    genotype = space.random_genotype(seed)
    assert space.validate(genotype) == genotype
    model = space.build(genotype, num_classes=10).eval()
    res = space.resolution_of(genotype)
    with torch.no_grad():
        out = model(torch.randn(2, 3, res, res))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_sampled_labels_equal_grid_labels(space: nas.space.SearchSpace) -> None:
    study = optuna.create_study()
    trial = study.ask()
    genotype = space.sample(trial)
    assert list(genotype) == list(space.grid())
    assert list(trial.params) == list(space.grid())
    assert space.validate(genotype) == genotype
    assert space.grid_size() == math.prod(len(v) for v in space.grid().values())


def test_grid_sampler_accepts_the_grid(make_small_space) -> None:
    # The compound grid is small enough to hand to GridSampler whole.
    space = make_small_space("compound")
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(space.grid(), seed=0))
    genotype = space.sample(study.ask())
    assert Point.from_key(str(genotype["point"])) in space.points


def test_genotypes_are_json_primitives(space: nas.space.SearchSpace) -> None:
    for value in space.random_genotype(0).values():
        assert type(value) in (bool, int, float, str)


# --- mbconv ------------------------------------------------------------------------------------


def test_b0_genotype_is_efficientnet_b0() -> None:
    model = nas.space.make_space("mbconv").build(B0_GENOTYPE, num_classes=1000)
    reference = nas.zoo.efficientnet("b0")
    assert n_params(model) == n_params(reference) == 5_288_548
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


def test_mobilenet_v2_and_b0_share_one_space() -> None:
    space = nas.space.make_space("mbconv", **MOBILENET_V2_OPTIONS)
    assert space.validate(MOBILENET_V2_GENOTYPE) == MOBILENET_V2_GENOTYPE
    b0 = {**B0_GENOTYPE, "act": "silu"}
    b0.update({f"s{i}.layers": n for i, n in enumerate([1, 2, 2, 3, 3, 4, 1], start=1)})
    b0.update({f"s{i}.out": c for i, c in enumerate([16, 24, 40, 80, 112, 192, 320], start=1)})
    assert n_params(space.build(b0, num_classes=1000)) == 5_288_548
    assert n_params(space.build(MOBILENET_V2_GENOTYPE, num_classes=1000)) == 3_504_872


def test_mbconv_describe_is_compact() -> None:
    space = nas.space.make_space("mbconv")
    assert space.describe(B0_GENOTYPE) == "k3e1se-k3e6se-k5e6se-k3e6se-k5e6se-k5e6se-k3e6se"


# --- inception ---------------------------------------------------------------------------------


def test_googlenet_is_a_point_of_the_inception_space() -> None:
    from search_spaces.inception import googlenet_genotype

    space = nas.space.make_space("inception")
    model = space.build(googlenet_genotype(space), num_classes=1000)
    assert n_params(model) == n_params(nas.zoo.googlenet()) == 7_005_832


def test_inception_explicit_widths() -> None:
    space = nas.space.make_space(
        "inception", resolution=32, modules=["3a"], explicit={"3a.c1x1": [8, 16]}
    )
    assert space.grid()["3a.c1x1"] == [8, 16]
    with pytest.raises(ValueError, match=r"explicit: '4a.c1x1'"):
        nas.space.make_space("inception", resolution=32, modules=["3a"], explicit={"4a.c1x1": [8]})


# --- compound ----------------------------------------------------------------------------------


def test_every_admissible_point_satisfies_the_constraint(make_small_space) -> None:
    space = make_small_space("compound")
    assert space.points
    for p in space.points:
        assert min(p.alpha, p.beta, p.gamma) >= 1.0
        assert abs(p.alpha * p.beta**2 * p.gamma**2 - 2.0) <= 0.1 + 1e-9
    assert [c.label for c in space.choices] == ["point"]
    assert space.grid()["point"] == [p.key for p in space.points]


def test_default_grid_has_109_points_including_the_boundary() -> None:
    # (1.9, 1, 1) has product 1.9 exactly, on the boundary |x - 2| = 0.1; in floating point
    # 2.0 - 1.9 is 0.10000000000000009, which a plain `<= 0.1` would drop (108 points).
    points = admissible_points()
    assert len(points) == 109
    assert Point(1.9, 1.0, 1.0) in points
    assert abs(1.9 - 2.0) > 0.1
    assert Point(1.2, 1.1, 1.15) in points  # the paper's point
    keys = [p.key for p in points]
    assert "a1.2_b1.1_g1.15" in keys and len(set(keys)) == len(keys)


def test_point_keys_round_trip() -> None:
    p = Point(1.2, 1.1, 1.15)
    assert Point.from_key(p.key) == p
    with pytest.raises(ValueError, match="not a compound-scaling point key"):
        Point.from_key("alpha=1.2")


def test_too_tight_tolerance_names_the_closest_points() -> None:
    with pytest.raises(ValueError, match=r"closest: \(") as err:
        nas.space.make_space("compound", resolution=32, step=0.3, tolerance=1e-6)
    message = str(err.value)
    assert "tolerance" in message
    # The nearest point of the 1.0/1.3/1.6/1.9 grid: 1.9 * 1 * 1 -> 1.9000.
    assert "(1.9, 1, 1) -> 1.9000" in message


def test_compound_refuses_a_non_mbconv_base() -> None:
    inception = nas.space.make_space("inception", resolution=32, modules=["3a"])
    base = inception.arch(inception.random_genotype(0), num_classes=10).to_dict()
    with pytest.raises(ValueError, match=r"base network whose space can be scaled.*'inception'"):
        nas.space.make_space("compound", resolution=32, base=base)


def _conv_linear_macs(space: nas.space.SearchSpace, point: Point, phi: float) -> int:
    # The figure nas.profile reports as conv_linear_macs (see test_profile.py), without the thop
    # pass that profile also makes: ten times cheaper.
    arch = space.scaled_arch(point, phi, num_classes=10)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        nas.build_model(arch).eval()(torch.zeros(1, 3, arch.resolution, arch.resolution))
    return counter.get_total_flops() // 2


def test_one_step_of_phi_about_doubles_macs() -> None:
    # Measured on B0 at base resolution 112, conv and linear MACs relative to phi = 0:
    # paper point 2.03, (1.9,1,1) 2.05, (1,1.4,1) 1.93, (1,1,1.4) 1.85. Across all 109 points at
    # 224 the ratio spans 1.90-3.26: rounding layers up per stage (alpha = 1.05 turns every
    # one-layer stage into two) and widths to multiples of 8 push some points well past 2.
    space = nas.space.make_space("compound", resolution=112)
    base = _conv_linear_macs(space, Point(1.0, 1.0, 1.0), 0.0)
    for key in ("a1.2_b1.1_g1.15", "a1.9_b1_g1", "a1_b1.4_g1", "a1_b1_g1.4"):
        ratio = _conv_linear_macs(space, Point.from_key(key), 1.0) / base
        assert 1.8 <= ratio <= 2.2, (key, ratio)


def test_macs_grow_monotonically_with_phi(make_small_space) -> None:
    space = make_small_space("compound")
    point = Point(1.2, 1.1, 1.15)
    macs = [_conv_linear_macs(space, point, phi) for phi in (0, 1, 2, 3)]
    assert macs == sorted(macs) and len(set(macs)) == 4
    resolutions = [space.scaled_arch(point, phi, num_classes=10).resolution for phi in (0, 1, 2, 3)]
    assert resolutions == [32, 40, 40, 48]  # 32 * 1.15**phi, to the nearest multiple of 8


def test_compound_member_is_an_mbconv_architecture(make_small_space) -> None:
    space = make_small_space("compound")
    genotype = {"point": "a1.2_b1.1_g1.15"}
    member = space.member(genotype, num_classes=10)
    assert member.space == "mbconv"
    assert member.resolution == space.resolution_of(genotype) == 40  # 32 * 1.15 = 36.8 -> 40
    assert member.space_options["depth_mult"] == pytest.approx(1.2)
    assert member.space_options["width_mult"] == pytest.approx(0.25 * 1.1)
    assert n_params(space.build(genotype, num_classes=10)) == n_params(nas.build_model(member))


# --- bad input ---------------------------------------------------------------------------------


def test_unknown_space_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown search space 'mbcnov'; known: .*'mbconv'"):
        nas.space.make_space("mbcnov")
    with pytest.raises(ValueError, match=r"unknown search space '\.\./mbconv'"):
        nas.space.get_space("../mbconv")


def test_unknown_space_option_is_named() -> None:
    with pytest.raises(ValueError, match=r"space 'mbconv' has no option 'resolutoin'.*resolution"):
        nas.space.make_space("mbconv", resolutoin=32)


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("kernel", [3, 9], "space option kernel must be a non-empty subset of"),
        ("expand", [], "space option expand"),
        ("activation", "gelu", "activation must be among"),
        ("layers", [[1]], r"layers must have one list per stage \(7\)"),
        ("resolution", 4, "resolution must be an integer >= 8"),
    ],
)
def test_bad_mbconv_options(option: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nas.space.make_space("mbconv", **{option: value})


def test_missing_misspelt_or_out_of_choice_genotype_keys_are_named(make_small_space) -> None:
    space = make_small_space("mbconv")
    good = space.random_genotype(0)
    missing = {k: v for k, v in good.items() if k != "s3.kernel"}
    with pytest.raises(ValueError, match=r"missing key 's3.kernel'"):
        space.validate(missing)
    misspelt = {**missing, "s3.kernal": 3}
    with pytest.raises(ValueError, match=r"genotype key 's3.kernal' is not a choice"):
        space.build(misspelt, num_classes=10)
    with pytest.raises(ValueError, match=r"genotype\['s3.kernel'\] = 4 is not one of \[3, 5, 7\]"):
        space.build({**good, "s3.kernel": 4}, num_classes=10)
    with pytest.raises(ValueError, match=r"genotype\['s3.kernel'\] = True"):
        space.validate({**good, "s3.kernel": True})
    assert space.validate({**good, "s3.se": 0})["s3.se"] == 0  # 0 and 0.0 are the same value


def test_choice_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="duplicate values"):
        nas.space.Choice("k", (3, 3))
    with pytest.raises(ValueError, match="has no values"):
        nas.space.Choice("k", ())
    with pytest.raises(ValueError, match="values must be bool, int, float or str"):
        nas.space.Choice("k", ((3, 5),))


_Space = nas.space.SearchSpace


def test_registry_refuses_a_duplicate_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nas._spaces.registry, "_REGISTRY", dict(nas._spaces.registry._REGISTRY))
    nas.space.get_space("mbconv")
    with pytest.raises(ValueError, match="a search space named 'mbconv' is already registered"):
        nas.space.register_space("mbconv")(type("Other", (_Space,), {}))
    assert nas.space.get_space("mbconv").__name__ == "MBConvSpace"


def test_registry_refuses_a_same_named_class_from_another_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Re-registering the very same class (a module imported again) is fine; two user spaces
    # that happen to share a class name, in two files, must not silently replace each other.
    monkeypatch.setattr(nas._spaces.registry, "_REGISTRY", dict(nas._spaces.registry._REGISTRY))
    first = type("MySpace", (_Space,), {"__module__": "user_spaces.a"})
    again = type("MySpace", (_Space,), {"__module__": "user_spaces.a"})
    other = type("MySpace", (_Space,), {"__module__": "user_spaces.b"})
    nas.space.register_space("mine")(first)
    nas.space.register_space("mine")(again)
    with pytest.raises(ValueError, match="a search space named 'mine' is already registered"):
        nas.space.register_space("mine")(other)
