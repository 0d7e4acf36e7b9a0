"""Policies that play the batched envs: baselines (random, a memoryless rule, a constant
action) and PPO checkpoints. Each env names its baselines in its registry entry
(`puffer_cluster.registry`).

A policy is called once per step with the batch of observations and a mask of agents whose
episode has just started, and returns one action per agent.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from puffer_cluster.kernels.policies import heuristic_actions, random_actions
from puffer_cluster.kernels.world import NUM_ACTIONS, OBS_SIZE
from puffer_cluster.trainers.checkpoint import load_policy_model


class PolicyError(ValueError):
    """A policy name that is neither built in nor an existing checkpoint file."""


def shipped_checkpoints() -> list[str]:
    """Names of the checkpoints installed with the package ('gardener_ppo', ...)."""
    return sorted(Path(entry.name).stem for entry in resources.files("puffer_cluster.checkpoints").iterdir()
                  if entry.name.endswith(".pt"))


def checkpoint_path(spec: str) -> Path | None:
    """The checkpoint file a policy spec names: a path, or a shipped checkpoint by name
    ('gardener_ppo' or 'gardener_ppo.pt') from any directory; None for a name that is neither.
    A spec that looks like a path (a folder or a .pt suffix) and names no file is an error."""
    path = Path(spec)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".pt")
    if path.parent == Path(".") and stem in shipped_checkpoints():
        return Path(str(resources.files("puffer_cluster.checkpoints") / f"{stem}.pt"))
    if path.parent != Path(".") or path.suffix:
        raise PolicyError(f"checkpoint {spec} does not exist")
    return None


class RandomPolicy:
    """Uniform random actions, reproducible from (seed, step, agent): `draw(seed, step, out)` is
    the env's counter-based draw (the gardener's by default)."""

    name = "random"

    def __init__(self, num_agents: int, seed: int = 0, draw=random_actions):
        self.seed = seed
        self.step = 0
        self.draw = draw
        self.actions = np.zeros(num_agents, dtype=np.int32)

    def __call__(self, observations: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        self.draw(self.seed, self.step, self.actions)
        self.step += 1
        return self.actions


class RulePolicy:
    """A memoryless rule: `choose(observations, out)` writes one action per agent."""

    def __init__(self, num_agents: int, choose):
        self.choose = choose
        self.actions = np.zeros(num_agents, dtype=np.int32)

    def __call__(self, observations: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        return self.choose(observations, self.actions)


class ConstantPolicy:
    """The same action for every agent at every step."""

    def __init__(self, num_agents: int, action: int):
        self.actions = np.full(num_agents, action, dtype=np.int32)

    def __call__(self, observations: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        return self.actions


class HeuristicPolicy:
    """The hand-written gardener of `kernels.policies.heuristic_actions`."""

    name = "heuristic"

    def __init__(self, num_agents: int, params, heuristic: dict):
        self.params = params
        self.thresholds = (float(heuristic["clean_trigger"]), float(heuristic["crit_clean_trigger"]),
                           float(heuristic["scale_trigger"]))
        self.actions = np.zeros(num_agents, dtype=np.int32)

    def __call__(self, observations: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        p = self.params
        heuristic_actions(observations, p.height, p.width, p.clean_cost, p.scale_cost,
                          p.crit_threshold, *self.thresholds, self.actions)
        return self.actions


class ModelPolicy:
    """A policy network acting greedily (argmax) or by sampling with a seeded generator."""

    def __init__(self, model, num_agents: int, greedy: bool, seed: int = 0, name: str = "model"):
        import torch
        self.torch = torch
        self.name = name
        self.model = model
        self.device = next(model.parameters()).device
        self.greedy = greedy
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.state = model.initial_state(num_agents, self.device)

    def __call__(self, observations: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            logits, self.state = self.model.act(
                torch.as_tensor(observations, device=self.device), self.state,
                torch.as_tensor(episode_start, device=self.device))
            if self.greedy:
                actions = logits.argmax(dim=-1)
            else:
                actions = torch.multinomial(torch.softmax(logits.float(), -1), 1,
                                            generator=self.generator)[:, 0]
        return actions.cpu().numpy().astype(np.int32)


def CheckpointPolicy(path: str, num_agents: int, config: dict, seed: int = 0,
                     obs_size: int = OBS_SIZE, num_actions: int = NUM_ACTIONS,
                     env_name: str = "gardener") -> ModelPolicy:
    """The network of a checkpoint, acting as `[eval] greedy` says, refused when it does not fit
    an env of `obs_size` observations and `num_actions` actions."""
    model = load_policy_model(path, obs_size, num_actions, env_name)
    return ModelPolicy(model, num_agents, bool(config["eval"]["greedy"]), seed, name=str(path))
