"""The trainers, by the name `[train] trainer` gives them, and the network a checkpoint holds.

Each entry is `train(config, resume=None, run_dir=None, should_stop=None, quiet=False) -> Path`
(the run directory); its module is imported on the first call, so reading this table stays light.
"""
from __future__ import annotations

from importlib import import_module


def _imported(module: str):
    def train(config, resume=None, run_dir=None, should_stop=None, quiet=False):
        return import_module(module).train(config, resume=resume, run_dir=run_dir,
                                           should_stop=should_stop, quiet=quiet)
    train.__doc__ = f"`{module}.train`"
    return train


TRAINERS = {
    "ppo": _imported("puffer_cluster.trainers.ppo"),
    "pufferl": _imported("puffer_cluster.trainers.pufferl"),
    "dqn": _imported("puffer_cluster.trainers.dqn"),
    "eps_greedy": _imported("puffer_cluster.trainers.eps_greedy"),
}

# Trainers whose checkpoints hold a Q-function: the module's `make_model(config, obs_size,
# num_actions)` builds it; every other trainer saves a `trainers.models` actor-critic.
Q_FUNCTION_TRAINERS = {"dqn": "puffer_cluster.trainers.dqn", "eps_greedy": "puffer_cluster.trainers.eps_greedy"}


def make_policy_model(config: dict, obs_size: int, num_actions: int, critic_extra: int = 0):
    """The network a checkpoint's `config` describes, untrained, for an env of `obs_size`
    observations and `num_actions` actions."""
    trainer = config.get("train", {}).get("trainer", "ppo")
    if trainer in Q_FUNCTION_TRAINERS:
        return import_module(Q_FUNCTION_TRAINERS[trainer]).make_model(config, obs_size, num_actions)
    from puffer_cluster.trainers.models import make_policy
    return make_policy(config["policy"], obs_size, num_actions, critic_extra)
