"""Measuring networks outside a search: accuracy evaluators, latency sources, benchmark tables.

``nas.measure_latency`` and ``nas.profile`` cover the everyday case; these are the parts behind
them, for evaluating networks in a loop of your own.

Example:
    >>> from nas.measure import make_evaluator
    >>> make_evaluator(name="synflow").name
    'synflow'
"""

from __future__ import annotations

from nas._accuracy.ensemble import (
    EnsembleEvaluator,
    ScoreEvaluator,
    ensemble_figures,
    normal_ranks,
)
from nas._accuracy.evaluators import ScreenEvaluator, make_evaluator
from nas._accuracy.proxy import AccuracyResult, Evaluator, NonFiniteLossError
from nas._accuracy.table import BenchmarkEvaluator
from nas._accuracy.zero_cost import SCORES, compute_scores
from nas._data.data import Dataset
from nas._data.tables import read_table
from nas._latency.lookup import BlockLatencyPredictor
from nas._latency.onnx import QuantizedAccuracy
from nas._latency.profile import Profile
from nas._latency.source import LatencySource, PredictedLatency, register_latency_source
from nas._latency.table import BenchmarkLatency

__all__ = [
    "SCORES",
    "AccuracyResult",
    "BenchmarkEvaluator",
    "BenchmarkLatency",
    "BlockLatencyPredictor",
    "Dataset",
    "EnsembleEvaluator",
    "Evaluator",
    "LatencySource",
    "NonFiniteLossError",
    "PredictedLatency",
    "Profile",
    "QuantizedAccuracy",
    "ScoreEvaluator",
    "ScreenEvaluator",
    "compute_scores",
    "ensemble_figures",
    "make_evaluator",
    "normal_ranks",
    "read_table",
    "register_latency_source",
]
