"""nas: hardware-aware neural architecture search.

Search spaces configured with Hydra, explored by Optuna on two objectives (proxy accuracy and
latency measured on the device), EfficientNet's two-step compound scaling, and found
architectures reused as plain ``torch.nn.Module``s.

The names here are what a user needs: architecture files and models (``build_model``,
``load_model``, ``export_model``, ...), searching (``compose``, ``run_search``,
``run_scaling``), training a found architecture (``run_train``), reading results
(``load_trials``, ``pareto_front``, ``hypervolume``) and
measuring (``measure_latency``, ``LatencyTable``, ``profile``, ``load_data``,
``make_evaluator``, ``int8_accuracy``), the search's parts for an Optuna loop of your own (``make_sampler``,
``DominanceStopper``, ``EarlyStopConfig``), and benchmark tables (``read_table``,
``TableEvaluator``, ``TableLatency``). A space author's names are in :mod:`nas.space`, the published networks in
:mod:`nas.zoo`.

Example:
    >>> import nas
    >>> cfg = nas.compose(["conf=mbconv_pareto", "search.n_trials=3"])
    >>> cfg.space.name, cfg.search.n_trials
    ('mbconv', 3)
"""

from __future__ import annotations

from nas import space, zoo
from nas._accuracy.evaluators import make_evaluator
from nas._accuracy.proxy import AccuracyResult, NonFiniteLossError
from nas._accuracy.table import TableEvaluator
from nas._config import ConfigError, EarlyStopConfig, compose
from nas._data.data import DataError, Dataset, load_data
from nas._data.tables import read_table
from nas._export import export_model
from nas._latency.latency import LatencySettings, measure_latencies, measure_latency
from nas._latency.lookup import LatencyTable
from nas._latency.onnx import QuantizedAccuracy, int8_accuracy
from nas._latency.profile import Profile, profile
from nas._latency.table import TableLatency
from nas._report.describe import describe_arch
from nas._report.show import load_trials
from nas._scaling.procedure import ScalingOutcome, run_scaling
from nas._search.early_stop import DominanceStopper
from nas._search.run import SearchResult, run_search
from nas._search.samplers import make_sampler
from nas._spaces.arch import Arch, ArchFileError, load_arch, save_arch
from nas._spaces.build import build_model, load_model
from nas._train.run import TrainResult, run_train
from nas._trials.latency import LatencyResult
from nas._trials.pareto import hypervolume, pareto_front
from nas._trials.record import TrialRecord, network_seed

__all__ = [
    "AccuracyResult",
    "Arch",
    "ArchFileError",
    "ConfigError",
    "DataError",
    "Dataset",
    "DominanceStopper",
    "EarlyStopConfig",
    "LatencyResult",
    "LatencySettings",
    "LatencyTable",
    "NonFiniteLossError",
    "Profile",
    "QuantizedAccuracy",
    "ScalingOutcome",
    "SearchResult",
    "TableEvaluator",
    "TableLatency",
    "TrainResult",
    "TrialRecord",
    "build_model",
    "compose",
    "describe_arch",
    "export_model",
    "hypervolume",
    "int8_accuracy",
    "load_arch",
    "load_data",
    "load_model",
    "load_trials",
    "make_evaluator",
    "make_sampler",
    "measure_latencies",
    "measure_latency",
    "network_seed",
    "pareto_front",
    "profile",
    "read_table",
    "run_scaling",
    "run_search",
    "run_train",
    "save_arch",
    "space",
    "zoo",
]
