"""DQN in the spirit of CleanRL's `dqn.py`: a Q-network, a replay buffer, a target network and a
linearly decaying epsilon, every hyperparameter from the `[dqn]` config section.

Batched over the vector env's agents: each env step adds one transition per agent to the buffer,
and every `train_frequency` env steps one gradient step fits the Q-network to the TD target of the
target network on `batch_size` sampled transitions. The run around it (epsilon-greedy acting,
evaluation, checkpoints, resume) is `trainers.offpolicy`'s; `eval` plays the greedy action.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from puffer_cluster.config import ConfigError, config_section, settings_from
from puffer_cluster.trainers.offpolicy import QPolicy, train_value_based


@config_section("dqn")
class DQNSettings:
    """The `[dqn]` section (configs/gardener.ini documents every key)."""
    learning_rate: float
    buffer_size: int
    gamma: float
    tau: float
    target_network_frequency: int
    batch_size: int
    start_e: float
    end_e: float
    exploration_fraction: float
    learning_starts: int
    train_frequency: int
    hidden_size: int

    def __post_init__(self):
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"dqn.learning_rate must be a finite number > 0, "
                              f"got {self.learning_rate}")
        for name in ("gamma", "start_e", "end_e", "exploration_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"dqn.{name} must be within [0, 1], got {getattr(self, name)}")
        if not 0 < self.tau <= 1:
            raise ConfigError(f"dqn.tau must be within (0, 1], got {self.tau}")
        for name in ("buffer_size", "target_network_frequency", "batch_size", "train_frequency",
                     "hidden_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"dqn.{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_starts < 0:
            raise ConfigError(f"dqn.learning_starts must be at least 0, got {self.learning_starts}")


class QNetwork(QPolicy):
    def __init__(self, obs_size: int, num_actions: int, hidden_size: int):
        super().__init__()
        self.obs_size = obs_size
        self.network = nn.Sequential(
            nn.Linear(obs_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, num_actions))

    def forward(self, obs):
        return self.network(obs[..., :self.obs_size])


def make_model(config: dict, obs_size: int, num_actions: int) -> QNetwork:
    """The Q-network of a config (what `load_policy_model` rebuilds from a checkpoint)."""
    return QNetwork(obs_size, num_actions, settings_from(DQNSettings, config).hidden_size)


class ReplayBuffer:
    """A ring of the last `size` transitions, on the training device."""

    def __init__(self, size: int, obs_size: int, device: torch.device):
        self.size, self.position, self.count = size, 0, 0
        self.obs = torch.zeros((size, obs_size), device=device)
        self.next_obs = torch.zeros((size, obs_size), device=device)
        self.actions = torch.zeros(size, dtype=torch.long, device=device)
        self.rewards = torch.zeros(size, device=device)
        self.dones = torch.zeros(size, device=device)

    def add(self, obs, next_obs, actions, rewards, dones):
        index = (self.position + torch.arange(len(obs), device=obs.device)) % self.size
        self.obs[index], self.next_obs[index] = obs, next_obs
        self.actions[index], self.rewards[index] = actions, rewards.float()
        self.dones[index] = dones.float()
        self.position = (self.position + len(obs)) % self.size
        self.count = min(self.count + len(obs), self.size)

    def sample(self, batch_size: int):
        index = torch.randint(0, self.count, (batch_size,), device=self.obs.device)
        return (self.obs[index], self.actions[index], self.rewards[index], self.next_obs[index],
                self.dones[index])

    def state_dict(self) -> dict:
        return {"position": self.position, "count": self.count,
                **{name: getattr(self, name).cpu() for name in ("obs", "next_obs", "actions",
                                                                "rewards", "dones")}}

    def load_state_dict(self, state: dict) -> None:
        if state["obs"].shape != self.obs.shape:
            raise ConfigError(f"--resume cannot change dqn.buffer_size or the observation: the "
                              f"checkpoint's buffer is {tuple(state['obs'].shape)}, this config's "
                              f"{tuple(self.obs.shape)}")
        self.position, self.count = state["position"], state["count"]
        for name in ("obs", "next_obs", "actions", "rewards", "dones"):
            getattr(self, name).copy_(state[name])


class DQNLearner:
    def __init__(self, config: dict, obs_size: int, num_actions: int, num_agents: int,
                 device: torch.device):
        self.settings = args = settings_from(DQNSettings, config)
        if args.buffer_size < num_agents:
            raise ConfigError(f"dqn.buffer_size must hold one env step of every agent "
                              f"({num_agents}), got {args.buffer_size}")
        self.model = q_network = QNetwork(obs_size, num_actions, args.hidden_size).to(device)
        self.optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate)
        self.target_network = QNetwork(obs_size, num_actions, args.hidden_size).to(device)
        self.target_network.load_state_dict(q_network.state_dict())
        self.buffer = ReplayBuffer(args.buffer_size, obs_size, device)

    def learn(self, obs, actions, rewards, next_obs, dones, global_step: int) -> dict | None:
        """One env step of every agent: store the transitions, then train as the schedule says."""
        args, num_agents = self.settings, len(obs)
        self.buffer.add(obs, next_obs, actions, rewards, dones)
        env_step = global_step // num_agents
        losses = None
        if global_step > args.learning_starts and env_step % args.train_frequency == 0:
            b_obs, b_actions, b_rewards, b_next_obs, b_dones = self.buffer.sample(args.batch_size)
            with torch.no_grad():
                target_max = self.target_network(b_next_obs).max(dim=1).values
                td_target = b_rewards + args.gamma * target_max * (1 - b_dones)
            old_val = self.model(b_obs).gather(1, b_actions[:, None]).squeeze(1)
            loss = F.mse_loss(td_target, old_val)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses = {"losses/td_loss": loss.item(), "losses/q_values": old_val.mean().item()}
        if env_step % args.target_network_frequency == 0:
            for target, online in zip(self.target_network.parameters(), self.model.parameters()):
                target.data.copy_(args.tau * online.data + (1.0 - args.tau) * target.data)
        return losses

    def training_state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "target_network": {k: v.cpu() for k, v in self.target_network.state_dict().items()},
                "buffer": self.buffer.state_dict()}

    def load_training_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.target_network.load_state_dict(state["target_network"])
        self.buffer.load_state_dict(state["buffer"])


def train(config: dict, resume: str | None = None, run_dir: str | Path | None = None,
          should_stop=None, quiet: bool = False) -> Path:
    """Train DQN on the env of the config; returns the run directory."""
    settings_from(DQNSettings, config)  # [dqn] checked before anything runs
    return train_value_based(config, DQNLearner, resume, run_dir, should_stop, quiet)
