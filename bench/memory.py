"""The gardener's memory: state bytes per grid by grid size, and the peak RSS of a large native
env measured in a fresh interpreter (`python -m bench.memory` is that interpreter)."""
from __future__ import annotations

import json
import sys

import numpy as np

from bench.gardener_kernels import BATCHES, GRID_SIZES, MEMORY_CAP_BYTES, square_params
from bench.report import Section
from bench.timing import SEED, action_ring, run_child
from puffer_cluster.kernels.world import state_bytes_per_grid
from puffer_cluster.env import GardenerEnv

PEAK_RSS_GRIDS = 65536
PEAK_RSS_GRID = 16
PEAK_RSS_STEPS = 3
# Modules whose presence in the peak-RSS baseline is worth stating.
HEAVY_MODULES = ("numba", "gymnasium", "pufferlib", "torch")


def state_size_section() -> Section:
    def state_cell(grids):
        def cell(row):
            total = row["bytes_per_grid"] * grids
            over = " (over cap)" if total > MEMORY_CAP_BYTES else ""
            return f"{total / 2**20:,.0f} MiB{over}"
        return cell

    columns = (("grid", lambda row: f"{row['grid']}x{row['grid']}"),
               ("state bytes per grid", lambda row: f"{row['bytes_per_grid']:,}"),
               *((f"state of {grids:,} grids", state_cell(grids)) for grids in BATCHES))
    rows = [{"grid": grid, "bytes_per_grid": state_bytes_per_grid(square_params(grid))}
            for grid in GRID_SIZES]
    return Section("State size (`kernels.world.state_bytes_per_grid`)", columns, rows, [
        f"The memory cap for measured rows is {MEMORY_CAP_BYTES / 2**30:.0f} GiB of state."])


def proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def peak_rss_child() -> None:
    """Runs in a fresh interpreter: peak RSS before and after holding PEAK_RSS_GRIDS grids."""
    warmup = GardenerEnv(num_envs=2, height=PEAK_RSS_GRID, width=PEAK_RSS_GRID)
    warmup.reset(seed=SEED)
    warmup.step(np.zeros(warmup.num_agents, dtype=np.int32))
    baseline_kib = proc_status_kib("VmHWM")
    env = GardenerEnv(num_envs=PEAK_RSS_GRIDS, height=PEAK_RSS_GRID, width=PEAK_RSS_GRID)
    env.reset(seed=SEED)
    actions = action_ring("gardener", env.num_agents)
    for step in range(PEAK_RSS_STEPS):
        env.step(actions[step])
    buffers = (env.observations, env.rewards, env.terminals, env.truncations, env.masks,
               env.actions)
    print(json.dumps({
        "heavy_imports": [name for name in HEAVY_MODULES if name in sys.modules],
        "baseline_kib": baseline_kib, "peak_kib": proc_status_kib("VmHWM"),
        "state_bytes": state_bytes_per_grid(env.params) * PEAK_RSS_GRIDS,
        "buffer_bytes": sum(buffer.nbytes for buffer in buffers),
    }))


def peak_rss_section() -> Section:
    child = run_child("bench.memory")
    if child.returncode != 0:
        raise RuntimeError(f"the peak-RSS child failed (exit {child.returncode}): {child.stderr}")
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    grids = f"{PEAK_RSS_GRIDS:,} grids of {PEAK_RSS_GRID}x{PEAK_RSS_GRID}"
    rows = [
        {"what": "interpreter + imports + a 2-grid env stepped once (baseline)",
         "mib": measured["baseline_kib"] / 1024},
        {"what": f"after a GardenerEnv of {grids}: allocate, reset, {PEAK_RSS_STEPS} steps",
         "mib": measured["peak_kib"] / 1024},
        {"what": "difference", "mib": (measured["peak_kib"] - measured["baseline_kib"]) / 1024},
        {"what": "expected: state + env buffers (observations, rewards, ...)",
         "mib": (measured["state_bytes"] + measured["buffer_bytes"]) / 2**20},
    ]
    columns = (("", lambda row: row["what"]),
               ("peak RSS (VmHWM)", lambda row: f"{row['mib']:,.0f} MiB"))
    imported = ", ".join(measured["heavy_imports"])
    not_imported = ", ".join(name for name in HEAVY_MODULES
                             if name not in measured["heavy_imports"]) or "none"
    return Section(f"Peak RSS of {grids} (fresh subprocess)", columns, rows, [
        f"The baseline process has imported {imported} (not: {not_imported})."])


if __name__ == "__main__":
    peak_rss_child()
