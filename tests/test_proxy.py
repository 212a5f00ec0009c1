"""Proxy training and training-free scores on synthetic data with tiny networks."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import nas
from nas import DataError, compose, load_data
from nas._accuracy.evaluators import EVALUATORS
from nas._accuracy.proxy import ProxyEvaluator
from nas.measure import AccuracyResult, Dataset, NonFiniteLossError, make_evaluator

CONF_EVALUATOR = Path(__file__).resolve().parent.parent / "conf" / "evaluator"
# Three stages, total stride 8: a real MBConv network small enough to train in a second.
TINY_STAGES = [[1, 3, 1, 32, 16, 1], [6, 3, 2, 16, 24, 1], [6, 5, 2, 24, 40, 1]]


@pytest.fixture(scope="module")
def data() -> Dataset:
    return load_data(name="synthetic", resolution=16, num_classes=4, synthetic_size=256, seed=0)


def tiny(seed: int = 0, *, width_mult: float = 0.5, num_classes: int = 4) -> nn.Module:
    space = nas.space.make_space(
        "mbconv",
        resolution=16,
        stages=TINY_STAGES,
        width_mult=width_mult,
        head_channels=128,
        dropout=0.0,
        stochastic_depth=0.0,
    )
    torch.manual_seed(seed)
    return space.build(space.random_genotype(seed), num_classes=num_classes)


class WithAux(nn.Module):
    """A GoogLeNet-like output: ``(logits, [aux])`` in training mode, logits in eval mode."""

    total_stride = 1

    def __init__(self, aux_loss_weight: float) -> None:
        super().__init__()
        self.aux_loss_weight = aux_loss_weight
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 32), nn.ReLU())
        self.head = nn.Linear(32, 4)
        self.aux = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.body(x)
        if self.training:
            return self.head(h), [self.aux(h)]
        return self.head(h)


def test_proxy_learns_synthetic_data(data: Dataset) -> None:
    result = make_evaluator(name="proxy", epochs=5, lr=0.05)(tiny(), data)
    assert result.accuracy >= 0.8  # chance is 0.25
    assert len(result.curve) == 5 and result.epochs == 5 and not result.stopped
    assert result.accuracy == result.curve[-1]
    assert result.losses[-1] < result.losses[0]
    assert result.steps == 5 * (len(data.y_train) // 64)
    assert result.seconds > 0 and result.evaluator == "proxy"
    json.dumps(result.to_dict())


def test_same_seed_same_accuracy_and_caller_rng_untouched(data: Dataset) -> None:
    evaluator = make_evaluator(name="proxy", epochs=2, seed=7)
    first, second = tiny(1), tiny(1)
    state = torch.get_rng_state()
    a = evaluator(first, data)
    assert torch.equal(torch.get_rng_state(), state)
    b = evaluator(second, data)
    assert a.curve == b.curve and a.losses == b.losses
    c = make_evaluator(name="proxy", epochs=2, seed=8)(tiny(1), data)
    assert c.losses != a.losses


def test_on_epoch_stops_training(data: Dataset) -> None:
    calls: list[tuple[int, float]] = []

    def hook(epoch: int, accuracy: float) -> bool:
        calls.append((epoch, accuracy))
        return epoch == 2

    result = make_evaluator(name="proxy", epochs=5)(tiny(), data, on_epoch=hook)
    assert result.stopped and result.epochs == 2
    assert [e for e, _ in calls] == [1, 2]
    assert result.curve == [a for _, a in calls] and result.accuracy == calls[-1][1]


def test_budget_in_steps_and_training_subset(data: Dataset) -> None:
    result = make_evaluator(name="proxy", max_steps=5, batch_size=32)(tiny(), data)
    per_epoch = len(data.y_train) // 32
    assert result.steps == 5 and result.epochs == math.ceil(5 / per_epoch)
    subset = make_evaluator(name="proxy", epochs=2, train_size=64, batch_size=16)(tiny(), data)
    assert subset.steps == 2 * 4


def test_non_finite_loss_fails_the_trial(data: Dataset) -> None:
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite training loss .* at epoch 1, step \d+"
    ):
        make_evaluator(name="proxy", epochs=2, lr=1e30)(tiny(), data)

    class Inf(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :4] * float("inf")

    model = nn.Sequential(nn.Conv2d(3, 3, 1), Inf())
    with pytest.raises(NonFiniteLossError, match="at epoch 1, step 1 "):
        make_evaluator(name="proxy", epochs=1)(model, data)


def test_aux_logits_add_weighted_losses(data: Dataset) -> None:
    torch.manual_seed(0)
    with_aux = WithAux(aux_loss_weight=1.0)
    without = WithAux(aux_loss_weight=0.0)
    without.load_state_dict(with_aux.state_dict())
    evaluator = make_evaluator(name="proxy", epochs=1, lr=0.01)
    a, b = evaluator(with_aux, data), evaluator(without, data)
    # Same weights, same batches: the first epoch's loss carries the aux term (about ln 4).
    assert a.losses[0] > b.losses[0] + 0.5
    assert a.accuracy > 0.25


def test_bad_inputs_raise_clear_errors(data: Dataset) -> None:
    proxy = make_evaluator(name="proxy", epochs=1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device 'cuda' is not available"):
            proxy(tiny(), data, device="cuda")
    with pytest.raises(ValueError, match=r"unknown device 'tpu'"):
        proxy(tiny(), data, device="tpu")
    b0_like = nas.space.make_space("mbconv", resolution=32, width_mult=0.25)
    stride_32 = b0_like.build(b0_like.random_genotype(0), num_classes=4)
    with pytest.raises(
        DataError, match=r"resolution 16 is smaller than the network's total stride 32"
    ):
        proxy(stride_32, data)
    with pytest.raises(ValueError, match=r"outputs shape \(\d+, 3\) but the data has 4 classes"):
        proxy(tiny(num_classes=3), data)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "zen"}, r"unknown evaluator 'zen'; known: proxy, synflow, jacob_cov"),
        (
            {"name": "proxy", "epoch": 3},
            r"evaluator 'proxy' has no option 'epoch'; allowed: epochs, max_steps",
        ),
        (
            {"name": "synflow", "batch_size": 3},
            r"evaluator 'synflow' has no option 'batch_size'; allowed: none",
        ),
        ({"name": "proxy", "epochs": 0}, r"option epochs must be an integer >= 1, got 0"),
        (
            {"name": "proxy", "optimizer": "lion"},
            r"option optimizer must be 'sgd' or 'adamw', got 'lion'",
        ),
        ({"name": "proxy", "amp": "fp8"}, r"option amp must be 'bf16', 'fp16' or 'off'"),
        ({"name": "proxy", "lr": -1}, r"option lr must be a number > 0"),
        ({"name": "proxy", "label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
        ({"name": "jacob_cov", "batch_size": 1}, r"option batch_size must be an integer >= 2"),
    ],
)
def test_make_evaluator_rejects_bad_names_and_options(
    kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        make_evaluator(**kwargs)  # type: ignore[arg-type]


def test_threads_option_is_restored(data: Dataset) -> None:
    before = torch.get_num_threads()
    make_evaluator(name="proxy", epochs=1, threads=1)(tiny(), data)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("name", ["synflow", "jacob_cov"])
def test_training_free_scores_leave_the_model_alone(name: str, data: Dataset) -> None:
    model = tiny(3)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluator = make_evaluator(name=name)
    result = evaluator(model, data)
    assert isinstance(result, AccuracyResult) and math.isfinite(result.accuracy)
    assert result.curve == [] and result.epochs == 0 and result.evaluator == name
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert evaluator(model, data).accuracy == result.accuracy


def test_synflow_grows_with_width(data: Dataset) -> None:
    # SynFlow sums |θ ⊙ ∂R/∂θ| over every weight, so a twice-wider copy of a network scores higher.
    synflow = make_evaluator(name="synflow")
    narrow = synflow(tiny(0, width_mult=0.5), data).accuracy
    wide = synflow(tiny(0, width_mult=1.0), data).accuracy
    assert wide > narrow + math.log10(2)  # the score is a log10


def test_jacob_cov_ranks_a_linear_network_lowest(data: Dataset) -> None:
    # A linear network has the same input Jacobian for every image: fully correlated, the
    # worst possible score; a real network separates the images of a batch.
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    jacob_cov = make_evaluator(name="jacob_cov", batch_size=32)
    assert jacob_cov(tiny(0), data).accuracy > jacob_cov(linear, data).accuracy + 1e3


def _config(file: Path) -> dict[str, object]:
    """A config file with its interpolations resolved (the seed follows ``search.seed``)."""
    root = OmegaConf.create({"search": {"seed": 0}, "evaluator": OmegaConf.load(file)})
    return OmegaConf.to_container(root.evaluator, resolve=True)  # type: ignore[return-value]


def test_every_evaluator_config_matches_its_options() -> None:
    """One file per evaluator holds all its options; the others (``proxy_cifar``, ...) build on
    one of those through their defaults list and compose to a valid evaluator."""
    files = sorted(CONF_EVALUATOR.glob("*.yaml"))
    own = [f for f in files if f.stem in EVALUATORS]
    assert {f.stem for f in own} == set(EVALUATORS)
    for file in own:
        cfg = _config(file)
        if "defaults" in OmegaConf.load(file):  # made of others (screen): as composed
            cfg = OmegaConf.to_container(
                compose([f"evaluator={file.stem}"]).evaluator, resolve=True
            )
        evaluator = make_evaluator(**cfg)  # type: ignore[arg-type]
        assert set(cfg) == {"name", *evaluator.options()}, file.name
        assert evaluator.options() == {k: v for k, v in cfg.items() if k != "name"}
    derived = [f for f in files if f.stem not in EVALUATORS]
    assert {f.stem for f in derived} >= {"proxy_cifar", "ensemble_macro"}
    for file in derived:
        assert "defaults" in OmegaConf.load(file), file.name
        cfg = OmegaConf.to_container(compose([f"evaluator={file.stem}"]).evaluator, resolve=True)
        evaluator = make_evaluator(**cfg)  # type: ignore[arg-type]
        assert set(cfg) == {"name", *evaluator.options()}, file.name
    assert make_evaluator(**_config(CONF_EVALUATOR / "proxy.yaml")) == ProxyEvaluator()  # type: ignore[arg-type]


def test_bn_recalibration_sets_running_statistics_to_the_batches_exact_average() -> None:
    from nas._accuracy.proxy import _recalibrate_bn

    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.Dropout(0.5))
    bn = model[1]
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(9.0)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 3, 4, 4, generator=gen) + i for i in range(3)]
    _recalibrate_bn(model.train(), batches, contextlib.nullcontext)
    with torch.no_grad():
        feats = [model[0](x) for x in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    assert bn.momentum == 0.1, "the layer's momentum is restored"
    assert not model.training, "left in eval mode, ready for validation"


def test_the_proxy_recalibrates_before_every_validation(data: Dataset, monkeypatch) -> None:
    import nas._accuracy.proxy as proxy

    seen: list[list[tuple[int, ...]]] = []
    real = proxy._recalibrate_bn
    monkeypatch.setattr(
        proxy,
        "_recalibrate_bn",
        lambda model, batches, autocast: (
            seen.append([tuple(b.shape) for b in batches]) or real(model, batches, autocast)
        ),
    )
    make_evaluator(name="proxy", epochs=2, batch_size=32, bn_recalibration=3)(tiny(), data)
    assert seen == [[(32, 3, 16, 16)] * 3] * 2, "three training batches, before each validation"
    seen.clear()
    make_evaluator(name="proxy", epochs=2, bn_recalibration=0)(tiny(), data)
    assert seen == [], "bn_recalibration=0 turns it off"


def test_adamw_is_the_optimizer_it_says_and_learns(data: Dataset) -> None:
    evaluator = make_evaluator(name="proxy", optimizer="adamw", lr=0.005, weight_decay=0.01)
    optimizer = evaluator._optimizer(tiny())
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == 0.005 and optimizer.defaults["weight_decay"] == 0.01
    sgd = make_evaluator(name="proxy")._optimizer(tiny())
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    result = make_evaluator(name="proxy", optimizer="adamw", lr=0.005, epochs=3)(tiny(), data)
    assert result.accuracy >= 0.6  # chance is 0.25
    # The path conf=effnet_grid takes.
    assert nas.compose(["conf=effnet_grid"]).evaluator.optimizer == "adamw"


def test_the_call_seed_seeds_the_random_layers_and_leaves_the_data_order(data: Dataset) -> None:
    space = nas.space.make_space(
        "mbconv", resolution=16, stages=TINY_STAGES, width_mult=0.5, head_channels=128, dropout=0.5
    )
    evaluator = make_evaluator(name="proxy", epochs=1, seed=3)

    def run(seed: int | None) -> list[float]:
        torch.manual_seed(0)  # the same weights each time
        model = space.build(space.random_genotype(0), num_classes=4)
        return evaluator(model, data, seed=seed).losses

    assert run(11) == run(11)
    assert run(11) != run(12), "dropout follows the call's seed"
    assert run(None) == run(3), "no seed: the evaluator's own"
