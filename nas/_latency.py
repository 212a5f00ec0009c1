"""On-device latency: robust interleaved measurement and a validated lookup table.

A shared machine drifts by 10-30% from one minute to the next, so a bare median of repeated runs
does not repeat. Every measurement here therefore runs in *rounds*: one run of a fixed reference
network (EfficientNet-B0 at 96 px) and one run of each candidate per round, so that all of them
see the same machine state. Each candidate run is divided by the reference interpolated between
the runs that open and close its round; outlying ratios are dropped by Tukey's IQR rule, and
rounds continue until the distribution-free 95% confidence interval of the median ratio is
within ``target_rel_spread`` of it (or ``max_rounds`` / ``max_seconds`` run out). Each result
reports milliseconds and this drift-cancelled *relative* latency side by side.

Two more sources of error are removed rather than averaged: time spent waiting for a core that
other processes hold (``clock="cpu"`` times the computing thread's CPU time, with one thread),
and page faults whose number depends on what the process allocated before (glibc's malloc
thresholds are fixed first, ``steady_allocator``). ``experiments/latency/`` holds the figures.

:class:`LatencyTable` measures each distinct unit of ``model.latency_units()`` once, caches it
in a JSON file namespaced by device, threads, clock, torch version and reference, and predicts a
network as the sum of its units; :meth:`LatencyTable.validate` compares predictions with
end-to-end measurement.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import gc
import hashlib
import json
import math
import os
import platform
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas._arch import atomic_write_text

#: Setting that selects the built-in reference network (see :func:`reference_model`).
DEFAULT_REFERENCE = "default"
#: How results and lookup tables name it.
DEFAULT_REFERENCE_NAME = "efficientnet_b0"

_OUTLIER_K = 1.5  # Tukey's fences
_CLOCKS = ("wall", "cpu")
_Z95 = 1.96


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


def reference_model() -> nn.Module:
    """The built-in reference network: EfficientNet-B0 (1000 classes), in eval mode.

    Run at ``reference_resolution`` (96 px by default, about 70 M MACs). Its mix of operators
    and its 21 MB of weights resemble the candidates of an MBConv search, so contention from
    other processes slows it about as much as a typical candidate and the ratio stays put.
    A small cache-resident network was tried first and does not: it is slowed more than the
    candidates, and two passes over 30 architectures disagreed by 3.9% (median) against
    1.6% with this one (``experiments/latency/reference_choice.py``). Its weights come from a fixed seed inside a forked RNG, so building it
    never changes the caller's random stream.

    Example:
        >>> net = reference_model()
        >>> net(torch.zeros(1, 3, 96, 96)).shape
        torch.Size([1, 1000])
    """
    from nas._mbconvnet import efficientnet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = efficientnet("b0")
    return net.eval()


def measure_latency(
    model: nn.Module,
    *,
    resolution: int,
    batch_size: int = 1,
    device: str = "cpu",
    threads: int | None = None,
    clock: str = "wall",
    warmup: int = 5,
    min_rounds: int = 10,
    max_rounds: int = 200,
    target_rel_spread: float = 0.01,
    max_seconds: float | None = 1.5,
    reference: nn.Module | str | None = DEFAULT_REFERENCE,
    reference_resolution: int | None = 96,
    steady_allocator: bool = True,
) -> LatencyResult:
    """Measure a network's forward latency on ``device``, interleaved with a reference network.

    The caller's model is not touched: a deep copy is moved to the device and put in eval mode.
    Runs use ``torch.inference_mode()``, a fixed batch and resolution, a fixed thread count
    (restored afterwards) and a random input; CUDA runs are synchronised before and after.

    Args:
        model: the network (any ``nn.Module`` taking one image batch).
        resolution: input height and width.
        batch_size: input batch size.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        threads: intra-op CPU threads (``torch.set_num_threads``); ``None`` keeps torch's count.
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
            ``_steady_malloc``) so that no run pays page faults that depend on what the
            process allocated before (70% on one network here); the process then keeps
            freed heap memory.

    Returns:
        The :class:`LatencyResult`.

    Raises:
        ValueError: an unknown or unavailable device, a resolution below the network's total
            stride, or a bad setting (the message names it).

    Example:
        >>> import nas
        >>> r = nas.measure_latency(nas.efficientnet("b0", num_classes=10), resolution=64,
        ...                         max_seconds=0.5)
        >>> r.median_ms > 0 and r.relative > 0
        True
    """
    return measure_latencies(
        [model],
        resolution=resolution,
        batch_size=batch_size,
        device=device,
        threads=threads,
        clock=clock,
        warmup=warmup,
        min_rounds=min_rounds,
        max_rounds=max_rounds,
        target_rel_spread=target_rel_spread,
        max_seconds=max_seconds,
        reference=reference,
        reference_resolution=reference_resolution,
        steady_allocator=steady_allocator,
    )[0]


def measure_latencies(
    models: Sequence[nn.Module],
    *,
    resolution: int | Sequence[int],
    batch_size: int = 1,
    device: str = "cpu",
    threads: int | None = None,
    clock: str = "wall",
    warmup: int = 5,
    min_rounds: int = 10,
    max_rounds: int = 200,
    target_rel_spread: float = 0.01,
    max_seconds: float | None = 1.5,
    reference: nn.Module | str | None = DEFAULT_REFERENCE,
    reference_resolution: int | None = 96,
    steady_allocator: bool = True,
) -> list[LatencyResult]:
    """Measure several networks in the same rounds (one run of each, and of the reference, per
    round); the settings are those of :func:`measure_latency`, ``max_seconds`` per network.

    ``resolution`` may give one resolution per network (a compound-scaled family); the
    reference then needs a fixed ``reference_resolution``. Rounds continue until every network
    meets ``target_rel_spread``.

    Example:
        >>> import nas
        >>> small, big = nas.efficientnet("b0"), nas.efficientnet("b5")
        >>> a, b = nas.measure_latencies([small, big], resolution=64, threads=1, clock="cpu",
        ...                              max_seconds=0.5)
        >>> b.relative > 2 * a.relative
        True
    """
    if not models:
        raise ValueError("models must not be empty")
    settings = _Settings.make(
        batch_size=batch_size,
        device=device,
        threads=threads,
        clock=clock,
        warmup=warmup,
        min_rounds=min_rounds,
        max_rounds=max_rounds,
        target_rel_spread=target_rel_spread,
        max_seconds=max_seconds,
        reference=reference,
        reference_resolution=reference_resolution,
        steady_allocator=steady_allocator,
    )
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
        _check_resolution(res, [m])
    if (
        settings.reference is not None
        and reference_resolution is None
        and len(set(resolutions)) > 1
    ):
        raise ValueError(
            "reference_resolution must be an integer when the networks' resolutions differ"
        )
    b = settings.batch_size
    items = [(m, (b, 3, r, r)) for m, r in zip(models, resolutions, strict=True)]
    return _measure(items, settings=settings, resolutions=resolutions)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Settings:
    batch_size: int
    device: torch.device
    threads: int
    clock: str
    warmup: int
    min_rounds: int
    max_rounds: int
    target_rel_spread: float
    max_seconds: float | None
    reference: nn.Module | str | None
    reference_resolution: int | None
    steady_allocator: bool

    @classmethod
    def make(cls, **kw: Any) -> _Settings:
        kw["device"] = _parse_device(kw["device"])
        for key in ("batch_size", "min_rounds", "max_rounds"):
            _check_int(key, kw[key], minimum=1)
        _check_int("warmup", kw["warmup"], minimum=0)
        if kw["threads"] is None:
            kw["threads"] = torch.get_num_threads()
        _check_int("threads", kw["threads"], minimum=1)
        if kw["clock"] not in _CLOCKS:
            raise ValueError(f"clock must be one of {list(_CLOCKS)}, got {kw['clock']!r}")
        if kw["clock"] == "cpu" and kw["device"].type != "cpu":
            raise ValueError(f"clock 'cpu' needs device 'cpu', got {str(kw['device'])!r}")
        if kw["min_rounds"] > kw["max_rounds"]:
            raise ValueError(
                f"min_rounds ({kw['min_rounds']}) must not exceed max_rounds ({kw['max_rounds']})"
            )
        trs = kw["target_rel_spread"]
        if isinstance(trs, bool) or not isinstance(trs, int | float) or not trs > 0:
            raise ValueError(f"target_rel_spread must be a number > 0, got {trs!r}")
        ms = kw["max_seconds"]
        if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int | float) or ms <= 0):
            raise ValueError(f"max_seconds must be a number > 0 or None, got {ms!r}")
        ref = kw["reference"]
        if isinstance(ref, str) and ref != DEFAULT_REFERENCE:
            raise ValueError(
                f"reference must be {DEFAULT_REFERENCE!r}, an nn.Module or None, got {ref!r}"
            )
        if ref is not None and not isinstance(ref, str | nn.Module):
            raise ValueError(
                f"reference must be {DEFAULT_REFERENCE!r}, an nn.Module or None, "
                f"got {type(ref).__name__}"
            )
        if not isinstance(kw["steady_allocator"], bool):
            raise ValueError(
                f"steady_allocator must be true or false, got {kw['steady_allocator']!r}"
            )
        if kw["reference_resolution"] is not None:
            _check_int("reference_resolution", kw["reference_resolution"], minimum=8)
        return cls(**kw)

    @property
    def reference_name(self) -> str | None:
        if self.reference is None or isinstance(self.reference, str):
            return DEFAULT_REFERENCE_NAME if self.reference else None
        return type(self.reference).__name__


def _check_int(key: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _parse_device(device: str | torch.device) -> torch.device:
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


def _check_resolution(resolution: int, models: Sequence[nn.Module]) -> None:
    _check_int("resolution", resolution, minimum=1)
    for m in models:
        stride = getattr(m, "total_stride", 1)
        if resolution < stride:
            raise ValueError(
                f"resolution {resolution} is smaller than the network's total stride {stride}"
            )


def describe_device(device: str | torch.device = "cpu") -> str:
    """Human description of a device: the CPU model and logical CPUs, or the CUDA device name.

    Example:
        >>> isinstance(describe_device("cpu"), str)
        True
    """
    dev = _parse_device(device)
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


# --------------------------------------------------------------------------- measurement


_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_allocator_steadied = False


def _steady_malloc() -> bool:
    """Keep glibc's malloc from handing activation memory back to the OS between inferences.

    With glibc's adaptive thresholds, whether a network's activations are served from the heap
    or from fresh ``mmap``-ed (zero-filled, page-faulting) memory depends on what the process
    allocated before. Measured here: the same MBConv network took 25 ms per inference with
    ~4,800 page faults per run when measured first in a process and 14.5 ms with none after
    other networks, a 70% error that depends on measuring order. Fixing the thresholds (32 MiB
    mmap threshold, 1 GiB trim threshold) makes every run fault-free after the first. The
    cost: the process keeps freed heap memory (allocations above 32 MiB still go back).
    Called once per process by the measurement functions when ``steady_allocator=True``.

    Returns:
        Whether the thresholds are set (False where the C library is not glibc).
    """
    global _allocator_steadied
    if _allocator_steadied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):
        return False
    _allocator_steadied = bool(ok)
    return _allocator_steadied


@contextmanager
def _quiet_runtime(threads: int) -> Iterator[None]:
    """Fixed thread count and no garbage-collector pauses, both restored afterwards."""
    previous = torch.get_num_threads()
    gc_was_enabled = gc.isenabled()
    torch.set_num_threads(threads)
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if gc_was_enabled:
            gc.enable()
        torch.set_num_threads(previous)


def _random_input(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    # A random input rather than zeros: no value-dependent fast path can flatter the figure.
    gen = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=gen).to(device)


def _timer(device: torch.device, threads: int) -> Callable[[Callable[[], object]], tuple]:
    """A function timing one call as (wall seconds, CPU seconds).

    CPU time is this thread's when torch computes in the calling thread alone (one thread),
    else the whole process's; on CUDA it is the wall time.
    """
    cpu_clock = time.thread_time if threads == 1 else time.process_time
    if device.type == "cuda":

        def timed(fn: Callable[[], object]) -> tuple[float, float]:
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize(device)
            wall = time.perf_counter() - t0
            return wall, wall

    else:

        def timed(fn: Callable[[], object]) -> tuple[float, float]:
            c0 = cpu_clock()
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()
            return t1 - t0, cpu_clock() - c0

    return timed


def _kept(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the values inside Tukey's fences."""
    if values.size < 4:
        return np.ones(values.shape, dtype=bool)
    q1, q3 = np.percentile(values, [25, 75])
    spread = _OUTLIER_K * (q3 - q1)
    return (values >= q1 - spread) & (values <= q3 + spread)


def _median_rel_ci(values: np.ndarray) -> float:
    """Half-width of the distribution-free 95% CI of the median, relative to the median."""
    n = values.size
    if n < 6:
        return math.inf
    s = np.sort(values)
    half = 0.5 * _Z95 * math.sqrt(n)
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half))
    med = float(np.median(s))
    return float(s[hi] - s[lo]) / (2 * med) if med > 0 else math.inf


def _summary(
    samples: np.ndarray, ref: np.ndarray | None, *, position: int = 0, count: int = 1
) -> tuple[np.ndarray, np.ndarray | None]:
    """The rounds kept: the candidate's outlier-free ms, and its outlier-free ratios.

    ``ref`` holds the reference run that opens each round and, when one more is given, the run
    that closes the last; the candidate at ``position`` of ``count`` in its round is divided by
    the reference interpolated between its round's opening and closing runs, which cancels
    drift within the round as well as between rounds.
    """
    ms_kept = samples[_kept(samples)]
    if ref is None:
        return ms_kept, None
    rounds = samples.size
    after = ref[1 : rounds + 1]
    if after.size < rounds:  # the last round is not closed yet
        after = np.append(after, ref[rounds - 1])
    w = (position + 1) / (count + 1)
    ratios = samples / ((1 - w) * ref[:rounds] + w * after)
    return ms_kept, ratios[_kept(ratios)]


def _prepare(module: nn.Module, device: torch.device) -> nn.Module:
    return copy.deepcopy(module).to(device).eval()


def _measure(
    items: Sequence[tuple[nn.Module, tuple[int, ...]]],
    *,
    settings: _Settings,
    resolutions: Sequence[int],
) -> list[LatencyResult]:
    """Time ``items`` (module, input shape) in interleaved rounds with the reference.

    ``resolutions`` (one per item) is what the results record as their resolution.
    """
    dev = settings.device
    if settings.steady_allocator and dev.type == "cpu":
        _steady_malloc()
    nets = [_prepare(m, dev) for m, _ in items]
    inputs = [_random_input(shape, dev) for _, shape in items]
    ref_net: nn.Module | None = None
    ref_res: int | None = None
    if settings.reference is not None:
        ref = settings.reference
        ref_net = _prepare(reference_model() if isinstance(ref, str) else ref, dev)
        ref_res = settings.reference_resolution or resolutions[0]
        ref_input = _random_input((settings.batch_size, 3, ref_res, ref_res), dev)
    timed = _timer(dev, settings.threads)
    n = len(nets)
    budget = None if settings.max_seconds is None else settings.max_seconds * n
    clock = _CLOCKS.index(settings.clock)
    # [round, network, clock]: both clocks are kept, the configured one drives the statistics
    samples = np.zeros((settings.max_rounds, n, 2))
    ref_samples = np.zeros((settings.max_rounds + 1, 2))
    rounds = 0
    with _quiet_runtime(settings.threads), torch.inference_mode():
        start = time.perf_counter()
        for i in range(settings.warmup):
            # A slow network on a crowded machine must not spend its budget warming up.
            if i > 0 and budget is not None and time.perf_counter() - start > budget / 4:
                break
            if ref_net is not None:
                ref_net(ref_input)
            for net, x in zip(nets, inputs, strict=True):
                net(x)
        recent: deque[float] = deque(maxlen=5)
        while rounds < settings.max_rounds:
            round_start = time.perf_counter()
            if ref_net is not None:
                ref_samples[rounds] = timed(lambda: ref_net(ref_input))
            for j, (net, x) in enumerate(zip(nets, inputs, strict=True)):
                samples[rounds, j] = timed(lambda net=net, x=x: net(x))
            rounds += 1
            now = time.perf_counter()
            recent.append(now - round_start)
            # Stop before a round that would overrun the budget: the longest of the recent
            # rounds bounds the next one (preemption makes single rounds run long), and the
            # closing reference run must fit too.
            closing = ref_samples[rounds - 1, 0] if ref_net is not None else 0.0
            if budget is not None and now - start + max(recent) + closing > budget:
                break
            if rounds >= settings.min_rounds and _converged(
                samples[:rounds, :, clock],
                ref_samples[:rounds, clock] if ref_net is not None else None,
                settings,
            ):
                break
        if ref_net is not None:
            ref_samples[rounds] = timed(lambda: ref_net(ref_input))  # closes the last round
        elapsed = time.perf_counter() - start
    samples_ms = samples[:rounds] * 1e3
    ref_all = ref_samples[: rounds + 1] * 1e3 if ref_net is not None else None
    ref_ms = None if ref_all is None else ref_all[:, clock]
    ref_kept = None if ref_ms is None else ref_ms[_kept(ref_ms)]
    device_name = describe_device(dev)
    results = []
    for j in range(n):
        ms_kept, ratios = _summary(samples_ms[:, j, clock], ref_ms, position=j, count=n)
        wall = samples_ms[:, j, 0]
        q1, q3 = np.percentile(ms_kept, [25, 75])
        rejected = rounds - (ratios.size if ratios is not None else ms_kept.size)
        raw = {"wall": samples_ms[:, j, 0], "cpu": samples_ms[:, j, 1]}
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
                threads=settings.threads,
                torch_version=torch.__version__,
                batch_size=settings.batch_size,
                resolution=resolutions[j],
                clock=settings.clock,
                wall_ms=float(np.median(wall[_kept(wall)])),
                rounds=rounds,
                rejected=int(rejected),
                rel_ci=_median_rel_ci(ratios if ratios is not None else ms_kept),
                seconds=elapsed / n,
                reference=settings.reference_name,
                reference_resolution=ref_res,
                raw={k: tuple(float(v) for v in vals) for k, vals in raw.items()},
            )
        )
    return results


def _converged(samples: np.ndarray, ref: np.ndarray | None, settings: _Settings) -> bool:
    n = samples.shape[1]
    for j in range(n):
        ms_kept, ratios = _summary(samples[:, j], ref, position=j, count=n)
        if _median_rel_ci(ratios if ratios is not None else ms_kept) > settings.target_rel_spread:
            return False
    return True


# --------------------------------------------------------------------------- lookup table

_TABLE_VERSION = 1
_UNITS_PER_ROUND = 20


def unit_key(unit: nn.Module, input_shape: Sequence[int]) -> str:
    """Stable string of a unit's configuration and input shape (the lookup table's key).

    Dropout and stochastic-depth probabilities are left out: both are identities in eval mode,
    so blocks that differ only there share one entry.

    Example:
        >>> unit_key(nn.Conv2d(3, 8, 3), (1, 3, 32, 32)).startswith("Conv2d|in=(1, 3, 32, 32)|")
        True
    """
    params = next(unit.parameters(), None)
    dtype = str(params.dtype) if params is not None else "none"
    # The modules' names, types and extra_repr() are what repr() prints, without its costly
    # re-indenting (predictions must stay far cheaper than measurements).
    config = ";".join(
        f"{name}={type(m).__name__}({'' if _identity_in_eval(m) else m.extra_repr()})"
        for name, m in unit.named_modules()
    )
    return f"{type(unit).__qualname__}|in={tuple(int(s) for s in input_shape)}|{dtype}|{config}"


def _identity_in_eval(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.dropout._DropoutNd) or (
        type(module).__name__ == "StochasticDepth"
    )


def _latency_units(model: nn.Module) -> list[nn.Module]:
    get = getattr(model, "latency_units", None)
    if get is None:
        raise ValueError(
            f"{type(model).__name__} has no latency_units(); the lookup table needs the list of "
            "modules whose sequential composition is the network"
        )
    return list(get())


@dataclass(frozen=True)
class Validation:
    """One network's lookup-table prediction beside its end-to-end measurement.

    ``error`` is predicted / measured - 1 on the reference-normalised figures when the table
    has a reference, otherwise on milliseconds.
    """

    predicted_ms: float
    measured_ms: float
    predicted_relative: float | None
    measured_relative: float | None
    error: float
    predict_seconds: float
    measure_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LatencyTable:
    """Latency lookup table: each distinct unit measured once, cached in a JSON file.

    A network is predicted as the sum of its ``latency_units()``, each looked up by
    :func:`unit_key` (unit configuration and input shape, batch included) inside a namespace of
    device, threads, clock, torch version and reference. Unknown units are measured with the table's
    settings (those of :func:`measure_latency`, interleaved with the reference) the first time
    they are needed, and the file is rewritten atomically. With a reference, each unit is stored
    as its ratio to the reference and predicted as ``ratio * reference_ms`` (the median of the
    reference's figures over the table's measurements), so units measured at different moments
    add up on one scale; ``overhead_relative`` (see :meth:`calibrate`) is added once per network.

    A prediction is a shortcut to be checked with :meth:`validate`, never a replacement for
    measurement.

    Args:
        path: JSON cache file (created when missing); ``None`` keeps the table in memory.
        batch_size: default batch size of :meth:`predict`.
        device, threads, clock, warmup, min_rounds, max_rounds, target_rel_spread, max_seconds,
            reference, reference_resolution, steady_allocator: as for :func:`measure_latency`
            (``max_seconds`` per unit), used to measure units and, in :meth:`validate`,
            networks. A table with a reference needs a fixed ``reference_resolution``.

    Example:
        >>> import nas, tempfile
        >>> table = LatencyTable(f"{tempfile.mkdtemp()}/lut.json", max_seconds=0.2)
        >>> space = nas.make_space("mbconv", resolution=32)
        >>> model = space.build(space.random_genotype(0), num_classes=10)
        >>> table.predict(model, resolution=32) > 0
        True
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 1,
        device: str = "cpu",
        threads: int | None = None,
        clock: str = "wall",
        warmup: int = 5,
        min_rounds: int = 10,
        max_rounds: int = 200,
        target_rel_spread: float = 0.01,
        max_seconds: float | None = 1.5,
        reference: nn.Module | str | None = DEFAULT_REFERENCE,
        reference_resolution: int | None = 96,
        steady_allocator: bool = True,
    ) -> None:
        self._settings = _Settings.make(
            batch_size=batch_size,
            device=device,
            threads=threads,
            clock=clock,
            warmup=warmup,
            min_rounds=min_rounds,
            max_rounds=max_rounds,
            target_rel_spread=target_rel_spread,
            max_seconds=max_seconds,
            reference=reference,
            reference_resolution=reference_resolution,
            steady_allocator=steady_allocator,
        )
        if reference is not None and reference_resolution is None:
            raise ValueError(
                "reference_resolution must be an integer for a lookup table with a reference: "
                "its units are measured at many input sizes and share one reference"
            )
        self.path = None if path is None else Path(path)
        self.measured_units = 0
        s = self._settings
        ref = s.reference_name
        ref_desc = "none" if ref is None else f"{ref}@{s.reference_resolution}"
        self.namespace = (
            f"{describe_device(s.device)}|{s.device}|threads={s.threads}|clock={s.clock}|"
            f"torch={torch.__version__}|reference={ref_desc}"
        )
        self._data = self._load()

    # ---- file

    def _load(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {"version": _TABLE_VERSION, "namespaces": {}}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{self.path}: not a readable latency table ({err})") from None
        if not isinstance(data, dict) or data.get("version") != _TABLE_VERSION:
            raise ValueError(
                f"{self.path}: not a latency table of version {_TABLE_VERSION} "
                f"(found version {data.get('version') if isinstance(data, dict) else None!r})"
            )
        return data

    def save(self) -> None:
        """Write the table to its file atomically (no-op for an in-memory table)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self._data, indent=1, sort_keys=True))

    @property
    def _space(self) -> dict[str, Any]:
        return self._data["namespaces"].setdefault(
            self.namespace, {"entries": {}, "reference_ms": [], "overhead_relative": 0.0}
        )

    def __len__(self) -> int:
        return len(self._space["entries"])

    @property
    def reference_ms(self) -> float | None:
        """Median of the reference's milliseconds over the table's measurements."""
        history = self._space["reference_ms"]
        return float(statistics.median(history)) if history else None

    @property
    def overhead_relative(self) -> float:
        """Per-network constant added to the sum of units (reference-relative units)."""
        return float(self._space["overhead_relative"])

    # ---- lookup

    def _walk(
        self, model: nn.Module, resolution: int, batch_size: int
    ) -> tuple[list[str], dict[str, tuple[nn.Module, tuple[int, ...], tuple[int, ...]]]]:
        """Keys of the model's units in order, and the units the table lacks.

        A known unit's entry holds its output shape, so walking a network whose units are all
        known runs no forward pass; an unknown unit is run once on zeros for its output shape.
        """
        entries = self._space["entries"]
        shape: tuple[int, ...] = (batch_size, 3, resolution, resolution)
        keys: list[str] = []
        missing: dict[str, tuple[nn.Module, tuple[int, ...], tuple[int, ...]]] = {}
        for unit in _latency_units(model):
            key = hashlib.sha1(unit_key(unit, shape).encode()).hexdigest()
            keys.append(key)
            if key in entries:
                out = tuple(entries[key]["out"])
            elif key in missing:
                out = missing[key][2]
            else:
                with torch.inference_mode():
                    y = copy.deepcopy(unit).eval()(torch.zeros(shape))
                out = tuple(int(v) for v in y.shape)
                missing[key] = (unit, shape, out)
            shape = out
        return keys, missing

    def _fill(self, models: Sequence[nn.Module], resolution: int, batch_size: int) -> None:
        missing: dict[str, tuple[nn.Module, tuple[int, ...], tuple[int, ...]]] = {}
        for model in models:
            missing.update(self._walk(model, resolution, batch_size)[1])
        self._measure_units(missing, resolution, batch_size)

    def _measure_units(
        self,
        missing: dict[str, tuple[nn.Module, tuple[int, ...], tuple[int, ...]]],
        resolution: int,
        batch_size: int,
    ) -> None:
        if not missing:
            return
        settings = self._settings
        if batch_size != settings.batch_size:
            settings = _Settings.make(**{**_settings_dict(settings), "batch_size": batch_size})
        items = [(unit, shape) for unit, shape, _ in missing.values()]
        results: list[LatencyResult] = []
        # About one network's worth of units per round keeps each round short, so the
        # reference runs around a unit stay close in time to it.
        for i in range(0, len(items), _UNITS_PER_ROUND):
            chunk = items[i : i + _UNITS_PER_ROUND]
            results += _measure(chunk, settings=settings, resolutions=[resolution] * len(chunk))
        entries = self._space["entries"]
        for (k, (unit, shape, out)), r in zip(missing.items(), results, strict=True):
            entries[k] = {
                "unit": type(unit).__qualname__,
                "in": list(shape),
                "out": list(out),
                "ms": r.median_ms,
                "relative": r.relative,
                "runs": r.runs,
            }
        if results[0].reference_ms is not None:
            self._space["reference_ms"].append(
                statistics.median(r.reference_ms for r in results if r.reference_ms is not None)
            )
        self.measured_units += len(missing)
        self.save()

    def _lookup(self, model: nn.Module, resolution: int, batch_size: int | None) -> list[dict]:
        batch = self._settings.batch_size if batch_size is None else batch_size
        _check_resolution(resolution, [model])
        # One walk: a missing unit's key is already known, only its figure is to be measured.
        keys, missing = self._walk(model, resolution, batch)
        self._measure_units(missing, resolution, batch)
        entries = self._space["entries"]
        return [entries[k] for k in keys]

    def predict_relative(
        self, model: nn.Module, *, resolution: int, batch_size: int | None = None
    ) -> float:
        """Predicted latency relative to the reference (measuring unknown units first).

        Raises:
            ValueError: the table has no reference.
        """
        if self._settings.reference is None:
            raise ValueError("predict_relative needs a table with a reference (reference=None)")
        rows = self._lookup(model, resolution, batch_size)
        return self.overhead_relative + sum(row["relative"] for row in rows)

    def predict(self, model: nn.Module, *, resolution: int, batch_size: int | None = None) -> float:
        """Predicted milliseconds of one forward pass (measuring unknown units first).

        Example:
            >>> import nas
            >>> table = LatencyTable(max_seconds=0.2)
            >>> table.predict(nas.efficientnet("b0"), resolution=64) > 0
            True
        """
        if self._settings.reference is None:
            return sum(row["ms"] for row in self._lookup(model, resolution, batch_size))
        relative = self.predict_relative(model, resolution=resolution, batch_size=batch_size)
        return relative * float(statistics.median(self._space["reference_ms"]))

    def prefill(
        self, models: Sequence[nn.Module], *, resolution: int, batch_size: int | None = None
    ) -> int:
        """Measure every unit of ``models`` not yet in the table, all in the same rounds.

        Returns:
            The number of units measured.
        """
        batch = self._settings.batch_size if batch_size is None else batch_size
        _check_resolution(resolution, models)
        before = self.measured_units
        self._fill(models, resolution, batch)
        return self.measured_units - before

    # ---- validation

    def validate(
        self, models: Sequence[nn.Module], *, resolution: int, batch_size: int | None = None
    ) -> list[Validation]:
        """Predict each network and measure it end to end (all networks in the same rounds).

        Returns:
            One :class:`Validation` per network, in order.
        """
        batch = self._settings.batch_size if batch_size is None else batch_size
        self.prefill(models, resolution=resolution, batch_size=batch)
        predictions = []
        for m in models:
            t0 = time.perf_counter()
            ms = self.predict(m, resolution=resolution, batch_size=batch)
            rel = (
                None
                if self._settings.reference is None
                else self.predict_relative(m, resolution=resolution, batch_size=batch)
            )
            predictions.append((ms, rel, time.perf_counter() - t0))
        settings = {**_settings_dict(self._settings), "batch_size": batch}
        measured = measure_latencies(models, resolution=resolution, **settings)
        rows = []
        for (ms, rel, secs), r in zip(predictions, measured, strict=True):
            if rel is not None and r.relative is not None:
                error = rel / r.relative - 1
            else:
                error = ms / r.median_ms - 1
            rows.append(
                Validation(
                    predicted_ms=ms,
                    measured_ms=r.median_ms,
                    predicted_relative=rel,
                    measured_relative=r.relative,
                    error=error,
                    predict_seconds=secs,
                    measure_seconds=r.seconds,
                )
            )
        return rows

    def calibrate(
        self, models: Sequence[nn.Module], *, resolution: int, batch_size: int | None = None
    ) -> float:
        """Set ``overhead_relative`` to the median of measured - predicted over ``models``.

        Calibrate on networks other than those you then validate on.

        Returns:
            The new overhead (reference-relative units).
        """
        if self._settings.reference is None:
            raise ValueError("calibrate needs a table with a reference (reference=None)")
        self._space["overhead_relative"] = 0.0
        rows = self.validate(models, resolution=resolution, batch_size=batch_size)
        gaps = [
            r.measured_relative - r.predicted_relative
            for r in rows
            if r.measured_relative is not None and r.predicted_relative is not None
        ]
        self._space["overhead_relative"] = float(statistics.median(gaps))
        self.save()
        return self.overhead_relative


def _settings_dict(settings: _Settings) -> dict[str, Any]:
    d = {f: getattr(settings, f) for f in settings.__dataclass_fields__}
    d["device"] = str(settings.device)
    return d
