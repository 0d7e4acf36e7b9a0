"""ClusterOps' env-only throughput: agent-steps/s of its Numba kernel, native env, NumPy
reference and Gymnasium env.

    python bench/cluster_ops_throughput.py [--quick] [--json out.json]

`cluster_ops_rows(args)` returns rows in the shape of `bench/throughput.py`'s (backend, grid,
grids, threads, agent_steps_per_s, note, plus window_speeds, steps and baseline); `grid` is the
cluster's node count, `grids` the clusters stepped per call. Actions come from a ring of uniform
random actions drawn beforehand; a warm-up precedes each row (JIT compilation and caches), which
then steps for a fixed wall-clock budget split into windows, the best window being the row's speed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from puffer_cluster.kernels import cluster_ops as kernel  # noqa: E402
from puffer_cluster.kernels import cluster_ops_reference as reference  # noqa: E402
from puffer_cluster.cluster_ops import ClusterOpsEnv, ClusterOpsGymEnv  # noqa: E402
from puffer_cluster.cluster_ops.policies import random_actions  # noqa: E402

SEED = 0
ACTION_RING_SIZE = 16
BATCHES = (1024, 16384)
QUICK_BATCHES = (1024,)


def _simarena_bench():
    """bench/simarena_throughput.py, for its timer and row format."""
    import importlib.util
    path = Path(__file__).resolve().parent / "simarena_throughput.py"
    spec = importlib.util.spec_from_file_location("simarena_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def action_ring(agents: int) -> np.ndarray:
    ring = np.empty((ACTION_RING_SIZE, agents), dtype=np.int32)
    for step in range(ACTION_RING_SIZE):
        random_actions(SEED, step, ring[step])
    return ring


def cluster_ops_rows(args=None) -> list[dict]:
    """Throughput rows of ClusterOps (default `[cluster_ops]`): the Numba kernel serial on one
    core, the native env (1 core and all cores), the NumPy reference and the Gymnasium loop.
    `args.quick` (if given) shortens the run."""
    bench = _simarena_bench()
    timed, row = bench.timed, bench.row
    quick = bool(getattr(args, "quick", False))
    seconds = 0.3 if quick else 1.5
    threads_all = numba.config.NUMBA_NUM_THREADS
    rows = []
    for envs in QUICK_BATCHES if quick else BATCHES:
        env = ClusterOpsEnv(num_envs=envs, log_interval=2**62, seed=SEED)
        env.reset()
        nodes, ring = env.params.nodes, action_ring(envs)
        buffers = (env.observations, env.rewards, env.terminals, env.truncations)

        def kernel_step(i, env=env, ring=ring, buffers=buffers):
            kernel.step_envs_serial(env.params, env.state, ring[i % ACTION_RING_SIZE], *buffers, True)

        note = f"{nodes} nodes, {env.params.deployments} Deployments, random actions"
        rows.append(row("cluster_ops numba serial", nodes, envs, 1, timed(kernel_step, envs, seconds),
                        note + "; kernel call only, one core"))
        for threads in sorted({1, threads_all}):
            numba.set_num_threads(threads)

            def env_step(i, env=env, ring=ring):
                env.step(ring[i % ACTION_RING_SIZE])

            rows.append(row("cluster_ops native env", nodes, envs, threads,
                            timed(env_step, envs, seconds), note + "; ClusterOpsEnv.step"))
        numba.set_num_threads(threads_all)

    env = ClusterOpsEnv(num_envs=256, log_interval=2**62, seed=SEED)
    env.reset()
    ring = action_ring(256)

    def reference_step(i):
        reference.step_reference(env.params, env.state, ring[i % ACTION_RING_SIZE], env.observations,
                              env.rewards, env.terminals, env.truncations, True)

    rows.append(row("cluster_ops numpy reference", env.params.nodes, 256,
                    1, timed(reference_step, 256, seconds), "the reference the kernel is tested against"))
    gym = ClusterOpsGymEnv()
    gym.reset(seed=SEED)
    actions = action_ring(1024).reshape(-1).tolist()

    def gym_step(i):
        _, _, terminated, truncated, _ = gym.step(actions[i % len(actions)])
        if terminated or truncated:
            gym.reset()

    rows.append(row("cluster_ops gymnasium loop", env.params.nodes, 1, 1, timed(gym_step, 1, seconds),
                    "ClusterOpsGymEnv.step + reset, Python loop"))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows, one batch size")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    print(f"ClusterOps throughput (numba {numba.__version__}, {os.cpu_count()} CPUs, "
          f"{numba.config.NUMBA_NUM_THREADS} Numba threads)", file=sys.stderr)
    rows = cluster_ops_rows(args)
    print("### ClusterOps throughput\n")
    print(_simarena_bench().markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
