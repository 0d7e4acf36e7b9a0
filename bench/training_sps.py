"""Training throughput: agent-steps/s of whole PPO iterations (rollout + update) of our trainer
and of PufferLib's `PuffeRL` (in a fresh interpreter, `bench.pufferl_child`), side by side on
the same config."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numba

from bench.report import THROUGHPUT_COLUMNS, Section, throughput_row
from bench.timing import run_child


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
TRAIN_PROCESSES = (2,)  # our trainer under torchrun, one thread per process
CHILD_TIMEOUT_S = 900


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


def child_result(what: str, module: str, spec: dict, launcher: tuple = (),
                 env: dict | None = None) -> dict:
    """The one JSON line `module` prints for `spec`, run in a fresh interpreter (under
    `launcher`), or {"skipped": reason}."""
    try:
        child = run_child(module, json.dumps(spec), timeout=CHILD_TIMEOUT_S, launcher=launcher,
                          env=env)
    except subprocess.TimeoutExpired:
        return {"skipped": f"skipped: {what} ran over {CHILD_TIMEOUT_S} s"}
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": f"skipped: {what} failed (exit {child.returncode}): {tail}"}
    result = json.loads(lines[-1])
    if "skipped" in result:
        result["skipped"] = f"skipped: {result['skipped']}"
    return result


def measure_pufferl(grids: int, threads: int, policy: str, plan: TrainPlan) -> dict:
    """`bench.pufferl_child` in a fresh interpreter."""
    return child_result("the pufferl child", "bench.pufferl_child",
                        {"grids": grids, "threads": threads, "policy": policy,
                         "plan": plan.__dict__})


def measure_torchrun(grids: int, processes: int, plan: TrainPlan) -> dict:
    """Our trainer on `grids` grids shared by `processes` processes (`bench.torchrun_child`
    under torchrun, gloo, one torch and one Numba thread each)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    return child_result("torchrun", "bench.torchrun_child", {"grids": grids, "plan": plan.__dict__},
                        launcher=("-m", "torch.distributed.run", "--nproc_per_node",
                                  str(processes)), env=env)


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
        "ours, N processes: our trainer under `torchrun --nproc_per_node N` (gloo, one torch and "
        "one Numba thread per process), the same run (the config's grids, shared by the "
        "processes); timed on rank 0. Compared with the kernel on N threads, and in its note with "
        "the same run in 1 process of 1 thread (the `ours` row of 1 thread, teacher none).",
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
                for processes in TRAIN_PROCESSES:
                    rows.append(processes_row(grids, processes,
                                              measure_torchrun(grids, processes, plan), ours))
    return rows


def processes_row(grids: int, processes: int, result: dict, one: dict) -> dict:
    """A row of our trainer in `processes` processes of one thread each (torchrun, gloo); `one`,
    the same run in one process of one thread, gives its ratio."""
    row = training_row(f"ours, {processes} processes", grids, 1, result,
                       "teacher none, gloo, 1 thread each", one)
    row["threads"] = f"{processes}x1"
    row["baseline"] = (TRAIN_GRID, grids, processes) if "skipped" not in result else None
    row["note"] = row["note"].replace("x ours", "x 1 process")
    return row


def training_section(args) -> Section:
    rows = training_rows(args)
    notes = training_notes(args) if rows else ["training throughput: not measured"]
    return Section("Training throughput", THROUGHPUT_COLUMNS, rows, notes)
