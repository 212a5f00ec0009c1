"""Deployable model files: what ``python -m nas export ARCH.yaml --format ...`` writes.

TorchScript, ONNX or a ``torch.export`` program, checked by reloading the written file and
comparing its output with the module's before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._latency.onnx import ONNX_PACKAGES, write_onnx
from nas._spaces.arch import as_arch
from nas._spaces.build import ArchLike, load_model

#: Export formats and the suffix of the file each writes next to the architecture file.
EXPORT_FORMATS: dict[str, str] = {
    "torchscript": ".torchscript.pt",
    "onnx": ".onnx",
    "pt2": ".pt2",
}


def export_model(
    arch: ArchLike,
    *,
    format: str = "torchscript",
    output: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> Path:
    """Write a deployable file of an architecture's network (eval mode, batch size free).

    The network is written in its inference form: eval mode, every reparameterisable block
    (``nas.layers.RepConvBNAct``) folded into one conv (weights are loaded first, into the
    training form). It is traced at the architecture's resolution. The file is written under a
    temporary name, reloaded and compared with the module on a fresh input (ONNX: with
    onnxruntime when it is installed, else the ONNX checker), and only then renamed into
    place, so a failed export leaves no file behind.

    Args:
        arch: an architecture file path, a mapping or an :class:`~nas.Arch`.
        format: ``torchscript`` (``torch.jit.trace``), ``onnx`` (``torch.onnx.export``; needs
            ``pip install "nas[onnx]"``) or ``pt2`` (``torch.export``, TorchScript's successor).
        output: the file to write; default: next to the architecture file, named after it
            (``trial_12.yaml`` -> ``trial_12.torchscript.pt``, ``.onnx``, ``.pt2``).
        weights: a ``state_dict`` file to load first (read with ``weights_only=True``).
        check: reload the written file and compare its output with the module's.

    Returns:
        The path written.

    Raises:
        ValueError: unknown ``format``, or no ``output`` for an architecture that is no file.
        ImportError: ONNX export without the packages it needs (the message says what to install).
        ArchFileError: the architecture or weights file cannot be used.
        RuntimeError: the reloaded file does not reproduce the module's output.

    Example:
        >>> import nas, tempfile
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32, width_mult=0.25)
        >>> path = nas.save_arch(space.arch(space.random_genotype(0), num_classes=10),
        ...                      f"{tempfile.mkdtemp()}/trial_0.yaml")
        >>> nas.export_model(path, format="torchscript").name
        'trial_0.torchscript.pt'
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {list(EXPORT_FORMATS)}, got {format!r}")
    if output is None:
        if not isinstance(arch, str | os.PathLike):
            raise ValueError("output is required when arch is not an architecture file path")
        source = Path(arch)
        output = source.with_name(source.stem + EXPORT_FORMATS[format])
    output = Path(output)
    if format == "onnx":
        missing = [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            raise ImportError(f'ONNX export needs {" and ".join(missing)}: pip install "nas[onnx]"')
    record = as_arch(arch)
    model = load_model(arch, weights=weights, fused=True)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(0)
    size = (3, record.resolution, record.resolution)
    # Batch 2 for tracing: torch.export specialises a dimension of size 1 to a constant.
    example = torch.randn(2, *size, generator=generator)
    probe = torch.randn(3, *size, generator=generator)

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        _WRITERS[format](model, example, tmp)
        if check:
            with torch.no_grad():
                expected = model(probe)
            _check(format, tmp, probe, expected)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return output


@contextlib.contextmanager
def _quiet_jit():
    # torch.jit is deprecated in favour of torch.export (offered as format "pt2"); a user who
    # asks for TorchScript by name has already made that choice, so the warning is noise.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        yield


def _batch_dim() -> tuple[dict[int, Any]]:
    return ({0: torch.export.Dim("batch")},)


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.no_grad(), _quiet_jit():
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path))


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    write_onnx(model, example, path, dynamic_batch=True)


def _write_pt2(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=_batch_dim())
    torch.export.save(program, str(path))


_WRITERS: dict[str, Callable[[nn.Module, torch.Tensor, Path], None]] = {
    "torchscript": _write_torchscript,
    "onnx": _write_onnx,
    "pt2": _write_pt2,
}


def _check(format: str, path: Path, probe: torch.Tensor, expected: torch.Tensor) -> None:
    """Reload the written file and compare its output on ``probe`` with ``expected``."""
    if format == "torchscript":
        with torch.no_grad(), _quiet_jit():
            got = torch.jit.load(str(path), map_location="cpu")(probe)
    elif format == "pt2":
        with torch.no_grad():
            got = torch.export.load(str(path)).module()(probe)
    else:
        import onnx

        onnx.checker.check_model(str(path))
        if importlib.util.find_spec("onnxruntime") is None:
            return
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"images": probe.numpy()})[0])
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-3, atol=1e-4):
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else "shape"
        raise RuntimeError(
            f"exported {format} file does not reproduce the module's output "
            f"(max abs difference {diff}); nothing was written"
        )
