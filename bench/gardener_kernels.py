"""The gardener's own ways to step its world: the Numba kernel (the baseline of every other row),
the NumPy reference and the Gymnasium env, on square grids of several sizes and batches."""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from bench.report import NUMBA, THROUGHPUT_COLUMNS, Section, throughput_row
from bench.timing import ACTION_RING_SIZE, SEED, action_ring, timed
from puffer_cluster.kernels import event, reference
from puffer_cluster.kernels.world import OBS_SIZE, allocate_state, grid_seeds, state_bytes_per_grid
from puffer_cluster.env import GardenerGymEnv, world_params

GRID_SIZES = (8, 16, 32, 64, 128)
BATCHES = (1024, 4096, 16384)
# 128x128 with 16384 grids would hold 6.4 GB of state: such rows are skipped, and say so.
MEMORY_CAP_BYTES = 4 * 2**30
# The NumPy reference is slow (a step of 1,024 grids of 128x128 takes seconds): one step per
# window suffices, and it runs on the smallest batch only.
REFERENCE_MIN_STEPS_PER_WINDOW = 1
# The Gymnasium loop draws Python ints: one long sequence rather than a ring of arrays.
GYM_ACTIONS = 1024


@dataclass(frozen=True)
class Plan:
    """What one mode measures."""
    name: str
    grid_sizes: tuple[int, ...]
    batches: tuple[int, ...]
    seconds_per_row: float
    reference_grid_sizes: tuple[int, ...]
    reference_seconds_per_row: float
    gym_grid_sizes: tuple[int, ...]


QUICK = Plan("quick", grid_sizes=(16, 64), batches=(1024, 4096), seconds_per_row=0.3,
             reference_grid_sizes=(16,), reference_seconds_per_row=0.3, gym_grid_sizes=(16,))
FULL = Plan("full", grid_sizes=GRID_SIZES, batches=BATCHES, seconds_per_row=2.0,
            reference_grid_sizes=GRID_SIZES, reference_seconds_per_row=1.0,
            gym_grid_sizes=GRID_SIZES)


def square_params(grid: int):
    return world_params({"height": grid, "width": grid})


def over_memory_cap(grid: int, grids: int) -> str | None:
    """Why `grids` grids of `grid`x`grid` are not measured, or None when they fit the cap."""
    state = state_bytes_per_grid(square_params(grid)) * grids
    if state <= MEMORY_CAP_BYTES:
        return None
    return f"skipped: state {state / 2**30:.1f} GiB > {MEMORY_CAP_BYTES / 2**30:.0f} GiB cap"


class KernelWorld:
    """State, output buffers and a ring of pre-drawn actions for one backend's `step`."""

    def __init__(self, backend, params, grids: int):
        self.backend, self.params = backend, params
        agents = grids * params.agents_per_grid
        self.state = allocate_state(grids, params, event=backend is event)
        self.state.grid_seed[:] = grid_seeds(SEED, 0, grids)
        self.observations = np.zeros((agents, OBS_SIZE), dtype=np.float32)
        self.rewards = np.zeros(agents, dtype=np.float32)
        self.terminals = np.zeros(agents, dtype=bool)
        self.truncations = np.zeros(agents, dtype=bool)
        self.actions = action_ring("gardener", agents)
        backend.reset_grids(self.state, params, self.observations)

    def step(self, i: int):
        self.backend.step(self.state, self.params, self.actions[i % ACTION_RING_SIZE],
                          self.observations, self.rewards, self.terminals, self.truncations, True)


def numba_section(plan: Plan, thread_counts: list[int]) -> Section:
    rows = []
    for grid in plan.grid_sizes:
        for grids in plan.batches:
            rows += numba_rows(grid, grids, thread_counts, plan.seconds_per_row)
    return Section("Numba kernel (`kernels.event.step` on a `WorldState`)", THROUGHPUT_COLUMNS,
                   rows, ["Rows with several threads are compared with the same grid and batch "
                          "on 1 thread: the thread scaling."])


def numba_rows(grid: int, grids: int, thread_counts: list[int], seconds: float) -> list[dict]:
    skipped = over_memory_cap(grid, grids)
    if skipped:
        return [throughput_row(NUMBA, grid, grids, str(threads), None, None, skipped)
                for threads in thread_counts]
    world = KernelWorld(event, square_params(grid), grids)
    rows = []
    for threads in thread_counts:
        numba.set_num_threads(threads)
        result = timed(world.step, grids, seconds)
        baseline = None if threads == 1 else (grid, grids, 1)
        rows.append(throughput_row(NUMBA, grid, grids, str(threads), baseline, result))
    return rows


def reference_section(plan: Plan) -> Section:
    grids = plan.batches[0]
    rows = []
    for grid in plan.reference_grid_sizes:
        skipped = over_memory_cap(grid, grids)
        result = None
        if not skipped:
            world = KernelWorld(reference, square_params(grid), grids)
            result = timed(world.step, grids, plan.reference_seconds_per_row,
                           REFERENCE_MIN_STEPS_PER_WINDOW)
        rows.append(throughput_row("numpy reference", grid, grids, "1", (grid, grids, 1), result,
                                   skipped or ""))
    return Section("NumPy reference (`kernels.reference.step`)", THROUGHPUT_COLUMNS, rows, [
        f"Slow (see `vs numba`), so measured on {grids:,} grids only, for "
        f"{plan.reference_seconds_per_row:g} s per row (at least {REFERENCE_MIN_STEPS_PER_WINDOW} "
        "step per window); NumPy runs on one thread, so it is compared with the kernel on 1 "
        "thread."])


def gym_section(plan: Plan) -> Section:
    baseline_grids = plan.batches[0]
    rng = np.random.default_rng(SEED)
    rows = []
    for grid in plan.gym_grid_sizes:
        env = GardenerGymEnv(height=grid, width=grid)
        env.reset(seed=SEED)
        actions = rng.integers(0, env.action_space.n, size=GYM_ACTIONS).tolist()

        def step_once(i):
            _, _, terminated, truncated, _ = env.step(actions[i % GYM_ACTIONS])
            if terminated or truncated:
                env.reset()

        result = timed(step_once, 1, plan.seconds_per_row)
        rows.append(throughput_row("gymnasium loop", grid, 1, "1", (grid, baseline_grids, 1),
                                   result))
    return Section("Gymnasium (`GardenerGymEnv`, one env, a plain Python loop)",
                   THROUGHPUT_COLUMNS, rows, [
                       "One grid per `step` call; resets after an episode are timed too. Compared "
                       f"with the kernel stepping {baseline_grids:,} grids on 1 thread: the cost "
                       "per agent-step of going through Python one step at a time."])
