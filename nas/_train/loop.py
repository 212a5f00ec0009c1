"""The training loop: optimiser, warm-up and cosine schedule, augmentation, EMA, AMP, epochs.

One phase (training, or fine-tuning after pruning) runs epoch by epoch from a
:class:`TrainState`; after each epoch the caller is handed the state to checkpoint. Batch order
and augmentation of epoch e come from a generator seeded by (seed, phase, e), and torch's own
random state (dropout, stochastic depth) travels in the checkpoint, so a run resumed from the
end of epoch e computes the same epochs e+1, ... as a run that was never stopped.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from nas._accuracy.proxy import logits_of
from nas._data.data import Dataset
from nas._train.checkpoint import Checkpoint, rng_state
from nas._train.config import TrainSettings
from nas._train.distill import Teacher, distillation_loss

#: Called after each optimiser step with the phase's name and its step count (from 1).
OnStep = Callable[[str, int], None]


class DivergedError(ValueError):
    """A non-finite training loss; the message names the epoch, step and learning rate."""


@dataclass
class Phase:
    """What one phase trains: ``epochs`` at peak ``lr`` with ``warmup_epochs`` of warm-up."""

    name: str
    epochs: int
    lr: float
    warmup_epochs: float
    ema: float | None


@dataclass
class TrainState:
    """The model and everything that changes as it trains (what a checkpoint holds)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None
    phase: str
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> nn.Module:
        """The network this phase delivers: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def checkpoint(self, protocol: dict[str, Any], dense: Any = None) -> Checkpoint:
        return Checkpoint(
            protocol=protocol,
            phase=self.phase,
            epoch=self.epoch,
            model=_cpu(self.model.state_dict()),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            ema=None if self.ema is None else _cpu(self.ema.state_dict()),
            rng=rng_state(),
            history=list(self.history),
            dense=dense,
        )

    def restore(self, checkpoint: Checkpoint) -> None:
        self.model.load_state_dict(checkpoint.model)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        self.scheduler.load_state_dict(checkpoint.scheduler)
        if checkpoint.scaler:
            self.scaler.load_state_dict(checkpoint.scaler)
        if self.ema is not None and checkpoint.ema is not None:
            self.ema.load_state_dict(checkpoint.ema)
        self.epoch = checkpoint.epoch
        self.history = list(checkpoint.history)


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def steps_per_epoch(n: int, batch_size: int) -> int:
    # A last batch of one sample breaks BatchNorm in training: the incomplete one is dropped.
    return max(1, n // min(batch_size, n))


def new_state(
    model: nn.Module, settings: TrainSettings, phase: Phase, *, n_train: int, device: torch.device
) -> TrainState:
    """A fresh optimiser, schedule, scaler and (if asked) weight average for ``model``."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # Biases and norm parameters (1-D) are not decayed: shrinking a BN scale or a bias
            # towards zero only fights the normalisation (timm and torchvision do the same).
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if settings.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=phase.lr)
    else:
        optimizer = torch.optim.SGD(
            groups, lr=phase.lr, momentum=settings.momentum, nesterov=settings.momentum > 0
        )
    per_epoch = steps_per_epoch(n_train, settings.batch_size)
    total = max(1, phase.epochs * per_epoch)
    warmup = min(round(phase.warmup_epochs * per_epoch), total - 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup))
    use_fp16 = device.type == "cuda" and settings.amp == "fp16"
    scaler = torch.amp.GradScaler(device.type, enabled=use_fp16)
    ema = None
    if phase.ema is not None:
        ema = AveragedModel(model, avg_fn=ema_average(phase.ema), use_buffers=True)
    return TrainState(model, optimizer, scheduler, scaler, ema, phase=phase.name)


def warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    """Learning-rate factor at each step: linear warm-up to 1, then cosine to 0 at ``total``.

    A function of the step count alone, so the schedule's state is one integer.

    Example:
        >>> f = warmup_cosine(10, 2)
        >>> [round(f(s), 2) for s in (0, 1, 2, 6, 10)]
        [0.33, 0.67, 1.0, 0.5, 0.0]
    """

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def ema_average(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """EMA update with TensorFlow's warm-up of the decay, min(decay, (1 + n) / (10 + n)).

    A short run never reaches 1 / (1 - decay) steps; without the warm-up its average would
    still be mostly the random initial weights.
    """

    def average(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        if not averaged.is_floating_point():  # BatchNorm's batch counter
            return current
        return averaged * d + current * (1.0 - d)

    return average


def augment(
    images: torch.Tensor, generator: torch.Generator, *, padding: int, flip: bool
) -> torch.Tensor:
    """Random crop after zero padding by ``padding`` pixels, and random horizontal flips.

    Zero is the training images' mean after normalisation, so padding adds mean-coloured
    borders. The random numbers come from ``generator`` (on the CPU) whatever the device.
    """
    n, _, h, w = images.shape
    out = images
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        out = padded[batch, channel, rows, cols]
    if flip:
        mirror = (torch.rand(n, generator=generator) < 0.5).to(images.device)
        out = torch.where(mirror[:, None, None, None], out.flip(3), out)
    return out


def epoch_seed(seed: int, phase: str, epoch: int) -> int:
    return (seed * 1_000_003 + (0 if phase == "train" else 500_009) + epoch) % (2**63)


def run_phase(
    state: TrainState,
    data: Dataset,
    settings: TrainSettings,
    phase: Phase,
    *,
    device: torch.device,
    teacher: Teacher | None = None,
    on_epoch: Callable[[TrainState], None] | None = None,
    on_step: OnStep | None = None,
    progress: Any = None,
) -> TrainState:
    """Train ``state`` from its epoch to ``phase.epochs``; ``on_epoch`` after each epoch.

    Raises:
        DivergedError: a training loss was NaN or infinite.
    """
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda and settings.channels_last else torch.contiguous_format
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.amp) if cuda else None
    model = state.model

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=amp)

    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    n = len(y_train)
    batch = min(settings.batch_size, n)
    per_epoch = steps_per_epoch(n, settings.batch_size)
    padding = (
        max(1, data.resolution // 8) if settings.crop_padding is None else settings.crop_padding
    )
    aux_weight = float(getattr(model, "aux_loss_weight", 0.0))
    smoothing = settings.label_smoothing
    for epoch in range(state.epoch + 1, phase.epochs + 1):
        generator = torch.Generator().manual_seed(epoch_seed(settings.seed, phase.name, epoch))
        order = torch.randperm(n, generator=generator).to(device)
        model.train()
        loss_sum = torch.zeros((), device=device)
        for b in range(per_epoch):
            idx = order[b * batch : (b + 1) * batch]
            xb = augment(x_train[idx], generator, padding=padding, flip=settings.flip)
            xb, yb = xb.contiguous(memory_format=fmt), y_train[idx]
            with autocast():
                output = model(xb)
                logits = logits_of(output)
                if teacher is None:
                    loss = F.cross_entropy(logits, yb, label_smoothing=smoothing)
                else:
                    loss = distillation_loss(
                        logits.float(),
                        teacher.logits(xb),
                        yb,
                        alpha=teacher.alpha,
                        temperature=teacher.temperature,
                        label_smoothing=smoothing,
                    )
                if isinstance(output, tuple):  # auxiliary heads (GoogLeNet)
                    loss = loss + aux_weight * sum(
                        F.cross_entropy(a, yb, label_smoothing=smoothing) for a in output[1]
                    )
            value = loss.detach().float()
            if not torch.isfinite(value):
                raise DivergedError(
                    f"non-finite training loss {value.item()} at {phase.name} epoch {epoch}, "
                    f"step {b + 1} (lr={state.scheduler.get_last_lr()[0]:.3g}); lower train.lr"
                )
            loss_sum += value
            state.optimizer.zero_grad(set_to_none=True)
            state.scaler.scale(loss).backward()
            state.scaler.step(state.optimizer)
            state.scaler.update()
            state.scheduler.step()
            if state.ema is not None:
                state.ema.update_parameters(model)
            if progress is not None:
                progress.update(1)
            if on_step is not None:
                on_step(phase.name, (epoch - 1) * per_epoch + b + 1)
        row: dict[str, Any] = {
            "phase": phase.name,
            "epoch": epoch,
            "loss": float(loss_sum) / per_epoch,
            "lr": state.scheduler.get_last_lr()[0],
            "val_accuracy": accuracy(model, x_val, y_val, settings.eval_batch_size, fmt, autocast),
        }
        if state.ema is not None:
            row["val_accuracy_ema"] = accuracy(
                state.ema.module, x_val, y_val, settings.eval_batch_size, fmt, autocast
            )
        state.epoch = epoch
        state.history.append(row)
        if progress is not None:
            shown = row.get("val_accuracy_ema", row["val_accuracy"])
            progress.set_postfix_str(
                f"{phase.name} epoch {epoch}/{phase.epochs} loss {row['loss']:.3f} "
                f"val {100 * shown:.1f}%"
            )
        if on_epoch is not None:
            on_epoch(state)
    return state


def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    fmt: torch.memory_format = torch.contiguous_format,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> float:
    """Top-1 accuracy of ``model`` in eval mode (its training flag restored afterwards)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=y.device)
    with torch.inference_mode(), autocast():
        for i in range(0, len(y), batch_size):
            logits = logits_of(model(x[i : i + batch_size].contiguous(memory_format=fmt)))
            correct += (logits.argmax(dim=1) == y[i : i + batch_size]).sum()
    model.train(was_training)
    return int(correct) / max(1, len(y))
