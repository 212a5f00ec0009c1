"""Latency settings and results: what is measured how, and what a measurement reports.

:class:`LatencySettings` is the ``latency`` config group, one field per key;
:class:`LatencyResult` is one network's figure with everything needed to judge and compare it
(spread, runs, reference, device, backend and runtime version).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from nas._latency.backends import BACKENDS, require_backend
from nas._latency.rounds import CLOCKS, Plan

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
            at the time of measuring. One by default, as ``conf/latency/cpu.yaml``.
        clock: ``None`` (the default): ``"cpu"`` on the CPU, ``"wall"`` on CUDA, as the
            ``latency`` configs. ``"wall"``: elapsed time (synchronised on CUDA).
            ``"cpu"`` (CPU device only):
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
            :func:`nas._latency.rounds.steady_malloc`) so that no run pays page faults that
            depend on what the process allocated before (70% on one network here); the process
            then keeps freed heap memory.
        backend: the runtime the network is timed in (:mod:`nas._latency.backends`):
            ``torch`` (eager PyTorch), ``onnxruntime`` (the exported ONNX file in ONNX Runtime's
            CPU provider), ``onnxruntime_int8`` (its static int8 quantisation), ``openvino``,
            ``executorch`` (XNNPACK). The reference runs in the same backend. Backends other
            than ``torch`` need ``device: cpu`` and their packages (the error names the extra).
        calibration_images: ``onnxruntime_int8``: images the activation ranges are calibrated
            on (training images in a search; seeded noise where none are given).
        fused: time the inference form: reparameterisable blocks (``nas.layers.RepConvBNAct``)
            folded into one conv first, as deployed.

    Raises:
        ValueError: naming the first bad setting and what it must be.

    Example:
        >>> LatencySettings(threads=1).replace(max_seconds=0.5).max_seconds
        0.5
    """

    batch_size: int = 1
    device: str = "cpu"
    threads: int | None = 1
    clock: str | None = None
    warmup: int = 5
    min_rounds: int = 10
    max_rounds: int = 200
    target_rel_spread: float = 0.01
    max_seconds: float | None = 1.5
    reference: nn.Module | str | None = DEFAULT_REFERENCE
    reference_resolution: int | None = 96
    steady_allocator: bool = True
    backend: str = "torch"
    calibration_images: int = 32
    fused: bool = True

    def __post_init__(self) -> None:
        if self.clock is None and _device_type(self.device) in ("cpu", "cuda"):
            # The defaults measure as a search with conf/latency/cpu.yaml (or cuda.yaml) does.
            auto = "cpu" if _device_type(self.device) == "cpu" else "wall"
            object.__setattr__(self, "clock", auto)
        for key in ("batch_size", "min_rounds", "max_rounds"):
            _check_int(key, getattr(self, key), minimum=1)
        _check_int("warmup", self.warmup, minimum=0)
        if self.threads is not None:
            _check_int("threads", self.threads, minimum=1)
        if self.clock is not None and self.clock not in CLOCKS:
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
        if not isinstance(self.fused, bool):
            raise ValueError(f"fused must be true or false, got {self.fused!r}")
        _check_int("calibration_images", self.calibration_images, minimum=1)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.backend != "torch" and _device_type(self.device) != "cpu":
            raise ValueError(
                f"backend {self.backend!r} runs on device 'cpu', got {str(self.device)!r}"
            )
        require_backend(self.backend)
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
        new_device = "device" in changes and "clock" not in changes
        if new_device and _device_type(changes["device"]) != _device_type(self.device):
            changes["clock"] = None  # derived again for the new device
        return replace(self, **changes) if changes else self

    #: Measured settings time networks on this device (see ``nas._latency.source``).
    measured: ClassVar[bool] = True

    @property
    def calibration_images_needed(self) -> int:
        """Training images the backend calibrates on before timing (0: none, not int8)."""
        return self.calibration_images if BACKENDS[self.backend].calibrates else 0

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
            caller_thread=BACKENDS[self.backend].caller_thread,
        )


def _device_type(device: object) -> str | None:
    try:
        return torch.device(device).type  # type: ignore[arg-type]
    except (RuntimeError, TypeError):
        return None


def _check_int(key: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")


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
