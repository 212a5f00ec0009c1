"""The search's parts, for an Optuna loop of your own: samplers, early stopping, seeds.

``nas.run_search`` drives them for you; these are for a study you run yourself.

Example:
    >>> from nas.search import network_seed
    >>> network_seed(0, "a") == network_seed(0, "a")
    True
"""

from __future__ import annotations

from nas._config import EarlyStopConfig
from nas._search.early_stop import DominanceStopper
from nas._search.samplers import make_sampler
from nas._trials.record import network_seed

__all__ = ["DominanceStopper", "EarlyStopConfig", "make_sampler", "network_seed"]
