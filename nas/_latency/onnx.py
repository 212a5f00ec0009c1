"""ONNX: a module written as an ONNX file, ONNX Runtime sessions, int8 post-training quantisation.

One exporter for everything (``torch.onnx.export``'s default, ``torch.export``-based one), so
the model whose latency a search measures in ONNX Runtime is the file ``nas export`` writes.
int8 is ONNX Runtime's static post-training quantisation: QDQ format, int8 weights per output
channel, uint8 activations with ranges calibrated (min/max) on real training images; ONNX
Runtime's CPU provider fuses each QuantizeLinear-op-DequantizeLinear group into an int8 kernel.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas._models.reparam import reparameterize

#: Packages ``torch.onnx.export`` needs (its default, ``torch.export``-based exporter).
ONNX_PACKAGES = ("onnx", "onnxscript")
#: Names of the exported graph's input and output.
INPUT, OUTPUT = "images", "logits"


def missing_onnx_packages(*, runtime: bool = False) -> list[str]:
    """The ONNX packages not installed here (with ``onnxruntime`` when ``runtime``)."""
    wanted = (*ONNX_PACKAGES, "onnxruntime") if runtime else ONNX_PACKAGES
    return [p for p in wanted if importlib.util.find_spec(p) is None]


def write_onnx(
    model: nn.Module, example: torch.Tensor, path: str | os.PathLike[str], *, dynamic_batch: bool
) -> None:
    """Write ``model`` (eval mode, on the CPU) traced on ``example`` as one ONNX file.

    One self-contained file (no external-data side file); the exporter's progress lines and
    its warnings about optional torchvision ops are silenced. ``dynamic_batch``: the batch
    dimension stays free (a deployable file); otherwise it is ``example``'s (a latency model,
    as a batch-1 deployment compiles it).
    """
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    # The exporter warns about each torchvision op it cannot register (torchvision is not a
    # dependency; the file is complete without them), and its graph passes log every step:
    # under a search's INFO logging that is hundreds of lines per trial.
    with (
        torch.no_grad(),
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        _quiet_loggers("torch.onnx", "onnx_ir", "onnxscript"),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=shapes,
            verbose=False,
        )


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Only errors from the loggers ``names`` inside (their levels restored afterwards)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def ort_session(path: str | os.PathLike[str], *, threads: int) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and nothing else running.

    Sequential execution, one inter-op thread, every graph optimisation, and no spinning:
    idle pool threads that spin would burn CPU time the process clock counts.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantize_int8(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    calibration: Sequence[np.ndarray],
) -> None:
    """Write ``source``'s static int8 quantisation to ``output``, calibrated on ``calibration``.

    ``calibration``: input batches (float32, the model's input shape). The graph is first
    pre-processed (shape inference and ONNX Runtime's float optimisations, which fold what
    would otherwise be quantised apart), then quantised in QDQ format with per-channel int8
    weights and uint8 activations (min/max calibration).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT: np.ascontiguousarray(batch, np.float32)}

    with (
        tempfile.TemporaryDirectory() as tmp,
        warnings.catch_warnings(),
        _quiet_loggers("onnxruntime.quantization", "onnx_ir", "onnxscript"),
    ):
        warnings.simplefilter("ignore")
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared),
            str(output),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def calibration_batches(
    images: torch.Tensor | None, *, count: int, shape: tuple[int, ...]
) -> list[np.ndarray]:
    """``count`` images as batches of ``shape``: the given ones, else seeded normal noise.

    Noise stands in for images where none are at hand (a latency model of random weights,
    the reference network): the ranges then only set the quantisation parameters, which do
    not change the work an int8 kernel does.
    """
    batch = shape[0]
    if images is None:
        gen = torch.Generator().manual_seed(0)
        images = torch.randn((max(count, batch), *shape[1:]), generator=gen)
    elif tuple(images.shape[1:]) != tuple(shape[1:]):
        raise ValueError(
            f"calibration images must have shape (N, {', '.join(map(str, shape[1:]))}), "
            f"got {tuple(images.shape)}"
        )
    x = images[: max(count, batch)].detach().cpu().float().numpy()
    return [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)]


@dataclass(frozen=True)
class QuantizedAccuracy:
    """A trained network's validation accuracy before and after int8 quantisation.

    Attributes:
        float_accuracy: the module's accuracy in PyTorch (fp32, eval mode): the proxy's figure.
        onnx_accuracy: the exported fp32 model's accuracy in ONNX Runtime.
        int8_accuracy: the int8 model's accuracy in ONNX Runtime.
        drop: ``float_accuracy - int8_accuracy``.
        images: validation images.
        calibration_images: training images the int8 ranges were calibrated on.
        runtime: ``onnxruntime`` and its version.
    """

    float_accuracy: float
    onnx_accuracy: float
    int8_accuracy: float
    drop: float
    images: int
    calibration_images: int
    runtime: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def int8_accuracy(
    model: nn.Module,
    data: Any,
    *,
    calibration_images: int = 256,
    batch_size: int = 256,
    threads: int | None = None,
) -> QuantizedAccuracy:
    """Validation accuracy of a trained network in fp32 and after static int8 quantisation.

    The network (folded: reparameterisable blocks as deployed) is exported to ONNX,
    quantised with :func:`quantize_int8` on a seeded subset of ``calibration_images``
    training images, and both files are run in ONNX Runtime on the validation images.
    The caller's module is not touched.

    Args:
        model: a trained network.
        data: a :class:`nas.measure.Dataset` at the network's resolution (``nas.load_data``).
        calibration_images: training images to calibrate on (in batches of ``batch_size``
            at most).
        batch_size: images per inference.
        threads: ONNX Runtime intra-op threads (default: torch's thread count).

    Raises:
        ImportError: onnx, onnxscript or onnxruntime missing (the message says what to install).
        ValueError: ``calibration_images`` or ``batch_size`` below 1.

    Example:
        >>> import nas
        >>> from nas.space import make_space
        >>> data = nas.load_data(name="synthetic", resolution=32)
        >>> space = make_space("mbconv", resolution=32, width_mult=0.25)
        >>> model = space.build(space.random_genotype(0), num_classes=10)
        >>> r = nas.int8_accuracy(model, data, calibration_images=16)
        >>> 0 <= r.int8_accuracy <= 1 and r.images == len(data.y_val)
        True
    """
    for key, value in (("calibration_images", calibration_images), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    missing = missing_onnx_packages(runtime=True)
    if missing:
        raise ImportError(f"int8 accuracy needs {' and '.join(missing)}: pip install 'nas[onnx]'")
    import onnxruntime

    net = reparameterize(copy.deepcopy(model).cpu())
    x_val, y_val = data.x_val.float(), data.y_val.numpy()
    with torch.inference_mode():
        torch_logits = torch.cat(
            [net(x_val[i : i + batch_size]) for i in range(0, len(y_val), batch_size)]
        )
    gen = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(data.y_train), generator=gen)[:calibration_images]
    calib = data.x_train[pick].float().numpy()
    size = min(batch_size, len(calib))
    batches = [calib[i : i + size] for i in range(0, len(calib), size)]
    n_threads = torch.get_num_threads() if threads is None else threads
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        write_onnx(net, x_val[:2], fp32, dynamic_batch=True)
        quantize_int8(fp32, int8, batches)
        accuracies = [
            _ort_accuracy(ort_session(p, threads=n_threads), x_val.numpy(), y_val, batch_size)
            for p in (fp32, int8)
        ]
    float_acc = float((torch_logits.argmax(1).numpy() == y_val).mean())
    return QuantizedAccuracy(
        float_accuracy=float_acc,
        onnx_accuracy=accuracies[0],
        int8_accuracy=accuracies[1],
        drop=float_acc - accuracies[1],
        images=len(y_val),
        calibration_images=len(calib),
        runtime=f"onnxruntime {onnxruntime.__version__}",
    )


def _ort_accuracy(session: Any, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    correct = 0
    for i in range(0, len(y), batch_size):
        logits = session.run(None, {INPUT: x[i : i + batch_size]})[0]
        correct += int((logits.argmax(1) == y[i : i + batch_size]).sum())
    return correct / len(y)
