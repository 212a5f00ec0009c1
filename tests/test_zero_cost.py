"""Training-free scores (nas._accuracy.zero_cost) and the label-free ensemble evaluator."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import nas
from nas import load_data, run_search
from nas._accuracy.ensemble import ensemble_figures, normal_ranks
from nas._accuracy.zero_cost import SCORES, blocks, compute_scores
from nas._config import to_dict
from nas._data.data import Dataset
from nas._search.run import space_from_config
from nas._trials.record import network_seed
from nas._trials.study import EVALUATOR_STATE
from nas.measure import make_evaluator
from nas.space import make_space
from tests.test_search import tiny

SHARED = Path(__file__).resolve().parents[2] / "shared"
NASLIB = SHARED / "data" / "naslib" / "zc_nasbench201.json.gz"


@pytest.fixture(scope="module")
def data() -> Dataset:
    return load_data(name="synthetic", resolution=32, synthetic_size=96)


def small(seed: int = 0) -> nn.Module:
    space = make_space("mbconv", resolution=32, width_mult=0.25, depth_mult=0.5)
    torch.manual_seed(seed)
    return space.build(space.random_genotype(seed), num_classes=10)


def test_every_score_is_finite_repeatable_and_leaves_the_model_alone(data):
    model = small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = compute_scores(model, data, SCORES, batch_size=16, seed=3)
    again = compute_scores(model, data, SCORES, batch_size=16, seed=3)
    assert set(first) == set(SCORES)
    assert all(math.isfinite(v) for v in first.values()), first
    assert first == again
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    other_batch = compute_scores(model, data, ["naswot"], batch_size=16, seed=4)
    assert other_batch["naswot"] != first["naswot"]


def test_size_scores_count_what_they_say(data):
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    s = compute_scores(net, data, ["params", "flops", "depth"])
    assert s["params"] == sum(p.numel() for p in net.parameters())
    macs = 32 * 32 * 8 * 3 * 9 + 32 * 32 * 8 * 8 * 9 + 8 * 10
    assert s["flops"] == pytest.approx(macs, rel=0.01)
    assert s["depth"] == 3
    # a skip around the second conv keeps the longest path at three layers
    assert compute_scores(small(), data, ["depth"])["depth"] >= 3


def test_naswot_is_the_log_determinant_of_the_agreement_kernel(data):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 20), nn.ReLU(), nn.Linear(20, 10))
    got = compute_scores(net, data, ["naswot"], batch_size=8, seed=0)["naswot"]
    x = data.x_train[
        torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(0))[:8]
    ]
    codes = (net[1](net[0](x)) > 0).double()
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T
    assert got == pytest.approx(float(torch.linalg.slogdet(kernel)[1]), rel=1e-9)


def test_zico_follows_its_formula(data):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    got = compute_scores(net, data, ["zico"], batch_size=8, seed=0)["zico"]
    order = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(0))
    grads = []
    for idx in (order[:8], order[8:16]):
        net.zero_grad()
        nn.functional.cross_entropy(net(data.x_train[idx]), data.y_train[idx]).backward()
        grads.append(net[1].weight.grad.clone().double())
    g = torch.stack(grads)
    std, mean = g.std(0), g.abs().mean(0)
    assert got == pytest.approx(math.log(float((mean[std > 0] / std[std > 0]).sum())), rel=1e-9)


def test_blocks_open_stages_but_not_blocks():
    space = make_space("mbconv", resolution=32, width_mult=0.25)
    model = space.build(space.random_genotype(0), num_classes=10)
    found = blocks(model)
    # stem, the blocks of every stage, head conv, pool, classifier: more than the 3 top modules
    assert len(found) > 8
    assert not any(
        isinstance(b, nn.Sequential) and all(list(c.children()) for c in b) for b in found
    )


def test_unknown_score_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown score 'zen'; known: params, flops"):
        make_evaluator(name="score", score="zen")
    with pytest.raises(ValueError, match=r"unknown score 'zen'"):
        make_evaluator(name="ensemble", scores=["naswot", "zen"])


def test_normal_ranks_are_monotone_without_ties_at_the_ends():
    ref = [0.0, 1.0, 2.0, 3.0, 10.0]
    values = [-1e6, -5.0, 0.5, 2.5, 10.0, 50.0, 1e6]
    ranks = normal_ranks(values, ref)
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    assert normal_ranks([float("nan")], ref) == [-math.inf]
    # a value's rank does not depend on the other values ranked with it
    assert normal_ranks([2.5], ref) == [ranks[3]]


def test_an_ensemble_study_stores_its_reference_once_and_resumes_with_it(tmp_path, monkeypatch):
    args = (
        "evaluator=ensemble",
        "~evaluator.epochs",
        "evaluator.scores=[naswot,flops]",
        "evaluator.reference=4",
        "evaluator.batch_size=16",
        "sampler=random",
    )
    first = run_search(tiny(*args, "search.n_trials=2"), run_dir=tmp_path)
    state = first.study.user_attrs[EVALUATOR_STATE]
    assert len(state["networks"]) == 4 and set(state["values"]) == {"naswot", "flops"}
    scores = {t.number: t.values[0] for t in first.study.trials}

    def recompute(*a, **k):
        raise AssertionError("a resume scored the reference population again")

    monkeypatch.setattr(nas._accuracy.ensemble.EnsembleEvaluator, "study_state", recompute)
    again = run_search(tiny(*args, "search.n_trials=4"), run_dir=tmp_path)
    assert again.study.user_attrs[EVALUATOR_STATE] == state
    assert {t.number: t.values[0] for t in again.study.trials if t.number < 2} == scores
    # a trial's score is its network's against the stored reference: recomputed alone, it is
    # the same (it depends on neither the trials before it nor the worker)
    cfg = tiny(*args)
    evaluator = make_evaluator(
        name="ensemble", scores=["naswot", "flops"], reference=4, batch_size=16
    ).with_state(state)
    space = space_from_config(cfg.space)
    trial = again.study.trials[3]
    genotype = trial.user_attrs["genotype"]
    torch.manual_seed(network_seed(cfg.search.seed, space.identity(genotype)))
    model = space.build(genotype, num_classes=4)
    data = load_data(**to_dict(cfg.data), resolution=space.resolution_of(genotype))
    assert evaluator(model, data).accuracy == pytest.approx(trial.values[0], rel=1e-12)


@pytest.mark.slow
def test_scores_agree_with_naslib_on_its_cells():
    """Ours against NASLib's published values on 16 of its NAS-Bench-201 cells (the whole
    comparison, on 700 cells: experiments/proxy_ground_truth)."""
    from experiments.proxy_ground_truth.scores import CIFAR, naslib_arch_str
    from search_spaces.nb201 import genotype_of

    with gzip.open(NASLIB, "rt") as fh:
        table = json.load(fh)["cifar10"]
    # 16 cells evenly spread over NASLib's accuracy range (close cells are ordered by noise)
    by_accuracy = sorted(table, key=lambda k: table[k]["val_accuracy"])
    keys = [by_accuracy[i] for i in np.linspace(0, len(by_accuracy) - 1, 16).astype(int)]
    data = load_data(name="npz", path=str(CIFAR), resolution=32, val_fraction=0.2)
    space = make_space("nb201")
    names = {"synflow": "synflow", "naswot": "nwot", "jacob_cov": "jacov", "flops": "flops"}
    ours: dict[str, list[float]] = {n: [] for n in names}
    for key in keys:
        torch.manual_seed(0)
        model = space.build(genotype_of(naslib_arch_str(key)), num_classes=10)
        got = compute_scores(model, data, list(names), batch_size=64)
        for n in names:
            ours[n].append(got[n])
    for n, theirs in names.items():
        rho = spearmanr(np.nan_to_num(ours[n], nan=-1e9), [table[k][theirs]["score"] for k in keys])
        assert rho.statistic > 0.85, (n, rho.statistic)


def test_dropout_and_stochastic_depth_are_off_while_scoring(data):
    space = make_space("mbconv", resolution=32, width_mult=0.25, depth_mult=0.5)
    genotype = space.random_genotype(0)
    scored = []
    for p in (0.0, 0.9):
        opts = {"dropout": p, "stochastic_depth": p}
        torch.manual_seed(0)
        model = make_space("mbconv", resolution=32, width_mult=0.25, depth_mult=0.5, **opts).build(
            genotype, num_classes=10
        )
        scored.append(compute_scores(model, data, ["naswot", "snip", "jacob_cov"], batch_size=16))
    assert scored[0] == scored[1]
    del space


def test_blocks_leave_out_global_pooling():
    space = make_space("mbconv", resolution=32, width_mult=0.25)
    model = space.build(space.random_genotype(0), num_classes=10)
    assert not any(isinstance(b, nn.AdaptiveAvgPool2d) for b in blocks(model))


def test_zico_takes_the_halves_of_the_batch_when_images_are_few():
    few = load_data(name="synthetic", resolution=32, synthetic_size=20)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    assert compute_scores(net, few, ["zico"], batch_size=64)["zico"] != 0.0


def test_log_aggregation_lets_no_single_component_carry_a_network():
    ref = {"a": [0.0, 1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 2.0, 3.0, 4.0]}
    # network 0: extreme in a, poor in b; network 1: good in both
    values = {"a": [1000.0, 3.5], "b": [0.5, 3.5]}
    normal = ensemble_figures(values, ref, "normal")
    log = ensemble_figures(values, ref, "log")
    assert normal[0] > normal[1]  # the unbounded normal scale lets a carry network 0
    assert log[1] > log[0]  # the geometric mean of percentiles does not
    assert all(0 < f < 1 for f in normal + log)
    with pytest.raises(ValueError, match="aggregate must be one of normal, log"):
        ensemble_figures(values, ref, "mean")
    with pytest.raises(ValueError, match="option aggregate must be one of normal, log"):
        make_evaluator(name="ensemble", aggregate="mean")
