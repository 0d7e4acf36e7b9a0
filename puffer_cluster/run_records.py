"""Run records as sim-arena writes them, for the agent loop on a SimKube cluster
(`puffer-cluster simkube loop`) and for offline SimArena episodes (`eval --records DIR`) alike.

Every run gets its own directory, `<root>/<name>-<UTC time>` (a suffix when that exists), so a
run never overwrites another's records. In it:
  step.jsonl    one JSON line per step, written as the step ends: episode, step, trace_in and
                trace_out (the Deployment's first-container requests and replicas, and the
                trace file when there is one), action (index and name), observation (pod
                counts and the env's observation vector) and next_observation, reward,
                terminated, truncated, timings (seconds)
  summary.json  what the run was (meta), how it ended (status: done, error: ..., interrupted),
                and per episode its steps, return and whether it was solved; written at the
                end, whatever the end, and replaced atomically
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

STEPS_FILE = "step.jsonl"
SUMMARY_FILE = "summary.json"


def new_run_dir(root: str | os.PathLike[str], name: str) -> Path:
    """A new, empty directory `<root>/<name>-<UTC time>` (with -2, -3... if it exists)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    for n in range(1, 1000):
        path = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{root}: no free run directory for {stem}")


class RunRecorder:
    """Writes one run's `step.jsonl` line by line and its `summary.json` on `close`."""

    def __init__(self, run_dir: Path, meta: dict[str, Any]):
        self.run_dir = Path(run_dir)
        self.meta = meta
        self.started = time.time()
        self.episodes: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None
        self._steps = open(self.run_dir / STEPS_FILE, "x")

    def step(self, record: dict[str, Any]) -> None:
        """Append one step (flushed, so a crash keeps it) and count it in its episode."""
        self._steps.write(json.dumps(_plain(record), sort_keys=False) + "\n")
        self._steps.flush()
        if self._open is None or self._open["episode"] != record["episode"]:
            self._open = {"episode": record["episode"], "steps": 0, "return": 0.0, "solved": False,
                          "finished": False}
            self.episodes.append(self._open)
        self._open["steps"] += 1
        self._open["return"] += float(record["reward"])
        if record["terminated"] or record["truncated"]:
            self._open["solved"] = bool(record["terminated"])
            self._open["finished"] = True

    def close(self, status: str = "done", **extra: Any) -> dict[str, Any]:
        """Write summary.json (atomically) and close the steps file; returns the summary."""
        self._steps.close()
        finished = [e for e in self.episodes if e["finished"]]
        summary = {
            "meta": self.meta, "status": status,
            "started": _utc(self.started), "finished": _utc(time.time()),
            "steps": sum(e["steps"] for e in self.episodes),
            "episodes": self.episodes,
            "return_mean": float(np.mean([e["return"] for e in finished])) if finished else None,
            "solved_rate": float(np.mean([e["solved"] for e in finished])) if finished else None,
            **extra,
        }
        tmp = self.run_dir / (SUMMARY_FILE + ".tmp")
        tmp.write_text(json.dumps(_plain(summary), indent=2) + "\n")
        os.replace(tmp, self.run_dir / SUMMARY_FILE)
        return summary


def trace_record(file: str | os.PathLike[str] | None, cpu_millicores: int, memory_bytes: int,
                 replicas: int) -> dict[str, Any]:
    """A step's trace_in / trace_out: the file (None offline) and what the Deployment asks."""
    from puffer_cluster.traces.ops import format_cpu, format_memory
    return {"file": file, "cpu": format_cpu(int(cpu_millicores)),
            "memory": format_memory(int(memory_bytes)), "replicas": int(replicas)}


def observation_record(ready: int, pending: int, total: int, short, vector) -> dict[str, Any]:
    """A step's observation: the pod counts, the nodes short of cpu / memory / a pod slot for
    the first pending pod, and the env's observation vector."""
    return {"ready": int(ready), "pending": int(pending), "total": int(total),
            "short": [int(n) for n in short], "vector": [round(float(v), 6) for v in vector]}


def record_simarena_episodes(spec: str, episodes: int, seed: int, config: dict,
                             root: str | os.PathLike[str]) -> Path:
    """Play `episodes` offline SimArena episodes of a policy (episode e on scenario e mod the
    number of scenarios, as the eval table) and record them in a new run directory."""
    from puffer_cluster.kernels.simarena import ACTION_NAMES
    from puffer_cluster.registry import policy_factory
    from puffer_cluster.simarena import SimArenaGymEnv
    env = SimArenaGymEnv(simarena=config.get("simarena"), replay=config.get("replay"))
    policy = policy_factory(spec, config, seed, env_name="simarena")(1, env.params)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(spec).stem)
    run_dir = new_run_dir(root, f"eval-{name}")
    recorder = RunRecorder(run_dir, {"command": "eval", "policy": spec, "episodes": episodes,
                                     "seed": seed, "reward": env.settings.reward,
                                     "simarena": asdict(env.settings)})
    state = env.state

    def now(observation):
        return (trace_record(None, state.cpu[0], state.mem[0], state.replicas[0]),
                observation_record(state.ready[0], state.pending[0], state.replicas[0],
                                   state.blocked[0], observation))

    status = "done"
    try:
        for episode in range(episodes):
            observation, info = env.reset(seed=seed if episode == 0 else None,
                                          options={"scenario": episode % len(env.scenarios)})
            for t in range(1, env.settings.max_steps + 1):
                trace_in, observed = now(observation)
                action = int(policy(observation[None], np.array([t == 1]))[0])
                started = time.perf_counter()
                observation, reward, terminated, truncated, info = env.step(action)
                elapsed = time.perf_counter() - started
                trace_out, next_observed = now(observation)
                recorder.step({
                    "episode": episode, "step": t, "scenario": info["scenario"],
                    "trace_in": trace_in, "trace_out": trace_out,
                    "action": action, "action_name": ACTION_NAMES[action],
                    "observation": observed, "next_observation": next_observed,
                    "reward": float(reward), "terminated": bool(terminated),
                    "truncated": bool(truncated), "timings": {"step_s": round(elapsed, 6)}})
                if terminated or truncated:
                    break
    except BaseException as error:
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else f"error: {error}"
        raise
    finally:
        recorder.close(status)
    return run_dir


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays, paths and tuples as JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value
