"""The gardener's native env under PufferLib's vectorization, and PufferLib's own Ocean Squared
(a compiled C env) as an outside reference."""
from __future__ import annotations

import numba
import numpy as np
import pufferlib.vector

from bench.gardener_kernels import Plan, over_memory_cap
from bench.report import THROUGHPUT_COLUMNS, Section, throughput_row
from bench.timing import ACTION_RING_SIZE, SEED, action_ring, timed
from puffer_cluster.env import GardenerEnv

# PufferLib vectorization: copies of the native env, each holding grids / VECTOR_COPIES grids.
VECTOR_COPIES = 2
VECTOR_WORKERS = 2
# Squared has no grid of ours: it is compared with the kernel on the config's default grid.
SQUARED_BASELINE_GRID = 16
SQUARED_ACTIONS = 5


def gardener_env_with_threads(*args, numba_threads: int, **kwargs) -> GardenerEnv:
    """A GardenerEnv whose kernel calls use `numba_threads` threads (set in the process, and
    thread, that will step it: a Multiprocessing worker or the main process)."""
    numba.set_num_threads(numba_threads)
    return GardenerEnv(*args, **kwargs)


def vector_speed(backend, grid: int, grids: int, numba_threads: int, seconds: float) -> dict:
    """send/recv throughput of VECTOR_COPIES native envs of grids / VECTOR_COPIES grids each."""
    options = {}
    if backend is pufferlib.vector.Multiprocessing:
        # overwork: measure VECTOR_WORKERS workers even where there are fewer physical cores.
        options = {"num_workers": VECTOR_WORKERS, "overwork": True}
    vecenv = pufferlib.vector.make(
        gardener_env_with_threads, backend=backend, num_envs=VECTOR_COPIES, seed=SEED,
        env_kwargs={"numba_threads": numba_threads, "num_envs": grids // VECTOR_COPIES,
                    "height": grid, "width": grid},
        **options)
    try:
        actions = action_ring("gardener", grids)
        vecenv.async_reset(SEED)
        vecenv.recv()

        def step_once(i):
            vecenv.send(actions[i % ACTION_RING_SIZE])
            vecenv.recv()

        return timed(step_once, grids, seconds)
    finally:
        vecenv.close()


def vector_section(plan: Plan, thread_counts: list[int]) -> Section:
    all_threads = max(thread_counts)
    threads_per_worker = max(1, all_threads // VECTOR_WORKERS)
    rows = []
    for grid in plan.grid_sizes:
        for grids in plan.batches:
            skipped = over_memory_cap(grid, grids)
            for threads in thread_counts:
                result = None if skipped else vector_speed(
                    pufferlib.vector.Serial, grid, grids, threads, plan.seconds_per_row)
                rows.append(throughput_row("puffer Serial", grid, grids, str(threads),
                                           (grid, grids, threads), result, skipped or ""))
            result = None if skipped else vector_speed(
                pufferlib.vector.Multiprocessing, grid, grids, threads_per_worker,
                plan.seconds_per_row)
            rows.append(throughput_row("puffer Multiprocessing", grid, grids,
                                       f"{VECTOR_WORKERS}x{threads_per_worker}",
                                       (grid, grids, all_threads), result, skipped or ""))
    title = "PufferLib vectorization of the native `GardenerEnv`"
    return Section(title, THROUGHPUT_COLUMNS, rows, [
        f"`pufferlib.vector.make(GardenerEnv, num_envs={VECTOR_COPIES}, ...)`: {VECTOR_COPIES} "
        "copies of the native env holding half the grids each; `async_reset`, then `send`/`recv` "
        "pairs.",
        f"Serial steps the copies one after the other in this process. Multiprocessing runs "
        f"{VECTOR_WORKERS} worker processes (threads `workers x Numba threads per worker`) and "
        f"is compared with the kernel on all {all_threads} threads: it uses that many cores."])


def squared_section(plan: Plan) -> Section:
    title = "PufferLib Ocean Squared (compiled C env, native vectorization), an outside reference"
    try:
        from pufferlib.ocean.squared.squared import Squared
    except ImportError as error:
        return Section(title, THROUGHPUT_COLUMNS, [], [f"Squared is not importable here: {error}"])
    rng = np.random.default_rng(SEED)
    rows = []
    for grids in plan.batches:
        env = Squared(num_envs=grids)
        env.reset(seed=SEED)
        board = int(round(env.single_observation_space.shape[0] ** 0.5))
        actions = rng.integers(0, SQUARED_ACTIONS, size=(ACTION_RING_SIZE, grids), dtype=np.int32)
        result = timed(lambda i: env.step(actions[i % ACTION_RING_SIZE]), grids,
                       plan.seconds_per_row)
        env.close()
        rows.append(throughput_row("ocean Squared", board, grids, "1",
                                   (SQUARED_BASELINE_GRID, grids, 1), result))
    return Section(title, THROUGHPUT_COLUMNS, rows, [
        "Squared moves one agent on a board whose observation is the whole board: O(1) work "
        "per step, single-threaded C. Compared with the kernel on the config's default "
        f"{SQUARED_BASELINE_GRID}x{SQUARED_BASELINE_GRID} grid, same batch, 1 thread."])
