"""World v2 throughput: the event-driven kernel against the dense one, one thread, random actions.

    NUMBA_NUM_THREADS=1 python -m bench.world_v2 [--seconds 2] [--json out.json] [--png out.png]

Rows: grid size x grids x gardeners per grid, for `kernels.dense` and `kernels.event`, after a
warm-up, best of 3 windows of CPU time (the machine is shared: process time, not wall time).
Events per step count the spikes that land (spike_rate * nodes) and the OOMs (from the episode
statistics), the event kernel's per-node work (the cpu phase changes a spike causes are changes
on its wheel, no work when due). State bytes per grid include the event kernel's queue (a wheel
of 3 * (max_steps + 1) int64 and 7 more int64 per node, its record padded to 128 bytes).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from bench.timing import ACTION_RING_SIZE, action_ring, timed, write_json
from puffer_cluster.kernels import dense, event
from puffer_cluster.kernels.world import OBS_SIZE, STAT_LENGTH, STAT_OOM, allocate_state, grid_seeds, state_bytes_per_grid
from puffer_cluster.env import grid_drivers_for, world_params

ROWS = ((16, 4096, 1), (64, 256, 1), (128, 64, 1), (256, 16, 1),
        (16, 4096, 4), (64, 256, 4), (128, 64, 4), (256, 16, 4))


def measure(kernel, size: int, grids: int, agents: int, seconds: float) -> dict:
    params = world_params(dict(height=size, width=size, agents_per_grid=agents))
    state = allocate_state(grids, params, event=kernel is event)
    state.grid_seed[:] = grid_seeds(0, 0, grids)
    n = grids * agents
    obs, rewards = np.zeros((n, OBS_SIZE), np.float32), np.zeros(n, np.float32)
    terminals, truncations = np.zeros(n, bool), np.zeros(n, bool)
    ring = action_ring("gardener", n)
    # The drivers GardenerEnv runs: the serial builds when Numba has one thread.
    reset, step = grid_drivers_for(kernel, grids)
    reset(state, params, obs)

    def step_once(i):
        step(state, params, ring[i % ACTION_RING_SIZE], obs, rewards, terminals, truncations, True)

    result = timed(step_once, grids, seconds, warmup_steps=3, clock=time.process_time)
    finished = state.finished_sum
    oom_per_step = finished[:, STAT_OOM].sum() / max(1.0, finished[:, STAT_LENGTH].sum())
    events = params.spike_rate * size * size + oom_per_step
    best, windows = result["agent_steps_per_s"], result["window_speeds"]
    return dict(kernel=kernel.__name__.split(".")[-1], grid=size, grids=grids, agents=agents,
                nodes=size * size, agent_steps_per_s=best * agents, grid_steps_per_s=best,
                spread=1 - min(windows) / best, events_per_step=events,
                ns_per_event=1e9 / best / events,
                state_bytes_per_grid=state_bytes_per_grid(params, kernel is event))


def plot(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(6, 4))
    for name in ("dense", "event"):
        for agents, style in ((1, "-o"), (4, "--s")):
            points = [(r["nodes"], r["agent_steps_per_s"]) for r in rows
                      if r["kernel"] == name and r["agents"] == agents]
            if points:
                axis.plot(*zip(*points), style, label=f"{name}, {agents} gardener(s)")
    axis.set(xscale="log", yscale="log", xlabel="nodes per grid", ylabel="agent-steps/s (1 thread)",
             title="World v2: dense vs event kernel")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json")
    parser.add_argument("--png")
    args = parser.parse_args()
    rows = []
    print("| kernel | grid | grids | agents | agent-steps/s | spread | events/step | ns/event "
          "| state bytes/grid |\n|---|---|---|---|---|---|---|---|---|")
    for size, grids, agents in ROWS:
        for kernel in (dense, event):
            row = measure(kernel, size, grids, agents, args.seconds)
            rows.append(row)
            print(f"| {row['kernel']} | {size}x{size} | {grids:,} | {agents} | "
                  f"{row['agent_steps_per_s']:,.0f} | {row['spread']:.0%} | "
                  f"{row['events_per_step']:.1f} | {row['ns_per_event']:,.0f} | "
                  f"{row['state_bytes_per_grid']:,} |", flush=True)
    if args.json:
        write_json(args.json, rows)
    if args.png:
        plot(rows, args.png)


if __name__ == "__main__":
    main()
