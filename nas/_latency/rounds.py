"""The timing engine behind every latency figure: interleaved rounds and their statistics.

A shared machine drifts by 10-30% from one minute to the next, so a bare median of repeated
runs does not repeat. Networks are therefore timed in *rounds*: one run of a fixed reference
network and one run of each candidate per round, so that all of them see the same machine
state. Each candidate run is divided by the reference interpolated between the runs that open
and close its round; outlying ratios are dropped by Tukey's IQR rule, and rounds continue
until the distribution-free 95% confidence interval of the median ratio is narrow enough, or
the budget runs out.

Two more sources of error are removed rather than averaged: time spent waiting for a core that
other processes hold (``cpu`` clock: the computing thread's CPU time), and page faults whose
number depends on what the process allocated before (:func:`steady_malloc`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import platform
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

CLOCKS = ("wall", "cpu")
_OUTLIER_K = 1.5  # Tukey's fences
_Z95 = 1.96


@dataclass(frozen=True)
class Plan:
    """How to run the rounds (resolved from the latency settings)."""

    device: torch.device
    threads: int
    clock: str
    warmup: int
    min_rounds: int
    max_rounds: int
    target_rel_spread: float
    max_seconds: float | None
    caller_thread: bool = True  # one-thread inference runs in the calling thread


@dataclass(frozen=True)
class Samples:
    """Milliseconds of every run: ``[round, network, clock]`` and ``[round + 1, clock]``.

    ``reference`` holds the run that opens each round and the one that closes the last
    (``None`` without a reference network); ``clock`` indexes the configured clock.
    """

    networks: np.ndarray
    reference: np.ndarray | None
    clock: int
    seconds: float

    @property
    def rounds(self) -> int:
        return int(self.networks.shape[0])


_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_allocator_steadied = False


def steady_malloc() -> bool:
    """Keep glibc's malloc from handing activation memory back to the OS between inferences.

    With glibc's adaptive thresholds, whether a network's activations are served from the heap
    or from fresh ``mmap``-ed (zero-filled, page-faulting) memory depends on what the process
    allocated before. Measured here: the same MBConv network took 25 ms per inference with
    ~4,800 page faults per run when measured first in a process and 14.5 ms with none after
    other networks, a 70% error that depends on measuring order. Fixing the thresholds (32 MiB
    mmap threshold, 1 GiB trim threshold) makes every run fault-free after the first. The
    cost: the process keeps freed heap memory (allocations above 32 MiB still go back).
    Called once per process when the ``steady_allocator`` setting is on.

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


def random_input(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A seeded random input: no value-dependent fast path can flatter the figure (zeros might)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=gen).to(device)


def _timer(
    device: torch.device, threads: int, caller_thread: bool = True
) -> Callable[[Callable[[], object]], tuple]:
    """A function timing one call as (wall seconds, CPU seconds).

    CPU time is this thread's when the runtime computes in the calling thread alone (one
    thread, and a backend that runs it there), else the whole process's; on CUDA it is the
    wall time, between synchronisations.
    """
    cpu_clock = time.thread_time if threads == 1 and caller_thread else time.process_time
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


def kept(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the values inside Tukey's fences (all of them below 4 values).

    Example:
        >>> kept(np.array([1.0, 1.1, 0.9, 1.0, 9.0])).tolist()
        [True, True, True, True, False]
    """
    if values.size < 4:
        return np.ones(values.shape, dtype=bool)
    q1, q3 = np.percentile(values, [25, 75])
    spread = _OUTLIER_K * (q3 - q1)
    return (values >= q1 - spread) & (values <= q3 + spread)


def median_rel_ci(values: np.ndarray) -> float:
    """Half-width of the distribution-free 95% CI of the median, relative to the median.

    The interval runs between the order statistics n/2 -/+ 1.96·sqrt(n)/2 (the binomial
    interval of the median); below 6 values it is infinite.

    Example:
        >>> round(median_rel_ci(np.linspace(0.9, 1.1, 101)), 3)
        0.022
    """
    n = values.size
    if n < 6:
        return math.inf
    s = np.sort(values)
    half = 0.5 * _Z95 * math.sqrt(n)
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half))
    med = float(np.median(s))
    return float(s[hi] - s[lo]) / (2 * med) if med > 0 else math.inf


def summary(
    samples: np.ndarray, ref: np.ndarray | None, *, position: int = 0, count: int = 1
) -> tuple[np.ndarray, np.ndarray | None]:
    """The rounds kept: the candidate's outlier-free ms, and its outlier-free ratios.

    ``ref`` holds the reference run that opens each round and, when one more is given, the run
    that closes the last; the candidate at ``position`` of ``count`` in its round is divided by
    the reference interpolated between its round's opening and closing runs, which cancels
    drift within the round as well as between rounds.
    """
    ms_kept = samples[kept(samples)]
    if ref is None:
        return ms_kept, None
    rounds = samples.size
    after = ref[1 : rounds + 1]
    if after.size < rounds:  # the last round is not closed yet
        after = np.append(after, ref[rounds - 1])
    w = (position + 1) / (count + 1)
    ratios = samples / ((1 - w) * ref[:rounds] + w * after)
    return ms_kept, ratios[kept(ratios)]


def converged(samples: np.ndarray, ref: np.ndarray | None, target_rel_spread: float) -> bool:
    """Whether every network's median (ratio, with a reference) is within the target."""
    n = samples.shape[1]
    for j in range(n):
        ms_kept, ratios = summary(samples[:, j], ref, position=j, count=n)
        if median_rel_ci(ratios if ratios is not None else ms_kept) > target_rel_spread:
            return False
    return True


def run_rounds(
    calls: Sequence[Callable[[], object]],
    reference: Callable[[], object] | None,
    plan: Plan,
) -> Samples:
    """Time compiled networks (each call runs one inference) in interleaved rounds.

    Warm-up runs first (cut short when it eats a quarter of the budget); then rounds until
    the stopping rule (:func:`converged`, after ``min_rounds``), ``max_rounds``, or a round
    that would overrun ``max_seconds`` per network; a last reference run closes the last round.
    """
    timed = _timer(plan.device, plan.threads, plan.caller_thread)
    n = len(calls)
    budget = None if plan.max_seconds is None else plan.max_seconds * n
    clock = CLOCKS.index(plan.clock)
    samples = np.zeros((plan.max_rounds, n, 2))
    ref_samples = np.zeros((plan.max_rounds + 1, 2))
    rounds = 0
    run_reference = reference
    with _quiet_runtime(plan.threads), torch.inference_mode():
        start = time.perf_counter()
        for i in range(plan.warmup):
            # A slow network on a crowded machine must not spend its budget warming up.
            if i > 0 and budget is not None and time.perf_counter() - start > budget / 4:
                break
            if run_reference is not None:
                run_reference()
            for call in calls:
                call()
        recent: deque[float] = deque(maxlen=5)
        while rounds < plan.max_rounds:
            round_start = time.perf_counter()
            if run_reference is not None:
                ref_samples[rounds] = timed(run_reference)
            for j, call in enumerate(calls):
                samples[rounds, j] = timed(call)
            rounds += 1
            now = time.perf_counter()
            recent.append(now - round_start)
            # Stop before a round that would overrun the budget: the longest of the recent
            # rounds bounds the next one (preemption makes single rounds run long), and the
            # closing reference run must fit too.
            closing = ref_samples[rounds - 1, 0] if run_reference is not None else 0.0
            if budget is not None and now - start + max(recent) + closing > budget:
                break
            if rounds >= plan.min_rounds and converged(
                samples[:rounds, :, clock],
                ref_samples[:rounds, clock] if run_reference is not None else None,
                plan.target_rel_spread,
            ):
                break
        if run_reference is not None:
            ref_samples[rounds] = timed(run_reference)  # closes the last round
        elapsed = time.perf_counter() - start
    return Samples(
        networks=samples[:rounds] * 1e3,
        reference=ref_samples[: rounds + 1] * 1e3 if reference is not None else None,
        clock=clock,
        seconds=elapsed,
    )
