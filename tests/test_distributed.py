"""One run in several processes: grids by global index, the split of `[env] num_envs`, and two
CPU processes under torchrun with gloo (each launch takes 10-30 s: two interpreters import torch,
Numba and PufferLib; the runs themselves take seconds)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from puffer_cluster.kernels.world import grid_seeds
from puffer_cluster.config import ConfigError, load_config
from puffer_cluster.env import GardenerEnv, grid_share
from puffer_cluster.trainers.checkpoint import load_checkpoint
from puffer_cluster.trainers.train_config import validate_train_config

REPO = Path(__file__).resolve().parents[1]


def torchrun(*args, cwd, processes=2):
    """`torchrun --nproc_per_node 2 ARGS`, one thread per process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           str(processes), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_grid_share_splits_evenly_and_refuses_a_remainder():
    assert [grid_share(32, rank, 4) for rank in range(4)] == [(0, 8), (8, 8), (16, 8), (24, 8)]
    with pytest.raises(ConfigError, match="multiple of the 2 processes, got 33"):
        grid_share(33, 1, 2)
    config = load_config(None, ["--env.num-envs", "33"])
    validate_train_config(config)
    with pytest.raises(ConfigError, match="env.num_envs .* multiple of the 2 processes"):
        validate_train_config(config, world_size=2)


def test_a_share_of_grids_plays_the_same_worlds_as_the_whole():
    """Grids 4..7 stepped as a share of a run are grids 4..7 of the whole run, step for step."""
    kwargs = dict(seed=5, height=6, width=6, max_steps=15, log_interval=2**62)
    whole = GardenerEnv(num_envs=8, **kwargs)
    shares = [GardenerEnv(num_envs=4, first_grid=first, **kwargs) for first in (0, 4)]
    observations = [whole.reset()[0]] + [share.reset()[0] for share in shares]
    assert np.array_equal(observations[0], np.concatenate(observations[1:]))
    rng = np.random.default_rng(0)
    for _ in range(40):  # through terminations and auto-resets
        actions = rng.integers(0, 8, 8).astype(np.int32)
        expected = whole.step(actions)
        parts = [share.step(actions[4 * i:4 * i + 4]) for i, share in enumerate(shares)]
        for k in range(4):  # observations, rewards, terminals, truncations
            assert np.array_equal(expected[k], np.concatenate([part[k] for part in parts]))


def test_a_share_of_simarena_envs_cycles_as_the_whole():
    from puffer_cluster.simarena import SimArenaEnv
    kwargs = dict(seed=2, simarena={"sampling": "cycle", "count": 6})
    whole = SimArenaEnv(num_envs=4, **kwargs)
    shares = [SimArenaEnv(num_envs=2, first_grid=first, run_envs=4, **kwargs) for first in (0, 2)]
    for env in (whole, *shares):
        env.reset()
    assert list(whole.reset_scenarios) == [s for share in shares for s in share.reset_scenarios]
    assert np.array_equal(whole.state.grid_seed,
                          np.concatenate([share.state.grid_seed for share in shares]))


def test_a_share_of_cluster_ops_envs_plays_the_same_clusters_as_the_whole():
    from puffer_cluster.cluster_ops.env import make_cluster_ops_vecenv
    config = load_config("cluster_ops", ["--env.num-envs", "6", "--env.log-interval", "4"])
    whole = make_cluster_ops_vecenv(config)
    shares = [make_cluster_ops_vecenv(config, rank, 2) for rank in (0, 1)]
    observations = [env.reset()[0] for env in (whole, *shares)]
    assert np.array_equal(observations[0], np.concatenate(observations[1:]))
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = rng.integers(0, whole.single_action_space.n, 6).astype(np.int32)
        expected = whole.step(actions)
        parts = [share.step(actions[3 * i:3 * i + 3]) for i, share in enumerate(shares)]
        for k in range(4):  # observations, rewards, terminals, truncations
            assert np.array_equal(expected[k], np.concatenate([part[k] for part in parts]))


@pytest.mark.parametrize("trainer", ["dqn", "eps_greedy"])
def test_value_based_trainers_refuse_to_run_under_torchrun(tmp_path, monkeypatch, trainer):
    from puffer_cluster.trainers import TRAINERS
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = load_config("simarena", ["--train.trainer", trainer, "--env.num-envs", "2",
                                      "--train.num-steps", "4", "--train.total-timesteps", "8",
                                      "--train.eval-interval", "0", "--train.data-dir",
                                      str(tmp_path / "runs")])
    with pytest.raises(ConfigError, match=f"train.trainer {trainer} trains in one process"):
        TRAINERS[trainer](config)
    assert not (tmp_path / "runs").exists()


def test_two_processes_resume_equals_uninterrupted(tmp_path):
    """Two gloo processes: a run stopped after update 3 and resumed (in the same processes, rank
    0 writing slowly) ends bit for bit where the uninterrupted run ends (weights and both
    processes' envs), and latest.pt holds each process's share of the grids by global index;
    processes reading different latest.pt files refuse to resume."""
    result = torchrun(REPO / "tests" / "torchrun_train.py", tmp_path, "--policy.name", "lstm",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    full = load_checkpoint(tmp_path / "full" / "final.pt")
    split = load_checkpoint(tmp_path / "split" / "final.pt")
    assert full["global_step"] == split["global_step"] == 32 * 8 * 6  # all processes counted
    assert full["critic_extra"] > 0  # the privileged critic's columns, after the actor's
    for name in full["model"]:
        assert torch.equal(full["model"][name], split["model"][name]), name
    latest = [load_checkpoint(tmp_path / run / "latest.pt")["training"]["ranks"]
              for run in ("full", "split")]
    assert len(latest[0]) == len(latest[1]) == 2
    for a, b in zip(*latest):
        for name, array in a["env"]["state"].items():
            assert np.array_equal(array, b["env"]["state"][name]), name
    seeds = np.concatenate([part["env"]["state"]["grid_seed"] for part in latest[0]])
    assert np.array_equal(seeds, grid_seeds(0, 0, 32))
    first = load_checkpoint(tmp_path / "split" / "model_000002.pt")
    assert any(not torch.equal(first["model"][k], full["model"][k]) for k in full["model"])


# A world whose short episodes tell a good gardener from an untrained one (leaks, spikes, 60 steps).
HARSH_WORLD = ["--env.height", "6", "--env.width", "6", "--env.max-steps", "60",
               "--env.base-load-max", "0.6", "--env.mem-init-max", "0.6", "--env.leak-min",
               "0.002", "--env.leak-max", "0.01", "--env.red-queen-horizon", "50",
               "--env.spike-rate", "0.05", "--env.crit-limit", "5", "--env.oom-limit", "0.25"]


def test_torchrun_cli_trains_one_run_that_improves(tmp_path):
    """`torchrun --nproc_per_node 2 -m puffer_cluster train`: one run directory, written and
    reported by rank 0 alone, whose held-out greedy return climbs from an untrained policy's to
    the heuristic's (10 updates of behaviour cloning)."""
    result = torchrun("-m", "puffer_cluster", "train", "--env.num-envs", "32",
                      "--env.log-interval", "8", *HARSH_WORLD, "--train.num-steps", "16",
                      "--train.total-timesteps", 32 * 16 * 10, "--train.checkpoint-interval", 100,
                      "--train.device", "cpu", "--train.teacher-clone-fraction", "1.0",
                      "--train.eval-interval", "1", "--train.eval-episodes", "16",
                      "--eval.episodes", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    assert result.stdout.count("BENCHMARK RESULTS") == 1
    assert result.stdout.count("run directory: runs/") == 2  # the first progress line, the last
    training = load_checkpoint(runs[0] / "latest.pt")["training"]
    assert len(training["ranks"]) == 2
    returns = [value for _, value in training["eval_history"]]
    assert len(returns) == 10
    assert returns[-1] > returns[0] + 10.0, returns
    assert returns[-1] > training["heuristic_return"] - 2.0, (returns, training["heuristic_return"])
