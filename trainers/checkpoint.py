"""Checkpoints written atomically: a temporary file in the same folder, fsync, then rename.

A crash or kill mid-write leaves the previous checkpoint untouched and loadable.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


class CheckpointError(ValueError):
    """A file that is not a puffer-cluster checkpoint, or lacks what the caller needs."""


def save_atomic(payload: dict, path: str | Path) -> Path:
    import torch  # here, so that importing the error type stays light for the CLI
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
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


def load_checkpoint(path: str | Path, require_training_state: bool = False) -> dict:
    import torch
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path} is not a readable checkpoint ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != "puffer-cluster":
        raise CheckpointError(f"{path} is not a puffer-cluster checkpoint")
    if require_training_state and "training" not in payload:
        raise CheckpointError(f"{path} holds a policy only (a final checkpoint); --resume needs "
                              "a training checkpoint such as latest.pt")
    return payload
