"""Checkpoints of a training run: one per finished epoch, written atomically, read back to resume.

A checkpoint holds everything the next epoch depends on: the model, optimiser, learning-rate
schedule, gradient scaler and weight average, torch's random state (dropout, stochastic depth),
the phase (training or fine-tuning after pruning) and the epochs done. Batch order and
augmentation come from a generator seeded by (seed, phase, epoch), so an epoch cut short by a
kill is replayed exactly from the checkpoint before it. It also records the run's protocol
(architecture, data, recipe); a checkpoint of another protocol is refused, never overwritten.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nas._config import ConfigError
from nas._io import atomic_write

FORMAT = 1
NAME = "checkpoint.pt"
PHASES = ("train", "finetune")


@dataclass
class Checkpoint:
    """A training run's state after ``epoch`` epochs of ``phase``."""

    protocol: dict[str, Any]
    phase: str
    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, torch.Tensor] | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    dense: dict[str, torch.Tensor] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            # JSON text: weights_only loading accepts it, and it compares exactly.
            "protocol": json.dumps(self.protocol, sort_keys=True),
            "phase": self.phase,
            "epoch": self.epoch,
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
            "ema": self.ema,
            "rng": self.rng,
            "history": json.dumps(self.history),
            "dense": self.dense,
        }


def rng_state() -> dict[str, Any]:
    """torch's CPU random state and, where there is CUDA, every GPU's."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    if "cpu" in state:
        torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(checkpoint: Checkpoint, run_dir: Path) -> Path:
    """Write ``run_dir/checkpoint.pt`` so that a kill leaves the old file or the whole new one."""
    path = run_dir / NAME
    buffer = io.BytesIO()
    torch.save(checkpoint.to_dict(), buffer)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()), binary=True)
    return path


def load(run_dir: Path, *, protocol: Mapping[str, Any]) -> Checkpoint | None:
    """The run directory's checkpoint, if any, checked against this run's ``protocol``.

    Raises:
        ConfigError: the file cannot be read, or it was made with another protocol (the
            message names the first key that differs); the file is left as it is.
    """
    path = run_dir / NAME
    if not path.is_file():
        return None
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
        recorded = json.loads(doc["protocol"])
        history = json.loads(doc["history"])
        if doc.get("format") != FORMAT or doc["phase"] not in PHASES:
            raise ValueError(f"format {doc.get('format')!r}, phase {doc.get('phase')!r}")
    except Exception as err:  # unpickling and JSON errors come in many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            f"{path}: unreadable checkpoint ({first}); move it away to start afresh"
        ) from None
    wanted = json.loads(json.dumps(protocol, sort_keys=True))
    if recorded != wanted:
        key = _first_difference(recorded, wanted)
        raise ConfigError(
            f"{path} belongs to another run ({key} differs: {_at(recorded, key)!r} in the "
            f"checkpoint, {_at(wanted, key)!r} now); use another hydra.run.dir, or move it away"
        )
    return Checkpoint(
        protocol=recorded,
        phase=doc["phase"],
        epoch=int(doc["epoch"]),
        model=doc["model"],
        optimizer=doc["optimizer"],
        scheduler=doc["scheduler"],
        scaler=doc.get("scaler") or {},
        ema=doc.get("ema"),
        rng=doc.get("rng") or {},
        history=history,
        dense=doc.get("dense"),
    )


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".") or "protocol"


def _at(doc: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(doc, dict):
            return doc
        doc = doc.get(key)
    return doc
