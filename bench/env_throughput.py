"""Env-only throughput of the registry's envs besides the gardener (SimArena, ClusterOps):
agent-steps/s of each one's serial Numba kernel, native env, NumPy reference and Gymnasium env.

    python -m bench.env_throughput {simarena,cluster_ops} [--quick] [--json out.json]

Rows have the shape of the report's throughput rows (see `bench.report.throughput_row`); `grid`
is the cluster's node count, `grids` the envs stepped per call. Actions are the env's random
baseline, drawn beforehand into a ring (`bench.timing`).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable

import numba

from bench.report import ENV_COLUMNS, Section, throughput_row
from bench.timing import ACTION_RING_SIZE, SEED, action_ring, timed, write_json
from puffer_cluster.kernels import cluster_ops, cluster_ops_reference, simarena
from puffer_cluster.cluster_ops import ClusterOpsEnv
from puffer_cluster.registry import get_env_spec
from puffer_cluster.simarena import SimArenaEnv, load_scenarios, simarena_settings

SECONDS_PER_ROW = 1.5
QUICK_SECONDS_PER_ROW = 0.3
# The Gymnasium loop plays one long list of Python ints: a ring for this many agents, flattened.
GYM_RING_AGENTS = 1024


@dataclass(frozen=True)
class EnvBench:
    """How the bench steps one env of the registry (`name`). Its kernels take the env's params,
    state, `kernel_tables(env)`, then actions and the env's output buffers."""
    name: str
    title: str
    section_title: str
    section_note: str
    make_env: Callable[[int], Any]     # a native env of `envs` envs seeded SEED, logging off
    serial_kernel: Callable
    reference_kernel: Callable
    describe: Callable[[Any], str]     # what every row's note starts with
    batches: tuple[int, ...]
    quick_batches: tuple[int, ...]
    reference_envs: int
    kernel_tables: Callable[[Any], tuple] = lambda env: ()


@cache
def demo_scenarios():
    """The demo scenarios generated for the default `[simarena]` settings, generated once."""
    return load_scenarios(None, simarena_settings({}))


ENV_BENCHES = {bench.name: bench for bench in (
    EnvBench(
        name="simarena", title="SimArena", section_title="SimArena (sim-arena's task offline)",
        section_note="Random actions over the 100 generated demo scenarios on 4 nodes; one env "
                     "step applies one edit and re-places the target's pods.",
        make_env=lambda envs: SimArenaEnv(num_envs=envs, log_interval=2**62, seed=SEED,
                                          scenarios=demo_scenarios()),
        serial_kernel=simarena.step_envs_serial, reference_kernel=simarena.step_reference,
        describe=lambda env: f"{len(env.scenarios)} demo scenarios, reward "
                             f"{env.settings.reward}, random actions",
        batches=(1, 1024, 16384), quick_batches=(1, 1024), reference_envs=64,
        kernel_tables=lambda env: (env.kernel_scenarios,)),
    EnvBench(
        name="cluster_ops", title="ClusterOps",
        section_title="ClusterOps (cluster-code's ops agent)",
        section_note="Random actions on the default [cluster_ops] cluster (6 nodes, 5 Deployments "
                     "of 4 pods); one env step is one action, the incidents' spread and arrivals.",
        make_env=lambda envs: ClusterOpsEnv(num_envs=envs, log_interval=2**62, seed=SEED),
        serial_kernel=cluster_ops.step_envs_serial,
        reference_kernel=cluster_ops_reference.step_reference,
        describe=lambda env: f"{env.params.nodes} nodes, {env.params.deployments} Deployments, "
                             "random actions",
        batches=(1024, 16384), quick_batches=(1024,), reference_envs=256),
)}


def kernel_step(kernel, bench: EnvBench, env, ring):
    """`step_once(i)` of a kernel called on `env`'s arrays with the ring's actions."""
    tables = bench.kernel_tables(env)
    buffers = (env.observations, env.rewards, env.terminals, env.truncations)
    return lambda i: kernel(env.params, env.state, *tables, ring[i % ACTION_RING_SIZE], *buffers,
                            True)


def row(bench: EnvBench, backend: str, env, envs: int, threads: int, result: dict,
        what: str) -> dict:
    """A row of `bench`'s env (`env` gives its sizes and the start of the note)."""
    nodes = env.params.nodes
    return throughput_row(f"{bench.name} {backend}", nodes, envs, str(threads), None, result,
                          f"{bench.describe(env)}; {what}",
                          sizes=f"{nodes:>3} nodes {envs:>6} envs")


def env_rows(name: str, quick: bool = False) -> list[dict]:
    """Throughput rows of env `name`: per batch its serial kernel on one core and its native env
    on 1 thread and all; then the NumPy reference and the Gymnasium loop."""
    bench = ENV_BENCHES[name]
    seconds = QUICK_SECONDS_PER_ROW if quick else SECONDS_PER_ROW
    threads_all = numba.config.NUMBA_NUM_THREADS
    rows = []
    for envs in bench.quick_batches if quick else bench.batches:
        env = bench.make_env(envs)
        env.reset()
        ring = action_ring(name, envs)
        result = timed(kernel_step(bench.serial_kernel, bench, env, ring), envs, seconds)
        rows.append(row(bench, "numba serial", env, envs, 1, result,
                        "kernel call only, one core"))
        serial = "" if env.parallel else ", serial kernel"
        for threads in sorted({1, threads_all}):
            numba.set_num_threads(threads)
            result = timed(lambda i: env.step(ring[i % ACTION_RING_SIZE]), envs, seconds)
            rows.append(row(bench, "native env", env, envs, threads, result,
                            f"{type(env).__name__}.step{serial}"))
        numba.set_num_threads(threads_all)

    env = bench.make_env(bench.reference_envs)
    env.reset()
    ring = action_ring(name, bench.reference_envs)
    result = timed(kernel_step(bench.reference_kernel, bench, env, ring), bench.reference_envs,
                   seconds)
    rows.append(row(bench, "numpy reference", env, bench.reference_envs, 1, result,
                    "the reference the kernel is tested against"))

    gym = get_env_spec(name).gym_env()
    gym.reset(seed=SEED)
    actions = action_ring(name, GYM_RING_AGENTS).reshape(-1).tolist()

    def gym_step(i):
        _, _, terminated, truncated, _ = gym.step(actions[i % len(actions)])
        if terminated or truncated:
            gym.reset()

    rows.append(row(bench, "gymnasium loop", env, 1, 1, timed(gym_step, 1, seconds),
                    f"{type(gym).__name__}.step + reset, Python loop"))
    return rows


def env_section(name: str, quick: bool) -> Section:
    """Env `name`'s rows as a section of the throughput report."""
    bench = ENV_BENCHES[name]
    return Section(bench.section_title, ENV_COLUMNS, env_rows(name, quick), [bench.section_note])


def compact_table(rows: list[dict]) -> str:
    """The rows in ENV_COLUMNS as an unpadded markdown table (the standalone run's)."""
    lines = ["| " + " | ".join(header for header, _ in ENV_COLUMNS) + " |",
             "|" + "---|" * len(ENV_COLUMNS)]
    lines += ["| " + " | ".join(cell(row) for _, cell in ENV_COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env", choices=list(ENV_BENCHES))
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer batch sizes")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    title = ENV_BENCHES[args.env].title
    print(f"{title} throughput (numba {numba.__version__}, {os.cpu_count()} CPUs, "
          f"{numba.config.NUMBA_NUM_THREADS} Numba threads)", file=sys.stderr)
    rows = env_rows(args.env, args.quick)
    print(f"### {title} throughput\n")
    print(compact_table(rows))
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
