"""EfficientNet's two-step compound scaling (Tan & Le 2019, section 3.3), end to end.

Step 1 fixes φ = 1 and runs the ordinary search (:func:`nas._search.run_search`) over the
``compound`` space: one grid trial per admissible (α, β, γ) with α·β²·γ² ≈ 2, points that round
to the same network evaluated once; the winner is picked by :class:`nas._config.WinnerConfig`.
Step 2 fixes (α, β, γ) and builds φ = 0..N from the base network; every member is profiled,
timed in the same interleaved rounds as the others (a fair comparison on a drifting machine),
optionally proxy-trained, and exported as an architecture file. ``scaling.mode=official``
skips step 1 and builds the published B0..B7 multipliers instead.

Scale of step 2 (``scaling.family``): the paper scales the real B0, while step 1 searched a
proxy-reduced base. By default (``proxy``) the family is built, timed, trained and exported at
the searched scale, where the measurements are affordable and comparable with step 1, and the
parameters and MACs of the same members at full scale (the base as given, e.g. B0 at 224 px)
are reported beside them (counted on PyTorch's ``meta`` device: no memory, no compute).
``family=full`` does everything at full scale (for a GPU, or a patient CPU).
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas._arch import Arch, atomic_write_text, save_arch
from nas._config import ConfigError, call_with_options, to_dict
from nas._mbconvnet import EFFICIENTNET_TABLE
from nas._profile import profile

if TYPE_CHECKING:
    from rich.table import Table

#: The paper's coefficients (section 4.2: "α = 1.2, β = 1.1, γ = 1.15").
PAPER_COEFFICIENTS = (1.2, 1.1, 1.15)
MODES = ("search", "official")
FAMILY_SCALES = ("proxy", "full")
WINNER_RULES = ("accuracy", "latency_budget", "macs_budget")


@dataclass
class Member:
    """One network of the scaled family (step 2), at the family's scale unless marked ``full_``.

    ``depth_mult``, ``width_mult`` and ``resolution_mult`` are relative to the base (α^φ, β^φ,
    γ^φ in search mode, the published multipliers in official mode); ``paper_*`` are the powers
    of the paper's (1.2, 1.1, 1.15) at the same φ; ``macs_ratio`` is MACs over the base's
    (the procedure intends target^φ, ``macs_vs_target`` = macs_ratio / target^φ).
    """

    name: str
    phi: int
    depth_mult: float
    width_mult: float
    resolution_mult: float
    resolution: int
    blocks: int
    params: int
    macs: int
    conv_linear_macs: int
    macs_ratio: float
    target_ratio: float
    macs_vs_target: float
    arch_file: str
    paper_depth_mult: float
    paper_width_mult: float
    paper_resolution_mult: float
    full_resolution: int | None = None
    full_params: int | None = None
    full_macs: int | None = None
    full_macs_ratio: float | None = None
    latency_ms: float | None = None
    latency_relative: float | None = None
    latency: dict[str, Any] | None = None
    accuracy: float | None = None
    curve: list[float] = field(default_factory=list)
    train_seconds: float | None = None


@dataclass
class ScalingOutcome:
    """What :func:`run_scaling` returns (``scaling.json`` holds the same, and more)."""

    run_dir: Path
    mode: str
    coefficients: tuple[float, float, float]
    members: list[Member]
    step1: Any = None
    winner: dict[str, Any] | None = None
    files: dict[str, Path] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0


# --------------------------------------------------------------------------- building


def full_scale_space(space: Any) -> Any:
    """The same compound space at the base's own scale (no width or resolution reduction)."""
    from nas._space import make_space

    return make_space(space.name, **{**space.options(), "base_width": 1.0, "resolution": None})


def base_blocks(arch: Arch) -> int:
    """Number of MBConv blocks of an ``mbconv`` architecture (after depth rounding)."""
    space = arch.make_space()
    return sum(s.layers for s in space.stage_configs(space.validate(arch.genotype)))


def family_archs(
    space: Any, point: Any, *, max_phi: int, num_classes: int
) -> list[tuple[int, Arch]]:
    """φ = 0..max_phi scaled from ``space``'s base by ``point`` (φ = 0 is the base itself)."""
    return [
        (phi, space.scaled_arch(point, phi, num_classes=num_classes)) for phi in range(max_phi + 1)
    ]


def official_archs(space: Any, *, num_classes: int) -> list[tuple[int, Arch]]:
    """The published B0..B7 multipliers applied to ``space``'s base (φ = i for B_i).

    Width and depth multiply the base's (and the space's ``base_width``); the resolution is the
    space's times r_i / 224, rounded to an integer, so at full scale from B0 it is the published
    one (the published 260, 300, 380 are not multiples of 8). Dropout is the table's.

    Example:
        >>> from nas import make_space
        >>> space = make_space("compound")
        >>> [a.resolution for _, a in official_archs(space, num_classes=1000)][:3]
        [224, 240, 260]
    """
    base_opts = dict(space.base_arch.space_options)
    archs = []
    for i, (variant, (width, depth, res, dropout)) in enumerate(sorted(EFFICIENTNET_TABLE.items())):
        if variant != f"b{i}":
            raise ValueError(f"EFFICIENTNET_TABLE is not b0..b{i}: found {variant!r}")
        resolution = round(space.resolution * res / EFFICIENTNET_TABLE["b0"][2])
        opts = dict(base_opts)
        opts.update(
            width_mult=float(base_opts.get("width_mult", 1.0)) * space.base_width * width,
            depth_mult=float(base_opts.get("depth_mult", 1.0)) * depth,
            resolution=resolution,
            dropout=dropout,
        )
        archs.append(
            (
                i,
                Arch(
                    space="mbconv",
                    genotype=dict(space.base_arch.genotype),
                    resolution=resolution,
                    num_classes=num_classes,
                    space_options=opts,
                ),
            )
        )
    return archs


def meta_size(arch: Arch) -> tuple[int, int]:
    """Parameters and conv+linear MACs of an architecture, counted on the ``meta`` device.

    No weights are allocated and nothing is computed, so a B7 at 600 px costs about a second
    (thop cannot count on ``meta``; the figure is the papers' FLOPs / 2, as
    :attr:`nas.Profile.conv_linear_macs`).

    Example:
        >>> from nas import make_space
        >>> meta_size(official_archs(make_space("compound"), num_classes=1000)[0][1])[0]
        5288548
    """
    with torch.device("meta"):
        model = arch.build().eval()
        x = torch.zeros(1, 3, arch.resolution, arch.resolution)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    return sum(p.numel() for p in model.parameters()), int(counter.get_total_flops() // 2)


# --------------------------------------------------------------------------- step 1 winner


def _point_of(space: Any, row: Any) -> Any:
    return space.point(row.genotype)


def choose_winner(rows: Sequence[Any], space: Any, rule: Mapping[str, Any]) -> Any:
    """The step-1 row the rule picks (see :class:`nas._config.WinnerConfig`).

    Raises:
        ValueError: no evaluated trial, or none within the budget (naming the best seen).
    """
    name = rule.get("rule", "accuracy")
    max_lat, max_macs = rule.get("max_latency_ms"), rule.get("max_macs")
    candidates = [r for r in rows if r.evaluated]
    if not candidates:
        raise ValueError("step 1 evaluated no point (all failed, pruned or infeasible); no winner")
    if name == "latency_budget":
        within = [r for r in candidates if r.latency_ms <= max_lat]
        if not within:
            best = min(r.latency_ms for r in candidates)
            raise ValueError(
                f"no step-1 point within scaling.winner.max_latency_ms={max_lat} "
                f"(the fastest measured {best:.3f} ms)"
            )
        candidates = within
    elif name == "macs_budget":
        within = [r for r in candidates if r.macs is not None and r.macs <= max_macs]
        if not within:
            best = min(r.macs for r in candidates if r.macs is not None)
            raise ValueError(
                f"no step-1 point within scaling.winner.max_macs={max_macs:,} (the smallest {best:,})"
            )
        candidates = within
    target = float(space.options()["target"])

    def key(r: Any) -> tuple[float, ...]:
        p = _point_of(space, r)
        return (-r.accuracy, r.macs or 0, abs(p.product - target), p.alpha, p.beta, p.gamma)

    return min(candidates, key=key)


def _check_scaling(sc: Mapping[str, Any]) -> None:
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


# --------------------------------------------------------------------------- step 2


class _OwnInput(nn.Module):
    """Runs the wrapped network on an input of its own, ignoring the one it is given.

    :func:`nas._latency.measure_latencies` times its networks on one shared input shape, but
    family members differ in resolution; each carries its input as a buffer (so it follows the
    module to the device) and the shared one is a token 1x1 image.
    """

    def __init__(self, model: nn.Module, *, resolution: int, batch_size: int) -> None:
        super().__init__()
        self.model = model
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch_size, 3, resolution, resolution, generator=gen)
        self.register_buffer("x", x, persistent=False)

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return self.model(self.x)


def measure_family(
    models: Sequence[nn.Module], resolutions: Sequence[int], latency_options: Mapping[str, Any]
) -> list[Any]:
    """Latency of every member, all in the same interleaved rounds (see ``nas._latency``)."""
    from nas._latency import measure_latencies

    options = dict(latency_options)
    if options.get("reference_resolution") is None:
        # "the candidate's" would be the token input's; the base member's is the natural one
        options["reference_resolution"] = max(8, resolutions[0])
    batch = int(options.get("batch_size", 1))
    wrapped = [
        _OwnInput(m, resolution=r, batch_size=batch)
        for m, r in zip(models, resolutions, strict=True)
    ]
    results = call_with_options(
        measure_latencies, options, group="latency", models=wrapped, resolution=1
    )
    return results


def _build(arch: Arch, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return arch.build()


def _member_name(mode: str, phi: int) -> str:
    return f"b{phi}" if mode == "official" else f"phi_{phi}"


def _describe(arch: Arch) -> dict[str, float]:
    o = arch.space_options
    return {
        "width_mult": float(o.get("width_mult", 1.0)),
        "depth_mult": float(o.get("depth_mult", 1.0)),
    }


def build_members(
    space: Any,
    *,
    mode: str,
    coefficients: tuple[float, float, float],
    max_phi: int,
    num_classes: int,
    family: str,
    run_dir: Path,
    seed: int = 0,
) -> tuple[list[Member], list[nn.Module]]:
    """Profile and export the family (φ = 0..max_phi, or B0..B7); no latency or accuracy yet."""
    from search_spaces.compound import Point

    full = full_scale_space(space)
    same_scale = full.options() == space.options()
    built_space = full if family == "full" else space
    point = Point(*coefficients)
    if mode == "official":
        archs = official_archs(built_space, num_classes=num_classes)
        full_archs = (
            archs
            if same_scale or family == "full"
            else official_archs(full, num_classes=num_classes)
        )
    else:
        archs = family_archs(built_space, point, max_phi=max_phi, num_classes=num_classes)
        full_archs = (
            archs
            if same_scale or family == "full"
            else family_archs(full, point, max_phi=max_phi, num_classes=num_classes)
        )
    base_mult = _describe(archs[0][1])
    members: list[Member] = []
    models: list[nn.Module] = []
    target = float(space.options()["target"])
    pa, pb, pg = PAPER_COEFFICIENTS
    base_macs = base_full_macs = 0
    for (phi, arch), (_, full_arch) in zip(archs, full_archs, strict=True):
        model = _build(arch, seed)
        prof = profile(model, resolution=arch.resolution)
        full_params, full_macs = meta_size(full_arch)
        if phi == 0:
            base_macs, base_full_macs = prof.macs, full_macs
        name = _member_name(mode, phi)
        path = save_arch(
            Arch(
                **{
                    **arch.__dict__,
                    "metrics": {"phi": phi, "params": prof.params, "macs": prof.macs},
                }
            ),
            run_dir / "family" / f"{name}.yaml",
        )
        mult = _describe(arch)
        ratio = prof.macs / base_macs
        members.append(
            Member(
                name=name,
                phi=phi,
                depth_mult=mult["depth_mult"] / base_mult["depth_mult"],
                width_mult=mult["width_mult"] / base_mult["width_mult"],
                resolution_mult=(
                    EFFICIENTNET_TABLE[name][2] / EFFICIENTNET_TABLE["b0"][2]
                    if mode == "official"
                    else point.gamma**phi
                ),
                resolution=arch.resolution,
                blocks=base_blocks(arch),
                params=prof.params,
                macs=prof.macs,
                conv_linear_macs=prof.conv_linear_macs,
                macs_ratio=ratio,
                target_ratio=target**phi,
                macs_vs_target=ratio / target**phi,
                arch_file=str(path.relative_to(run_dir)),
                paper_depth_mult=pa**phi,
                paper_width_mult=pb**phi,
                paper_resolution_mult=pg**phi,
                full_resolution=full_arch.resolution,
                full_params=full_params,
                full_macs=full_macs,
                full_macs_ratio=full_macs / base_full_macs,
            )
        )
        models.append(model)
    return members, models


# --------------------------------------------------------------------------- tables and plots


def _fmt_m(value: float | None, scale: float = 1e6, digits: int = 2) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


def step1_table(
    rows: Sequence[Any], space: Any, *, winner: Any, front_ids: set[int], limit: int = 15
) -> Table:
    """A rich table of the step-1 networks (one row per distinct network), best first."""
    from rich.table import Table

    shared: dict[int, list[Any]] = {}
    for r in rows:
        if r.evaluated:
            shared.setdefault(r.duplicate_of if r.duplicate_of is not None else r.trial, []).append(
                r
            )
    origins = [r for r in rows if r.evaluated and r.duplicate_of is None]
    origins.sort(key=lambda r: (-r.accuracy, r.macs or 0))
    table = Table(
        title=f"Step 1: {len(origins)} distinct networks evaluated at φ = 1 (best {min(limit, len(origins))})"
    )
    for col in (
        "trial",
        "α",
        "β",
        "γ",
        "α·β²·γ²",
        "points",
        "accuracy %",
        "latency ms",
        "params",
        "MACs (M)",
        "",
    ):
        table.add_column(col, justify="left" if col == "" else "right")
    win_origin = winner.duplicate_of if winner.duplicate_of is not None else winner.trial
    for r in origins[:limit]:
        p = space.point(r.genotype)
        group = shared.get(r.trial, [r])
        if r.trial == win_origin:
            p = space.point(winner.genotype)
        marks = ("winner " if r.trial == win_origin else "") + (
            "pareto" if r.trial in front_ids else ""
        )
        table.add_row(
            str(r.trial),
            f"{p.alpha:g}",
            f"{p.beta:g}",
            f"{p.gamma:g}",
            f"{p.product:.3f}",
            str(len(group)),
            f"{100 * r.accuracy:.2f}",
            f"{r.latency_ms:.3f}",
            f"{r.params:,}",
            _fmt_m(r.macs),
            marks.strip(),
        )
    return table


def family_tables(
    members: Sequence[Member], *, mode: str, coefficients: tuple[float, float, float], target: float
) -> list[Table]:
    """Rich tables of the step-2 family: its scaling and size, then its measurements."""
    from rich.table import Table

    a, b, g = coefficients
    what = (
        f"published EfficientNet B0..B{len(members) - 1} multipliers"
        if mode == "official"
        else f"family from α={a:g}, β={b:g}, γ={g:g}"
    )
    size = Table(title=f"Step 2: {what}, built at the family's scale")
    for col in (
        "",
        "φ",
        "depth×",
        "width×",
        "res×",
        "res",
        "blocks",
        "params",
        "MACs (M)",
        "MACs×base",
        f"{target:g}^φ",
        "×base / target",
    ):
        size.add_column(col, justify="left" if col == "" else "right")
    measured = Table(title=f"Step 2: {what}, measured (and at full scale)")
    for col in (
        "",
        "φ",
        "latency ms",
        "lat. relative",
        "accuracy %",
        "full res",
        "full params (M)",
        "full MACs (G)",
        "full MACs×base",
    ):
        measured.add_column(col, justify="left" if col == "" else "right")
    for m in members:
        size.add_row(
            m.name,
            str(m.phi),
            f"{m.depth_mult:.3f}",
            f"{m.width_mult:.3f}",
            f"{m.resolution_mult:.3f}",
            str(m.resolution),
            str(m.blocks),
            f"{m.params:,}",
            _fmt_m(m.macs),
            f"{m.macs_ratio:.2f}",
            f"{m.target_ratio:g}",
            f"{m.macs_vs_target:.2f}",
        )
        measured.add_row(
            m.name,
            str(m.phi),
            "-" if m.latency_ms is None else f"{m.latency_ms:.3f}",
            "-" if m.latency_relative is None else f"{m.latency_relative:.3f}",
            "-" if m.accuracy is None else f"{100 * m.accuracy:.2f}",
            "-" if m.full_resolution is None else str(m.full_resolution),
            _fmt_m(m.full_params),
            _fmt_m(m.full_macs, 1e9, 3),
            "-" if m.full_macs_ratio is None else f"{m.full_macs_ratio:.2f}",
        )
    return [size, measured]


def official_table(members: Sequence[Member]) -> Table:
    """Published B1..B7 multipliers beside the powers of the paper's (1.2, 1.1, 1.15)."""
    from rich.table import Table

    a, b, g = PAPER_COEFFICIENTS
    table = Table(title=f"Published multipliers vs α^φ, β^φ, γ^φ with (α, β, γ) = ({a}, {b}, {g})")
    for col in (
        "",
        "φ",
        "depth",
        f"{a}^φ",
        "ratio",
        "width",
        f"{b}^φ",
        "ratio",
        "res×",
        f"{g}^φ",
        "ratio",
        "full MACs×B0",
        "2^φ",
    ):
        table.add_column(col, justify="left" if col == "" else "right")
    for m in members[1:]:
        table.add_row(
            m.name,
            str(m.phi),
            f"{m.depth_mult:.2f}",
            f"{m.paper_depth_mult:.3f}",
            f"{m.depth_mult / m.paper_depth_mult:.2f}",
            f"{m.width_mult:.2f}",
            f"{m.paper_width_mult:.3f}",
            f"{m.width_mult / m.paper_width_mult:.2f}",
            f"{m.resolution_mult:.3f}",
            f"{m.paper_resolution_mult:.3f}",
            f"{m.resolution_mult / m.paper_resolution_mult:.2f}",
            "-" if m.full_macs_ratio is None else f"{m.full_macs_ratio:.2f}",
            f"{2**m.phi:g}",
        )
    return table


def plot_scaling_png(members: Sequence[Member], path: Path, *, title: str) -> None:
    """Accuracy and latency against φ and against MACs, and the MACs ratio against target^φ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    from nas._report import _atomic_bytes

    phis = [m.phi for m in members]
    macs = [m.macs / 1e6 for m in members]
    acc = [math.nan if m.accuracy is None else 100 * m.accuracy for m in members]
    lat = [math.nan if m.latency_ms is None else m.latency_ms for m in members]
    has_acc = any(m.accuracy is not None for m in members)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=110)
    for ax, xs, xlabel in (
        (axes[0], phis, "φ"),
        (axes[1], macs, "MACs (M, at the family's scale)"),
    ):
        lat_ax = ax.twinx() if has_acc else ax
        if has_acc:
            ax.plot(xs, acc, "o-", color="tab:blue", label="proxy accuracy")
            ax.set_ylabel("proxy accuracy (%)", color="tab:blue")
        lat_ax.plot(xs, lat, "s--", color="tab:red", label="latency")
        lat_ax.set_ylabel("latency (ms, median of interleaved rounds)", color="tab:red")
        for m, x, a, t in zip(members, xs, acc, lat, strict=True):
            target_ax, y = (ax, a) if has_acc else (lat_ax, t)
            target_ax.annotate(
                m.name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    what = "accuracy and latency" if has_acc else "latency (no accuracy: scaling.accuracy=false)"
    axes[0].set_title(f"{what} vs φ", fontsize=9)
    axes[1].set_title(f"{what} vs MACs", fontsize=9)
    axes[1].set_xscale("log")
    axes[1].xaxis.set_major_formatter(ScalarFormatter())
    ax = axes[2]
    ax.plot(phis, [m.macs_ratio for m in members], "o-", label="family scale")
    if members and members[0].full_macs_ratio is not None:
        ax.plot(phis, [m.full_macs_ratio for m in members], "^-", label="full scale (conv+fc)")
    ax.plot(phis, [m.target_ratio for m in members], "k:", label="target^φ")
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("φ")
    ax.set_ylabel("MACs / base MACs")
    ax.set_title("MACs growth against the intended target^φ", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _atomic_bytes(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


# --------------------------------------------------------------------------- wandb


def _log_wandb(cfg: DictConfig, outcome: ScalingOutcome, doc: Mapping[str, Any]) -> None:
    """Log step 2 to its own wandb run (step 1's is run_search's); never stops the run."""
    options = to_dict(cfg.logger)
    if options.get("name") != "wandb" or options.get("mode") == "disabled":
        return
    try:
        if options.get("mode", "offline") == "offline":
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        import wandb

        root = Path(options.get("dir") or outcome.run_dir)
        root.mkdir(parents=True, exist_ok=True)
        study = cfg.search.study_name
        settings = {
            "console": "off",
            "x_disable_stats": True,
            "silent": True,
            "reinit": "create_new",
        }
        fields = getattr(wandb.Settings, "model_fields", settings)
        run = wandb.init(
            project=options.get("project") or "nas",
            entity=options.get("entity"),
            group=options.get("group") or study,
            job_type="scaling",
            name=f"{study}-step2",
            tags=list(options.get("tags") or []),
            config=to_dict(cfg),
            dir=str(root),
            mode=options.get("mode") or "offline",
            settings=wandb.Settings(**{k: v for k, v in settings.items() if k in fields}),
        )
        try:
            columns = [
                "name",
                "phi",
                "depth_mult",
                "width_mult",
                "resolution",
                "params",
                "macs",
                "macs_ratio",
                "latency_ms",
                "accuracy",
                "full_params",
                "full_macs",
            ]
            table = wandb.Table(
                columns=columns,
                data=[[getattr(m, c) for c in columns] for m in outcome.members],
            )
            logged: dict[str, Any] = {"family": table}
            if any(m.accuracy is not None for m in outcome.members):
                logged["accuracy_vs_phi"] = wandb.plot.line(
                    table, "phi", "accuracy", title="accuracy vs φ"
                )
            if any(m.latency_ms is not None for m in outcome.members):
                logged["latency_vs_phi"] = wandb.plot.line(
                    table, "phi", "latency_ms", title="latency vs φ"
                )
            png = outcome.files.get("scaling.png")
            if png is not None and png.is_file():
                logged["scaling_plot"] = wandb.Image(str(png))
            run.log(logged)
            a, b, g = outcome.coefficients
            run.summary.update(
                {
                    "alpha": a,
                    "beta": b,
                    "gamma": g,
                    "mode": outcome.mode,
                    "winner_trial": (doc.get("step1") or {}).get("winner", {}).get("trial"),
                }
            )
            artifact = wandb.Artifact(f"{study}-family".replace("/", "-"), type="architectures")
            artifact.add_file(str(outcome.files["scaling.json"]), name="scaling.json")
            for m in outcome.members:
                artifact.add_file(str(outcome.run_dir / m.arch_file), name=m.arch_file)
            run.log_artifact(artifact)
        finally:
            run.finish()
    except Exception as err:  # logging is a side channel: the results are already on disk
        first = (str(err).strip().splitlines() or [""])[0][:300]
        print(
            f"nas: wandb logging of step 2 failed ({type(err).__name__}: {first}); results are on disk",
            file=sys.stderr,
        )


# --------------------------------------------------------------------------- the procedure


def _hydra_run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _rule_text(space: Any) -> str:
    o = space.options()
    return (
        f"α in {o['alpha']}, β in {o['beta']}, γ in {o['gamma']} step {o['step']:g}, all >= 1, "
        f"|α·β²·γ² − {o['target']:g}| <= {o['tolerance']:g}"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def run_scaling(cfg: DictConfig, *, run_dir: str | Path | None = None) -> ScalingOutcome:
    """Run the two-step compound scaling a composed config describes and write its results.

    Step 1 (``scaling.mode=search``) is :func:`nas._search.run_search` over the ``compound``
    space with every admissible point once (``search.n_trials`` is set to their number when the
    sampler is ``grid``); its results (``pareto.json``, ``trials.csv``, ``pareto.png``,
    ``archs/``) land in ``run_dir``. Step 2 writes ``family/<name>.yaml`` per member,
    ``scaling.json`` and ``scaling.png``, and prints its table.

    Raises:
        ConfigError: a bad ``scaling`` option, a space other than ``compound``, an empty grid.
        ValueError: a base architecture that is not an MBConv network; no winner within budget.

    Example:
        >>> from nas._config import compose
        >>> cfg = compose(["conf=effnet_grid", "data=synthetic", "scaling.max_phi=1",
        ...                "space.alpha=[1.2,1.2]", "space.beta=[1.1,1.1]"])
        >>> outcome = run_scaling(cfg, run_dir="/tmp/nas-doc-scaling")  # doctest: +SKIP
    """
    from rich.console import Console

    from nas._data import load_data
    from nas._proxy import make_evaluator
    from nas._report import front_table
    from nas._search import make_space_from_config, run_search

    start = time.perf_counter()
    # Wide enough for the tables when the output is a log file (rich assumes 80 columns then).
    console = Console(width=None if sys.stdout.isatty() else 140)
    run_dir = Path(run_dir) if run_dir is not None else _hydra_run_dir()
    if cfg.get("scaling") is None:
        raise ConfigError("scaling is not set; use conf=effnet_grid")
    sc = to_dict(cfg.scaling)
    _check_scaling(sc)
    if cfg.space.get("name") != "compound":
        raise ConfigError(
            f"scaling needs space=compound (conf=effnet_grid sets it), got space {cfg.space.get('name')!r}"
        )
    space = make_space_from_config(cfg.space)
    o = space.options()
    base_desc = o["base"] if isinstance(o["base"], str) else "architecture mapping"
    run_dir.mkdir(parents=True, exist_ok=True)
    data_options = to_dict(cfg.data)
    data = call_with_options(load_data, data_options, group="data", resolution=space.resolution)
    num_classes = data.num_classes
    outcome = ScalingOutcome(
        run_dir=run_dir, mode=sc["mode"], coefficients=PAPER_COEFFICIENTS, members=[]
    )
    doc: dict[str, Any] = {
        "mode": sc["mode"],
        "base": o["base"],
        "proxy": {"resolution": space.resolution, "base_width": space.base_width},
        "data": data_options,
        "num_classes": num_classes,
        "scaling": sc,
    }

    if sc["mode"] == "search":
        distinct = len({space.identity({"point": p.key}) for p in space.points})
        console.print(
            f"[bold]Step 1[/bold]: grid at φ = {space.phi:g} over {_rule_text(space)}: "
            f"{len(space.points)} admissible points, {distinct} distinct networks after rounding "
            f"(base {base_desc} at {space.resolution} px, base width {space.base_width:g})"
        )
        cfg1 = copy.deepcopy(cfg)
        if cfg.sampler.get("name") == "grid":
            cfg1.search.n_trials = len(space.points)
        step1 = run_search(cfg1, run_dir=run_dir)
        outcome.step1 = step1
        res = step1.results
        doc["step1"] = {
            "rule": _rule_text(space),
            "points": len(space.points),
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
            _write_doc(outcome, doc, start)
            return outcome
        winner = choose_winner(res.rows, space, sc["winner"])
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
            "rule": sc["winner"],
        }
        doc["step1"]["winner"] = outcome.winner
        console.print(
            front_table(res.front, title="Step 1: Pareto front (accuracy vs latency) at φ = 1")
        )
        console.print(
            step1_table(res.rows, space, winner=winner, front_ids={r.trial for r in res.front})
        )
        console.print(
            f"Step 1 winner ({sc['winner']['rule']}): α={p.alpha:g}, β={p.beta:g}, γ={p.gamma:g} "
            f"(α·β²·γ² = {p.product:.3f}; trial {winner.trial}, accuracy {100 * winner.accuracy:.2f}%); "
            f"the paper's: α=1.2, β=1.1, γ=1.15"
        )

    interrupted = False
    threads = torch.get_num_threads()
    if cfg.search.get("threads") is not None:
        # step 1 ran (and timed) under search.threads; step 2 must be comparable with it
        torch.set_num_threads(cfg.search.threads)
    try:
        members, models = build_members(
            space,
            mode=sc["mode"],
            coefficients=outcome.coefficients,
            max_phi=7 if sc["mode"] == "official" else sc["max_phi"],
            num_classes=num_classes,
            family=sc["family"],
            run_dir=run_dir,
            seed=int(cfg.search.seed),
        )
        outcome.members = members
        console.print(f"Step 2: timing {len(members)} networks in interleaved rounds ...")
        lats = measure_family(models, [m.resolution for m in members], to_dict(cfg.latency))
        for m, lat in zip(members, lats, strict=True):
            m.latency = {**lat.to_dict(), "resolution": m.resolution}
            m.latency_ms, m.latency_relative = lat.median_ms, lat.relative
        if sc["accuracy"]:
            evaluator = call_with_options(make_evaluator, to_dict(cfg.evaluator), group="evaluator")
            limit = sc["accuracy_max_phi"]
            for m, model in zip(members, models, strict=True):
                if limit is not None and m.phi > limit:
                    continue
                member_data = call_with_options(
                    load_data, data_options, group="data", resolution=m.resolution
                )
                result = evaluator(model, member_data, device=cfg.search.device)
                m.accuracy, m.curve, m.train_seconds = (
                    result.accuracy,
                    list(result.curve),
                    result.seconds,
                )
                console.print(
                    f"  {m.name}: accuracy {100 * result.accuracy:.2f}% in {result.seconds:.1f} s"
                )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        torch.set_num_threads(threads)
    outcome.interrupted = interrupted
    if outcome.members:
        target = float(o["target"])
        for table in family_tables(
            outcome.members, mode=sc["mode"], coefficients=outcome.coefficients, target=target
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
            outcome.members, outcome.files["scaling.png"], title=f"{title}; {cfg.search.study_name}"
        )
    _write_doc(outcome, doc, start)
    _log_wandb(cfg, outcome, doc)
    console.print(f"results in {run_dir} ({outcome.seconds:.0f} s)")
    return outcome


def _write_doc(outcome: ScalingOutcome, doc: dict[str, Any], start: float) -> None:
    outcome.seconds = time.perf_counter() - start
    a, b, g = outcome.coefficients
    doc.update(
        coefficients={"alpha": a, "beta": b, "gamma": g},
        paper_coefficients=dict(zip(("alpha", "beta", "gamma"), PAPER_COEFFICIENTS, strict=True)),
        family=[asdict(m) for m in outcome.members],
        interrupted=outcome.interrupted,
        seconds=outcome.seconds,
    )
    path = outcome.run_dir / "scaling.json"
    atomic_write_text(path, json.dumps(doc, indent=2, default=_json_default))
    outcome.files["scaling.json"] = path
