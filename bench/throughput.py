"""Env-only throughput of the gardener world: agent-steps/s of every way to step it, in one report.

    python bench/throughput.py [--quick] [--json out.json] [--train]

Only stepping is timed. Actions come from a small ring of arrays drawn beforehand; a warm-up
(first-call and JIT costs) precedes each row, which then steps for a fixed wall-clock budget
split into a few windows.
Every row is compared with the Numba kernel measured in the same run, and says with which
configuration. The report is a list of sections, so that more (training) can follow.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import pufferlib.vector

from puffer_cluster.kernels import event, reference
from puffer_cluster.kernels.policies import random_actions
from puffer_cluster.kernels.world import OBS_SIZE, allocate_state, grid_seeds, state_bytes_per_grid
from puffer_cluster.env import GardenerEnv, GardenerGymEnv, world_params

GRID_SIZES = (8, 16, 32, 64, 128)
BATCHES = (1024, 4096, 16384)
# 128x128 with 16384 grids would hold 6.4 GB of state: such rows are skipped, and say so.
MEMORY_CAP_BYTES = 4 * 2**30
SEED = 0
NUMBA = "numba"  # the backend name of the kernel rows every other row is compared with
ACTION_RING_SIZE = 16
WARMUP_STEPS = 2
TIMING_WINDOWS = 3
MIN_STEPS_PER_WINDOW = 2
# The NumPy reference is slow (a step of 1,024 grids of 128x128 takes seconds): one step per
# window suffices, and it runs on the smallest batch only.
REFERENCE_MIN_STEPS_PER_WINDOW = 1
# PufferLib vectorization: copies of the native env, each holding grids / VECTOR_COPIES grids.
VECTOR_COPIES = 2
VECTOR_WORKERS = 2
# Squared has no grid of ours: it is compared with the kernel on the config's default grid.
SQUARED_BASELINE_GRID = 16
SQUARED_ACTIONS = 5
# The Gymnasium loop draws Python ints: one long sequence rather than a ring of arrays.
GYM_ACTIONS = 1024
PEAK_RSS_GRIDS = 65536
PEAK_RSS_GRID = 16
PEAK_RSS_STEPS = 3
# Modules whose presence in the peak-RSS baseline is worth stating.
HEAVY_MODULES = ("numba", "gymnasium", "pufferlib", "torch")


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


@dataclass
class Section:
    """One table of the report: `columns` are (header, row -> cell text) pairs."""
    title: str
    columns: tuple
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Measuring


def timed(step_once, agents_per_step: int, seconds: float, min_steps: int) -> dict:
    """Warm up, then time TIMING_WINDOWS windows of `step_once(i)` calls, each lasting
    `seconds / TIMING_WINDOWS` of wall clock and at least `min_steps` calls. The best window is
    the row's speed (other processes only ever slow a window down); the spread shows the noise."""
    for i in range(WARMUP_STEPS):
        step_once(i)
    window_speeds, total_steps = [], 0
    for _ in range(TIMING_WINDOWS):
        steps = 0
        start = time.perf_counter()
        while True:
            step_once(steps)
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / TIMING_WINDOWS and steps >= min_steps:
                break
        window_speeds.append(agents_per_step * steps / elapsed)
        total_steps += steps
    return {"agent_steps_per_s": max(window_speeds), "window_speeds": window_speeds,
            "steps": total_steps}


def action_ring(agents: int) -> np.ndarray:
    """ACTION_RING_SIZE arrays of uniform actions, drawn by the project's random policy."""
    ring = np.empty((ACTION_RING_SIZE, agents), dtype=np.int32)
    for step in range(ACTION_RING_SIZE):
        random_actions(SEED, step, ring[step])
    return ring


def square_params(grid: int):
    return world_params({"height": grid, "width": grid})


def over_memory_cap(grid: int, grids: int) -> str | None:
    """Why `grids` grids of `grid`x`grid` are not measured, or None when they fit the cap."""
    state = state_bytes_per_grid(square_params(grid)) * grids
    if state <= MEMORY_CAP_BYTES:
        return None
    return f"skipped: state {state / 2**30:.1f} GiB > {MEMORY_CAP_BYTES / 2**30:.0f} GiB cap"


def throughput_row(backend: str, grid: int, grids: int, threads: str, baseline: tuple | None,
                   result: dict | None, note: str = "") -> dict:
    """A row of a throughput table (logged to stderr as progress). `baseline` is the
    (grid, grids, threads) of the Numba kernel row it is compared with; `result` is None when
    the row was skipped, and `note` then says why."""
    measured = result or {"agent_steps_per_s": None, "window_speeds": [], "steps": None}
    row = {"backend": backend, "grid": grid, "grids": grids, "threads": threads, **measured,
           "baseline": baseline, "note": note}
    speed = note if result is None else f"{row['agent_steps_per_s']:,.0f} agent-steps/s"
    print(f"  {backend:<24} {grid:>3}x{grid:<3} {grids:>6} grids  {threads:>3} thr  {speed}",
          file=sys.stderr, flush=True)
    return row


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
        self.actions = action_ring(agents)
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
        result = timed(world.step, grids, seconds, MIN_STEPS_PER_WINDOW)
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

        result = timed(step_once, 1, plan.seconds_per_row, MIN_STEPS_PER_WINDOW)
        rows.append(throughput_row("gymnasium loop", grid, 1, "1", (grid, baseline_grids, 1),
                                   result))
    return Section("Gymnasium (`GardenerGymEnv`, one env, a plain Python loop)",
                   THROUGHPUT_COLUMNS, rows, [
                       "One grid per `step` call; resets after an episode are timed too. Compared "
                       f"with the kernel stepping {baseline_grids:,} grids on 1 thread: the cost "
                       "per agent-step of going through Python one step at a time."])


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
        actions = action_ring(grids)
        vecenv.async_reset(SEED)
        vecenv.recv()

        def step_once(i):
            vecenv.send(actions[i % ACTION_RING_SIZE])
            vecenv.recv()

        return timed(step_once, grids, seconds, MIN_STEPS_PER_WINDOW)
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
                       plan.seconds_per_row, MIN_STEPS_PER_WINDOW)
        env.close()
        rows.append(throughput_row("ocean Squared", board, grids, "1",
                                   (SQUARED_BASELINE_GRID, grids, 1), result))
    return Section(title, THROUGHPUT_COLUMNS, rows, [
        "Squared moves one agent on a board whose observation is the whole board: O(1) work "
        "per step, single-threaded C. Compared with the kernel on the config's default "
        f"{SQUARED_BASELINE_GRID}x{SQUARED_BASELINE_GRID} grid, same batch, 1 thread."])


# ---------------------------------------------------------------------------------------------
# Memory


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
    actions = action_ring(env.num_agents)
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
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--peak-rss-child"],
                           capture_output=True, text=True, check=True)
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


# ---------------------------------------------------------------------------------------------
# Training throughput


@dataclass(frozen=True)
class TrainPlan:
    """Training runs of one mode. A run's first iteration (rollout + update) is warm-up (first
    calls, JIT, allocation) and only starts the clock; each later iteration is a timing window.
    A run stops after `max_iterations`, or once it has timed at least TRAIN_MIN_TIMED iterations
    and `seconds` of wall clock."""
    grid_batches: tuple[int, ...]
    max_iterations: int
    seconds: float


# Both trainers run the default config (grids of 16x16, num_steps, minibatches, epochs, MLP of
# hidden_size) on the CPU; the full plan's last batch is the default config's num_envs.
TRAIN_GRID = 16
TRAIN_MIN_TIMED = 2
TRAIN_QUICK = TrainPlan(grid_batches=(1024,), max_iterations=4, seconds=2.0)
TRAIN_FULL = TrainPlan(grid_batches=(1024, 4096), max_iterations=5, seconds=5.0)
OURS = "ours (trainers/ppo.py)"
PUFFERL = "pufferlib.pufferl"
PUFFERL_CHILD_TIMEOUT_S = 900
# Runs `pufferl_child(spec)` of this file in a fresh interpreter: importing pufferlib.pufferl
# turns RuntimeWarnings into errors and installs a SIGINT handler, process-wide.
PUFFERL_CHILD_CODE = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('bench_throughput_child', sys.argv[1])\n"
    "module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module.pufferl_child(sys.argv[2])\n")


def training_config(grids: int, threads: int, teacher: str, iterations: int) -> dict:
    """The default config on `grids` grids of TRAIN_GRID x TRAIN_GRID, on the CPU with `threads`
    torch threads, planned for `iterations` PPO iterations (no checkpoint before the end)."""
    from puffer_cluster.config import load_config
    batch = grids * load_config()["train"]["num_steps"]
    return load_config(None, [
        "--env.num-envs", str(grids), "--env.height", str(TRAIN_GRID),
        "--env.width", str(TRAIN_GRID), "--policy.name", "mlp",
        "--train.device", "cpu", "--train.torch-threads", str(threads),
        "--train.teacher", teacher, "--train.compile", "False",
        "--train.precision", "float32", "--train.total-timesteps", str(iterations * batch),
        "--train.checkpoint-interval", str(10**9), "--train.eval-interval", "0"])


def training_done(stamps: list[float], plan: TrainPlan) -> bool:
    """Whether a run with these end-of-iteration timestamps has been timed long enough."""
    timed = len(stamps) - 1
    return len(stamps) >= plan.max_iterations or (
        timed >= TRAIN_MIN_TIMED and stamps[-1] - stamps[0] >= plan.seconds)


def iteration_speeds(stamps: list[float], batch: int, num_steps: int) -> dict:
    """Agent-steps/s of each timed iteration from the end-of-iteration timestamps; like `timed`,
    the best window is the speed (other processes only ever slow one down)."""
    speeds = [batch / (end - start) for start, end in zip(stamps, stamps[1:])]
    return {"agent_steps_per_s": max(speeds), "window_speeds": speeds,
            "mean_agent_steps_per_s": batch * len(speeds) / (stamps[-1] - stamps[0]),
            "steps": num_steps * len(speeds)}


def set_threads(threads: int) -> None:
    """Torch intra-op threads and Numba threads (the env kernel and the teacher)."""
    import torch
    torch.set_num_threads(threads)
    numba.set_num_threads(threads)


def measure_ours(grids: int, threads: int, teacher: str, plan: TrainPlan) -> dict:
    """`trainers.ppo.train`, timed by its `should_stop` callback (called after each iteration)."""
    import tempfile

    from puffer_cluster.registry import get_env_spec
    from puffer_cluster.trainers import ppo
    from puffer_cluster.trainers.models import make_policy
    config = training_config(grids, threads, teacher, plan.max_iterations)
    spec = get_env_spec(config["base"]["env_name"])
    set_threads(threads)
    stamps = []

    def should_stop(iteration: int) -> bool:
        stamps.append(time.perf_counter())
        return training_done(stamps, plan)

    with tempfile.TemporaryDirectory(prefix="bench-train-") as run_dir:
        ppo.train(config, run_dir=run_dir, should_stop=should_stop, quiet=True)
    num_steps = config["train"]["num_steps"]
    policy = make_policy(config["policy"], spec.obs_size, spec.num_actions)
    return {**iteration_speeds(stamps, grids * num_steps, num_steps),
            "params": sum(p.numel() for p in policy.parameters())}


def pufferl_child(spec_text: str) -> None:
    """Runs in a fresh interpreter (PUFFERL_CHILD_CODE): PufferLib's own trainer, `PuffeRL`, on
    our env and config, timed per `evaluate()` + `train()` iteration; one JSON line on stdout."""
    spec = json.loads(spec_text)
    plan = TrainPlan(**spec["plan"])
    out, sys.stdout = sys.stdout, sys.stderr  # whatever PufferLib prints goes to stderr

    def reply(**result):
        print(json.dumps(result), file=out, flush=True)

    from puffer_cluster.config import ConfigError
    from puffer_cluster.trainers.pufferl import (
        PuffeRLPolicy, PuffeRLSettings, import_pufferl, make_puffer_vecenv, new_puffer_rl,
        puffer_train_config, pufferl_run_config,
    )
    try:
        pufferl = import_pufferl()  # fails without its compiled kernel
    except ConfigError as error:
        return reply(skipped=str(error))
    import tempfile

    import pufferlib.models
    import torch
    try:
        torch.ops.pufferlib.compute_puff_advantage
    except (AttributeError, RuntimeError) as error:
        return reply(skipped="no compiled kernel torch.ops.pufferlib.compute_puff_advantage: "
                             f"{error}")
    from puffer_cluster.config import settings_from
    from puffer_cluster.trainers.models import make_policy

    # The config `train --train.trainer pufferl` runs: the same network and observation as ours.
    config = pufferl_run_config(training_config(spec["grids"], spec["threads"], "none",
                                                plan.max_iterations))
    ours = config["train"]
    set_threads(spec["threads"])
    torch.manual_seed(ours["seed"])
    vecenv = make_puffer_vecenv(config)  # the native GardenerEnv, as ours steps it
    hidden = config["policy"]["hidden_size"]
    if spec["policy"] == "default":
        policy = pufferlib.models.Default(vecenv, hidden_size=hidden)
    else:
        policy = PuffeRLPolicy(make_policy(config["policy"], OBS_SIZE,
                                           vecenv.single_action_space.n))
    num_steps = ours["num_steps"]
    batch = vecenv.num_agents * num_steps
    # PuffeRL's config as the pufferl trainer builds it ([pufferl] and the shared [train] keys),
    # one iteration more than run, so that PuffeRL.train's end-of-training checkpoint is not
    # timed; quiet, as ours runs with quiet=True: no dashboard.
    settings = settings_from(PuffeRLSettings, config, bptt_horizon=num_steps)
    stamps = []
    with tempfile.TemporaryDirectory(prefix="bench-pufferl-") as data_dir:
        trainer = new_puffer_rl(pufferl, puffer_train_config(
            config, settings, torch.device("cpu"), plan.max_iterations + 1, Path(data_dir)),
            vecenv, policy)
        try:
            while not stamps or not training_done(stamps, plan):
                trainer.evaluate()
                trainer.train()
                stamps.append(time.perf_counter())
        finally:
            trainer.close()
    reply(**iteration_speeds(stamps, batch, num_steps),
          params=sum(p.numel() for p in policy.parameters()))


def measure_pufferl(grids: int, threads: int, policy: str, plan: TrainPlan) -> dict:
    """`pufferl_child` in a fresh interpreter: its result, or {"skipped": reason}."""
    spec = json.dumps({"grids": grids, "threads": threads, "policy": policy,
                       "plan": plan.__dict__})
    try:
        child = subprocess.run([sys.executable, "-c", PUFFERL_CHILD_CODE,
                                os.path.abspath(__file__), spec],
                               capture_output=True, text=True, timeout=PUFFERL_CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"skipped": f"skipped: the pufferl child ran over {PUFFERL_CHILD_TIMEOUT_S} s"}
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": f"skipped: the pufferl child failed (exit {child.returncode}): {tail}"}
    result = json.loads(lines[-1])
    if "skipped" in result:
        result["skipped"] = f"skipped: {result['skipped']}"
    return result


def training_row(backend: str, grids: int, threads: int, result: dict, note: str,
                 ours: dict | None) -> dict:
    """A training row; `ours` (our trainer, teacher none, same config) gives its ratio to ours."""
    if "skipped" in result:
        return throughput_row(backend, TRAIN_GRID, grids, str(threads), None, None,
                              result["skipped"])
    measured = {key: result[key] for key in ("agent_steps_per_s", "window_speeds", "steps")}
    note = f"{note}, {result['params']:,} params; mean {result['mean_agent_steps_per_s']:,.0f}"
    if ours is not None:
        note += f"; {result['agent_steps_per_s'] / ours['agent_steps_per_s']:.2f}x ours"
    return throughput_row(backend, TRAIN_GRID, grids, str(threads), (TRAIN_GRID, grids, threads),
                          measured, note)


def training_notes(args) -> list[str]:
    """What the training rows measure (for the section's notes)."""
    from puffer_cluster.config import load_config
    plan = TRAIN_QUICK if args.quick else TRAIN_FULL
    train, policy = load_config()["train"], load_config()["policy"]
    return [
        "Agent-steps/s of whole PPO iterations (rollout of num_steps env steps + policy, then the "
        f"update) on the CPU; up to {plan.max_iterations} iterations per run, the first untimed "
        f"(warm-up), then at least {TRAIN_MIN_TIMED} timed (until {plan.seconds:g} s); a row shows "
        "its best iteration and, in its note, the mean. `vs numba` is the env-only kernel on the "
        "same grids and threads (torch and Numba both get `threads`).",
        f"{OURS}: `train(config, quiet=True)` on the default config's PPO settings ({TRAIN_GRID}x"
        f"{TRAIN_GRID} grids, num_steps {train['num_steps']}, {train['num_minibatches']} "
        f"minibatches, {train['update_epochs']} epochs, adam, float32, no compile, mlp of "
        f"hidden_size {policy['hidden_size']}: separate 2-layer tanh actor and critic; no "
        "in-training evaluation); timed at its `should_stop` callback.",
        f"{PUFFERL}: PufferLib's `PuffeRL.evaluate()` + `train()` in a fresh subprocess, on the "
        "same native GardenerEnv and config as `train --train.trainer pufferl` runs it (the "
        "critic sees the plain observation): the same batch (grids x bptt_horizon 32), minibatch "
        "and epochs, adam, float32, no compile, its compiled advantage kernel "
        "(torch.ops.pufferlib), dashboard off; with our mlp (the same network), and with "
        f"`pufferlib.models.Default(hidden_size={policy['hidden_size']})` (one shared Linear+GELU "
        "layer, linear heads: "
        "a fifth of the parameters). Its prioritized minibatch sampling and V-trace are its own.",
        "The teacher (kickstarting, the default config's `teacher = heuristic`) is measured on 1 "
        "thread. With more torch threads than idle cores, torch's OpenMP threads spin-wait "
        "(OMP_WAIT_POLICY unset) and both trainers slow down several-fold (up to 20x on a "
        "loaded 2-core machine); OMP_WAIT_POLICY=PASSIVE avoids it.",
    ]


def training_rows(args) -> list[dict]:
    """Training throughput rows (env + policy + update), from `throughput_row`: our trainer and
    PufferLib's, side by side on each config (interleaved, so that both see the same machine
    load). A row's `baseline` (grid, grids, threads) gives it its ratio to the env-only kernel;
    its note gives its mean speed over the timed iterations and its ratio to ours."""
    plan = TRAIN_QUICK if args.quick else TRAIN_FULL
    thread_counts = sorted({1, numba.config.NUMBA_NUM_THREADS})
    print(f"training: up to {plan.max_iterations} iterations per run, the first untimed",
          file=sys.stderr)
    rows = []
    for grids in plan.grid_batches:
        for threads in thread_counts:
            ours = measure_ours(grids, threads, "none", plan)
            rows.append(training_row(OURS, grids, threads, ours, "teacher none, our mlp", None))
            same = measure_pufferl(grids, threads, "ours", plan)
            rows.append(training_row(PUFFERL, grids, threads, same, "our mlp", ours))
            if "skipped" not in same:
                default = measure_pufferl(grids, threads, "default", plan)
                rows.append(training_row(PUFFERL, grids, threads, default,
                                         "pufferlib.models.Default", ours))
            if threads == 1:  # the teacher's cost; the default config's kickstarting
                kick = measure_ours(grids, threads, "heuristic", plan)
                rows.append(training_row(OURS, grids, threads, kick, "teacher heuristic", ours))
    return rows


SIMARENA_COLUMNS = (
    ("backend", lambda row: row["backend"]),
    ("nodes", lambda row: f"{row['grid']}"),
    ("envs", lambda row: f"{row['grids']:,}"),
    ("threads", lambda row: row["threads"]),
    ("agent-steps/s", lambda row: optional_number(",.0f", row["agent_steps_per_s"])),
    ("note", lambda row: row["note"]),
)


def bench_module(name: str):
    """A standalone bench script of this folder (e.g. 'simarena_throughput'), as a module."""
    import importlib.util
    path = Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def simarena_section(args) -> Section:
    """SimArena's env throughput (the target: at least 10,000 steps/s on one core), from
    bench/simarena_throughput.py."""
    return Section("SimArena (sim-arena's task offline)", SIMARENA_COLUMNS,
                   bench_module("simarena_throughput").simarena_rows(args),
                   ["Random actions over the 100 generated demo scenarios on 4 nodes; one env "
                    "step applies one edit and re-places the target's pods."])


def cluster_ops_section(args) -> Section:
    """ClusterOps' env throughput (at least 1M agent-steps/s per core asked), from
    bench/cluster_ops_throughput.py."""
    return Section("ClusterOps (cluster-code's ops agent)", SIMARENA_COLUMNS,
                   bench_module("cluster_ops_throughput").cluster_ops_rows(args),
                   ["Random actions on the default [cluster_ops] cluster (6 nodes, 5 Deployments "
                    "of 4 pods); one env step is one action, the incidents' spread and arrivals."])


def training_section(args) -> Section:
    rows = training_rows(args)
    notes = training_notes(args) if rows else ["training throughput: not measured"]
    return Section("Training throughput", THROUGHPUT_COLUMNS, rows, notes)


# ---------------------------------------------------------------------------------------------
# Report


def attach_ratios(sections: list[Section]) -> None:
    """Give every throughput row its ratio to the Numba kernel row named by its `baseline`."""
    kernel_speed = {(row["grid"], row["grids"], int(row["threads"])): row["agent_steps_per_s"]
                    for section in sections for row in section.rows
                    if row.get("backend") == NUMBA}
    for section in sections:
        for row in section.rows:
            if "baseline" not in row:
                continue
            baseline = row["baseline"]
            row["vs_numba"] = None
            row["compared_with"] = "—"
            if baseline is None:
                continue
            grid, grids, threads = baseline
            row["compared_with"] = f"numba {grid}x{grid}, {grids:,} grids, {threads} thr"
            speed = kernel_speed.get(tuple(baseline))
            if speed and row["agent_steps_per_s"]:
                row["vs_numba"] = row["agent_steps_per_s"] / speed


def optional_number(text_format: str, value) -> str:
    return "—" if value is None else format(value, text_format)


def ratio_text(ratio) -> str:
    return "—" if ratio is None else f"{ratio:.3g}x"


def spread_text(window_speeds: list[float]) -> str:
    """How much slower the worst timing window was than the best."""
    if not window_speeds:
        return "—"
    return f"{100 * (1 - min(window_speeds) / max(window_speeds)):.0f}%"


THROUGHPUT_COLUMNS = (
    ("backend", lambda row: row["backend"]),
    ("grid", lambda row: f"{row['grid']}x{row['grid']}"),
    ("grids", lambda row: f"{row['grids']:,}"),
    ("threads", lambda row: row["threads"]),
    ("agent-steps/s", lambda row: optional_number(",.0f", row["agent_steps_per_s"])),
    ("vs numba", lambda row: ratio_text(row["vs_numba"])),
    ("compared with", lambda row: row["compared_with"]),
    ("timed steps", lambda row: optional_number(",", row["steps"])),
    ("spread", lambda row: spread_text(row["window_speeds"])),
    ("note", lambda row: row["note"]),
)


def markdown(section: Section) -> str:
    headers = [header for header, _ in section.columns]
    cells = [[cell(row) for _, cell in section.columns] for row in section.rows]
    widths = [max(len(text) for text in column) for column in zip(headers, *cells)]

    def line(texts):
        return "| " + " | ".join(text.ljust(width) for text, width in zip(texts, widths)) + " |"

    lines = [f"### {section.title}", ""]
    if section.rows:
        lines += [line(headers), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
        lines += [line(texts) for texts in cells]
        lines.append("")
    lines += [f"- {note}" for note in section.notes]
    return "\n".join(lines)


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


def machine_header(plan: Plan, started: datetime.datetime, load_at_start: tuple) -> dict:
    # Numba picks its threading layer at the first parallel call.
    random_actions(SEED, 0, np.zeros(1, dtype=np.int32))
    return {
        "mode": plan.name, "date": started.isoformat(timespec="seconds"),
        "cpu": cpu_model(), "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "load_average_at_start": [round(load, 2) for load in load_at_start],
        "python": platform.python_version(), "numpy": np.__version__,
        "numba": numba.__version__, "numba_threading_layer": numba.threading_layer(),
        "numba_max_threads": numba.config.NUMBA_NUM_THREADS,
        "pufferlib": package_version("pufferlib"), "torch": package_version("torch"),
        "seconds_per_row": plan.seconds_per_row, "warmup_steps": WARMUP_STEPS,
        "timing_windows": TIMING_WINDOWS, "min_steps_per_window": MIN_STEPS_PER_WINDOW,
        "action_ring_size": ACTION_RING_SIZE,
    }


def header_markdown(header: dict) -> str:
    load = " / ".join(f"{value:.2f}" for value in header["load_average_at_start"])
    return "\n".join([
        f"## puffer-cluster env throughput ({header['mode']})",
        "",
        f"- machine: {header['cpu']}, {header['logical_cores']} logical cores "
        f"({header['usable_cores']} usable); load average at start {load} (1/5/15 min)",
        f"- date: {header['date']}",
        f"- versions: python {header['python']}, numpy {header['numpy']}, numba {header['numba']} "
        f"(threading layer {header['numba_threading_layer']}, up to {header['numba_max_threads']} "
        f"threads), pufferlib {header['pufferlib']}, torch {header['torch']}",
        f"- timing: {header['warmup_steps']} warm-up steps (first-call and JIT costs excluded), "
        f"then {header['seconds_per_row']:g} s of wall clock per row in {header['timing_windows']} "
        f"windows (each at least {header['min_steps_per_window']} steps); a row shows its best "
        "window and the spread (the worst window's shortfall: other processes share the "
        f"machine); actions are pre-drawn in a ring of {header['action_ring_size']} arrays; "
        "agent-steps/s = grids x steps / seconds (one agent per grid).",
    ])


def env_sections(plan: Plan) -> list[Section]:
    thread_counts = sorted({1, numba.config.NUMBA_NUM_THREADS})
    print("measuring (progress on stderr; the report follows on stdout)", file=sys.stderr)
    return [numba_section(plan, thread_counts), reference_section(plan), gym_section(plan),
            vector_section(plan, thread_counts), squared_section(plan), state_size_section(),
            peak_rss_section()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer sizes and short timings (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and header as JSON")
    parser.add_argument("--train", action="store_true",
                        help="append the training throughput section")
    parser.add_argument("--peak-rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_rss_child:
        peak_rss_child()
        return

    plan = QUICK if args.quick else FULL
    started, load_at_start, clock = datetime.datetime.now(), os.getloadavg(), time.perf_counter()
    sections = env_sections(plan) + [simarena_section(args), cluster_ops_section(args)]
    if args.train:
        sections.append(training_section(args))
    attach_ratios(sections)
    header = machine_header(plan, started, load_at_start)
    wall_seconds = time.perf_counter() - clock

    print(header_markdown(header))
    for section in sections:
        print()
        print(markdown(section))
    print(f"\nwall time of the measurements: {wall_seconds:.1f} s")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"header": header, "wall_seconds": wall_seconds,
                       "sections": [{"title": section.title, "notes": section.notes,
                                     "rows": section.rows} for section in sections]},
                      out, indent=1)


if __name__ == "__main__":
    main()
