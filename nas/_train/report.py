"""What a trained network is worth: accuracy (fp32 and int8), size, cost and latency, as a table.

Every figure comes from the functions a search uses: :func:`nas.int8_accuracy`'s quantisation
(ONNX Runtime's static int8, on the exported file), :func:`nas.profile` (parameters and MACs) and
:func:`nas.measure_latencies` (interleaved with the reference network), so a trained network's
figures compare with the search's.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nas._config import ConfigError, call_with_options
from nas._data.data import Dataset
from nas._latency.latency import LatencySettings, measure_latencies
from nas._latency.onnx import INPUT, missing_onnx_packages, ort_session, quantize_int8
from nas._latency.profile import profile
from nas._train.config import ReportSettings
from nas._train.loop import accuracy
from nas._train.prune import sparsity
from nas._trials.latency import LatencyResult

if TYPE_CHECKING:
    from rich.table import Table

#: The latency figures a report keeps (the rest of a LatencyResult describes the measurement).
LATENCY_KEYS = (
    "median_ms",
    "iqr_ms",
    "relative",
    "reference_ms",
    "rel_ci",
    "runs",
    "backend",
    "runtime_version",
    "device",
    "threads",
    "clock",
    "batch_size",
)
#: The runtimes pruned and dense networks are both timed in.
PRUNING_BACKENDS = ("torch", "onnxruntime")


def latency_settings(options: Mapping[str, Any]) -> LatencySettings:
    """The ``latency`` group's settings (a trained network is measured, never looked up).

    Raises:
        ConfigError: ``source: table``, an unknown key or a bad value, named.
    """
    options = dict(options)
    source = options.pop("source", "measured")
    if source != "measured":
        raise ConfigError(
            f"latency.source={source} reads a benchmark table; a trained network is measured: "
            "use latency=cpu (or another measured backend)"
        )
    try:
        return call_with_options(LatencySettings, options, group="latency")
    except ConfigError:
        raise
    except (ValueError, ImportError) as err:
        raise ConfigError(f"latency: {err}") from None


def check_packages(report: ReportSettings, latency: LatencySettings, *, pruning: bool) -> None:
    """Fail before training when the report needs a package that is not installed."""
    wanted = []
    if report.onnx or report.int8:
        wanted.append("train.report.onnx/int8")
    if report.latency and (latency.backend.startswith("onnxruntime") or pruning):
        wanted.append("the ONNX Runtime latency")
    missing = missing_onnx_packages(runtime=True)
    if wanted and missing:
        raise ConfigError(
            f"{' and '.join(wanted)} need {' and '.join(missing)}: pip install 'nas[onnx]' "
            "(or train.report.onnx=false train.report.int8=false train.report.latency=false)"
        )


def model_figures(
    model: nn.Module,
    data: Dataset,
    *,
    report: ReportSettings,
    eval_batch_size: int,
    onnx_file: Path | None = None,
) -> dict[str, Any]:
    """fp32 accuracy (PyTorch eager), parameters, MACs and zeros; with ``onnx_file`` (the
    network exported), its accuracy in ONNX Runtime and that of its int8 quantisation."""
    net = copy.deepcopy(model).cpu().eval()
    figures: dict[str, Any] = {
        "accuracy": accuracy(net, data.x_val, data.y_val, eval_batch_size),
        "val_images": len(data.y_val),
    }
    if onnx_file is not None:
        figures |= onnx_figures(
            onnx_file,
            data,
            calibration_images=report.calibration_images,
            batch_size=eval_batch_size,
        )
        figures["int8_drop"] = figures["accuracy"] - figures["int8_accuracy"]
    size = profile(net, resolution=data.resolution)
    figures |= {
        "params": size.params,
        "macs": size.macs,
        "conv_linear_macs": size.conv_linear_macs,
        **sparsity(net),
    }
    return figures


def onnx_figures(
    onnx_file: Path, data: Dataset, *, calibration_images: int, batch_size: int
) -> dict[str, Any]:
    """Validation accuracy of an exported network in ONNX Runtime, fp32 and int8.

    The int8 model is ONNX Runtime's static quantisation of the same file, calibrated as
    :func:`nas.int8_accuracy` calibrates (a seeded subset of the training images), so the
    file that is shipped is the file that is measured, exported once.
    """
    gen = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(data.y_train), generator=gen)[:calibration_images]
    calib = data.x_train[pick].float().numpy()
    size = min(batch_size, len(calib))
    batches = [calib[i : i + size] for i in range(0, len(calib), size)]
    x, y = data.x_val.float().numpy(), data.y_val.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        int8 = Path(tmp) / "int8.onnx"
        quantize_int8(onnx_file, int8, batches)
        fp32_acc, int8_acc = (
            _ort_accuracy(ort_session(f, threads=torch.get_num_threads()), x, y, batch_size)
            for f in (onnx_file, int8)
        )
    return {
        "onnx_accuracy": fp32_acc,
        "int8_accuracy": int8_acc,
        "calibration_images": len(calib),
    }


def _ort_accuracy(session: Any, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    correct = 0
    for i in range(0, len(y), batch_size):
        logits = session.run(None, {INPUT: x[i : i + batch_size]})[0]
        correct += int((logits.argmax(1) == y[i : i + batch_size]).sum())
    return correct / max(1, len(y))


def latencies(
    models: Sequence[nn.Module],
    data: Dataset,
    *,
    settings: LatencySettings,
    backend: str | None = None,
) -> list[dict[str, Any]]:
    """The networks' latencies, measured side by side in the same rounds on ``backend``."""
    if backend is not None:
        settings = replace(settings, backend=backend)
    calibration = None
    if settings.backend == "onnxruntime_int8":
        calibration = data.x_train[: settings.calibration_images]
    nets = [copy.deepcopy(m).cpu().eval() for m in models]
    results = measure_latencies(
        nets, resolution=data.resolution, settings=settings, calibration=calibration
    )
    return [latency_figures(r) for r in results]


def latency_figures(result: LatencyResult) -> dict[str, Any]:
    full = result.to_dict()
    return {key: full[key] for key in LATENCY_KEYS}


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _ms(latency: Mapping[str, Any] | None) -> str:
    return "-" if not latency else f"{latency['median_ms']:.3f}"


def summary_table(report: Mapping[str, Any]) -> Table:
    """A rich table of a report: the trained network (and, pruned, the network before)."""
    from rich.table import Table

    final = report["model"]
    pruning = report.get("pruning")
    backend = (final.get("latency") or {}).get("backend", "")
    table = Table(title=f"{report['arch']} on {report['data']['name']}")
    columns = ["network", "acc %", "int8 %", "params", "MACs M", f"{backend} ms".strip()]
    if pruning:
        columns += ["non-zero", "eager ms", "ORT ms"]
    for col in columns:
        table.add_column(col, justify="left" if col == "network" else "right")
    rows = [("trained", final)]
    if pruning:
        rows = [("dense", pruning["dense"]), (pruning["label"], final)]
    for name, fig in rows:
        cells = [
            name,
            _pct(fig.get("accuracy")),
            _pct(fig.get("int8_accuracy")),
            f"{fig['params']:,}",
            f"{fig['macs'] / 1e6:.2f}",
            _ms(fig.get("latency")),
        ]
        if pruning:
            by_backend = fig.get("latency_by_backend") or {}
            cells += [
                f"{fig['nonzero_params']:,}",
                _ms(by_backend.get("torch")),
                _ms(by_backend.get("onnxruntime")),
            ]
        table.add_row(*cells)
    return table
