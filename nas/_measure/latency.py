"""On-device latency: the settings, the result, and the measurement functions.

Every figure comes from :mod:`nas._measure.rounds`: the candidates run in rounds interleaved
with a fixed reference network (EfficientNet-B0 at 96 px), and each result reports milliseconds
and the drift-cancelled *relative* latency side by side, with the spread, the runs kept, the
device, threads and torch version. ``experiments/latency/`` holds the figures behind the
defaults.
"""

from __future__ import annotations

import copy
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas._measure.rounds import (
    CLOCKS,
    Plan,
    Samples,
    kept,
    median_rel_ci,
    random_input,
    run_rounds,
    steady_malloc,
    summary,
)
from nas._models.mbconvnet import efficientnet
from nas._models.network import total_stride

#: Setting that selects the built-in reference network (see :func:`reference_model`).
DEFAULT_REFERENCE = "default"
#: How results and lookup tables name it.
DEFAULT_REFERENCE_NAME = "efficientnet_b0"


@dataclass(frozen=True)
class LatencySettings:
    """How latency is measured: the ``latency`` config group, one field per key.

    Attributes:
        batch_size: input batch size.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        threads: intra-op CPU threads (``torch.set_num_threads``); ``None`` keeps torch's count
            at the time of measuring.
        clock: ``"wall"``: elapsed time (synchronised on CUDA). ``"cpu"`` (CPU device only):
            CPU time of the computing thread (of the process when ``threads`` > 1), which leaves
            out the time other processes hold the cores, so it measures the network rather
            than a crowded machine's queue; the wall-clock median is reported beside it.
        warmup: untimed runs of each network first.
        min_rounds: rounds before the stopping rule may stop.
        max_rounds: most rounds.
        target_rel_spread: stop once the 95% confidence interval of the median ratio (or of the
            median ms without a reference) is within this fraction of it.
        max_seconds: wall-clock budget (warm-up included) per measured network; at least one
            round always runs. ``None``: no budget.
        reference: ``"default"`` (:func:`reference_model`), a module, or ``None`` (no
            reference; ``relative`` is then ``None``).
        reference_resolution: the reference's input resolution; ``None``: the candidate's.
        steady_allocator: on CPU, first fix glibc's malloc thresholds (see
            :func:`nas._measure.rounds.steady_malloc`) so that no run pays page faults that
            depend on what the process allocated before (70% on one network here); the process
            then keeps freed heap memory.

    Raises:
        ValueError: naming the first bad setting and what it must be.

    Example:
        >>> LatencySettings(threads=1).replace(max_seconds=0.5).max_seconds
        0.5
    """

    batch_size: int = 1
    device: str = "cpu"
    threads: int | None = None
    clock: str = "wall"
    warmup: int = 5
    min_rounds: int = 10
    max_rounds: int = 200
    target_rel_spread: float = 0.01
    max_seconds: float | None = 1.5
    reference: nn.Module | str | None = DEFAULT_REFERENCE
    reference_resolution: int | None = 96
    steady_allocator: bool = True

    def __post_init__(self) -> None:
        for key in ("batch_size", "min_rounds", "max_rounds"):
            _check_int(key, getattr(self, key), minimum=1)
        _check_int("warmup", self.warmup, minimum=0)
        if self.threads is not None:
            _check_int("threads", self.threads, minimum=1)
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {list(CLOCKS)}, got {self.clock!r}")
        if _device_type(self.device) not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.clock == "cpu" and _device_type(self.device) != "cpu":
            raise ValueError(f"clock 'cpu' needs device 'cpu', got {str(self.device)!r}")
        if self.min_rounds > self.max_rounds:
            raise ValueError(
                f"min_rounds ({self.min_rounds}) must not exceed max_rounds ({self.max_rounds})"
            )
        trs = self.target_rel_spread
        if isinstance(trs, bool) or not isinstance(trs, int | float) or not trs > 0:
            raise ValueError(f"target_rel_spread must be a number > 0, got {trs!r}")
        ms = self.max_seconds
        if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int | float) or ms <= 0):
            raise ValueError(f"max_seconds must be a number > 0 or None, got {ms!r}")
        ref = self.reference
        if isinstance(ref, str) and ref != DEFAULT_REFERENCE:
            raise ValueError(
                f"reference must be {DEFAULT_REFERENCE!r}, an nn.Module or None, got {ref!r}"
            )
        if ref is not None and not isinstance(ref, str | nn.Module):
            raise ValueError(
                f"reference must be {DEFAULT_REFERENCE!r}, an nn.Module or None, "
                f"got {type(ref).__name__}"
            )
        if not isinstance(self.steady_allocator, bool):
            raise ValueError(
                f"steady_allocator must be true or false, got {self.steady_allocator!r}"
            )
        if self.reference_resolution is not None:
            _check_int("reference_resolution", self.reference_resolution, minimum=8)

    def replace(self, **changes: Any) -> LatencySettings:
        """A copy with some settings changed.

        Raises:
            ValueError: an unknown setting (naming it and the known ones) or a bad value.
        """
        known = [f.name for f in fields(self)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a latency setting; known: {', '.join(known)}")
        return replace(self, **changes) if changes else self

    @property
    def reference_name(self) -> str | None:
        """How results name the reference (``None`` without one)."""
        if self.reference is None or isinstance(self.reference, str):
            return DEFAULT_REFERENCE_NAME if self.reference else None
        return type(self.reference).__name__

    def plan(self) -> Plan:
        """The rounds these settings run, on a device that is here (checked now).

        Raises:
            ValueError: the device is unknown or not available here.
        """
        return Plan(
            device=parse_device(self.device),
            threads=torch.get_num_threads() if self.threads is None else self.threads,
            clock=self.clock,
            warmup=self.warmup,
            min_rounds=self.min_rounds,
            max_rounds=self.max_rounds,
            target_rel_spread=float(self.target_rel_spread),
            max_seconds=self.max_seconds,
        )


def _device_type(device: object) -> str | None:
    try:
        return torch.device(device).type  # type: ignore[arg-type]
    except (RuntimeError, TypeError):
        return None


def _check_int(key: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class LatencyResult:
    """Latency of one network, measured interleaved with a reference.

    Attributes:
        median_ms: median milliseconds of one forward pass on ``clock`` (outlying runs dropped).
        iqr_ms: interquartile range of the kept runs, in milliseconds.
        runs: timed runs kept after outlier rejection.
        relative: median over rounds of candidate time / reference time measured in the same
            round (drift-cancelled; comparable between results with equal reference, reference
            resolution and batch size); ``None`` without a reference.
        reference_ms: the reference's median milliseconds in the same rounds (``None`` without).
        device: human description of the device (CPU model or CUDA device name).
        threads: intra-op CPU threads used.
        torch_version: ``torch.__version__``.
        batch_size: input batch size.
        resolution: input resolution (square).
        clock: ``"wall"`` (elapsed time) or ``"cpu"`` (CPU time of the computing thread(s)),
            the clock of ``median_ms``, ``iqr_ms``, ``relative`` and ``reference_ms``.
        wall_ms: median wall-clock milliseconds, whatever ``clock`` is.
        rounds: rounds run (before outlier rejection).
        rejected: rounds dropped as outliers (by the ratio when a reference is used, else by ms).
        rel_ci: half-width of the 95% confidence interval of the reported median (of
            ``relative`` with a reference, else of ``median_ms``), relative to it.
        seconds: wall-clock seconds this result cost (its share of the warm-up and rounds).
        reference: the reference's name (``"efficientnet_b0"`` for the built-in one, else the
            module's class name; ``None`` without).
        reference_resolution: the reference's input resolution (``None`` without).
    """

    median_ms: float
    iqr_ms: float
    runs: int
    relative: float | None
    reference_ms: float | None
    device: str
    threads: int
    torch_version: str
    batch_size: int
    resolution: int
    clock: str = "wall"
    wall_ms: float = math.nan
    rounds: int = 0
    rejected: int = 0
    rel_ci: float = math.inf
    seconds: float = 0.0
    reference: str | None = None
    reference_resolution: int | None = None
    raw: dict[str, tuple[float, ...]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable mapping of the figures (without the raw samples)."""
        d = asdict(self)
        d.pop("raw")
        if not math.isfinite(d["rel_ci"]):
            d["rel_ci"] = None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyResult:
        """The result :meth:`to_dict` wrote (keys this version does not know are ignored)."""
        known = {f.name for f in fields(cls)} - {"raw"}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("rel_ci") is None:
            values["rel_ci"] = math.inf
        return cls(**values)


def reference_model() -> nn.Module:
    """The built-in reference network: EfficientNet-B0 (1000 classes), in eval mode.

    Run at ``reference_resolution`` (96 px by default, about 70 M MACs). Its mix of operators
    and its 21 MB of weights resemble the candidates of an MBConv search, so contention from
    other processes slows it about as much as a typical candidate and the ratio stays put.
    A small cache-resident network was tried first and does not: it is slowed more than the
    candidates, and two passes over 30 architectures disagreed by 3.9% (median) against
    1.6% with this one (``experiments/latency/reference_choice.py``). Its weights come from a
    fixed seed inside a forked RNG, so building it never changes the caller's random stream.

    Example:
        >>> net = reference_model()
        >>> net(torch.zeros(1, 3, 96, 96)).shape
        torch.Size([1, 1000])
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = efficientnet("b0")
    return net.eval()


def measure_latency(
    model: nn.Module,
    *,
    resolution: int,
    settings: LatencySettings | None = None,
    **options: Any,
) -> LatencyResult:
    """Measure a network's forward latency on ``device``, interleaved with a reference network.

    The caller's model is not touched: a deep copy is moved to the device and put in eval mode.
    Runs use ``torch.inference_mode()``, a fixed batch and resolution, a fixed thread count
    (restored afterwards) and a random input; CUDA runs are synchronised before and after.

    Args:
        model: the network (any ``nn.Module`` taking one image batch).
        resolution: input height and width.
        settings: how to measure (default: :class:`LatencySettings`'s defaults).
        **options: settings to change (the fields of :class:`LatencySettings`).

    Returns:
        The :class:`LatencyResult`.

    Raises:
        ValueError: an unknown or unavailable device, a resolution below the network's total
            stride, or a bad setting (the message names it).

    Example:
        >>> import nas
        >>> from nas.zoo import efficientnet
        >>> r = nas.measure_latency(efficientnet("b0", num_classes=10), resolution=64,
        ...                         max_seconds=0.5)
        >>> r.median_ms > 0 and r.relative > 0
        True
    """
    return measure_latencies([model], resolution=resolution, settings=settings, **options)[0]


def measure_latencies(
    models: Sequence[nn.Module],
    *,
    resolution: int | Sequence[int],
    settings: LatencySettings | None = None,
    **options: Any,
) -> list[LatencyResult]:
    """Measure several networks in the same rounds (one run of each, and of the reference, per
    round); the settings are those of :func:`measure_latency`, ``max_seconds`` per network.

    ``resolution`` may give one resolution per network (a compound-scaled family); the
    reference then needs a fixed ``reference_resolution``. Rounds continue until every network
    meets ``target_rel_spread``.

    Example:
        >>> import nas
        >>> from nas.zoo import efficientnet
        >>> small, big = efficientnet("b0"), efficientnet("b5")
        >>> a, b = nas.measure_latencies([small, big], resolution=64, threads=1, clock="cpu",
        ...                              max_seconds=0.5)
        >>> b.relative > 2 * a.relative
        True
    """
    if not models:
        raise ValueError("models must not be empty")
    settings = (settings or LatencySettings()).replace(**options)
    if isinstance(resolution, Sequence):
        resolutions = [*resolution]
        if len(resolutions) != len(models):
            raise ValueError(
                f"resolution must be one integer or one per model ({len(models)}), "
                f"got {len(resolutions)} values"
            )
    else:
        resolutions = [resolution] * len(models)
    for res, m in zip(resolutions, models, strict=True):
        check_resolution(res, [m])
    if (
        settings.reference is not None
        and settings.reference_resolution is None
        and len(set(resolutions)) > 1
    ):
        raise ValueError(
            "reference_resolution must be an integer when the networks' resolutions differ"
        )
    b = settings.batch_size
    items = [(m, (b, 3, r, r)) for m, r in zip(models, resolutions, strict=True)]
    return measure_items(items, settings=settings, resolutions=resolutions)


def check_resolution(resolution: int, models: Sequence[nn.Module]) -> None:
    """Raise ``ValueError`` when ``resolution`` is below a network's total stride."""
    _check_int("resolution", resolution, minimum=1)
    for m in models:
        stride = total_stride(m)
        if resolution < stride:
            raise ValueError(
                f"resolution {resolution} is smaller than the network's total stride {stride}"
            )


def measure_items(
    items: Sequence[tuple[nn.Module, tuple[int, ...]]],
    *,
    settings: LatencySettings,
    resolutions: Sequence[int],
) -> list[LatencyResult]:
    """Time ``items`` (module, input shape) in the same interleaved rounds with the reference.

    The modules are deep-copied to the device in eval mode (the caller's are not touched);
    ``resolutions`` (one per item) is what the results record as their resolution.
    """
    plan = settings.plan()
    dev = plan.device
    if settings.steady_allocator and dev.type == "cpu":
        steady_malloc()
    nets = [_prepare(m, dev) for m, _ in items]
    inputs = [random_input(shape, dev) for _, shape in items]
    reference = None
    ref_res: int | None = None
    if settings.reference is not None:
        ref = settings.reference
        ref_net = _prepare(reference_model() if isinstance(ref, str) else ref, dev)
        ref_res = settings.reference_resolution or resolutions[0]
        reference = (ref_net, random_input((settings.batch_size, 3, ref_res, ref_res), dev))
    samples = run_rounds(nets, inputs, reference, plan)
    return _results(samples, settings, plan, resolutions, ref_res)


def _prepare(module: nn.Module, device: torch.device) -> nn.Module:
    return copy.deepcopy(module).to(device).eval()


def _results(
    samples: Samples,
    settings: LatencySettings,
    plan: Plan,
    resolutions: Sequence[int],
    ref_res: int | None,
) -> list[LatencyResult]:
    rounds, clock = samples.rounds, samples.clock
    ref_all = samples.reference
    ref_ms = None if ref_all is None else ref_all[:, clock]
    ref_kept = None if ref_ms is None else ref_ms[kept(ref_ms)]
    device_name = describe_device(plan.device)
    n = samples.networks.shape[1]
    results = []
    for j in range(n):
        ms_kept, ratios = summary(samples.networks[:, j, clock], ref_ms, position=j, count=n)
        wall = samples.networks[:, j, 0]
        q1, q3 = np.percentile(ms_kept, [25, 75])
        rejected = rounds - (ratios.size if ratios is not None else ms_kept.size)
        raw = {"wall": samples.networks[:, j, 0], "cpu": samples.networks[:, j, 1]}
        if ref_all is not None:
            raw |= {"reference_wall": ref_all[:, 0], "reference_cpu": ref_all[:, 1]}
        results.append(
            LatencyResult(
                median_ms=float(np.median(ms_kept)),
                iqr_ms=float(q3 - q1),
                runs=int(ms_kept.size),
                relative=None if ratios is None else float(np.median(ratios)),
                reference_ms=None if ref_kept is None else float(np.median(ref_kept)),
                device=device_name,
                threads=plan.threads,
                torch_version=torch.__version__,
                batch_size=settings.batch_size,
                resolution=resolutions[j],
                clock=settings.clock,
                wall_ms=float(np.median(wall[kept(wall)])),
                rounds=rounds,
                rejected=int(rejected),
                rel_ci=median_rel_ci(ratios if ratios is not None else ms_kept),
                seconds=samples.seconds / n,
                reference=settings.reference_name,
                reference_resolution=ref_res,
                raw={k: tuple(float(v) for v in vals) for k, vals in raw.items()},
            )
        )
    return results


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` that is here (CPU, or a CUDA GPU that exists)."""
    allowed = "'cpu', 'cuda' or 'cuda:N'"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be {allowed}, got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be {allowed}, got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    return dev


def describe_device(device: str | torch.device = "cpu") -> str:
    """Human description of a device: the CPU model and logical CPUs, or the CUDA device name.

    Example:
        >>> isinstance(describe_device("cpu"), str)
        True
    """
    dev = parse_device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} (CUDA {torch.version.cuda})"
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name} ({os.cpu_count()} logical CPUs, {platform.machine()})"
