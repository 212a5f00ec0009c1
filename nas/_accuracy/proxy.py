"""Accuracy evaluators: their contract, and the proxy (a short real training run).

An evaluator is a callable ``evaluator(model, data, *, device, on_epoch) -> AccuracyResult``
built by :func:`nas.measure.make_evaluator` from the options of ``conf/evaluator/<name>.yaml``. The
``proxy`` evaluator trains the model for a small budget and returns its validation accuracy,
with the per-epoch curve; ``on_epoch`` lets the search stop a trial that is clearly dominated.
The training-free scores are in :mod:`nas._accuracy.scores`.
"""

from __future__ import annotations

import contextlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nas._data.data import Dataset, check_resolution

OnEpoch = Callable[[int, float], bool]

#: Field metadata of an evaluator's field that is not a config option (a study's state).
NOT_AN_OPTION = {"option": False}


def option_fields(cls: type) -> list[Any]:
    """The dataclass fields of an evaluator class that are options of its config file."""
    return [f for f in fields(cls) if f.metadata.get("option", True)]


@dataclass
class AccuracyResult:
    """What an evaluator measured.

    Attributes:
        accuracy: validation accuracy in [0, 1] (the last epoch's); for a training-free
            evaluator, its score (higher is better, not a probability).
        curve: validation accuracy after each epoch (empty for training-free scores).
        seconds: wall-clock seconds of the whole evaluation.
        epochs: epochs run (a partial last epoch of a ``max_steps`` budget counts as one).
        stopped: whether ``on_epoch`` returned True (training stopped after that epoch).
        evaluator: the evaluator's name.
        losses: mean training loss of each epoch.
        steps: optimiser steps taken.
        screen: the screening figure of ``evaluator=screen`` (its ensemble's), if screened.
        screened: why the network was not trained (``evaluator=screen``), if it was not.
    """

    accuracy: float
    curve: list[float] = field(default_factory=list)
    seconds: float = 0.0
    epochs: int = 0
    stopped: bool = False
    evaluator: str = ""
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    screen: float | None = None
    screened: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (for trial user attributes and result files)."""
        return asdict(self)


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss (or a score came out non-finite): the trial failed.

    The message gives the epoch, the step and the value, so the failure can be recorded as
    the trial's reason instead of a silent zero accuracy.
    """


class Evaluator(ABC):
    """Base of the evaluators; dataclass fields are the options of ``conf/evaluator/<name>``."""

    name: ClassVar[str] = ""

    def options(self) -> dict[str, Any]:
        """The options this evaluator was made with (its fields, less those marked
        :data:`NOT_AN_OPTION`: state it is given, not configured with)."""
        return {f.name: getattr(self, f.name) for f in option_fields(type(self))}

    @abstractmethod
    def __call__(
        self,
        model: nn.Module,
        data: Dataset,
        *,
        device: str = "cpu",
        on_epoch: OnEpoch | None = None,
        seed: int | None = None,
        identity: str | None = None,
    ) -> AccuracyResult:
        """Evaluate ``model`` on ``data``.

        ``seed`` seeds the network's own random layers (dropout, stochastic depth) for this
        call; ``None`` uses the evaluator's ``seed``. The data's order and subsets always come
        from the evaluator's ``seed``, so every network of a search sees the same batches.
        ``identity`` is the network's identity in its space (a table evaluator looks it up).
        """

    def study_state(
        self,
        space: Any,
        data: Callable[[int], Dataset],
        *,
        num_classes: int,
        seed: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any] | None:
        """What this evaluator computes once per study (stored with it and shared by every
        worker and resume), or None (the default: nothing). ``data(resolution)`` loads the
        search's data; ``progress(done, total)`` is called as the work goes."""
        del space, data, num_classes, seed, progress
        return None

    def with_state(self, state: Mapping[str, Any]) -> Evaluator:
        """This evaluator, using the study's stored ``state`` (from :meth:`study_state`)."""
        del state
        return self

    def check(self, identity: str) -> None:
        """Raise ``ValueError`` if this evaluator cannot evaluate the network ``identity``.

        Called on one network of the space before a search opens its study; trained
        evaluators take any network.
        """
        del identity


def check_number(key: str, value: object, *, minimum: float, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value >= minimum:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"evaluator option {key} must be {kind} >= {minimum}, got {value!r}")


def resolve_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda[:index]'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} is not available here (no CUDA GPU); use 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use 'cpu' or 'cuda[:index]'")
    return dev


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch inside, and leave the caller's random state as it was."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def logits_of(output: torch.Tensor | tuple[torch.Tensor, Any]) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@dataclass(frozen=True)
class ProxyEvaluator(Evaluator):
    """Proxy accuracy: a short real training run, then validation accuracy.

    The model is trained in place (and left on ``device``). On CPU the same model weights,
    data, seed and thread count give the same accuracy; another thread count changes the order
    of floating-point sums, and a 3-epoch run amplifies that into a different accuracy (on
    digits, 0.903 with 1 thread and 0.866 with 2 for one network), so fix ``threads`` when
    runs must agree across machines. On CUDA the forward runs under autocast (``amp``) and the
    model and batches use channels_last.

    Args:
        epochs: training epochs (the budget, unless ``max_steps`` is set).
        max_steps: a budget in optimiser steps instead of epochs (the last epoch may be partial).
        train_size: train on a seeded random subset of this many training images.
        batch_size: training batch size.
        optimizer: ``sgd`` (Nesterov momentum) or ``adamw``.
        lr: peak learning rate, annealed to zero by a cosine schedule over the budget.
        warmup: fraction of the budget over which the learning rate first rises linearly
            from zero to ``lr`` (0 = none).
        zero_init: start the network near the identity: the classifier's last linear layer at
            zero, and, where the network offers ``zero_init_residual()`` (the built-in
            networks do), the last BatchNorm of every residual branch at zero. Short training
            otherwise punishes deep networks, which learn slower at first.
        momentum: SGD momentum.
        weight_decay: decoupled for AdamW, L2 for SGD.
        label_smoothing: cross-entropy label smoothing.
        bn_recalibration: before each validation, re-estimate BatchNorm statistics from this many
            training batches (0 = off). After a few hundred steps the running averages still lag
            the fast-moving weights and eval-mode accuracy can fall to chance; recalibrating
            (as once-for-all / single-path NAS do for their sub-networks) fixes it cheaply.
        eval_batch_size: batch size of the validation passes.
        seed: seeds the shuffling and every random layer (dropout, stochastic depth).
        amp: CUDA only: ``bf16``, ``fp16`` (with a gradient scaler) or ``off``.
        channels_last: CUDA only: use the channels_last memory format.
        threads: torch CPU threads during the call (``None`` keeps torch's setting).

    Example:
        >>> import torch
        >>> from nas import load_data
        >>> from nas.measure import make_evaluator
        >>> from nas.space import make_space
        >>> data = load_data(name="synthetic", resolution=32)
        >>> space = make_space("mbconv", resolution=32, width_mult=0.25)
        >>> _ = torch.manual_seed(0)
        >>> model = space.build(space.random_genotype(0), num_classes=10)
        >>> result = make_evaluator(name="proxy", epochs=1)(model, data)
        >>> result.epochs, len(result.curve)
        (1, 1)
    """

    name: ClassVar[str] = "proxy"

    epochs: int = 3
    max_steps: int | None = None
    train_size: int | None = None
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.02
    warmup: float = 0.0
    zero_init: bool = False
    momentum: float = 0.9
    weight_decay: float = 5e-5
    label_smoothing: float = 0.1
    bn_recalibration: int = 8
    eval_batch_size: int = 256
    seed: int = 0
    amp: str = "bf16"
    channels_last: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        check_number("epochs", self.epochs, minimum=1, integer=True)
        for key in ("max_steps", "train_size", "threads"):
            if getattr(self, key) is not None:
                check_number(key, getattr(self, key), minimum=1, integer=True)
        check_number("batch_size", self.batch_size, minimum=2, integer=True)
        check_number("eval_batch_size", self.eval_batch_size, minimum=1, integer=True)
        check_number("bn_recalibration", self.bn_recalibration, minimum=0, integer=True)
        check_number("seed", self.seed, minimum=0, integer=True)
        check_number("momentum", self.momentum, minimum=0, integer=False)
        check_number("weight_decay", self.weight_decay, minimum=0, integer=False)
        check_number("label_smoothing", self.label_smoothing, minimum=0, integer=False)
        if not (isinstance(self.warmup, int | float) and 0 <= self.warmup < 1):
            raise ValueError(f"evaluator option warmup must be in [0, 1), got {self.warmup!r}")
        if not isinstance(self.zero_init, bool):
            raise ValueError(
                f"evaluator option zero_init must be true or false, got {self.zero_init!r}"
            )
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"evaluator option lr must be a number > 0, got {self.lr!r}")
        if self.label_smoothing >= 1:
            raise ValueError(
                f"evaluator option label_smoothing must be in [0, 1), got {self.label_smoothing}"
            )
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(
                f"evaluator option optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}"
            )
        if self.amp not in ("bf16", "fp16", "off"):
            raise ValueError(
                f"evaluator option amp must be 'bf16', 'fp16' or 'off', got {self.amp!r}"
            )
        if not isinstance(self.channels_last, bool):
            raise ValueError(
                f"evaluator option channels_last must be true or false, got {self.channels_last!r}"
            )

    def __call__(
        self,
        model: nn.Module,
        data: Dataset,
        *,
        device: str = "cpu",
        on_epoch: OnEpoch | None = None,
        seed: int | None = None,
        identity: str | None = None,
    ) -> AccuracyResult:
        """Train ``model`` on ``data`` for the budget and return its validation accuracy.

        ``seed`` (default: the evaluator's) seeds dropout and stochastic depth; the batches'
        order and the training subset come from the evaluator's ``seed``.

        Raises:
            NonFiniteLossError: a training loss was NaN or infinite.
            ValueError: an unknown device, a resolution below the network's total stride, or
                fewer model outputs than classes.
        """
        dev = resolve_device(device)
        check_resolution(model, data.resolution)
        start = time.perf_counter()
        with _threads(self.threads), seeded(self.seed if seed is None else seed, dev):
            result = self._train(model, data, dev, on_epoch)
        result.seconds = time.perf_counter() - start
        return result

    def _train(
        self, model: nn.Module, data: Dataset, dev: torch.device, on_epoch: OnEpoch | None
    ) -> AccuracyResult:
        cuda = dev.type == "cuda"
        fmt = torch.channels_last if cuda and self.channels_last else torch.contiguous_format
        model.to(device=dev, memory_format=fmt)
        gen = torch.Generator().manual_seed(self.seed)
        x_train, y_train = data.x_train, data.y_train
        if self.train_size is not None and self.train_size < len(y_train):
            keep = torch.randperm(len(y_train), generator=gen)[: self.train_size]
            x_train, y_train = x_train[keep], y_train[keep]
        if cuda:
            x_train, y_train = x_train.to(dev), y_train.to(dev)
            x_val, y_val = data.x_val.to(dev), data.y_val.to(dev)
        else:
            x_val, y_val = data.x_val, data.y_val
        n = len(y_train)
        batch = min(self.batch_size, n)
        # A last batch of one sample breaks BatchNorm in training; drop the incomplete one.
        steps_per_epoch = n // batch
        total_steps = self.max_steps or self.epochs * steps_per_epoch
        epochs = math.ceil(total_steps / steps_per_epoch)

        if self.zero_init:
            zero_init(model)
        optimizer = self._optimizer(model)
        schedule = _schedule(optimizer, total_steps, round(self.warmup * total_steps))
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        use_amp = cuda and amp_dtype is not None
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype is torch.float16)
        aux_weight = float(getattr(model, "aux_loss_weight", 0.0))

        def autocast() -> contextlib.AbstractContextManager[Any]:
            if use_amp:
                return torch.autocast(device_type="cuda", dtype=amp_dtype)
            return contextlib.nullcontext()

        result = AccuracyResult(accuracy=0.0, evaluator=self.name)
        step = 0
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(n, generator=gen)
            if cuda:
                order = order.to(dev)
            loss_sum = torch.zeros((), device=dev)
            epoch_steps = min(steps_per_epoch, total_steps - step)
            for b in range(epoch_steps):
                idx = order[b * batch : (b + 1) * batch]
                xb = x_train[idx].contiguous(memory_format=fmt)
                yb = y_train[idx]
                with autocast():
                    output = model(xb)
                    logits = logits_of(output)
                    if step == 0:
                        _check_outputs(logits, data.num_classes)
                    loss = F.cross_entropy(logits, yb, label_smoothing=self.label_smoothing)
                    if isinstance(output, tuple):
                        loss = loss + aux_weight * sum(
                            F.cross_entropy(a, yb, label_smoothing=self.label_smoothing)
                            for a in output[1]
                        )
                value = loss.detach().float()
                if not torch.isfinite(value):
                    raise NonFiniteLossError(
                        f"non-finite training loss {value.item()} at epoch {epoch}, step "
                        f"{step + 1} (lr={schedule.get_last_lr()[0]:.3g}); the trial failed"
                    )
                loss_sum += value
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                step += 1
            if self.bn_recalibration:
                batches = [
                    x_train[order[b * batch : (b + 1) * batch]].contiguous(memory_format=fmt)
                    for b in range(min(self.bn_recalibration, steps_per_epoch))
                ]
                _recalibrate_bn(model, batches, autocast)
            accuracy = _accuracy(model, x_val, y_val, self.eval_batch_size, fmt, autocast)
            result.curve.append(accuracy)
            result.losses.append(float(loss_sum) / max(1, epoch_steps))
            result.epochs = epoch
            if on_epoch is not None and on_epoch(epoch, accuracy):
                result.stopped = True
                break
        result.accuracy = result.curve[-1]
        result.steps = step
        return result

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(
            params,
            lr=self.lr,
            momentum=self.momentum,
            nesterov=self.momentum > 0,
            weight_decay=self.weight_decay,
        )


def _schedule(
    optimizer: torch.optim.Optimizer, total: int, warmup: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over ``warmup`` steps, then cosine annealing to zero at ``total``."""
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))
    if warmup == 0:
        return cosine
    rise = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [rise, cosine], milestones=[warmup])


def zero_init(model: nn.Module) -> None:
    """Start ``model`` near the identity (see ``ProxyEvaluator.zero_init``), in place."""
    init = getattr(model, "zero_init_residual", None)
    if init is not None:
        init()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        with torch.no_grad():
            linears[-1].weight.zero_()
            if linears[-1].bias is not None:
                linears[-1].bias.zero_()


def _check_outputs(logits: torch.Tensor, num_classes: int) -> None:
    if logits.ndim != 2 or logits.shape[1] < num_classes:
        raise ValueError(
            f"the model outputs shape {tuple(logits.shape)} but the data has {num_classes} "
            f"classes; build the model with num_classes={num_classes}"
        )


def _recalibrate_bn(
    model: nn.Module,
    batches: list[torch.Tensor],
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
) -> None:
    """Replace BatchNorm running statistics by their exact average over ``batches``."""
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not norms:
        return
    # Everything else in eval mode, so the statistics are those of the eval-mode network
    # (no dropout, no stochastic depth).
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
        m.train()
    with torch.no_grad(), autocast():
        for xb in batches:
            model(xb)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def _accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    fmt: torch.memory_format,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=y.device)
    with torch.inference_mode(), autocast():
        for i in range(0, len(y), batch_size):
            logits = logits_of(model(x[i : i + batch_size].contiguous(memory_format=fmt)))
            correct += (logits.argmax(dim=1) == y[i : i + batch_size]).sum()
    return int(correct) / len(y)
