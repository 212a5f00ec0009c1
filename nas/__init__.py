"""nas: hardware-aware neural architecture search.

Search spaces configured with Hydra, explored by Optuna on two objectives (proxy accuracy and
latency measured on the device), EfficientNet's two-step compound scaling, and found
architectures reused as plain ``torch.nn.Module``s.

The names here are what a user needs: architecture files and models (``build_model``,
``load_model``, ``export_model``, ...), searching (``compose``, ``run_search``,
``run_scaling``), training a found architecture (``run_train``), reading results
(``load_trials``, ``pareto_front``, ``hypervolume``) and
measuring (``measure_latency``, ``BlockLatencyPredictor``, ``profile``, ``load_data``,
``make_evaluator``, ``int8_accuracy``), the search's parts for an Optuna loop of your own (``make_sampler``,
``DominanceStopper``, ``EarlyStopConfig``), and benchmark tables (``read_table``,
``BenchmarkEvaluator``, ``BenchmarkLatency``). A space author's names are in :mod:`nas.space`, the published networks in
:mod:`nas.zoo`.

Example:
    >>> import nas
    >>> cfg = nas.compose(["conf=mbconv_pareto", "search.n_trials=3"])
    >>> cfg.space.name, cfg.search.n_trials
    ('mbconv', 3)
"""

from __future__ import annotations

from nas import layers, measure, scaling, search, space, zoo
from nas._config import ConfigError, compose
from nas._data.data import DataError, load_data
from nas._export import export_model
from nas._latency.latency import LatencySettings, measure_latencies, measure_latency
from nas._latency.onnx import int8_accuracy
from nas._latency.profile import profile
from nas._report.describe import describe_arch
from nas._report.show import load_trials
from nas._scaling.procedure import ScalingOutcome, run_scaling
from nas._search.run import SearchResult, run_search
from nas._spaces.arch import Arch, ArchFileError, load_arch, save_arch
from nas._spaces.build import build_model, load_model
from nas._train.run import TrainResult, run_train
from nas._trials.latency import LatencyResult
from nas._trials.pareto import hypervolume, pareto_front
from nas._trials.record import TrialRecord

__all__ = [
    "Arch",
    "ArchFileError",
    "ConfigError",
    "DataError",
    "LatencyResult",
    "LatencySettings",
    "ScalingOutcome",
    "SearchResult",
    "TrainResult",
    "TrialRecord",
    "build_model",
    "compose",
    "describe_arch",
    "export_model",
    "hypervolume",
    "int8_accuracy",
    "layers",
    "load_arch",
    "load_data",
    "load_model",
    "load_trials",
    "measure",
    "measure_latencies",
    "measure_latency",
    "pareto_front",
    "profile",
    "run_scaling",
    "run_search",
    "run_train",
    "save_arch",
    "scaling",
    "search",
    "space",
    "zoo",
]
