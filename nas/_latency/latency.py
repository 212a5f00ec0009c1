"""On-device latency: the measurement functions.

Every figure comes from :mod:`nas._latency.rounds`: the candidates run in rounds interleaved
with a fixed reference network (EfficientNet-B0 at 96 px), and each result reports milliseconds
and the drift-cancelled *relative* latency side by side, with the spread, the runs kept, the
device, threads, backend and runtime version. The backend (:mod:`nas._latency.backends`) is the
runtime both the candidates and the reference run in: eager PyTorch, ONNX Runtime (fp32 or
int8), OpenVINO or ExecuTorch. The settings and the result are in :mod:`nas._latency.settings`;
``experiments/latency/`` holds the figures behind the defaults.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from nas._latency.backends import Backend, CompileOptions, Runner, require_backend, runtime_version
from nas._latency.rounds import (
    Plan,
    Samples,
    kept,
    median_rel_ci,
    random_input,
    run_rounds,
    steady_malloc,
    summary,
)
from nas._latency.settings import (
    DEFAULT_REFERENCE,
    DEFAULT_REFERENCE_NAME,
    LatencySettings,
    _check_int,
    describe_device,
    parse_device,
)
from nas._models.mbconvnet import efficientnet
from nas._models.network import total_stride
from nas._models.reparam import reparameterize
from nas._trials.latency import LatencyResult

__all__ = [
    "DEFAULT_REFERENCE",
    "DEFAULT_REFERENCE_NAME",
    "LatencyResult",
    "LatencySettings",
    "check_resolution",
    "describe_device",
    "measure_items",
    "measure_latencies",
    "measure_latency",
    "parse_device",
    "reference_model",
]

#: Images for int8 calibration: one tensor for every network, or one (or ``None``) per network.
Calibration = torch.Tensor | Sequence[torch.Tensor | None] | None
#: Compiled default reference networks, by how they were compiled (an ONNX export and an int8
#: calibration of EfficientNet-B0 cost seconds; every measurement needs one).
_REFERENCES: dict[tuple[Any, ...], Runner] = {}
_MAX_REFERENCES = 8


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
    calibration: torch.Tensor | None = None,
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
        calibration: backend ``onnxruntime_int8``: images ``(N, 3, resolution, resolution)``
            to calibrate the activation ranges on (the first ``calibration_images``; seeded
            noise when ``None``).
        **options: settings to change (the fields of :class:`LatencySettings`).

    Returns:
        The :class:`LatencyResult`.

    Raises:
        ValueError: an unknown or unavailable device, a resolution below the network's total
            stride, or a bad setting (the message names it).
        MissingBackendError: the backend's package is not installed (an ``ImportError``
            whose one line names the extra to install).

    Example:
        >>> import nas
        >>> from nas.zoo import efficientnet
        >>> r = nas.measure_latency(efficientnet("b0", num_classes=10), resolution=64,
        ...                         max_seconds=0.5)
        >>> r.median_ms > 0 and r.relative > 0
        True
    """
    return measure_latencies(
        [model], resolution=resolution, settings=settings, calibration=calibration, **options
    )[0]


def measure_latencies(
    models: Sequence[nn.Module],
    *,
    resolution: int | Sequence[int],
    settings: LatencySettings | None = None,
    calibration: Calibration = None,
    **options: Any,
) -> list[LatencyResult]:
    """Measure several networks in the same rounds (one run of each, and of the reference, per
    round); the settings are those of :func:`measure_latency`, ``max_seconds`` per network.
    ``calibration`` is one tensor of images for every network or one (or ``None``) per network.

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
    return measure_items(items, settings=settings, resolutions=resolutions, calibration=calibration)


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
    calibration: Calibration = None,
) -> list[LatencyResult]:
    """Time ``items`` (module, input shape) in the same interleaved rounds with the reference.

    The modules are deep-copied to the device in eval mode (the caller's are not touched),
    folded (``fused``) and compiled by the backend; ``resolutions`` (one per item) is what the
    results record as their resolution.
    """
    plan = settings.plan()
    backend = require_backend(settings.backend)
    dev = plan.device
    if settings.steady_allocator and dev.type == "cpu":
        steady_malloc()
    if calibration is None or isinstance(calibration, torch.Tensor):
        calibrations: Sequence[torch.Tensor | None] = [calibration] * len(items)
    else:
        calibrations = list(calibration)
        if len(calibrations) != len(items):
            raise ValueError(
                f"calibration must be one tensor or one per network ({len(items)}), "
                f"got {len(calibrations)}"
            )
    options = CompileOptions(threads=plan.threads, calibration_images=settings.calibration_images)
    calls = [
        backend.compile(
            _prepare(m, dev, fused=settings.fused),
            random_input(shape, dev),
            replace(options, calibration=images),
        )
        for (m, shape), images in zip(items, calibrations, strict=True)
    ]
    reference = None
    ref_res: int | None = None
    if settings.reference is not None:
        ref_res = settings.reference_resolution or resolutions[0]
        reference = _reference(settings, backend, plan, options, ref_res)
    samples = run_rounds(calls, reference, plan)
    return _results(samples, settings, plan, resolutions, ref_res)


def _reference(
    settings: LatencySettings, backend: Backend, plan: Plan, options: CompileOptions, res: int
) -> Runner:
    """The reference network compiled by the backend (the default one compiled once)."""
    shape = (settings.batch_size, 3, res, res)

    def compile_it(net: nn.Module) -> Runner:
        return backend.compile(
            _prepare(net, plan.device, fused=settings.fused),
            random_input(shape, plan.device),
            options,
        )

    if not isinstance(settings.reference, str):
        return compile_it(settings.reference)  # type: ignore[arg-type]
    key = (backend.name, str(plan.device), shape, options, settings.fused)
    if key not in _REFERENCES:
        if len(_REFERENCES) >= _MAX_REFERENCES:
            del _REFERENCES[next(iter(_REFERENCES))]
        _REFERENCES[key] = compile_it(reference_model())
    return _REFERENCES[key]


def _prepare(module: nn.Module, device: torch.device, *, fused: bool) -> nn.Module:
    net = copy.deepcopy(module).to(device).eval()
    return reparameterize(net) if fused else net


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
                backend=settings.backend,
                runtime_version=runtime_version(settings.backend),
                raw={k: tuple(float(v) for v in vals) for k, vals in raw.items()},
            )
        )
    return results
