"""What every bench shares: the timer, the action ring, the machine's description, JSON output and
fresh interpreters for the measurements that need their own process.

A measurement warms up (first-call and JIT costs), then steps for a fixed budget of the clock split
into windows; the best window is the speed (other processes only ever slow a window down) and the
spread of the windows shows the noise.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SEED = 0
ACTION_RING_SIZE = 16
WARMUP_STEPS = 2
TIMING_WINDOWS = 3
MIN_STEPS_PER_WINDOW = 2
REPO_ROOT = Path(__file__).resolve().parents[1]


def timed(step_once, agents_per_step: int, seconds: float, min_steps: int = MIN_STEPS_PER_WINDOW,
          warmup_steps: int = WARMUP_STEPS, clock=time.perf_counter) -> dict:
    """Warm up, then time TIMING_WINDOWS windows of `step_once(i)` calls, each lasting
    `seconds / TIMING_WINDOWS` of `clock` and at least `min_steps` calls."""
    for i in range(warmup_steps):
        step_once(i)
    window_speeds, total_steps = [], 0
    for _ in range(TIMING_WINDOWS):
        steps = 0
        start = clock()
        while True:
            step_once(steps)
            steps += 1
            elapsed = clock() - start
            if elapsed >= seconds / TIMING_WINDOWS and steps >= min_steps:
                break
        window_speeds.append(agents_per_step * steps / elapsed)
        total_steps += steps
    return {"agent_steps_per_s": max(window_speeds), "window_speeds": window_speeds,
            "steps": total_steps}


def action_ring(env_name: str, agents: int) -> np.ndarray:
    """ACTION_RING_SIZE arrays of uniform actions for `agents` agents, drawn beforehand by the
    random baseline of `env_name` in the env registry."""
    from puffer_cluster.registry import get_env_spec
    policy = get_env_spec(env_name).baselines["random"](agents, None, {}, SEED)
    return np.stack([policy(None, None).copy() for _ in range(ACTION_RING_SIZE)])


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_description(load_at_start: tuple) -> dict:
    """The machine, its load when the measurements began and the versions the figures depend on
    (Numba's threading layer once its first parallel call has chosen it)."""
    import numba
    return {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "load_average_at_start": [round(load, 2) for load in load_at_start],
        "python": platform.python_version(), "numpy": np.__version__,
        "numba": numba.__version__, "numba_threading_layer": numba.threading_layer(),
        "numba_max_threads": numba.config.NUMBA_NUM_THREADS,
        "pufferlib": package_version("pufferlib"), "torch": package_version("torch"),
    }


def write_json(path: str, data) -> None:
    with open(path, "w") as out:
        json.dump(data, out, indent=1)


def run_child(module: str, *args: str, timeout: float | None = None, launcher: tuple = (),
              env: dict | None = None) -> subprocess.CompletedProcess:
    """`python [launcher] -m <module> args` in a fresh interpreter started at the repo root
    (where `bench` imports from), its output captured; `launcher` is e.g. torchrun's
    `-m torch.distributed.run --nproc_per_node 2`."""
    return subprocess.run([sys.executable, *launcher, "-m", module, *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)
