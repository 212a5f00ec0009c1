"""Show and export found architectures: a readable layer table, and deployable model files.

``describe_arch`` prints what ``python -m nas show ARCH.yaml`` shows: the architecture record,
the stage table (the paper's Table 1 layout for MBConv networks, the six widths and the branch
form per module for GoogLeNet-shaped ones), parameters and MACs. ``export_model`` writes what
``python -m nas export ARCH.yaml --format ...`` writes: TorchScript, ONNX or a ``torch.export``
program, checked by reloading the written file and comparing its output with the module's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from nas._arch import Arch, as_arch, build_model, load_model
from nas._blocks import InceptionModule
from nas._googlenet import GoogLeNet
from nas._mbconvnet import MBConvNet
from nas._profile import profile

#: Export formats and the suffix of the file each writes next to the architecture file.
EXPORT_FORMATS: dict[str, str] = {
    "torchscript": ".torchscript.pt",
    "onnx": ".onnx",
    "pt2": ".pt2",
}
#: Packages ``torch.onnx.export`` needs (its default, ``torch.export``-based exporter).
ONNX_PACKAGES = ("onnx", "onnxscript")

ArchLike = Arch | Mapping[str, Any] | str | os.PathLike[str]


# --- show --------------------------------------------------------------------------------------


def describe_arch(arch: ArchLike, *, width: int = 110) -> str:
    """A human-readable description of an architecture: record, layer table, params, MACs.

    Args:
        arch: an architecture file path, a mapping or an :class:`~nas.Arch`.
        width: text width of the tables.

    Returns:
        Plain text (no colour codes), ready to print.

    Raises:
        ArchFileError: the file cannot be read or describes no valid architecture.

    Example:
        >>> import nas
        >>> from nas._export import describe_arch
        >>> space = nas.make_space("mbconv", resolution=32, width_mult=0.25)
        >>> text = describe_arch(space.arch(space.random_genotype(0), num_classes=10))
        >>> "params" in text and "MBConv" in text
        True
    """
    record = as_arch(arch)
    model = build_model(arch).eval()
    space = record.make_space()
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, highlight=False, emoji=False)

    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    if isinstance(arch, str | os.PathLike):
        summary.add_row("file", str(arch))
    summary.add_row("space", record.space)
    summary.add_row("resolution", str(record.resolution))
    summary.add_row("classes", str(record.num_classes))
    summary.add_row("genotype", space.describe(space.validate(record.genotype)))
    changed = _changed_options(space)
    if changed:
        summary.add_row("space options", changed)
    for key, value in record.metrics.items():
        summary.add_row(f"metrics.{key}", str(value))
    console.print(summary)

    console.print(_layer_table(model, record.resolution))

    cost = profile(model, resolution=record.resolution)
    totals = Table.grid(padding=(0, 2))
    totals.add_column(style="bold")
    totals.add_column(justify="right")
    totals.add_column()
    totals.add_row("params", f"{cost.params:,}", _si(cost.params))
    aux = getattr(model, "aux", None)
    if isinstance(aux, nn.Module) and len(aux):
        deployed = cost.params - _n_params(aux)
        totals.add_row("params, eval/export", f"{deployed:,}", f"{_si(deployed)} (no aux heads)")
    totals.add_row(
        "MACs, conv + linear",
        f"{cost.conv_linear_macs:,}",
        f"{_si(cost.conv_linear_macs)} (torch flop counter)",
    )
    totals.add_row("MACs, all ops", f"{cost.macs:,}", f"{_si(cost.macs)} (thop)")
    console.print(totals)
    return out.getvalue()


def _si(n: float) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f} {unit}"
    return f"{n:g}"


def _changed_options(space: Any) -> str:
    """The space's options that differ from its constructor's defaults, as ``key=value``."""
    params = inspect.signature(type(space).__init__).parameters
    parts = []
    for key, value in space.options().items():
        default = params[key].default if key in params else inspect.Parameter.empty
        if default is inspect.Parameter.empty or not _same(value, default):
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _same(value: Any, default: Any) -> bool:
    if default is None and isinstance(value, Mapping | list | tuple) and not value:
        return True  # an empty mapping or list stored for "none given"
    if isinstance(default, tuple | list) and isinstance(value, tuple | list):
        return len(value) == len(default) and all(
            _same(v, d) for v, d in zip(value, default, strict=True)
        )
    return value == default


def _layer_table(model: nn.Module, resolution: int) -> Table:
    if isinstance(model, MBConvNet):
        return _table(mbconv_rows(model, resolution=resolution), title="MBConv stages")
    if isinstance(model, GoogLeNet):
        return _table(inception_rows(model, resolution=resolution), title="Inception modules")
    return _table(_unit_rows(model, resolution), title="layers")


def _table(rows: list[dict[str, Any]], *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for key in rows[0]:
        table.add_column(key, justify="left" if key in ("stage", "operator", "form") else "right")
    for row in rows:
        table.add_row(*(_cell(v) for v in row.values()))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10_000:
        return f"{value:,}"
    return str(value)


def _input_sizes(
    model: nn.Module, modules: Mapping[str, nn.Module], resolution: int
) -> dict[str, str]:
    """``HxW`` of each named module's input, from one eval forward pass at batch 1."""
    sizes: dict[str, str] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            sizes.setdefault(name, "x".join(str(d) for d in args[0].shape[2:]) or "1")

        return record

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in modules.items()]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, _in_channels(model), resolution, resolution))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return sizes


def _in_channels(model: nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def mbconv_rows(model: MBConvNet, *, resolution: int) -> list[dict[str, Any]]:
    """The stage table of an MBConv network, laid out as Table 1 of the EfficientNet paper.

    One row for the stem, one per MBConv stage (expansion, kernel, stride of its first block,
    output channels, layers, SE ratio) and one for the head; ``input`` is the stage's input size.
    """
    stem, *stages, head = model.features
    named = {"stem": stem, **{f"s{i}": s for i, s in enumerate(stages, start=1)}, "head": head}
    sizes = _input_sizes(model, named, resolution)
    conv = stem[0]
    rows: list[dict[str, Any]] = [
        {
            "stage": "stem",
            "operator": f"Conv{conv.kernel_size[0]}x{conv.kernel_size[1]}",
            "input": sizes["stem"],
            "expand": None,
            "kernel": conv.kernel_size[0],
            "stride": conv.stride[0],
            "out": conv.out_channels,
            "layers": 1,
            "SE": None,
            "params": _n_params(stem),
        }
    ]
    for i, (cfg, stage) in enumerate(zip(model.stage_configs, stages, strict=True), start=1):
        expand = f"{cfg.expand_ratio:g}"
        rows.append(
            {
                "stage": f"s{i}",
                "operator": f"MBConv{expand}, k{cfg.kernel}x{cfg.kernel}",
                "input": sizes.get(f"s{i}"),
                "expand": expand,
                "kernel": cfg.kernel,
                "stride": cfg.stride,
                "out": cfg.out_channels,
                "layers": cfg.layers,
                "SE": f"{cfg.se_ratio:g}" if cfg.se_ratio else "-",
                "params": _n_params(stage),
            }
        )
    rows.append(
        {
            "stage": "head",
            "operator": "Conv1x1 & Pooling & FC",
            "input": sizes["head"],
            "expand": None,
            "kernel": 1,
            "stride": 1,
            "out": head.out_channels,
            "layers": 1,
            "SE": None,
            "params": _n_params(head) + _n_params(model.classifier),
        }
    )
    return rows


def _conv_out(branch: nn.Module | None, index: int) -> int:
    """Output width of the ``index``-th conv of an Inception branch (0 when absent)."""
    if branch is None:
        return 0
    return [m for m in branch.modules() if isinstance(m, nn.Conv2d)][index].out_channels


def _branch_form(module: InceptionModule) -> str | None:
    if module.branch3 is None:
        return None
    tail = [m for m in module.branch3.modules() if isinstance(m, nn.Conv2d)][1:]
    if len(tail) == 2:
        return "3x3x2"
    return f"{tail[0].kernel_size[0]}x{tail[0].kernel_size[1]}"


def inception_rows(model: GoogLeNet, *, resolution: int) -> list[dict[str, Any]]:
    """Per Inception module: input size, the six GoogLeNet widths, the "5x5" form, output."""
    named: dict[str, nn.Module] = {"stem": model.stem, **model.inception, "head": model.avgpool}
    sizes = _input_sizes(model, named, resolution)
    empty = dict.fromkeys(("#1x1", "#3x3 red", "#3x3", "#5x5 red", "#5x5", "pool proj", "form"))
    stem_convs = [m for m in model.stem.modules() if isinstance(m, nn.Conv2d)]
    rows: list[dict[str, Any]] = [
        {
            "stage": "stem",
            "input": sizes["stem"],
            **empty,
            "out": stem_convs[-1].out_channels,
            "params": _n_params(model.stem),
        }
    ]
    for name, module in model.inception.items():
        rows.append(
            {
                "stage": name,
                "input": sizes[name],
                "#1x1": _conv_out(module.branch1, 0),
                "#3x3 red": _conv_out(module.branch2, 0),
                "#3x3": _conv_out(module.branch2, 1),
                "#5x5 red": _conv_out(module.branch3, 0),
                "#5x5": _conv_out(module.branch3, -1),
                "pool proj": _conv_out(module.branch4, 0),
                "form": _branch_form(module),
                "out": module.out_channels,
                "params": _n_params(module),
            }
        )
    rows.append(
        {
            "stage": "head",
            "input": sizes["head"],
            **empty,
            "out": model.fc.out_features,
            "params": _n_params(model.fc),
        }
    )
    if len(model.aux):
        rows.append(
            {
                "stage": f"aux x{len(model.aux)}",
                "input": None,
                **empty,
                "form": "training only",
                "out": model.fc.out_features,
                "params": _n_params(model.aux),
            }
        )
    return rows


def _unit_rows(model: nn.Module, resolution: int) -> list[dict[str, Any]]:
    units = model.latency_units() if hasattr(model, "latency_units") else list(model.children())
    named = {f"u{i}": u for i, u in enumerate(units, start=1)}
    sizes = _input_sizes(model, named, resolution)
    return [
        {
            "stage": key,
            "operator": type(u).__name__,
            "input": sizes.get(key),
            "params": _n_params(u),
        }
        for key, u in named.items()
    ]


# --- export ------------------------------------------------------------------------------------


def export_model(
    arch: ArchLike,
    *,
    format: str = "torchscript",
    output: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> Path:
    """Write a deployable file of an architecture's network (eval mode, batch size free).

    The network is traced at the architecture's resolution. The file is written under a
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
        >>> from nas._export import export_model
        >>> space = nas.make_space("mbconv", resolution=32, width_mult=0.25)
        >>> path = nas.save_arch(space.arch(space.random_genotype(0), num_classes=10),
        ...                      f"{tempfile.mkdtemp()}/trial_0.yaml")
        >>> export_model(path, format="torchscript").name
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
    model = load_model(arch, weights=weights).eval()  # type: ignore[arg-type]
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
    # One self-contained file (no external-data side file); the exporter's progress lines and
    # warnings about optional torchvision ops are silenced.
    with (
        torch.no_grad(),
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=_batch_dim(),
            verbose=False,
        )


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
