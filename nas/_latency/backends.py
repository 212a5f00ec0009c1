"""Latency backends: the runtime a network is timed in, as it would be deployed.

Each backend turns a prepared module (eval mode, reparameterisable blocks folded, on its
device) and an input into a call that runs one inference; the rounds engine times those calls
exactly as it times eager PyTorch, interleaved with the reference network compiled by the same
backend. ``torch`` is eager PyTorch; ``onnxruntime`` runs the exported ONNX file in ONNX
Runtime's CPU provider; ``onnxruntime_int8`` runs its static int8 quantisation;
``openvino`` runs the same ONNX file in OpenVINO's CPU plugin (fp32); ``executorch`` lowers
the ``torch.export`` program to ExecuTorch's XNNPACK delegate, the runtime PyTorch models use on
phones. Every backend runs ``threads`` intra-op threads.

A backend whose packages are missing fails in :func:`require_backend`, in one line naming the
extra to install, before anything is measured (a search: before its study opens).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas._latency.onnx import INPUT, calibration_batches, ort_session, quantize_int8, write_onnx

#: A compiled network: one call runs one inference on the input it was compiled with.
Runner = Callable[[], object]


@dataclass(frozen=True)
class CompileOptions:
    """What a backend needs besides the module: threads and int8 calibration images."""

    threads: int
    calibration: torch.Tensor | None = None
    calibration_images: int = 32


@dataclass(frozen=True)
class Backend:
    """One latency backend.

    Attributes:
        name: the ``backend`` setting.
        packages: modules it imports (all must be installed).
        extra: the ``pip install 'nas[EXTRA]'`` that installs them.
        runtime: the package whose version is recorded with every figure.
        caller_thread: with one thread, inference runs in the calling thread, so the
            thread's CPU time measures it; otherwise the process's CPU time is used.
        compile: ``compile(module, input, options) -> Runner``.
        calibrates: it quantises the network on calibration images first (training images in a
            search, as deployed).
    """

    name: str
    packages: tuple[str, ...]
    extra: str
    runtime: str
    caller_thread: bool
    compile: Callable[[nn.Module, torch.Tensor, CompileOptions], Runner]
    calibrates: bool = False


class MissingBackendError(ImportError):
    """A latency backend's package is not installed (the message names the extra)."""


def _torch(module: nn.Module, x: torch.Tensor, options: CompileOptions) -> Runner:
    return lambda: module(x)


def _onnx_file(module: nn.Module, x: torch.Tensor, folder: Path) -> Path:
    path = folder / "model.onnx"
    write_onnx(module.cpu(), x.cpu(), path, dynamic_batch=False)
    return path


def _onnxruntime(module: nn.Module, x: torch.Tensor, options: CompileOptions) -> Runner:
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(_onnx_file(module, x, Path(tmp)), threads=options.threads)
    feed = {INPUT: x.cpu().numpy()}
    return lambda: session.run(None, feed)


def _onnxruntime_int8(module: nn.Module, x: torch.Tensor, options: CompileOptions) -> Runner:
    batches = calibration_batches(
        options.calibration, count=options.calibration_images, shape=tuple(x.shape)
    )
    with tempfile.TemporaryDirectory() as tmp:
        int8 = Path(tmp) / "int8.onnx"
        quantize_int8(_onnx_file(module, x, Path(tmp)), int8, batches)
        session = ort_session(int8, threads=options.threads)
    feed = {INPUT: x.cpu().numpy()}
    return lambda: session.run(None, feed)


def _openvino(module: nn.Module, x: torch.Tensor, options: CompileOptions) -> Runner:
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_NUM_THREADS": options.threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        # fp32 like the other backends: on CPUs with bf16 units OpenVINO would pick bf16.
        "INFERENCE_PRECISION_HINT": "f32",
    }
    with tempfile.TemporaryDirectory() as tmp:
        compiled = core.compile_model(
            core.read_model(_onnx_file(module, x, Path(tmp))), "CPU", config
        )
    request = compiled.create_infer_request()
    feed = {0: x.cpu().numpy()}
    return lambda: request.infer(feed)


def _executorch(module: nn.Module, x: torch.Tensor, options: CompileOptions) -> Runner:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.extension.pybindings import portable_lib

    inputs = (x.cpu(),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices of the lowering passes
        program = torch.export.export(module.cpu(), inputs)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        buffer = lowered.to_executorch().buffer
    # The runtime reads the program from the buffer without copying it: keep it alive.
    loaded = portable_lib._load_for_executorch_from_buffer(buffer)
    # XNNPACK's thread pool is process-wide and sized to the cores by default.
    portable_lib._unsafe_reset_threadpool(options.threads)

    def run() -> object:
        return loaded.forward(inputs), buffer

    return run


#: The latency backends, by the ``backend`` setting.
BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("torch", ("torch",), "", "torch", True, _torch),
        Backend(
            "onnxruntime",
            ("onnx", "onnxscript", "onnxruntime"),
            "onnx",
            "onnxruntime",
            True,
            _onnxruntime,
        ),
        Backend(
            "onnxruntime_int8",
            ("onnx", "onnxscript", "onnxruntime"),
            "onnx",
            "onnxruntime",
            True,
            _onnxruntime_int8,
            calibrates=True,
        ),
        Backend(
            "openvino", ("onnx", "onnxscript", "openvino"), "openvino", "openvino", False, _openvino
        ),
        Backend("executorch", ("executorch",), "executorch", "executorch", False, _executorch),
    )
}


def require_backend(name: str) -> Backend:
    """The backend ``name``, once its packages are known to be installed.

    Raises:
        ValueError: an unknown backend (naming the known ones).
        MissingBackendError: a package it needs is missing; one line naming the extra.

    Example:
        >>> require_backend("torch").runtime
        'torch'
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {name!r}")
    backend = BACKENDS[name]
    missing = [p for p in backend.packages if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingBackendError(
            f"backend {name!r} needs {' and '.join(missing)}, not installed here: "
            f"pip install 'nas[{backend.extra}]'"
        )
    return backend


def runtime_version(name: str) -> str:
    """The backend's runtime and its version, as recorded with every figure.

    Example:
        >>> runtime_version("torch") == f"torch {torch.__version__}"
        True
    """
    package = BACKENDS[name].runtime
    if package == "torch":
        return f"torch {torch.__version__}"
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        module: Any = importlib.import_module(package)
        return f"{package} {getattr(module, '__version__', 'unknown')}"


def as_numpy(x: torch.Tensor) -> np.ndarray:
    """A CPU float32 copy of ``x`` for the runtimes that take numpy arrays."""
    return x.detach().cpu().float().numpy()
