"""SimArena's env-only throughput: agent-steps/s of its Numba kernel, native env and Gymnasium env.

    python bench/simarena_throughput.py [--quick] [--json out.json]

`simarena_rows(args)` returns rows in the shape of `bench/throughput.py`'s (backend, grid,
grids, threads, agent_steps_per_s, note, plus window_speeds, steps and baseline), so that its
owner can add them as a section. `grid` is the cluster's node count (a 1 x nodes "grid"),
`grids` the envs stepped per call. Actions come from a ring of uniform random actions drawn
beforehand; a warm-up precedes each row (JIT compilation and caches), which then steps for a
fixed wall-clock budget split into windows, the best window being the row's speed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from puffer_cluster.kernels import simarena as kernel  # noqa: E402
from puffer_cluster.simarena import (  # noqa: E402
    SimArenaEnv, SimArenaGymEnv, load_scenarios, random_actions, simarena_settings,
)

SEED = 0
ACTION_RING_SIZE = 16
WARMUP_STEPS = 3
TIMING_WINDOWS = 3
BATCHES = (1, 1024, 16384)
QUICK_BATCHES = (1, 1024)


def timed(step_once, agents_per_step: int, seconds: float) -> dict:
    for i in range(WARMUP_STEPS):
        step_once(i)
    window_speeds, total = [], 0
    for _ in range(TIMING_WINDOWS):
        steps, start = 0, time.perf_counter()
        while True:
            step_once(steps)
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / TIMING_WINDOWS and steps >= 2:
                break
        window_speeds.append(agents_per_step * steps / elapsed)
        total += steps
    return {"agent_steps_per_s": max(window_speeds), "window_speeds": window_speeds, "steps": total}


def row(backend: str, nodes: int, envs: int, threads: int, result: dict, note: str) -> dict:
    out = {"backend": backend, "grid": nodes, "grids": envs, "threads": str(threads), **result,
           "baseline": None, "note": note}
    print(f"  {backend:<28} {nodes:>3} nodes {envs:>6} envs {threads:>3} thr  "
          f"{result['agent_steps_per_s']:,.0f} agent-steps/s", file=sys.stderr, flush=True)
    return out


def action_ring(agents: int) -> np.ndarray:
    ring = np.empty((ACTION_RING_SIZE, agents), dtype=np.int32)
    for step in range(ACTION_RING_SIZE):
        random_actions(SEED, step, ring[step])
    return ring


def simarena_rows(args=None) -> list[dict]:
    """Throughput rows of SimArena (100 demo scenarios, 4 nodes, default `[simarena]`):
    the Numba kernel serial on one core, the native env (1 core and all cores), the NumPy
    reference and the Gymnasium loop. `args.quick` (if given) shortens the run."""
    quick = bool(getattr(args, "quick", False))
    seconds = 0.3 if quick else 1.5
    batches = QUICK_BATCHES if quick else BATCHES
    settings = simarena_settings({})
    scenarios = load_scenarios(None, settings)
    nodes = settings.nodes
    threads_all = numba.config.NUMBA_NUM_THREADS
    rows = []
    note = f"{len(scenarios)} demo scenarios, reward {settings.reward}, random actions"

    for envs in batches:
        env = SimArenaEnv(num_envs=envs, log_interval=2**62, seed=SEED, scenarios=scenarios)
        env.reset()
        ring = action_ring(envs)
        params, state, tables = env.params, env.state, env.kernel_scenarios
        buffers = (env.observations, env.rewards, env.terminals, env.truncations)

        def kernel_step(i, ring=ring):
            kernel.step_envs_serial(params, state, tables, ring[i % ACTION_RING_SIZE], *buffers, True)

        rows.append(row("simarena numba serial", nodes, envs, 1, timed(kernel_step, envs, seconds),
                        note + "; kernel call only, one core"))
        for threads in sorted({1, threads_all}):
            numba.set_num_threads(threads)

            def env_step(i, env=env, ring=ring):
                env.step(ring[i % ACTION_RING_SIZE])

            rows.append(row("simarena native env", nodes, envs, threads,
                            timed(env_step, envs, seconds),
                            note + ("; SimArenaEnv.step" + ("" if envs > 1 else ", serial kernel"))))
        numba.set_num_threads(threads_all)

    env = SimArenaEnv(num_envs=64, log_interval=2**62, seed=SEED, scenarios=scenarios)
    env.reset()
    ring = action_ring(64)

    def reference_step(i):
        kernel.step_reference(env.params, env.state, env.kernel_scenarios, ring[i % ACTION_RING_SIZE],
                              env.observations, env.rewards, env.terminals, env.truncations, True)

    rows.append(row("simarena numpy reference", nodes, 64, 1, timed(reference_step, 64, seconds),
                    note + "; the reference the kernel is tested against"))

    gym = SimArenaGymEnv(scenarios=scenarios)
    gym.reset(seed=SEED)
    actions = action_ring(1024).reshape(-1).tolist()

    def gym_step(i):
        _, _, terminated, truncated, _ = gym.step(actions[i % len(actions)])
        if terminated or truncated:
            gym.reset()

    rows.append(row("simarena gymnasium loop", nodes, 1, 1, timed(gym_step, 1, seconds),
                    note + "; SimArenaGymEnv.step + reset, Python loop"))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| backend | nodes | envs | threads | agent-steps/s | note |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['grid']} | {r['grids']:,} | {r['threads']} | "
              f"{r['agent_steps_per_s']:,.0f} | {r['note']} |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer batch sizes")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    print(f"SimArena throughput (numba {numba.__version__}, {os.cpu_count()} CPUs, "
          f"{numba.config.NUMBA_NUM_THREADS} Numba threads)", file=sys.stderr)
    rows = simarena_rows(args)
    print("### SimArena throughput\n")
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
