"""The config of ``python -m nas train``: its schema (``train_schema``) and its checks.

The ``train`` node maps one to one onto :class:`TrainSettings`, its ``teacher``, ``prune`` and
``report`` sub-nodes onto :class:`TeacherSettings`, :class:`PruneSettings` and
:class:`ReportSettings`. ``data``, ``latency`` and ``logger`` are the search's config groups,
read by the same functions (:func:`nas.load_data`, :class:`nas.LatencySettings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from nas._config import ConfigError, LoggerConfig, compose, to_dict

OPTIMIZERS = ("sgd", "adamw")
AMP_MODES = ("bf16", "fp16", "off")
PRUNE_METHODS = ("none", "unstructured", "structured")


@dataclass
class TeacherSettings:
    """Knowledge distillation (Hinton et al. 2015) from a trained teacher; off without one.

    The loss is ``(1 - alpha) * CE(student, labels) + alpha * T^2 *
    KL(softmax(teacher / T) || softmax(student / T))``.

    Attributes:
        arch: the teacher's architecture file (``weights`` are its trained ``state_dict``).
        zoo: or a network of :mod:`nas.zoo` by name, built for the data's classes.
        weights: the teacher's trained weights (required with a teacher).
        alpha: weight of the distillation term, in [0, 1].
        temperature: softening temperature T (> 0).
    """

    arch: str | None = None
    zoo: str | None = None
    weights: str | None = None
    alpha: float = 0.5
    temperature: float = 4.0

    @property
    def enabled(self) -> bool:
        return self.arch is not None or self.zoo is not None


@dataclass
class PruneSettings:
    """Pruning after training, then fine-tuning with the pruned weights held at zero.

    Attributes:
        method: ``none``, ``unstructured`` (the smallest-magnitude weights of every conv and
            linear layer, layer by layer) or ``structured`` (whole output channels of every
            conv followed by a BatchNorm, ranked by their L``norm`` norm; the BatchNorm's scale
            and shift of those channels are zeroed with them, so the channel's output is zero).
        amount: share of the weights (or channels) of each layer pruned, in (0, 1).
        norm: structured only: 1 or 2, the norm channels are ranked by.
        finetune_epochs: epochs of fine-tuning after pruning (0: none).
        lr: fine-tuning's peak learning rate (``null``: a tenth of ``train.lr``).
    """

    method: str = "none"
    amount: float = 0.5
    norm: int = 1
    finetune_epochs: int = 1
    lr: float | None = None


@dataclass
class ReportSettings:
    """What the end-of-run report measures besides fp32 accuracy, parameters and MACs.

    Attributes:
        onnx: write ``model.onnx`` (needs ``pip install 'nas[onnx]'``).
        int8: the int8 accuracy in ONNX Runtime (static quantisation; needs the same).
        calibration_images: training images the int8 ranges are calibrated on.
        latency: measure latency with the ``latency`` group's settings.
    """

    onnx: bool = True
    int8: bool = True
    calibration_images: int = 256
    latency: bool = True


@dataclass
class TrainSettings:
    """The training recipe (the ``train`` config node).

    Attributes:
        arch: the architecture file to train (``python -m nas train ARCH.yaml`` sets it).
        weights: a ``state_dict`` to start from (e.g. to prune a network trained before).
        epochs: training epochs (0 only with ``weights``: evaluate, or prune, what is given).
        batch_size: training batch size (the incomplete last batch of an epoch is dropped).
        optimizer: ``sgd`` (Nesterov momentum) or ``adamw``; both on a cosine schedule.
        lr: peak learning rate.
        momentum: SGD momentum.
        weight_decay: L2 for SGD, decoupled for AdamW; never on biases and norm parameters.
        warmup_epochs: epochs of linear warm-up from ``lr / (warmup steps + 1)`` to ``lr``.
        label_smoothing: cross-entropy label smoothing.
        crop_padding: random-crop padding in pixels (``null``: resolution / 8; 0: no crop).
        flip: random horizontal flips.
        ema: decay of an exponential moving average of the weights (``null``: none); the
            average is what is evaluated and written.
        amp: CUDA only: autocast to ``bf16`` or ``fp16`` (with a gradient scaler), or ``off``.
        channels_last: CUDA only: the channels_last memory format.
        seed: seeds the initial weights, the batch order, augmentation and random layers.
        device: ``cpu`` or ``cuda[:N]``.
        threads: torch CPU threads (``null``: torch's default). A resumed run ends with the
            same weights as an uninterrupted one at the same thread count.
        eval_batch_size: batch size of validation passes.
        progress: show a progress bar.
    """

    arch: str | None = None
    weights: str | None = None
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    crop_padding: int | None = None
    flip: bool = True
    ema: float | None = None
    amp: str = "bf16"
    channels_last: bool = True
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    eval_batch_size: int = 256
    progress: bool = True
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    prune: PruneSettings = field(default_factory=PruneSettings)
    report: ReportSettings = field(default_factory=ReportSettings)

    #: Keys that do not change the trained weights: a resume may change them.
    FREE: ClassVar[tuple[str, ...]] = ("threads", "progress", "eval_batch_size", "report", "device")

    @classmethod
    def from_config(cls, node: Any) -> TrainSettings:
        """The settings of a composed ``train`` node (or a mapping), checked.

        Raises:
            ConfigError: naming the first bad key and what it must be.
        """
        values = to_dict(node)
        nested = {"teacher": TeacherSettings, "prune": PruneSettings, "report": ReportSettings}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"train.{unknown[0]} is not a train option")
        for key, kind in nested.items():
            sub = values.get(key) or {}
            names = {f.name for f in fields(kind)}
            bad = sorted(set(sub) - names)
            if bad:
                raise ConfigError(f"train.{key}.{bad[0]} is not an option of train.{key}")
            values[key] = kind(**sub)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first bad value."""
        _number("epochs", self.epochs, minimum=0, integer=True)
        if self.epochs == 0 and self.weights is None:
            raise ConfigError("train.epochs must be >= 1 (0 only with train.weights), got 0")
        _number("batch_size", self.batch_size, minimum=2, integer=True)
        _number("eval_batch_size", self.eval_batch_size, minimum=1, integer=True)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("amp", self.amp, AMP_MODES)
        _number("lr", self.lr, minimum=0, exclusive=True)
        for key in ("momentum", "weight_decay", "warmup_epochs"):
            _number(key, getattr(self, key), minimum=0)
        _number("label_smoothing", self.label_smoothing, minimum=0, maximum=1, exclusive_max=True)
        if self.crop_padding is not None:
            _number("crop_padding", self.crop_padding, minimum=0, integer=True)
        if self.ema is not None:
            _number("ema", self.ema, minimum=0, maximum=1, exclusive=True, exclusive_max=True)
        _number("seed", self.seed, minimum=0, integer=True)
        if self.threads is not None:
            _number("threads", self.threads, minimum=1, integer=True)
        for key in ("flip", "channels_last", "progress"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"train.{key} must be true or false, got {getattr(self, key)!r}")
        t = self.teacher
        if t.arch is not None and t.zoo is not None:
            raise ConfigError("train.teacher: give arch or zoo, not both")
        if t.enabled and t.weights is None:
            raise ConfigError("train.teacher.weights is required: a teacher must be trained")
        _number("teacher.alpha", t.alpha, minimum=0, maximum=1)
        _number("teacher.temperature", t.temperature, minimum=0, exclusive=True)
        p = self.prune
        _choice("prune.method", p.method, PRUNE_METHODS)
        _number("prune.amount", p.amount, minimum=0, maximum=1, exclusive=True, exclusive_max=True)
        _choice("prune.norm", p.norm, (1, 2))
        _number("prune.finetune_epochs", p.finetune_epochs, minimum=0, integer=True)
        if p.lr is not None:
            _number("prune.lr", p.lr, minimum=0, exclusive=True)
        _number(
            "report.calibration_images", self.report.calibration_images, minimum=1, integer=True
        )

    def protocol(self) -> dict[str, Any]:
        """The settings that decide the trained weights (a checkpoint must match them)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.FREE}
        values.pop("arch")  # the architecture is compared by content, not by path
        for key in ("teacher", "prune"):
            values[key] = {f.name: getattr(values[key], f.name) for f in fields(values[key])}
        return values


def _number(
    key: str,
    value: object,
    *,
    minimum: float,
    maximum: float | None = None,
    integer: bool = False,
    exclusive: bool = False,
    exclusive_max: bool = False,
) -> None:
    kinds = (int,) if integer else (int, float)
    ok = not isinstance(value, bool) and isinstance(value, kinds)
    if ok:
        ok = value > minimum if exclusive else value >= minimum  # type: ignore[operator]
        if ok and maximum is not None:
            ok = value < maximum if exclusive_max else value <= maximum  # type: ignore[operator]
    if not ok:
        low = f"{'(' if exclusive else '['}{minimum}"
        high = f"{maximum}{')' if exclusive_max else ']'}" if maximum is not None else "inf)"
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"train.{key} must be {kind} in {low}, {high}, got {value!r}")


def _choice(key: str, value: object, allowed: tuple[Any, ...]) -> None:
    if value not in allowed or isinstance(value, bool):
        raise ConfigError(f"train.{key} must be one of {list(allowed)}, got {value!r}")


@dataclass
class TrainConfig:
    """The schema of ``conf/train.yaml``."""

    data: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    train: TrainSettings = field(default_factory=TrainSettings)


def _arch_stem(path: object) -> str:
    """The run directory's default name: the architecture file's name without ``.yaml``."""
    return Path(str(path)).stem if path not in (None, "") else "train"


def register_configs() -> None:
    """Register ``train_schema`` and the ``nas.arch_stem`` resolver ``conf/train.yaml`` uses."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    OmegaConf.register_new_resolver("nas.arch_stem", _arch_stem, replace=True)


register_configs()


def compose_train(overrides: list[str] | None = None, **options: Any) -> DictConfig:
    """Compose the training config as ``python -m nas train`` would, without running it.

    Example:
        >>> cfg = compose_train(["train.arch=a.yaml", "train.epochs=2", "data=synthetic"])
        >>> cfg.train.epochs, cfg.data.name
        (2, 'synthetic')
    """
    return compose(overrides, config_name="train", **options)
