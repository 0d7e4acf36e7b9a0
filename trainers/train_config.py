"""Checks of a whole training config, run before the trainer creates anything.

Every bad value fails with one `ConfigError` line naming the key and its valid range, so a
mistyped override costs a second, not a run directory and a traceback.
"""
from __future__ import annotations

import math

import torch

from puffer_cluster.config import ConfigError
from puffer_cluster.registry import get_env_spec
from puffer_cluster.trainers import TRAINERS
from puffer_cluster.trainers.models import POLICIES

CRITICS = ("plain", "privileged")
VEC_BACKENDS = ("PufferEnv", "Serial", "Multiprocessing")
PRECISIONS = ("float32", "bfloat16")


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available (use auto or cpu)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"train.device is {name!r} but only {torch.cuda.device_count()} CUDA "
                          "devices exist")
    return device


def num_agents(config: dict) -> int:
    """Agents stepped per env step: grids x gardeners per grid, times the [vec] copies."""
    spec = get_env_spec(config["base"]["env_name"])
    per_env = config["env"]["num_envs"] * spec.agents_per_env(config)
    copies = 1 if config["vec"]["backend"] == "PufferEnv" else config["vec"]["num_envs"]
    return per_env * copies


def _one_of(key: str, value, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{key} must be one of {', '.join(valid)}, got {value!r}")


def _at_least(key: str, value, low) -> None:
    if value < low:
        raise ConfigError(f"{key} must be at least {low}, got {value}")


def validate_train_config(config: dict) -> None:
    """Raise `ConfigError` for the first value of `config` the trainer cannot run with."""
    base, env, vec, train = config["base"], config["env"], config["vec"], config["train"]
    _one_of("train.trainer", train["trainer"], tuple(TRAINERS))
    spec = get_env_spec(base["env_name"])
    _at_least("env.num_envs", env["num_envs"], 1)
    _at_least("env.log_interval", env["log_interval"], 1)
    _one_of("vec.backend", vec["backend"], VEC_BACKENDS)
    if vec["backend"] != "PufferEnv":
        _at_least("vec.num_envs", vec["num_envs"], 1)
    if vec["backend"] == "Multiprocessing":
        _at_least("vec.num_workers", vec["num_workers"], 1)
        if vec["num_envs"] % vec["num_workers"]:
            raise ConfigError(f"vec.num_workers must divide vec.num_envs ({vec['num_envs']}), "
                              f"got {vec['num_workers']}")
    spec.check_config(config)  # the env's own ranges
    teachers = ("none", spec.teacher) if spec.teacher else ("none",)
    if train["teacher"] not in teachers:
        raise ConfigError(f"train.teacher must be one of {', '.join(teachers)} for the {spec.name} "
                          f"env, got {train['teacher']!r}")

    _one_of("policy.name", config["policy"]["name"], tuple(POLICIES))
    _one_of("policy.critic", config["policy"]["critic"], CRITICS)
    _at_least("policy.hidden_size", config["policy"]["hidden_size"], 1)

    resolve_device(train["device"])
    _one_of("train.precision", train["precision"], PRECISIONS)
    _at_least("train.torch_threads", train["torch_threads"], 0)
    if not (math.isfinite(train["learning_rate"]) and train["learning_rate"] > 0):
        raise ConfigError(f"train.learning_rate must be a finite number > 0, "
                          f"got {train['learning_rate']}")
    for key in ("gamma", "gae_lambda", "teacher_clone_fraction", "teacher_fraction"):
        if not 0 <= train[key] <= 1:
            raise ConfigError(f"train.{key} must be within [0, 1], got {train[key]}")
    for key in ("clip_coef", "ent_coef", "vf_coef", "max_grad_norm", "target_kl", "teacher_coef",
                "teacher_final_coef", "print_interval"):
        if not (math.isfinite(train[key]) and train[key] >= 0):
            raise ConfigError(f"train.{key} must be a finite number >= 0, got {train[key]}")
    for key in ("num_steps", "update_epochs", "checkpoint_interval"):
        _at_least(f"train.{key}", train[key], 1)
    batch_size = num_agents(config) * train["num_steps"]
    if not 1 <= train["num_minibatches"] <= batch_size:
        raise ConfigError(f"train.num_minibatches must be within 1 .. {batch_size} (the batch: "
                          f"agents x num_steps), got {train['num_minibatches']}")
    if train["total_timesteps"] < batch_size:
        raise ConfigError(f"train.total_timesteps must be at least one batch ({batch_size:,} = "
                          f"agents x num_steps), got {train['total_timesteps']:,}")
    _at_least("train.eval_interval", train["eval_interval"], 0)
    if train["eval_interval"] > 0:
        _at_least("train.eval_episodes", train["eval_episodes"], 1)
        _at_least("train.eval_seed", train["eval_seed"], 0)
    _at_least("eval.episodes", config["eval"]["episodes"], 1)
    _at_least("eval.seed", config["eval"]["seed"], 0)
