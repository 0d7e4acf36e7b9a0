"""Policies that play any gardener-contract env: `random`, `heuristic`, and PPO checkpoints.

A policy is called once per step with the batch of observations and a mask of agents whose
episode has just started, and returns one action per agent.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from kernels.policies import heuristic_actions, random_actions

BUILTIN_POLICIES = ("random", "heuristic")
# `[base] env_name` of the envs whose checkpoints do not play the gardener's observation.
OTHER_ENVS = ("simarena", "cluster_ops")


class PolicyError(ValueError):
    """A policy name that is neither built in nor an existing checkpoint file."""


def shipped_checkpoints() -> list[str]:
    """Names of the checkpoints installed with the package ('gardener_ppo', ...)."""
    return sorted(Path(entry.name).stem for entry in resources.files("checkpoints").iterdir()
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
        return Path(str(resources.files("checkpoints") / f"{stem}.pt"))
    if path.parent != Path(".") or path.suffix:
        raise PolicyError(f"checkpoint {spec} does not exist")
    return None


class RandomPolicy:
    """Uniform random actions, reproducible from (seed, step, agent)."""

    name = "random"

    def __init__(self, num_agents: int, seed: int = 0, **_):
        self.seed = seed
        self.step = 0
        self.actions = np.zeros(num_agents, dtype=np.int32)

    def __call__(self, observations: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        random_actions(self.seed, self.step, self.actions)
        self.step += 1
        return self.actions


class HeuristicPolicy:
    """The hand-written gardener of `kernels.policies.heuristic_actions`."""

    name = "heuristic"

    def __init__(self, num_agents: int, params, heuristic: dict, **_):
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


def CheckpointPolicy(path: str, num_agents: int, config: dict, seed: int = 0) -> ModelPolicy:
    """The network of a checkpoint, acting as `[eval] greedy` says."""
    from kernels.world import NUM_ACTIONS, OBS_SIZE
    from trainers.checkpoint import load_checkpoint
    from trainers.models import make_policy
    checkpoint = load_checkpoint(path)
    trained_on = checkpoint["config"].get("base", {}).get("env_name")
    if trained_on in OTHER_ENVS:  # another observation and action space
        raise PolicyError(f"{path} was trained on {trained_on}, not on the gardener world: "
                          f"add --config {trained_on}")
    model = make_policy(checkpoint["config"]["policy"], OBS_SIZE, NUM_ACTIONS,
                        checkpoint.get("critic_extra", 0))
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return ModelPolicy(model, num_agents, bool(config["eval"]["greedy"]), seed, name=str(path))


def policy_factory(spec: str, config: dict, seed: int = 0):
    """A `make_policy(num_agents, params)` for 'random', 'heuristic', a shipped checkpoint's name
    or a checkpoint path."""
    if spec == "random":
        return lambda num_agents, params: RandomPolicy(num_agents, seed=seed)
    if spec == "heuristic":
        return lambda num_agents, params: HeuristicPolicy(num_agents, params, config["heuristic"])
    path = checkpoint_path(spec)
    if path is not None:
        return lambda num_agents, params: CheckpointPolicy(str(path), num_agents, config, seed)
    raise PolicyError(f"unknown policy {spec!r}: use one of {', '.join(BUILTIN_POLICIES)}, a "
                      f"shipped checkpoint ({', '.join(shipped_checkpoints())}) or a checkpoint "
                      "path")
