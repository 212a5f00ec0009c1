"""EfficientNet's two-step compound scaling (Tan & Le 2019, section 3.3), end to end.

Step 1 fixes φ = 1 and runs the ordinary search (:func:`nas.run_search`) over a compound space:
one grid trial per admissible (α, β, γ) with α·β²·γ² ≈ 2, points that round to the same network
evaluated once; the winner is picked by :class:`nas._config.WinnerConfig`. Step 2 fixes
(α, β, γ) and builds φ = 0..N from the base network; every member is profiled, timed in the
same interleaved rounds as the others (a fair comparison on a drifting machine), optionally
proxy-trained, and exported as an architecture file (:mod:`nas._scaling.family`).
``scaling.mode=official`` skips step 1 and builds the published B0..B7 multipliers instead.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from nas._accuracy.evaluators import make_evaluator
from nas._config import ConfigError, call_with_options, to_dict
from nas._data.data import load_data
from nas._logging.logger import make_logger
from nas._report.tables import front_table
from nas._scaling.compound import PAPER_COEFFICIENTS, CompoundScalingSpace
from nas._scaling.confirm import Confirmation, as_mapping, confirm, ranked_networks
from nas._scaling.family import FAMILY_SCALES, MODES, Member, build_members, measure_family
from nas._scaling.report import (
    family_log,
    family_tables,
    official_table,
    plot_scaling_png,
    step1_table,
    winner_line,
    write_scaling_json,
)
from nas._search.run import (
    SearchResult,
    hydra_run_dir,
    latency_from_config,
    run_search,
    space_from_config,
)
from nas._spaces.registry import get_space
from nas._trials.metric import FirstObjective, evaluator_name, first_objective
from nas._trials.record import TrialRecord

WINNER_RULES = ("accuracy", "latency_budget", "macs_budget")


@dataclass
class ScalingOutcome:
    """What :func:`nas.run_scaling` returns (``scaling.json`` holds the same, and more)."""

    run_dir: Path
    mode: str
    coefficients: tuple[float, float, float]
    members: list[Member]
    step1: SearchResult | None = None
    winner: dict[str, Any] | None = None
    files: dict[str, Path] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0


def evaluator_objective(cfg: DictConfig) -> FirstObjective:
    """What the configured evaluator's figures are: an accuracy, or a training-free score."""
    return first_objective([evaluator_name(to_dict(cfg.evaluator))])


def eligible(rows: Sequence[TrialRecord], rule: Mapping[str, Any]) -> list[TrialRecord]:
    """The evaluated step-1 records the rule allows (all, or those within its budget).

    Raises:
        ValueError: no evaluated trial, or none within the budget (naming the best seen).
    """
    name = rule.get("rule", "accuracy")
    max_lat, max_macs = rule.get("max_latency_ms"), rule.get("max_macs")
    candidates = [r for r in rows if r.evaluated]
    if not candidates:
        raise ValueError("step 1 evaluated no point (all failed, pruned or infeasible); no winner")
    if name == "latency_budget":
        within = [r for r in candidates if r.latency_ms <= max_lat]  # type: ignore[operator]
        if not within:
            best = min(r.latency_ms for r in candidates)  # type: ignore[type-var]
            raise ValueError(
                f"no step-1 point within scaling.winner.max_latency_ms={max_lat} "
                f"(the fastest measured {best:.3f} ms)"
            )
        return within
    if name == "macs_budget":
        within = [r for r in candidates if r.macs is not None and r.macs <= max_macs]
        if not within:
            best = min(r.macs for r in candidates if r.macs is not None)
            raise ValueError(
                f"no step-1 point within scaling.winner.max_macs={max_macs:,} (the smallest {best:,})"
            )
        return within
    return candidates


def winner_key(space: CompoundScalingSpace) -> Callable[[TrialRecord], tuple[float, ...]]:
    """Best first: accuracy, then fewer MACs, then α·β²·γ² closest to the target, then the point."""
    target = space.grid_spec.target

    def key(r: TrialRecord) -> tuple[float, ...]:
        p = space.point(r.genotype)
        return (-r.accuracy, r.macs or 0, abs(p.product - target), p.alpha, p.beta, p.gamma)  # type: ignore[operator]

    return key


def choose_winner(
    rows: Sequence[TrialRecord], space: CompoundScalingSpace, rule: Mapping[str, Any]
) -> TrialRecord:
    """The step-1 record the rule picks on step 1's accuracies alone (see ``WinnerConfig``).

    Ties go to fewer MACs, then to α·β²·γ² closest to the target, then to the smaller point.

    Raises:
        ValueError: no evaluated trial, or none within the budget (naming the best seen).
    """
    return min(eligible(rows, rule), key=winner_key(space))


def check_scaling(sc: Mapping[str, Any]) -> None:
    """Refuse bad ``scaling`` options (the message names the key)."""
    if sc["mode"] not in MODES:
        raise ConfigError(f"scaling.mode must be one of {list(MODES)}, got {sc['mode']!r}")
    if sc["family"] not in FAMILY_SCALES:
        raise ConfigError(
            f"scaling.family must be one of {list(FAMILY_SCALES)}, got {sc['family']!r}"
        )
    if not isinstance(sc["max_phi"], int) or sc["max_phi"] < 1:
        raise ConfigError(f"scaling.max_phi must be an integer >= 1, got {sc['max_phi']!r}")
    limit = sc["accuracy_max_phi"]
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ConfigError(
            f"scaling.accuracy_max_phi must be an integer >= 0 or null, got {limit!r}"
        )
    w = sc["winner"]
    if w["rule"] not in WINNER_RULES:
        raise ConfigError(
            f"scaling.winner.rule must be one of {list(WINNER_RULES)}, got {w['rule']!r}"
        )
    needs = {"latency_budget": "max_latency_ms", "macs_budget": "max_macs"}
    for rule, key in needs.items():
        if w["rule"] == rule and (w[key] is None or w[key] <= 0):
            raise ConfigError(f"scaling.winner.rule={rule} needs scaling.winner.{key} > 0")
        if w["rule"] != rule and w[key] is not None:
            raise ConfigError(
                f"scaling.winner.{key} is set but scaling.winner.rule is {w['rule']!r}; "
                f"set scaling.winner.rule={rule} to use it"
            )


def _scalable_space(cfg: DictConfig) -> CompoundScalingSpace:
    name = cfg.space.get("name")
    try:
        scalable = issubclass(get_space(name), CompoundScalingSpace)
    except ValueError as err:
        raise ConfigError(f"space: {err}") from None
    if not scalable:
        raise ConfigError(
            f"scaling needs space=compound (conf=effnet_grid sets it), got space {name!r}"
        )
    return space_from_config(to_dict(cfg.space))  # type: ignore[return-value]


def run_scaling(cfg: DictConfig, *, run_dir: str | Path | None = None) -> ScalingOutcome:
    """Run the two-step compound scaling a composed config describes and write its results.

    Step 1 (``scaling.mode=search``) is :func:`nas.run_search` over the compound space with
    every admissible point once (``search.n_trials`` is set to their number when the sampler is
    ``grid``); its results (``pareto.json``, ``trials.csv``, ``pareto.png``, ``archs/``) land in
    ``run_dir``. Step 2 writes ``family/<name>.yaml`` per member, ``scaling.json`` and
    ``scaling.png``, and prints its tables.

    Raises:
        ConfigError: a bad ``scaling`` option, a space that is not a compound space, an empty
            grid.
        ValueError: a base architecture that is not an MBConv network; no winner within budget.

    Example:
        >>> from nas import compose, run_scaling
        >>> cfg = compose(["conf=effnet_grid", "data=synthetic", "scaling.max_phi=1",
        ...                "space.alpha=[1.2,1.2]", "space.beta=[1.1,1.1]"])
        >>> outcome = run_scaling(cfg, run_dir="/tmp/nas-doc-scaling")  # doctest: +SKIP
    """
    from rich.console import Console

    start = time.perf_counter()
    # Wide enough for the tables when the output is a log file (rich assumes 80 columns then).
    console = Console(width=None if sys.stdout.isatty() else 140)
    run_dir = Path(run_dir) if run_dir is not None else hydra_run_dir()
    if cfg.get("scaling") is None:
        raise ConfigError("scaling is not set; use conf=effnet_grid")
    sc = to_dict(cfg.scaling)
    check_scaling(sc)
    space = _scalable_space(cfg)
    latency = latency_from_config(to_dict(cfg.latency))
    if not latency.measured:
        raise ConfigError(
            "latency from a table or a predictor cannot time a scaled family: step 2 builds "
            "new networks, timed on this device (use latency=cpu or another measured one)"
        )
    base = space.options()["base"]
    base_desc = base if isinstance(base, str) else "architecture mapping"
    run_dir.mkdir(parents=True, exist_ok=True)
    data_options = to_dict(cfg.data)
    data = call_with_options(load_data, data_options, group="data", resolution=space.resolution)
    outcome = ScalingOutcome(
        run_dir=run_dir, mode=sc["mode"], coefficients=PAPER_COEFFICIENTS, members=[]
    )
    doc: dict[str, Any] = {
        "mode": sc["mode"],
        "base": base,
        "proxy": {"resolution": space.resolution, "base_width": space.scaling.base_width},
        "data": data_options,
        "num_classes": data.num_classes,
        "scaling": sc,
    }
    if sc["mode"] == "search" and not _step1(
        cfg, space, outcome, doc, console, base_desc=base_desc
    ):
        _finish(outcome, doc, start)  # step 1 was interrupted: its results are written
        return outcome

    threads = torch.get_num_threads()
    if cfg.search.get("threads") is not None:
        # step 1 ran (and timed) under search.threads; step 2 must be comparable with it
        torch.set_num_threads(cfg.search.threads)
    try:
        _step2(cfg, space, outcome, console, latency=latency, num_classes=data.num_classes)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        torch.set_num_threads(threads)
    if outcome.members:
        objective = evaluator_objective(cfg)
        for table in family_tables(
            outcome.members,
            mode=sc["mode"],
            coefficients=outcome.coefficients,
            target=space.grid_spec.target,
            objective=objective,
        ):
            console.print(table)
        if sc["mode"] == "official":
            console.print(official_table(outcome.members))
        title = (
            "EfficientNet B0..B7 (published multipliers)"
            if sc["mode"] == "official"
            else "family from α={:g}, β={:g}, γ={:g}".format(*outcome.coefficients)
        )
        outcome.files["scaling.png"] = run_dir / "scaling.png"
        plot_scaling_png(
            outcome.members,
            outcome.files["scaling.png"],
            title=f"{title}; {cfg.search.study_name}",
            objective=objective,
        )
    _finish(outcome, doc, start)
    _log_family(cfg, outcome)
    console.print(f"results in {run_dir} ({outcome.seconds:.0f} s)")
    return outcome


def _step1(
    cfg: DictConfig,
    space: CompoundScalingSpace,
    outcome: ScalingOutcome,
    doc: dict[str, Any],
    console: Any,
    *,
    base_desc: str,
) -> bool:
    """The grid at φ = 1 and its winner; False when it was interrupted."""
    grid = space.grid_spec
    distinct = len({space.identity({"point": p.key}) for p in grid.points})
    console.print(
        f"[bold]Step 1[/bold]: grid at φ = {space.phi:g} over {grid.rule()}: "
        f"{len(grid.points)} admissible points, {distinct} distinct networks after rounding "
        f"(base {base_desc} at {space.resolution} px, base width {space.scaling.base_width:g})"
    )
    cfg1 = copy.deepcopy(cfg)
    if cfg.sampler.get("name") == "grid":
        cfg1.search.n_trials = len(grid.points)
    step1 = run_search(cfg1, run_dir=outcome.run_dir)
    outcome.step1 = step1
    res = step1.results
    doc["step1"] = {
        "rule": grid.rule(),
        "points": len(grid.points),
        "distinct_networks": distinct,
        "pareto_json": "pareto.json",
        "trials_csv": "trials.csv",
        "hypervolume": res.hypervolume,
        "front": [
            {
                "trial": r.trial,
                "point": r.genotype.get("point"),
                "accuracy": r.accuracy,
                "latency_ms": r.latency_ms,
                "macs": r.macs,
            }
            for r in res.front
        ],
    }
    if step1.interrupted:
        outcome.interrupted = True
        return False
    rule = to_dict(cfg.scaling)["winner"]
    ranked = ranked_networks(eligible(res.rows, rule), winner_key(space))
    confirmation = None
    if rule["confirm"]["top"] >= 2 and len(ranked) >= 2:
        console.print(
            f"Step 1: the {min(len(ranked), rule['confirm']['top'])} leading networks trained "
            f"again (successive halving, {rule['confirm']['rounds']} rounds of one more seed) ..."
        )
        confirmation = _confirm(cfg, space, ranked, rule["confirm"], doc["num_classes"])
        doc["step1"]["confirmation"] = as_mapping(confirmation)
    winner = confirmation.winner.record if confirmation else ranked[0]
    p = space.point(winner.genotype)
    outcome.coefficients = (p.alpha, p.beta, p.gamma)
    outcome.winner = {
        "trial": winner.trial,
        "duplicate_of": winner.duplicate_of,
        "point": p.key,
        "alpha": p.alpha,
        "beta": p.beta,
        "gamma": p.gamma,
        "product": p.product,
        "accuracy": winner.accuracy,
        "latency_ms": winner.latency_ms,
        "params": winner.params,
        "macs": winner.macs,
        "rule": rule,
    }
    if confirmation is not None:
        outcome.winner.update(
            mean=confirmation.winner.mean,
            spread=confirmation.winner.spread,
            runs=len(confirmation.winner.accuracies),
            margin=confirmation.margin,
        )
    doc["step1"]["winner"] = outcome.winner
    objective = evaluator_objective(cfg)
    console.print(
        front_table(
            res.front,
            title=f"Step 1: Pareto front ({objective.noun} vs latency) at φ = 1",
            objective=objective,
        )
    )
    console.print(
        step1_table(
            res.rows,
            space,
            winner=winner,
            front_ids={r.trial for r in res.front},
            confirmed=confirmation.by_trial() if confirmation else None,
            objective=objective,
        )
    )
    console.print(winner_line(rule["rule"], p, winner, confirmation, objective))
    return True


def _confirm(
    cfg: DictConfig,
    space: CompoundScalingSpace,
    ranked: Sequence[TrialRecord],
    options: Mapping[str, int],
    num_classes: int,
) -> Confirmation:
    """Successive halving over step 1's leading networks (see :mod:`nas._scaling.confirm`)."""
    data_options = to_dict(cfg.data)
    evaluator_options = to_dict(cfg.evaluator)

    def data(resolution: int) -> Any:
        return call_with_options(load_data, data_options, group="data", resolution=resolution)

    def evaluate(model: Any, dataset: Any, evaluator_seed: int, net_seed: int) -> float:
        evaluator = call_with_options(
            make_evaluator, {**evaluator_options, "seed": evaluator_seed}, group="evaluator"
        )
        return evaluator(model, dataset, device=cfg.search.device, seed=net_seed).accuracy

    threads = torch.get_num_threads()
    if cfg.search.get("threads") is not None:
        torch.set_num_threads(cfg.search.threads)  # as step 1 trained them
    try:
        return confirm(
            ranked,
            space,
            top=options["top"],
            rounds=options["rounds"],
            seed=int(cfg.search.seed),
            target=space.grid_spec.target,
            evaluate=evaluate,
            data=data,
            num_classes=num_classes,
        )
    finally:
        torch.set_num_threads(threads)


def _step2(
    cfg: DictConfig,
    space: CompoundScalingSpace,
    outcome: ScalingOutcome,
    console: Any,
    *,
    latency: Any,
    num_classes: int,
) -> None:
    """Build, profile, export, time and (optionally) train the family."""
    sc = to_dict(cfg.scaling)
    members, models = build_members(
        space.scaling,
        mode=sc["mode"],
        coefficients=outcome.coefficients,
        max_phi=7 if sc["mode"] == "official" else sc["max_phi"],
        num_classes=num_classes,
        family=sc["family"],
        target=space.grid_spec.target,
        run_dir=outcome.run_dir,
        seed=int(cfg.search.seed),
    )
    outcome.members = members
    console.print(f"Step 2: timing {len(members)} networks in interleaved rounds ...")
    for m, lat in zip(
        members, measure_family(models, [m.resolution for m in members], latency), strict=True
    ):
        m.latency = {**lat.to_dict(), "resolution": m.resolution}
        m.latency_ms, m.latency_relative = lat.median_ms, lat.relative
    if not sc["accuracy"]:
        return
    evaluator = call_with_options(make_evaluator, to_dict(cfg.evaluator), group="evaluator")
    limit = sc["accuracy_max_phi"]
    data_options = to_dict(cfg.data)
    for m, model in zip(members, models, strict=True):
        if limit is not None and m.phi > limit:
            continue
        member_data = call_with_options(
            load_data, data_options, group="data", resolution=m.resolution
        )
        result = evaluator(model, member_data, device=cfg.search.device)
        m.accuracy, m.curve, m.train_seconds = result.accuracy, list(result.curve), result.seconds
        console.print(
            f"  {m.name}: accuracy {100 * result.accuracy:.2f}% in {result.seconds:.1f} s"
        )


def _finish(outcome: ScalingOutcome, doc: dict[str, Any], start: float) -> None:
    outcome.seconds = time.perf_counter() - start
    a, b, g = outcome.coefficients
    doc.update(
        coefficients={"alpha": a, "beta": b, "gamma": g},
        interrupted=outcome.interrupted,
        seconds=outcome.seconds,
    )
    path = outcome.run_dir / "scaling.json"
    write_scaling_json(path, doc, outcome.members)
    outcome.files["scaling.json"] = path


def _log_family(cfg: DictConfig, outcome: ScalingOutcome) -> None:
    """Step 2 goes to a run of its own (step 1's is run_search's), through the same logger."""
    study = cfg.search.study_name
    logger = make_logger(
        to_dict(cfg.logger),
        run_dir=outcome.run_dir,
        config=to_dict(cfg),
        study_name=study,
        job_type="scaling",
        run_name=f"{study}-step2",
    )
    logger.on_family(
        family_log(
            outcome.members,
            coefficients=outcome.coefficients,
            mode=outcome.mode,
            winner_trial=(outcome.winner or {}).get("trial"),
            run_dir=outcome.run_dir,
            files=outcome.files,
        )
    )
    logger.finish()
