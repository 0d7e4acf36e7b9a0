"""Actor-critic networks for the 30-value gardener observation: an MLP and an LSTM.

Both expose the same three calls so the trainer and evaluator never branch on the kind:
`initial_state(batch)`, `step(obs, state, episode_start)` for acting one step at a time, and
`unroll(obs[T, B], state, episode_start[T, B])` for the PPO update, which is also `forward`
(the call DistributedDataParallel wraps).

A privileged critic (`critic_extra > 0`) reads `critic_extra` more values after the actor's
`obs_size` (the env's training-only features); the actor never sees them, so a policy plays from
the plain observation alone.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """CleanRL's orthogonal initialisation."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class MLPPolicy(nn.Module):
    """Separate two-layer tanh networks for the policy and the value, as in CleanRL's ppo.py
    (a shared trunk lets the large value-loss gradients drown the policy's)."""

    is_recurrent = False

    def __init__(self, obs_size: int, num_actions: int, hidden_size: int, critic_extra: int = 0):
        super().__init__()
        self.obs_size, self.critic_extra = obs_size, critic_extra
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_size, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, num_actions), std=0.01))
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_size + critic_extra, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, 1), std=1.0))

    def initial_state(self, batch: int, device=None):
        return ()

    def step(self, obs, state, episode_start):
        return self.act(obs, state, episode_start)[0], self.critic(obs).squeeze(-1), state

    def act(self, obs, state, episode_start):
        """Logits from the plain observation (extra critic columns, if given, are ignored)."""
        return self.actor(obs[..., :self.obs_size]), state

    def unroll(self, obs, state, episode_start):
        logits, values, _ = self.step(obs, state, episode_start)
        return logits, values

    def forward(self, obs, state, episode_start):
        return self.unroll(obs, state, episode_start)


class LSTMPolicy(nn.Module):
    """An encoder, an LSTM cell carrying memory across steps (reset at episode starts), heads."""

    is_recurrent = True

    def __init__(self, obs_size: int, num_actions: int, hidden_size: int, critic_extra: int = 0):
        super().__init__()
        self.obs_size, self.critic_extra = obs_size, critic_extra
        self.encoder = nn.Sequential(layer_init(nn.Linear(obs_size, hidden_size)), nn.Tanh())
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        for name, param in self.cell.named_parameters():
            if "bias" in name:
                nn.init.constant_(param, 0.0)
            else:
                nn.init.orthogonal_(param, 1.0)
        self.actor = layer_init(nn.Linear(hidden_size, num_actions), std=0.01)
        self.critic = layer_init(nn.Linear(hidden_size + critic_extra, 1), std=1.0)
        self.hidden_size = hidden_size

    def initial_state(self, batch: int, device=None):
        zeros = torch.zeros(batch, self.hidden_size, device=device)
        return (zeros, zeros.clone())

    def step(self, obs, state, episode_start):
        logits, (h, c) = self.act(obs, state, episode_start)
        critic_input = torch.cat([h, obs[..., self.obs_size:]], dim=-1)
        return logits, self.critic(critic_input).squeeze(-1), (h, c)

    def act(self, obs, state, episode_start):
        keep = (~episode_start).float().unsqueeze(-1)
        h, c = self.cell(self.encoder(obs[..., :self.obs_size]), (state[0] * keep, state[1] * keep))
        return self.actor(h), (h, c)

    def unroll(self, obs, state, episode_start):
        logits, values = [], []
        for t in range(obs.shape[0]):
            step_logits, step_values, state = self.step(obs[t], state, episode_start[t])
            logits.append(step_logits)
            values.append(step_values)
        return torch.stack(logits), torch.stack(values)

    def forward(self, obs, state, episode_start):
        return self.unroll(obs, state, episode_start)


POLICIES = {"mlp": MLPPolicy, "lstm": LSTMPolicy}


def make_policy(policy_config: dict, obs_size: int, num_actions: int,
                critic_extra: int = 0) -> nn.Module:
    name = policy_config["name"]
    if name not in POLICIES:
        raise ValueError(f"unknown policy.name {name!r}; valid: {', '.join(POLICIES)}")
    return POLICIES[name](obs_size, num_actions, int(policy_config["hidden_size"]), critic_extra)
