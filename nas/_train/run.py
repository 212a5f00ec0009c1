"""``run_train``: an architecture file and a composed config in; a trained, measured model out.

Everything that can be wrong with the input (the architecture file, the data, initial or
teacher weights, the config, a checkpoint of another run) is found by :func:`prepare` before
anything is written. The run then trains (resuming from ``checkpoint.pt`` when there is one),
prunes and fine-tunes if asked, measures the result, and writes its files into a staging
folder that is moved into the run directory only once all of them are complete, so a failed
or killed run never replaces the files of a finished one.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from nas._accuracy.proxy import resolve_device
from nas._config import ConfigError, call_with_options, to_dict
from nas._data.data import Dataset, check_resolution, load_data
from nas._export import export_model
from nas._io import atomic_write, atomic_write_text, to_json
from nas._latency.latency import LatencySettings
from nas._spaces.arch import Arch, load_arch, save_arch
from nas._spaces.build import build_model, load_model
from nas._train import checkpoint as ckpt
from nas._train import prune
from nas._train.config import TrainSettings
from nas._train.distill import Teacher, load_teacher
from nas._train.logger import TrainLogger, make_train_logger
from nas._train.loop import OnStep, Phase, TrainState, accuracy, new_state, run_phase
from nas._train.loop import steps_per_epoch as _steps_per_epoch
from nas._train.report import (
    PRUNING_BACKENDS,
    check_packages,
    latencies,
    latency_settings,
    model_figures,
)

#: What a finished run leaves in its directory (``dense_weights.pt`` only when pruning).
OUTPUTS = ("weights.pt", "dense_weights.pt", "arch.yaml", "model.onnx", "report.json")
PRUNING_NOTE = (
    "pruned weights are zeros in dense tensors: no tensor shrinks and a dense runtime does "
    "the same work, so no speed-up is expected (unstructured sparsity needs sparse kernels; "
    "zeroed channels would need to be cut out of the tensors, which nas does not do)"
)


@dataclass
class TrainResult:
    """What :func:`run_train` returns: the report, the trained module and the files written."""

    run_dir: Path
    report: dict[str, Any]
    model: nn.Module
    files: dict[str, Path] = field(default_factory=dict)
    resumed_from: tuple[str, int] | None = None


@dataclass
class Prepared:
    """A training run's checked inputs (nothing written yet)."""

    arch: Arch
    arch_path: str
    settings: TrainSettings
    data: Dataset
    device: torch.device
    latency: LatencySettings
    teacher: Teacher | None
    initial: dict[str, torch.Tensor] | None
    protocol: dict[str, Any]
    checkpoint: ckpt.Checkpoint | None


def prepare(cfg: DictConfig, run_dir: Path) -> Prepared:
    """Check every input of a training run; read the run directory's checkpoint, if any.

    Raises:
        ConfigError, ArchFileError, DataError: (``ValueError``s) one line naming the problem.
    """
    settings = TrainSettings.from_config(cfg.train)
    if settings.arch is None:
        raise ConfigError(
            "no architecture file: python -m nas train ARCH.yaml (or train.arch=PATH)"
        )
    arch = load_arch(settings.arch)
    latency = latency_settings(to_dict(cfg.latency))
    data_options = to_dict(cfg.data)
    data = call_with_options(load_data, data_options, group="data", resolution=arch.resolution)
    if arch.num_classes != data.num_classes:
        raise ConfigError(
            f"{settings.arch} has {arch.num_classes} classes but data {data.name} has "
            f"{data.num_classes}; train it on data with {arch.num_classes} classes"
        )
    check_resolution(build_model(arch), arch.resolution)
    initial = None
    if settings.weights is not None:
        initial = load_model(settings.arch, weights=settings.weights).state_dict()
    try:
        device = resolve_device(settings.device)
    except ValueError as err:
        raise ConfigError(f"train.device: {err}") from None
    check_packages(settings.report, latency, pruning=settings.prune.method != "none")
    teacher = load_teacher(
        settings.teacher,
        num_classes=data.num_classes,
        resolution=arch.resolution,
        device=device,
    )
    record = arch.to_dict()
    record.pop("metrics")
    protocol = {"arch": record, "data": data_options, "train": settings.protocol()}
    checkpoint = ckpt.load(run_dir, protocol=protocol)
    return Prepared(
        arch=arch,
        arch_path=str(settings.arch),
        settings=settings,
        data=data,
        device=device,
        latency=latency,
        teacher=teacher,
        initial=initial,
        protocol=protocol,
        checkpoint=checkpoint,
    )


def run_train(
    cfg: DictConfig, *, run_dir: str | os.PathLike[str] | None = None, on_step: OnStep | None = None
) -> TrainResult:
    """Train (or resume training) the architecture a composed ``train`` config names.

    Writes into ``run_dir``: ``checkpoint.pt`` after each epoch, then ``weights.pt`` (the
    ``state_dict`` :func:`nas.load_model` reads), ``arch.yaml``, ``model.onnx`` and
    ``report.json``. Running it again on the same directory resumes from the checkpoint; a
    finished run is measured and written again.

    Args:
        cfg: a config composed from ``conf/train.yaml`` (``nas.compose(..., config_name="train")``).
        run_dir: the run directory (default: the Hydra job's).
        on_step: called after each optimiser step with the phase (``train`` or ``finetune``)
            and its step count.

    Raises:
        ValueError: bad input, named in one line (nothing is written then).

    Example:
        >>> import nas
        >>> cfg = nas.compose(["train.arch=archs/trial_3.yaml", "train.epochs=2"],
        ...                   config_name="train")
        >>> result = nas.run_train(cfg, run_dir="/tmp/nas-train")  # doctest: +SKIP
        >>> result.report["model"]["accuracy"]  # doctest: +SKIP
        0.91
    """
    run_dir = Path(run_dir) if run_dir is not None else _hydra_run_dir()
    prepared = prepare(cfg, run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create output directory {run_dir} ({err.strerror})") from None
    logger = make_train_logger(
        to_dict(cfg.logger), run_dir=run_dir, config=to_dict(cfg), name=run_dir.name
    )
    try:
        with _threads(prepared.settings.threads):
            return _train(prepared, run_dir, logger, on_step)
    finally:
        logger.finish()


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _hydra_run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _train(p: Prepared, run_dir: Path, logger: TrainLogger, on_step: OnStep | None) -> TrainResult:
    s, data, device, ck = p.settings, p.data, p.device, p.checkpoint
    started = time.perf_counter()
    pruning = s.prune.method != "none"
    train = Phase("train", s.epochs, s.lr, s.warmup_epochs, s.ema)
    # Fine-tuning keeps no weight average: an average of the unpruned network's weights would
    # hold the pruned ones away from zero.
    finetune = Phase("finetune", s.prune.finetune_epochs, s.prune.lr or s.lr / 10, 0.0, None)
    per_epoch = _steps_per_epoch(len(data.y_train), s.batch_size)
    total = (train.epochs + (finetune.epochs if pruning else 0)) * per_epoch
    done = 0
    if ck is not None:
        done = (ck.epoch + (train.epochs if ck.phase == "finetune" else 0)) * per_epoch
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=done, unit="step", disable=not s.progress, dynamic_ncols=True)
    dense_state: dict[str, torch.Tensor] | None = None

    def save(state: TrainState) -> None:
        ckpt.save(state.checkpoint(p.protocol, dense=dense_state), run_dir)
        logger.on_epoch(state.history[-1])

    def phase(state: TrainState, which: Phase) -> None:
        run_phase(
            state, data, s, which, device=device, teacher=p.teacher, on_epoch=save,
            on_step=on_step, progress=bar,
        )  # fmt: skip

    try:
        torch.manual_seed(s.seed)
        model = build_model(p.arch)
        if p.initial is not None:
            model.load_state_dict(p.initial)
        model.to(device)
        if ck is None or ck.phase == "train":
            state = new_state(model, s, train, n_train=len(data.y_train), device=device)
            if ck is not None:
                state.restore(ck)
                ckpt.set_rng_state(ck.rng)
            phase(state, train)
        if pruning:
            if ck is not None and ck.phase == "finetune":
                dense_state = ck.dense
                prune.attach(model, method=s.prune.method)
                state = new_state(model, s, finetune, n_train=len(data.y_train), device=device)
                state.restore(ck)
                ckpt.set_rng_state(ck.rng)
            else:
                dense_state = _cpu(state.final)
                state = _start_finetune(state, p, finetune)
                save(state)
            phase(state, finetune)
            final = prune.make_permanent(state.model)
        else:
            final = state.final
    finally:
        bar.close()
    return _finish(p, run_dir, state, final, dense_state, logger, started)


def _start_finetune(state: TrainState, p: Prepared, finetune: Phase) -> TrainState:
    """Prune a copy of the trained network and start fine-tuning it (epoch 0 of the phase)."""
    s = p.settings
    model = copy.deepcopy(state.final)
    prune.apply(model, method=s.prune.method, amount=s.prune.amount, norm=s.prune.norm)
    new = new_state(model, s, finetune, n_train=len(p.data.y_train), device=p.device)
    x_val, y_val = p.data.x_val.to(p.device), p.data.y_val.to(p.device)
    pruned = accuracy(model, x_val, y_val, s.eval_batch_size)
    new.history = [*state.history, {"phase": "pruned", "epoch": 0, "val_accuracy": pruned}]
    return new


def _cpu(module: nn.Module | None) -> dict[str, torch.Tensor] | None:
    if module is None:
        return None
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _finish(
    p: Prepared,
    run_dir: Path,
    state: TrainState,
    final: nn.Module,
    dense_state: dict[str, torch.Tensor] | None,
    logger: TrainLogger,
    started: float,
) -> TrainResult:
    """Measure the trained network and write every output file (all of them, or none).

    The files are made in a staging folder inside ``run_dir`` and moved into place at the
    end, the report last (its presence says the run finished).
    """
    s = p.settings
    final = copy.deepcopy(final).cpu().eval()
    dense = None
    if dense_state is not None:
        dense = build_model(p.arch)
        dense.load_state_dict(dense_state)
        dense.eval()
    staging = run_dir / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        _save_weights(final, staging / "weights.pt")
        if dense is not None:
            _save_weights(dense, staging / "dense_weights.pt")
        save_arch(p.arch, staging / "arch.yaml")
        onnx_file = None
        if s.report.onnx or s.report.int8:
            onnx_file = export_model(
                staging / "arch.yaml",
                format="onnx",
                output=staging / "model.onnx",
                weights=staging / "weights.pt",
            )
        report = _report(p, state, final, dense, onnx_file if s.report.int8 else None)
        report["seconds"] = time.perf_counter() - started
        metrics = {k: report["model"].get(k) for k in ("accuracy", "int8_accuracy", "params")}
        if report["model"].get("latency"):
            metrics["latency_ms"] = report["model"]["latency"]["median_ms"]
        save_arch(p.arch.with_metrics(**metrics), staging / "arch.yaml")
        if not s.report.onnx and onnx_file is not None:
            onnx_file.unlink()
        names = [n for n in OUTPUTS if (staging / n).is_file()]
        files = {n: run_dir / n for n in (*names, "report.json")}
        report["files"] = {k: str(v) for k, v in files.items()}
        atomic_write_text(staging / "report.json", to_json(report))
        for name in (*names, "report.json"):
            os.replace(staging / name, run_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.on_report(report, files)
    return TrainResult(
        run_dir=run_dir,
        report=report,
        model=final,
        files=files,
        resumed_from=None if p.checkpoint is None else (p.checkpoint.phase, p.checkpoint.epoch),
    )


def _report(
    p: Prepared,
    state: TrainState,
    final: nn.Module,
    dense: nn.Module | None,
    onnx_file: Path | None,
) -> dict[str, Any]:
    s, data = p.settings, p.data
    figures = model_figures(
        final, data, report=s.report, eval_batch_size=s.eval_batch_size, onnx_file=onnx_file
    )
    if s.report.latency:
        figures["latency"] = latencies([final], data, settings=p.latency)[0]
    report: dict[str, Any] = {
        "arch": p.arch_path,
        "data": {
            "name": data.name,
            "train_images": len(data.y_train),
            "val_images": len(data.y_val),
            "resolution": data.resolution,
            "num_classes": data.num_classes,
        },
        "settings": p.protocol["train"],
        "epochs": {
            "train": s.epochs,
            "finetune": s.prune.finetune_epochs if dense is not None else 0,
        },
        "threads": torch.get_num_threads(),
        "history": state.history,
        "model": figures,
        "resumed_from": None if p.checkpoint is None else [p.checkpoint.phase, p.checkpoint.epoch],
    }
    if p.teacher is not None:
        t = p.teacher
        x_val, b = data.x_val.to(p.device), s.eval_batch_size
        correct = sum(
            int((t.logits(x_val[i : i + b]).argmax(1).cpu() == data.y_val[i : i + b]).sum())
            for i in range(0, len(data.y_val), b)
        )
        report["distillation"] = {
            "teacher": t.name,
            "teacher_accuracy": correct / len(data.y_val),
            "alpha": t.alpha,
            "temperature": t.temperature,
        }
    if dense is not None:
        report["pruning"] = _pruning_section(p, dense, final, figures, state.history)
    return report


def _pruning_section(
    p: Prepared,
    dense: nn.Module,
    final: nn.Module,
    figures: dict[str, Any],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    s = p.settings
    dense_figures = model_figures(
        dense, p.data, report=replace(s.report, int8=False), eval_batch_size=s.eval_batch_size
    )
    if s.report.latency:
        dense_figures["latency_by_backend"], figures["latency_by_backend"] = {}, {}
        for backend in PRUNING_BACKENDS:
            before, after = latencies([dense, final], p.data, settings=p.latency, backend=backend)
            dense_figures["latency_by_backend"][backend] = before
            figures["latency_by_backend"][backend] = after
    pruned = next((r["val_accuracy"] for r in history if r["phase"] == "pruned"), None)
    method = s.prune.method
    return {
        "method": method,
        "amount": s.prune.amount,
        "norm": s.prune.norm if method == "structured" else None,
        "finetune_epochs": s.prune.finetune_epochs,
        "label": f"{method} {round(100 * s.prune.amount)}%",
        "accuracy_before_finetune": pruned,
        "dense": dense_figures,
        "note": PRUNING_NOTE,
    }


def _save_weights(model: nn.Module, path: Path) -> None:
    state = _cpu(model)
    atomic_write(path, lambda fh: torch.save(state, fh), binary=True)
