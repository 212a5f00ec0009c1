"""Accuracy read from a benchmark table (``evaluator=table``); see :mod:`nas._data.tables`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from nas._accuracy.proxy import AccuracyResult, Evaluator, OnEpoch, check_number
from nas._data.data import Dataset
from nas._data.tables import check_column, table_row


@dataclass
class BenchmarkEvaluator(Evaluator):
    """Accuracy read from a benchmark's table: the full training's, and a partial curve.

    The curve is the ``partial`` column (e.g. NAS-Bench-201's 12-epoch accuracy) then the full
    ``accuracy``: early stopping sees a real learning curve, and a trial stopped after the first
    point cost ``partial_epochs`` of ``epochs``.

    Args:
        path: the table (``.csv[.gz]`` or ``.json[.gz]``).
        key: the column holding the space's identity (``key``: a JSON table's own keys).
        accuracy: the column of the full training's accuracy.
        partial: the column of a shorter training's accuracy, or ``None`` (no curve).
        epochs: epochs of the full training (the cost of a trial that is not stopped).
        partial_epochs: epochs of the partial training.
        percent: the table gives accuracy in percent (divided by 100).
        seed: unused (a table is the same for every seed); kept so ``search.seed`` flows in.
    """

    name: ClassVar[str] = "table"

    path: str = ""
    key: str = "unique_str"
    accuracy: str = "c10_test_acc_200ep"
    partial: str | None = "c10_test_acc_12ep_1seed"
    epochs: int = 200
    partial_epochs: int = 12
    percent: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("epochs", self.epochs, minimum=1, integer=True)
        check_number("partial_epochs", self.partial_epochs, minimum=1, integer=True)
        check_column(self.path, self.key, self.accuracy)
        if self.partial is not None:
            check_column(self.path, self.key, self.partial)

    def check(self, identity: str) -> None:
        """Raise ``ValueError`` unless the table holds the network ``identity``."""
        table_row(self.path, self.key, identity)

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
        """The table's accuracies of the network ``identity`` (``model`` is not run)."""
        if identity is None:
            raise ValueError("the table evaluator needs the network's identity")
        row = table_row(self.path, self.key, identity)
        scale = 0.01 if self.percent else 1.0
        points = [(self.epochs, row[self.accuracy] * scale)]
        if self.partial is not None:
            points.insert(0, (self.partial_epochs, row[self.partial] * scale))
        curve: list[float] = []
        for epochs, accuracy in points:
            curve.append(accuracy)
            if on_epoch is not None and on_epoch(len(curve), accuracy):
                stopped = len(curve) < len(points)
                return AccuracyResult(
                    accuracy, curve, 0.0, epochs, stopped=stopped, evaluator=self.name
                )
        return AccuracyResult(curve[-1], curve, 0.0, self.epochs, evaluator=self.name)
