"""What a training checkpoint holds and how a resumed run gets it back: the policy, the
optimizer, every random generator, the envs (through their `state_dict()` protocol) and the
rollout's carried state, so that a resumed run equals an uninterrupted one bit for bit."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from puffer_cluster.trainers.checkpoint import save_atomic


def policy_payload(agent: nn.Module, config: dict, global_step: int, iteration: int) -> dict:
    """What evaluation needs: small enough to ship (no optimizer, no env state)."""
    return {"format": "puffer-cluster", "kind": "policy", "config": config,
            "model": {k: v.detach().cpu() for k, v in agent.state_dict().items()},
            "critic_extra": agent.critic_extra,
            "global_step": global_step, "iteration": iteration}


def rng_state(device: torch.device) -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: str | Path, agent: nn.Module, optimizer, vecenv, config: dict,
                        global_step: int, iteration: int, carry: dict, progress: dict) -> Path:
    """latest.pt: the policy payload plus the optimizer, the random generators, the envs (when
    they offer `state_dict()`), the rollout's `carry` (next_episode_start, policy_state) and
    the run's `progress` (best and heuristic held-out returns, curves)."""
    payload = policy_payload(agent, config, global_step, iteration)
    payload["kind"] = "training"
    device = next(agent.parameters()).device
    payload["training"] = {
        "optimizer": optimizer.state_dict(), "rng": rng_state(device),
        "next_episode_start": carry["next_episode_start"].cpu(),
        "policy_state": tuple(s.detach().cpu() for s in carry["policy_state"]), **progress,
    }
    if hasattr(vecenv, "state_dict"):
        payload["training"]["env"] = vecenv.state_dict()
    return save_atomic(payload, path)


def restore_training_state(checkpoint: dict, agent: nn.Module, optimizer, vecenv,
                           device: torch.device) -> dict | None:
    """Load the policy, the optimizer and the random generators of a training checkpoint, and
    the envs when they offer `load_state_dict()`; returns the rollout's carry (on `device`), or
    None when the envs could not be restored (they restart from their seeds)."""
    training = checkpoint["training"]
    agent.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(training["optimizer"])
    set_rng_state(training["rng"], device)
    if not hasattr(vecenv, "load_state_dict") or "env" not in training:
        return None
    vecenv.load_state_dict(training["env"])
    return {"next_episode_start": training["next_episode_start"].to(device),
            "policy_state": tuple(s.to(device) for s in training["policy_state"])}


def resumed_progress(checkpoint: dict | None) -> dict:
    """The run's records so far: best held-out return, the heuristic's, and the curves'
    points ((global_step, training return, second statistic) and (global_step, held-out return))."""
    recorded = checkpoint["training"] if checkpoint else {}
    return {"best_eval_return": recorded.get("best_eval_return", -np.inf),
            "heuristic_return": recorded.get("heuristic_return"),
            "history": list(recorded.get("history", [])),
            "eval_history": list(recorded.get("eval_history", []))}
