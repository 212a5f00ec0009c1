"""Knowledge distillation: the teacher, loaded and checked, and the distillation loss."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nas._accuracy.proxy import logits_of
from nas._config import ConfigError
from nas._models.zoo import create
from nas._spaces.arch import ArchFileError, load_arch
from nas._spaces.build import load_model
from nas._train.config import TeacherSettings


@dataclass
class Teacher:
    """A trained network in eval mode whose softened outputs the student learns from."""

    model: nn.Module
    name: str
    resolution: int
    alpha: float
    temperature: float

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's logits on the student's batch, resized to its resolution if needed."""
        if images.shape[-1] != self.resolution:
            images = F.interpolate(
                images, size=(self.resolution, self.resolution), mode="bilinear", antialias=True
            )
        return logits_of(self.model(images)).float()


def load_teacher(
    settings: TeacherSettings, *, num_classes: int, resolution: int, device: torch.device
) -> Teacher | None:
    """The teacher of ``train.teacher`` (``None`` without one), on ``device`` in eval mode.

    An architecture file's teacher is run at its own resolution; a zoo network at the
    student's.

    Raises:
        ConfigError: the teacher cannot be built, its weights do not fit it, or it predicts
            another number of classes than the data has (one line naming the file).
    """
    if not settings.enabled:
        return None
    weights = str(settings.weights)
    if settings.arch is not None:
        try:
            arch = load_arch(settings.arch)
        except ArchFileError as err:
            raise ConfigError(f"train.teacher.arch: {err}") from None
        if arch.num_classes != num_classes:
            raise ConfigError(
                f"train.teacher.arch: the teacher {settings.arch} has {arch.num_classes} classes "
                f"but the data has {num_classes}; distillation needs the same classes"
            )
        try:
            model = load_model(settings.arch, weights=weights)
        except ArchFileError as err:
            raise ConfigError(f"train.teacher: {err}") from None
        name, teacher_resolution = str(settings.arch), arch.resolution
    else:
        zoo = str(settings.zoo)
        try:
            model = create(zoo, num_classes=num_classes)
        except ValueError as err:
            raise ConfigError(f"train.teacher.zoo: {err}") from None
        _load_zoo_weights(model, weights, zoo, num_classes)
        name, teacher_resolution = zoo, resolution
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Teacher(
        model=model,
        name=name,
        resolution=teacher_resolution,
        alpha=float(settings.alpha),
        temperature=float(settings.temperature),
    )


def _load_zoo_weights(model: nn.Module, weights: str, zoo: str, num_classes: int) -> None:
    if not os.path.isfile(weights):
        raise ConfigError(f"train.teacher.weights: {weights}: no such weights file")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors come in many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"train.teacher.weights: {weights}: unreadable ({first})") from None
    if not isinstance(state, Mapping):
        raise ConfigError(f"train.teacher.weights: {weights}: expected a state_dict")
    # The classifier is the last linear layer: its rows say how many classes the weights have.
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    head = state.get(f"{linears[-1]}.weight") if linears else None
    if isinstance(head, torch.Tensor) and head.ndim == 2 and head.shape[0] != num_classes:
        raise ConfigError(
            f"train.teacher.weights: {weights} gives {zoo} {head.shape[0]} classes but the data "
            f"has {num_classes}; distillation needs the same classes"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"train.teacher.weights: {weights} does not fit {zoo} ({first})"
        ) from None


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``(1 - alpha) * CE + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

    T² keeps the soft term's gradients on the scale of the hard term's as T changes
    (Hinton et al. 2015, section 2).

    Example:
        >>> s, t = torch.zeros(2, 3), torch.zeros(2, 3)
        >>> float(distillation_loss(s, t, torch.tensor([0, 1]), alpha=1.0, temperature=4.0))
        0.0
    """
    hard = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    if alpha == 0:
        return hard
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student.float() / t, dim=1),
        F.log_softmax(teacher.float() / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - alpha) * hard + alpha * t * t * soft
