"""The env registry, the envs' state protocol and the trainer's pure pieces."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from puffer_cluster.kernels.fixed import NEVER, WHEEL_OOM
from puffer_cluster.cluster_ops import ClusterOpsEnv
from puffer_cluster.config import ConfigError, bundled_config_path, load_config
from puffer_cluster.env import GardenerEnv
from puffer_cluster.evaluate import evaluate, format_table
from puffer_cluster.policies import PolicyError
from puffer_cluster.registry import ENV_SPECS, get_env_spec, policy_factory
from puffer_cluster.simarena import SimArenaEnv
from puffer_cluster.trainers.ppo import minibatch_indices, teacher_weight

CONFIGS = {"gardener": None, "simarena": bundled_config_path("simarena.ini"),
           "cluster_ops": bundled_config_path("cluster_ops.ini"),
           "replay": bundled_config_path("replay.ini")}


def small_config(name):
    return load_config(CONFIGS[name], ["--env.height", "6", "--env.width", "6",
                                       "--env.max-steps", "16", "--simarena.count", "8",
                                       "--cluster_ops.max-steps", "16",
                                       "--replay.train-count", "4"])


def test_an_unknown_env_name_is_one_config_error():
    with pytest.raises(ConfigError, match="base.env_name must be one of gardener, simarena, cluster_ops, replay, got 'gardner'"):
        get_env_spec("gardner")


@pytest.mark.parametrize("name", sorted(ENV_SPECS))
def test_every_env_plays_its_baselines_into_its_table(name):
    spec, config = get_env_spec(name), small_config(name)
    assert spec.name == name and "heuristic" in spec.baselines
    rows = evaluate(list(spec.baselines)[:2], 4, 0, config)
    assert [row["name"] for row in rows] == list(spec.baselines)[:2]
    assert rows[1]["wins"] + rows[1]["ties"] <= 4
    assert format_table(rows) == spec.format_table(rows)
    env = spec.make_vecenv(config)
    assert env.single_observation_space.shape[0] >= spec.obs_size
    assert env.single_action_space.n == spec.num_actions == len(spec.action_names)
    with pytest.raises(PolicyError, match=f"unknown policy 'nope' for the {name} env"):
        policy_factory("nope", config)


@pytest.mark.parametrize("make", [
    lambda: GardenerEnv(num_envs=3, seed=4, log_interval=5, height=6, width=6, max_steps=16),
    lambda: GardenerEnv(num_envs=3, seed=4, log_interval=5, height=6, width=6, max_steps=16,
                        kernel="dense"),
    lambda: SimArenaEnv(num_envs=3, seed=4, log_interval=5, simarena={"count": 4}),
    lambda: ClusterOpsEnv(num_envs=3, seed=4, log_interval=5, cluster_ops={"max_steps": 16}),
], ids=["gardener", "gardener_dense", "simarena", "cluster_ops"])
def test_state_dict_restores_envs_bit_for_bit(make):
    actions = np.random.default_rng(0).integers(0, 7, size=(40, 3)).astype(np.int32)
    first, second = make(), make()
    first.reset()
    for step in range(20):
        first.step(actions[step])
    saved = first.state_dict()
    second.load_state_dict(saved)
    for step in range(20, 40):
        a = [x.copy() if isinstance(x, np.ndarray) else x for x in first.step(actions[step])]
        b = second.step(actions[step])
        for x, y in zip(a[:4], b[:4]):
            np.testing.assert_array_equal(x, y)
        assert a[4] == b[4]
    assert second.tick == first.tick == 40


def test_a_spec_without_its_own_row_shows_every_statistic():
    spec = replace(get_env_spec("simarena"), summarize=None)
    config = small_config("simarena")
    env = spec.episode_env(config, 4, 0, False)
    stats = np.arange(4 * len(spec.episode_stats), dtype=float).reshape(4, -1)
    row = spec.table_row("heuristic", stats, stats[::-1], env)
    assert row["env"] == "simarena" and row["episodes"] == 4
    assert row["reward_mean"] == stats[:, spec.return_column].mean()
    assert {f"{stat}_mean" for stat in spec.episode_stats if stat != "episode_return"} <= set(row)
    assert (row["wins"], row["ties"]) == (2, 0)


def test_state_dict_carries_the_event_kernels_wheel_and_sums():
    def make():
        return GardenerEnv(num_envs=2, seed=1, height=6, width=6, max_steps=16, kernel="event")
    first, second = make(), make()
    first.reset()
    for _ in range(5):
        first.step(np.full(2, 5, dtype=np.int32))
    saved = first.state_dict()
    wheel = saved["state"]["wheel"]  # (grids, max_steps + 1, [cpu change, slope change, OOM list])
    assert wheel.shape == (2, 17, 3)
    assert wheel[..., :WHEEL_OOM].any() or (wheel[..., WHEEL_OOM] != NEVER).any()
    assert saved["state"]["sums"].shape == (2, 4) and saved["state"]["sums"].any()
    second.load_state_dict(saved)
    for name in ("nodes", "sums", "wheel"):
        np.testing.assert_array_equal(getattr(second.state, name), getattr(first.state, name))


def test_state_dict_refuses_another_batch():
    saved = GardenerEnv(num_envs=3, height=6, width=6).state_dict()
    with pytest.raises(ConfigError, match="cannot change the env's batch"):
        GardenerEnv(num_envs=4, height=6, width=6).load_state_dict(saved)


def test_teacher_weight_holds_while_cloning_then_fades_linearly():
    args = {"teacher_coef": 1.0, "teacher_final_coef": 0.1}
    assert [teacher_weight(i, 2, 4, args) for i in (1, 2, 3)] == [1.0, 1.0, 1.0]
    assert teacher_weight(5, 2, 4, args) == pytest.approx(0.55)
    assert teacher_weight(7, 2, 4, args) == teacher_weight(70, 2, 4, args) == pytest.approx(0.1)
    assert teacher_weight(1, 0, 0, args) == pytest.approx(0.1)


@pytest.mark.parametrize("recurrent", [False, True])
def test_minibatches_cover_the_batch_once(recurrent):
    torch.manual_seed(0)
    batches = minibatch_indices(4, 6, 3, recurrent, "cpu")
    assert len(batches) == 3
    covered = torch.cat(batches).sort().values
    assert torch.equal(covered, torch.arange(6 if recurrent else 24))
