"""Checkpoints written atomically: a temporary file in the same folder, fsync, then rename.

A crash or kill mid-write leaves the previous checkpoint untouched and loadable (and, after a
`kill -9`, a `.<name>.XXXX.partial` temporary file that `remove_partial_files` clears).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


class CheckpointError(ValueError):
    """A file that is not a puffer-cluster checkpoint, or lacks what the caller needs."""


def save_atomic(payload: dict, path: str | Path) -> Path:
    import torch  # here, so that importing the error type stays light for the CLI
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's private 0600, widened to a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_partial_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed `save_atomic` left in `folder`; returns them."""
    removed = sorted(Path(folder).glob(f".*.pt.*{PARTIAL_SUFFIX}"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def load_checkpoint(path: str | Path, require_training_state: bool = False,
                    require_policy: bool = False) -> dict:
    """A checkpoint's payload, checked: a policy (config and finite weights) wherever it holds
    one or the caller needs one, and the training state when `require_training_state`."""
    import torch
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        reason = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != "puffer-cluster":
        raise CheckpointError(f"{path} is not a puffer-cluster checkpoint")
    if require_training_state and "training" not in payload:
        raise CheckpointError(f"{path} holds a policy only (a final checkpoint); --resume needs "
                              "a training checkpoint such as latest.pt")
    if require_policy or require_training_state or {"model", "config"} & payload.keys():
        _check_policy(payload, path)
    return payload


def _check_policy(payload: dict, path: Path) -> None:
    """A policy checkpoint names its config (to rebuild the network) and holds finite weights."""
    import torch
    config = payload.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("policy"), dict):
        raise CheckpointError(f"{path} has no config with a [policy] section; it cannot be loaded")
    model = payload.get("model")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"{path} has no model weights")
    for name, tensor in model.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path} has non-finite weights ({name} holds NaN or inf)")


def load_policy_model(path: str | Path, obs_size: int, num_actions: int, env_name: str):
    """The network of a checkpoint, in eval mode, refused when it does not fit an env of
    `obs_size` observations and `num_actions` actions."""
    from puffer_cluster.trainers import make_policy_model
    checkpoint = load_checkpoint(path, require_policy=True)
    trained_on = checkpoint["config"].get("base", {}).get("env_name", "?")
    try:  # the trainer's network: PPO's actor-critic, DQN's Q-network, the tabular agent's table
        model = make_policy_model(checkpoint["config"], obs_size, num_actions,
                                  checkpoint.get("critic_extra", 0))
    except (KeyError, ValueError) as error:  # ConfigError is a ValueError
        raise CheckpointError(f"{path}: its config cannot build the policy ({error})") from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in checkpoint["model"].items()}
    if expected != found:
        raise CheckpointError(
            f"{path} does not fit the {env_name} env ({obs_size} observations, {num_actions} "
            f"actions): it was trained on {trained_on} with other layer shapes")
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return model
