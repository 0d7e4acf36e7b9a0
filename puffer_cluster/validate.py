"""The benchmark table on replayed SimKube traces (`puffer-cluster validate POLICY... --traces DIR`).

Every trace file under DIR (recursively: .msgpack, .sktrace, .json) is compiled once
(`puffer_cluster.replay.compile_timeline`) and every policy plays the same `--episodes` seeds
on it: the statistics of the first episode of grids 0 .. episodes-1 of a `TraceReplayEnv`
seeded `--seed`, as `puffer-cluster eval` does on the gardener world. A table is printed per
trace (wins counted against the first policy, pair by pair) after a line saying what was
replayed (events and objects, of how many), on which cluster, how much of it the trace fills
and how strong the leak overlay is; then an overall table over every (trace, seed) pair. Files
that are not traces, or traces that cannot be replayed (a version 1 trace, an object the API
server would refuse...), get the row "skipped: reason"; they never abort the run. The exit
status is 0 when at least one trace was validated, else 2 with one line per reason on stderr.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from puffer_cluster.kernels.replay import expected_overlay
from puffer_cluster.config import ConfigError, world_config
from puffer_cluster.env import world_params
from puffer_cluster.evaluate import play_first_episodes
from puffer_cluster.registry import policy_factory
from puffer_cluster.replay import (
    ReplaySettings, Timeline, TraceReplayEnv, compile_timeline, find_trace_files, replay_settings,
)
from puffer_cluster.tables import format_gardener_table, summarize
from puffer_cluster.traces import TraceError, load_trace

__all__ = ["play_replay_episodes", "validate"]


def play_replay_episodes(make_policy, episodes: int, seed: int, timeline: Timeline,
                         env_config: dict, settings: ReplaySettings) -> np.ndarray:
    """Statistics (episodes, NUM_STATS) of the first episode of grids 0 .. episodes-1 of a
    `TraceReplayEnv` on `timeline` seeded `seed`: the same (trace, seed) pairs for every policy."""
    env = TraceReplayEnv(timeline, num_envs=episodes, seed=seed, log_interval=2**62,
                         replay=settings, **env_config)
    return play_first_episodes(env, make_policy)


def _rows(policy_specs: list[str], stats: list[np.ndarray]) -> list[dict]:
    rows, baseline = [], None
    for spec, policy_stats in zip(policy_specs, stats):
        rows.append(summarize(spec, policy_stats, baseline))
        baseline = policy_stats if baseline is None else baseline
    return rows


def _describe(summary: dict) -> str:
    return (f"{summary['events_replayed']} of {summary['events_total']} events, "
            f"{summary['objects_applied']} of {summary['objects_total']} objects applied; "
            f"{summary['pods']} pods (at most {summary['max_running']} running, "
            f"{summary['max_pending']} pending) on {summary['nodes_used']} of {summary['grid']} "
            f"nodes of {summary['node_cpu']:.4g} CPU / {summary['node_memory_gib']:.4g} GiB, "
            f"{summary['critical_nodes']} critical; the trace's peak requests fill "
            f"{summary['peak_trace_cpu']:.1%} of the cluster's CPU and "
            f"{summary['peak_trace_mem']:.1%} of its memory; overlay x{summary['overlay_scale']:g} "
            f"(an uncleaned node leaks to {summary['overlay_mem_end']:.2f} of its memory); "
            f"episodes of {summary['horizon']} steps of {summary['step_seconds']:.4g} s")


def _replay_one(path: Path, label: str, makers, episodes: int, seed: int, env_config: dict,
                settings: ReplaySettings):
    """The timeline's summary and each policy's statistics on one trace file."""
    timeline = compile_timeline(load_trace(path), height=int(env_config["height"]),
                                width=int(env_config["width"]),
                                max_steps=int(env_config["max_steps"]), settings=settings,
                                name=label)
    params = world_params(env_config)
    summary = timeline.summary(float(env_config["crit_threshold"]))
    summary["overlay_scale"] = settings.overlay_scale
    summary["overlay_mem_end"] = expected_overlay(settings.overlay_world(params), timeline.horizon)
    stats = [play_replay_episodes(make, episodes, seed, timeline, env_config, settings)
             for make in makers]
    return summary, stats


def validate(policy_specs: list[str], traces: str | Path, episodes: int, seed: int, config: dict,
             echo=print) -> dict:
    """Play every policy on every trace under `traces`; print (through `echo`) and return the
    tables. Returns {"traces": [...], "skipped": [...], "overall": rows or None}; a trace that
    cannot be read, compiled or played is skipped with its reason, the others still play."""
    if episodes < 1:
        raise ConfigError("--episodes must be at least 1")
    root = Path(traces)
    if not root.exists():
        raise ConfigError(f"--traces {root}: no such file or directory")
    env_config = world_config(config)
    settings = replay_settings(config)
    makers = [policy_factory(spec, config, seed) for spec in policy_specs]  # fail early on a typo
    results, skipped = [], []
    totals: list[list[np.ndarray]] = [[] for _ in policy_specs]
    for path in find_trace_files(root):
        label = str(path.relative_to(root)) if path != root else path.name
        try:
            summary, stats = _replay_one(path, label, makers, episodes, seed, env_config, settings)
        except (TraceError, ConfigError, OSError) as error:
            reason = f"{type(error).__name__}: {error}"
            skipped.append({"file": label, "reason": reason})
            echo(f"\ntrace {label}: skipped: {reason}")
            continue
        rows = _rows(policy_specs, stats)
        for total, policy_stats in zip(totals, stats):
            total.append(policy_stats)
        echo(f"\ntrace {label}: {_describe(summary)}")
        for warning in summary["warnings"]:
            echo(f"  warning: {warning}")
        echo(format_gardener_table(rows))
        results.append({"file": label, "summary": summary, "policies": rows})
    overall = None
    if results:
        overall = _rows(policy_specs, [np.concatenate(total) for total in totals])
        echo(f"\noverall: {len(results)} traces x {episodes} episodes "
             f"({len(skipped)} files skipped)")
        echo(format_gardener_table(overall))
    return {"traces": results, "skipped": skipped, "overall": overall}
