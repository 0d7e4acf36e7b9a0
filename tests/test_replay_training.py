"""Training on replays: the mixed env (replayed traces and gardener worlds in one batch), its
determinism and resume, and the `replay` registry entry through the trainer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from puffer_cluster.kernels.critic import NUM_CRITIC_FEATURES
from puffer_cluster.kernels.world import OBS_SIZE, grid_seeds
from puffer_cluster.config import ConfigError, load_config
from puffer_cluster.env import GardenerEnv
from puffer_cluster.replay import TraceReplayEnv
from puffer_cluster.replay.mixed import (
    MixedVectorEnv, check_replay_config, heldout_timelines, training_timelines,
)
from puffer_cluster.trainers.checkpoint import load_checkpoint
from puffer_cluster.trainers.ppo import train
from puffer_cluster.validate import validate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def replay_config(tmp_path=None, *overrides):
    return load_config("replay", [
        "--env.num-envs", "8", "--env.log-interval", "8", "--env.max-steps", "24",
        "--replay.train-count", "4", "--train.num-steps", "8",
        "--train.total-timesteps", str(8 * 8 * 6), "--train.checkpoint-interval", "2",
        "--train.eval-interval", "2", "--train.eval-episodes", "4", "--eval.episodes", "4",
        "--train.data-dir", str(tmp_path), "--train.torch-threads", "1", "--train.device", "cpu",
        *overrides])


def mixed_env(config, seed=3, critic_features=False):
    return MixedVectorEnv(training_timelines(config), num_envs=8, train_fraction=0.75,
                          log_interval=8, seed=seed, max_steps=24, critic_features=critic_features)


def play(env, actions):
    env.reset()
    steps = [tuple(np.copy(x) for x in env.step(a)[:4]) for a in actions]
    return steps


ACTIONS = np.random.default_rng(0).integers(0, 8, size=(60, 8)).astype(np.int32)


def test_the_mix_holds_both_parts_each_in_its_slice_seeded_as_one_batch():
    config = replay_config()
    env = mixed_env(config, critic_features=True)
    replay, world = env.parts
    assert isinstance(replay, TraceReplayEnv) and isinstance(world, GardenerEnv)
    assert (replay.num_grids, world.num_grids) == (6, 2)
    assert (world.params.height, world.params.width) == (replay.params.height, replay.params.width)
    env.reset()
    seeds = grid_seeds(3, 0, 8)
    np.testing.assert_array_equal(replay.state.grid_seed, seeds[:6])
    np.testing.assert_array_equal(world.state.grid_seed, seeds[6:])
    # The replayed part plays as a TraceReplayEnv of its own does (same grids, same seeds), and
    # both parts append the privileged critic's features (the first is the episode clock).
    alone = TraceReplayEnv(training_timelines(config), num_envs=6, seed=3, max_steps=24)
    alone.reset()
    for step in range(30):
        obs, rewards = (np.copy(x) for x in env.step(ACTIONS[step])[:2])
        alone_obs, alone_rewards = alone.step(ACTIONS[step, :6])[:2]
        np.testing.assert_array_equal(obs[:6, :OBS_SIZE], alone_obs)
        np.testing.assert_array_equal(rewards[:6], alone_rewards)
    assert obs.shape == (8, OBS_SIZE + NUM_CRITIC_FEATURES)
    np.testing.assert_allclose(obs[:, OBS_SIZE], 6 / 24)  # 30 steps: 6 into the second episode
    assert np.any(obs[:, OBS_SIZE + 1:] > 0)


def test_same_seeds_same_bits_and_another_seed_differs():
    config = replay_config()
    first, second = play(mixed_env(config), ACTIONS), play(mixed_env(config), ACTIONS)
    for a, b in zip(first, second):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    other = play(mixed_env(config, seed=4), ACTIONS)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_state_dict_resumes_the_mix_bit_for_bit():
    config = replay_config()
    first, second = mixed_env(config), mixed_env(config, seed=9)
    first.reset()
    for step in range(30):  # past the first episode end (24 steps): auto-resets are saved too
        first.step(ACTIONS[step])
    second.load_state_dict(first.state_dict())
    for step in range(30, 60):
        a = [np.copy(x) for x in first.step(ACTIONS[step])[:4]]
        b = second.step(ACTIONS[step])[:4]
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ConfigError, match="train_fraction"):
        MixedVectorEnv(training_timelines(config), num_envs=8, train_fraction=1.0,
                       max_steps=24).load_state_dict(first.state_dict())


def test_held_out_traces_are_not_the_trained_ones_and_bad_values_are_config_errors(tmp_path):
    config = replay_config(tmp_path)
    trained = {t.cpu.tobytes() + t.mem.tobytes() for t in training_timelines(config)}
    held_out = heldout_timelines(config)
    assert len(held_out) == 4
    assert not trained & {t.cpu.tobytes() + t.mem.tobytes() for t in held_out}
    with pytest.raises(ConfigError, match="eval_seed must differ from replay.train_seed"):
        check_replay_config(replay_config(tmp_path, "--train.eval-seed", "0"))
    with pytest.raises(ConfigError, match="train_traces .*no such file"):
        check_replay_config(replay_config(tmp_path, "--replay.train-traces", str(tmp_path / "x")))
    with pytest.raises(ConfigError, match="train_fraction must be in"):
        check_replay_config(replay_config(tmp_path, "--replay.train-fraction", "1.5"))
    for bad in ("1.5", "-0.1", "nan"):
        with pytest.raises(ConfigError, match="train_busy_fraction"):
            check_replay_config(replay_config(tmp_path, "--replay.train-busy-fraction", bad))


def test_busy_clusters_follow_the_scenario_traces_with_pods_on_most_nodes(tmp_path):
    plain = training_timelines(replay_config(tmp_path, "--replay.train-busy-fraction", "0"))
    config = replay_config(tmp_path, "--replay.train-busy-fraction", "0.5")
    mixed = training_timelines(config)
    assert len(mixed) == 4
    assert [t.mem.tobytes() for t in mixed[:2]] == [t.mem.tobytes() for t in plain[:2]]
    loaded = [np.count_nonzero(t.mem[-1]) for t in mixed]
    assert all((t.height, t.width) == (4, 4) for t in mixed)
    assert min(loaded[2:]) > max(loaded[:2]) and min(loaded[2:]) >= 12
    # The held-out traces are mixed alike, from their own seed.
    held_out = heldout_timelines(config)
    assert min(np.count_nonzero(t.mem[-1]) for t in held_out[2:]) >= 12
    assert not {t.mem.tobytes() for t in held_out[2:]} & {t.mem.tobytes() for t in mixed[2:]}


def test_the_registry_entry_trains_evaluates_on_held_out_replays_and_resumes_exactly(tmp_path):
    """The trainer never names the env: `[base] env_name = replay` gives the mix to train on and
    replays to evaluate on; a resumed run ends where an uninterrupted one does. (About 10 s.)"""
    config = replay_config(tmp_path)
    full = train(config, run_dir=tmp_path / "full", quiet=True)
    assert (full / "best.pt").is_file() and (full / "final.pt").is_file()
    train(config, run_dir=tmp_path / "split", quiet=True, should_stop=lambda it: it == 3)
    train(config, resume=str(tmp_path / "split" / "latest.pt"), quiet=True)
    a, b = (load_checkpoint(d / "latest.pt", require_training_state=True)
            for d in (full, tmp_path / "split"))
    assert a["config"]["base"]["env_name"] == "replay"
    assert a["critic_extra"] == NUM_CRITIC_FEATURES  # the default privileged critic
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert a["training"]["eval_history"] == b["training"]["eval_history"]
    assert a["training"]["history"] == b["training"]["history"]
    assert len(a["training"]["eval_history"]) == 3


@pytest.mark.parametrize("trace", ["sim-arena/demo_trace-v2.msgpack",
                                   "simkube/examples_traces_cronjob.sktrace"])
def test_the_shipped_replay_checkpoint_beats_the_heuristic_on_shared_traces_it_never_saw(trace):
    """checkpoints/replay_ppo.pt (README: how it was made), paired episodes: demo_trace-v2,
    whose nodes' memory is mostly requests (the heuristic cleans them in vain, and random, which
    seldom cleans, beats it), and a light trace, where the policy buys capacity."""
    path = DATA / trace
    if not path.is_file():
        pytest.skip(f"shared test data not found: {path} (the traces live in ../shared/data, "
                    "next to the project; see shared/data/README.md)")
    result = validate(["heuristic", "random", str(ROOT / "checkpoints" / "replay_ppo.pt")], path,
                      3, 0, load_config(), echo=lambda *_: None)
    heuristic, random, ppo = result["traces"][0]["policies"]
    assert ppo["reward_mean"] > max(heuristic["reward_mean"], random["reward_mean"])
    assert ppo["wins"] == 3
