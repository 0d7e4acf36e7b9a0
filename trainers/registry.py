"""The trainers `[train] trainer` selects, each a module with
`train(config, resume=None, run_dir=None, should_stop=None, quiet=False) -> Path`.

Modules are imported only when chosen: the CLI stays light, and pufferl's import has
process-wide side effects.
"""
from __future__ import annotations

import importlib

from puffer_cluster.config import ConfigError

TRAINERS = {"ppo": "trainers.ppo", "pufferl": "trainers.pufferl"}


def trainer_for(config: dict):
    """The `train` function of the config's `[train] trainer`."""
    name = config["train"]["trainer"]
    if name not in TRAINERS:
        raise ConfigError(f"train.trainer must be one of {', '.join(TRAINERS)}, got {name!r}")
    return importlib.import_module(TRAINERS[name]).train
