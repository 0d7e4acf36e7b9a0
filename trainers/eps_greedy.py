"""sim-arena's tabular epsilon-greedy agent: Q-learning on a table over a discretised observation.

The state is the cell of a grid over the `[eps_greedy] features` of the observation, each cut at
`edges` (configs/gardener.ini documents both, configs/simarena.ini picks SimArena's pod counts).
Every env step updates each visited (cell, action) pair by `alpha` times the mean TD error of the
agents that visited it, so the batch of agents learns in a fixed, order-free way. The table is
the model of the checkpoints (`eval` plays its greedy action); the run is `trainers.offpolicy`'s.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from puffer_cluster.config import ConfigError, config_section, settings_from
from puffer_cluster.trainers.offpolicy import QPolicy, train_value_based

# A table of more cells than this is refused: it would not be visited, let alone learned.
MAX_CELLS = 2**22


def _numbers(key: str, text: str, kind) -> list:
    try:
        return [kind(word) for word in str(text).split()]
    except ValueError:
        raise ConfigError(f"eps_greedy.{key} must be space-separated {kind.__name__}s, "
                          f"got {text!r}") from None


@config_section("eps_greedy")
class EpsGreedySettings:
    """The `[eps_greedy]` section (configs/gardener.ini documents every key)."""
    features: str
    edges: str
    alpha: float
    gamma: float
    start_e: float
    end_e: float
    exploration_fraction: float

    def __post_init__(self):
        features, edges = self.feature_indices(), self.edge_values()
        if not features or min(features) < 0 or len(set(features)) != len(features):
            raise ConfigError(f"eps_greedy.features must be distinct observation indices >= 0, "
                              f"got {self.features!r}")
        if not edges or not all(math.isfinite(e) for e in edges) \
                or any(a >= b for a, b in zip(edges, edges[1:])):
            raise ConfigError(f"eps_greedy.edges must be finite and increasing, got {self.edges!r}")
        if (len(edges) + 1) ** len(features) > MAX_CELLS:
            raise ConfigError(f"eps_greedy: (edges + 1) ** features = {len(edges) + 1} ** "
                              f"{len(features)} cells is more than {MAX_CELLS:,}")
        for name in ("alpha", "gamma", "start_e", "end_e", "exploration_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"eps_greedy.{name} must be within [0, 1], "
                                  f"got {getattr(self, name)}")

    def feature_indices(self) -> list[int]:
        return _numbers("features", self.features, int)

    def edge_values(self) -> list[float]:
        return _numbers("edges", self.edges, float)


class QTable(QPolicy):
    """Q-values of each cell of the grid over the chosen observation features."""

    def __init__(self, obs_size: int, num_actions: int, features: list[int], edges: list[float]):
        super().__init__()
        if max(features) >= obs_size:
            raise ConfigError(f"eps_greedy.features: index {max(features)} is beyond the env's "
                              f"{obs_size} observation values")
        bins = len(edges) + 1
        self.obs_size = obs_size
        self.register_buffer("features", torch.tensor(features, dtype=torch.long))
        self.register_buffer("edges", torch.tensor(edges, dtype=torch.float32))
        self.register_buffer("strides", bins ** torch.arange(len(features)), persistent=False)
        self.table = nn.Parameter(torch.zeros(bins ** len(features), num_actions),
                                  requires_grad=False)

    def cells(self, obs):
        """The cell of each observation: its features' bins as the digits of a number."""
        bins = torch.bucketize(obs[..., self.features].contiguous(), self.edges, right=True)
        return (bins * self.strides).sum(dim=-1)

    def forward(self, obs):
        return self.table[self.cells(obs)]


def make_model(config: dict, obs_size: int, num_actions: int) -> QTable:
    """The table of a config (what `load_policy_model` rebuilds from a checkpoint)."""
    settings = settings_from(EpsGreedySettings, config)
    return QTable(obs_size, num_actions, settings.feature_indices(), settings.edge_values())


class TabularLearner:
    def __init__(self, config: dict, obs_size: int, num_actions: int, num_agents: int,
                 device: torch.device):
        self.settings = settings_from(EpsGreedySettings, config)
        self.model = make_model(config, obs_size, num_actions).to(device)

    def learn(self, obs, actions, rewards, next_obs, dones, global_step: int) -> dict:
        """Q(s, a) += alpha * mean over the agents in (s, a) of r + gamma max Q(s') - Q(s, a)."""
        table, args = self.model.table, self.settings
        num_actions = table.shape[1]
        with torch.no_grad():
            next_best = table[self.model.cells(next_obs)].max(dim=1).values
            pairs = self.model.cells(obs) * num_actions + actions
            td_target = rewards + args.gamma * next_best * (1 - dones.float())
            td_error = td_target - table.view(-1)[pairs]
            sums = torch.zeros(table.numel(), dtype=torch.float64, device=table.device)
            sums.index_add_(0, pairs, td_error.double())
            counts = torch.bincount(pairs, minlength=table.numel())
            visited = counts > 0
            table.view(-1)[visited] += (args.alpha * sums[visited] / counts[visited]).float()
        return {"losses/td_error": float(td_error.abs().mean())}

    def training_state(self) -> dict:
        return {}

    def load_training_state(self, state: dict) -> None:
        pass


def train(config: dict, resume: str | None = None, run_dir: str | Path | None = None,
          should_stop=None, quiet: bool = False) -> Path:
    """Train the tabular epsilon-greedy agent on the env of the config; returns the run
    directory."""
    settings_from(EpsGreedySettings, config)  # [eps_greedy] checked before anything runs
    return train_value_based(config, TabularLearner, resume, run_dir, should_stop, quiet)
