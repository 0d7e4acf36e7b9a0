"""ClusterOps: the kernel against its NumPy reference, the rules of incidents and fixes, the two
envs (native PufferLib, Gymnasium), the runbook against random, and the CLI hooks."""
import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import puffer_cluster
from puffer_cluster.kernels import cluster_ops as kernel
from puffer_cluster.kernels import cluster_ops_reference as reference
from puffer_cluster.cli import main as cli_main
from puffer_cluster.cluster_ops import (
    ACTION_NAMES, GYM_ID, NUM_ACTIONS, OBS_NAMES, OBS_SIZE, ClusterOpsEnv, ClusterOpsGymEnv,
    cluster_ops_params, format_table, make_cluster_ops_vecenv,
)
from puffer_cluster.cluster_ops.policies import heuristic_actions
from puffer_cluster.config import ConfigError, load_config
from puffer_cluster.evaluate import evaluate
from puffer_cluster.registry import get_env_spec
from puffer_cluster.trainers.checkpoint import CheckpointError
from puffer_cluster.trainers.train_config import validate_train_config

SEED_ACTIONS = ["GET_NODES", "GET_PODS", "GET_EVENTS", "GET_DEPLOYMENTS", "CHECK_LOGS",
                "DESCRIBE_UNHEALTHY", "RESTART_FAILED_PODS", "SCALE_UP_DEPLOYMENT",
                "SCALE_DOWN_DEPLOYMENT", "DRAIN_NODE", "UNCORDON_NODE", "TOP_NODES", "TOP_PODS",
                "GET_RESOURCE_QUOTAS", "WAIT"]
# Nothing starts by itself: incidents are placed by hand.
QUIET = dict(initial_incidents=0, incident_rate=0.0)


def batch(num_envs=1, seed=0, **overrides):
    params = cluster_ops_params(overrides)
    state = kernel.allocate_state(num_envs, params)
    state.grid_seed[:] = np.arange(num_envs, dtype=np.uint64) * np.uint64(7919) + np.uint64(seed)
    buffers = (np.zeros((num_envs, OBS_SIZE), np.float32), np.zeros(num_envs, np.float32),
               np.zeros(num_envs, bool), np.zeros(num_envs, bool))
    return params, state, buffers


def step(params, state, buffers, action):
    kernel.step_envs_serial(params, state, np.full(state.step.shape[0], action, np.int32), *buffers,
                            True)
    return buffers[0][0], float(buffers[1][0])


def test_spaces_follow_the_seed():
    assert list(ACTION_NAMES) == SEED_ACTIONS and NUM_ACTIONS == 15
    assert OBS_SIZE == 18 and len(OBS_NAMES) == 18
    env = gymnasium.make(GYM_ID)
    assert env.observation_space.shape == (18,) and env.action_space.n == 15


@pytest.mark.parametrize("parallel", [False, True])
def test_kernel_is_bit_identical_to_the_reference(parallel):
    params, a, (oa, ra, ta, ua) = batch(48, incident_rate=0.1, max_steps=40)
    _, b, (ob, rb, tb, ub) = batch(48, incident_rate=0.1, max_steps=40)
    reference.reset_reference(params, a, oa)
    (kernel.reset_envs if parallel else kernel.reset_envs_serial)(params, b, ob)
    assert np.array_equal(oa, ob)
    step_kernel = kernel.step_envs if parallel else kernel.step_envs_serial
    rng = np.random.default_rng(1)
    for t in range(130):  # three episodes and auto-resets
        actions = rng.integers(-1, NUM_ACTIONS + 1, 48).astype(np.int32)  # invalid ones too
        reference.step_reference(params, a, actions, oa, ra, ta, ua, True)
        step_kernel(params, b, actions, ob, rb, tb, ub, True)
        assert np.array_equal(oa, ob) and np.array_equal(ra, rb) and np.array_equal(ua, ub), t
    for name in a._fields:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.finished_count.sum() == 3 * 48 and a.ep_invalid.sum() + a.last_stats[:, -1].sum() > 0


def test_causes_are_hidden_until_the_matching_read():
    params, state, buffers = batch(**QUIET)
    kernel.reset_envs_serial(params, state, buffers[0])
    assert (buffers[0][0, kernel.OBS_FLAGS:] == -1).all()
    assert kernel._start_incident(params, state, 0, (kernel.NEW_PVC + 0.5) / kernel.NUM_NEW_KINDS, 0.0)
    obs, _ = step(params, state, buffers, kernel.WAIT)
    assert obs[kernel.OBS_PENDING] > 0 and obs[kernel.OBS_FLAGS + kernel.FLAG_PVC] == -1
    obs, _ = step(params, state, buffers, kernel.GET_DEPLOYMENTS)  # the wrong look
    assert obs[kernel.OBS_FLAGS + kernel.FLAG_BAD_ROLLOUT] == 0
    assert obs[kernel.OBS_FLAGS + kernel.FLAG_PVC] == -1
    obs, _ = step(params, state, buffers, kernel.GET_EVENTS)
    assert obs[kernel.OBS_FLAGS + kernel.FLAG_PVC] == 1 and obs[kernel.OBS_FLAGS + kernel.FLAG_PRESSURE] == 0
    # A new incident hides every cause again.
    kernel._start_incident(params, state, 0, (kernel.NEW_CRASH_LOOP + 0.5) / kernel.NUM_NEW_KINDS, 0.0)
    obs, _ = step(params, state, buffers, kernel.WAIT)
    assert (obs[kernel.OBS_FLAGS:] == -1).all()


def test_describe_reveals_the_most_urgent_cause():
    params, state, buffers = batch(**QUIET)
    kernel.reset_envs_serial(params, state, buffers[0])
    state.dep_issue[0, 1], state.dep_severity[0, 1] = kernel.NETWORK, 0.5
    state.dep_issue[0, 3], state.dep_severity[0, 3] = kernel.BAD_ROLLOUT, 0.75
    obs, _ = step(params, state, buffers, kernel.DESCRIBE_UNHEALTHY)
    flags = obs[kernel.OBS_FLAGS:]
    assert flags[kernel.FLAG_BAD_ROLLOUT] == 1 and flags[kernel.FLAG_NETWORK] == -1


def test_the_right_fix_pays_and_the_wrong_fix_costs():
    params, state, buffers = batch(**QUIET)
    kernel.reset_envs_serial(params, state, buffers[0])
    state.dep_issue[0, 2], state.dep_severity[0, 2] = kernel.PVC_PENDING, 0.5
    state.dep_timer[0, 2] = 3
    # Restarting pods that wait for a PVC: a wrong fix, and the bind wait starts over.
    _, reward = step(params, state, buffers, kernel.RESTART_FAILED_PODS)
    assert state.ep_wrong[0] == 1 and state.dep_timer[0, 2] == params.pvc_bind_steps - 1
    assert reward < -params.wrong_fix_penalty
    # Draining a healthy node: a wrong fix that leaves it cordoned.
    step(params, state, buffers, kernel.DRAIN_NODE)
    assert state.ep_wrong[0] == 2 and state.node_cordoned[0, 0] == 1
    # A crash loop restarted: resolved, paid.
    state.dep_issue[0, 4], state.dep_severity[0, 4] = kernel.CRASH_LOOP, 0.5
    _, reward = step(params, state, buffers, kernel.RESTART_FAILED_PODS)
    assert state.dep_issue[0, 4] == kernel.DEP_OK and state.ep_resolved[0] == 1
    assert reward > params.resolve_reward - 1.0


def test_drain_targets_the_worst_failing_node_then_uncordon_after_recovery():
    params, state, buffers = batch(**QUIET)
    kernel.reset_envs_serial(params, state, buffers[0])
    state.node_status[0, 1], state.node_severity[0, 1] = kernel.PRESSURE, 0.3
    state.node_status[0, 4], state.node_severity[0, 4] = kernel.PRESSURE, 0.6
    step(params, state, buffers, kernel.DRAIN_NODE)
    assert state.node_status[0, 4] == kernel.RECOVERING and state.node_cordoned[0, 4] == 1
    assert state.node_status[0, 1] == kernel.PRESSURE
    # Uncordoning while it still recovers sends it NotReady again.
    step(params, state, buffers, kernel.UNCORDON_NODE)
    assert state.node_status[0, 4] == kernel.NOT_READY and state.ep_wrong[0] == 1
    step(params, state, buffers, kernel.DRAIN_NODE)  # NotReady beats the pressured node
    assert state.node_status[0, 4] == kernel.RECOVERING
    for _ in range(params.recover_steps):
        step(params, state, buffers, kernel.WAIT)
    assert state.node_status[0, 4] == kernel.NODE_READY and state.node_cordoned[0, 4] == 1
    step(params, state, buffers, kernel.UNCORDON_NODE)
    assert state.node_cordoned[0, 4] == 0 and state.ep_resolved[0] == 3


def test_incidents_spread_and_pressure_turns_a_node_not_ready():
    params, state, buffers = batch(**QUIET, spread_rate=0.25)
    kernel.reset_envs_serial(params, state, buffers[0])
    state.node_status[0, 2], state.node_severity[0, 2] = kernel.PRESSURE, 0.25
    failed = [step(params, state, buffers, kernel.WAIT)[0][kernel.OBS_FAILED] for _ in range(2)]
    assert failed[1] > failed[0] > 0
    obs, _ = step(params, state, buffers, kernel.WAIT)
    assert state.node_status[0, 2] == kernel.NOT_READY and obs[kernel.OBS_NOT_READY] > 0


def test_healthy_cluster_earns_the_bonus_and_episodes_truncate():
    params, state, buffers = batch(**QUIET, max_steps=5)
    kernel.reset_envs_serial(params, state, buffers[0])
    rewards = [step(params, state, buffers, kernel.WAIT)[1] for _ in range(5)]
    assert np.allclose(rewards, params.healthy_bonus - params.step_penalty)
    assert buffers[3][0] and state.finished_count[0] == 1
    assert state.last_stats[0, kernel.STAT_HEALTHY] == 1.0


def test_gym_env_checks_and_replays_the_vector_env():
    env = ClusterOpsGymEnv()
    check_env(env, skip_render_check=True)
    vec = ClusterOpsEnv(num_envs=1, seed=5, log_interval=2**62)
    vec_obs, _ = vec.reset()
    obs, _ = env.reset(seed=5)
    assert np.array_equal(obs, vec_obs[0])
    rng = np.random.default_rng(0)
    for _ in range(150):  # across two auto-resets
        action = int(rng.integers(NUM_ACTIONS))
        vec_obs, vec_reward, _, vec_trunc, _ = vec.step(np.array([action]))
        obs, reward, terminated, truncated, _ = env.step(action)
        if truncated:
            obs, _ = env.reset()
        assert np.array_equal(obs, vec_obs[0]) and reward == pytest.approx(float(vec_reward[0]))


def test_same_seed_same_trajectory_and_state_dict_round_trip():
    def run(env, steps, start=0):
        out = []
        for t in range(start, start + steps):
            obs, rewards, *_ = env.step(np.full(64, t % NUM_ACTIONS))
            out.append((obs.copy(), rewards.copy()))
        return out

    a = ClusterOpsEnv(num_envs=64, seed=3)
    a.reset()
    first = run(a, 30)
    saved = a.state_dict()
    rest = run(a, 30, 30)
    b = ClusterOpsEnv(num_envs=64, seed=99)
    b.reset()
    b.load_state_dict(saved)
    again = run(b, 30, 30)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(rest, again))
    c = ClusterOpsEnv(num_envs=64, seed=3)
    c.reset()
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(first, run(c, 30)))


def test_runbook_beats_random_on_paired_seeds():
    config = load_config("cluster_ops")
    rows = evaluate(["random", "heuristic"], 24, 7, config)
    assert rows[1]["wins"] >= 22 and rows[1]["wrong_fixes_mean"] < rows[0]["wrong_fixes_mean"]
    table = format_table(rows)
    assert "CLUSTEROPS RESULTS (random vs heuristic)" in table and "Heuristic win-rate" in table
    assert set(get_env_spec("cluster_ops").baselines) == {"random", "heuristic"}


def test_runbook_looks_before_it_fixes():
    obs = np.zeros((3, OBS_SIZE), np.float32)
    obs[:, kernel.OBS_RUNNING] = 0.9
    obs[:, kernel.OBS_FAILED] = 0.1
    obs[:, kernel.OBS_HEALTHY_DEPLOYMENTS] = 0.8
    obs[:, kernel.OBS_FLAGS:] = -1
    obs[1, kernel.OBS_FLAGS + kernel.FLAG_BAD_ROLLOUT] = 1
    obs[2, kernel.OBS_FLAGS:] = 0
    obs[2, kernel.OBS_FLAGS + kernel.FLAG_PVC] = 1
    assert heuristic_actions(obs).tolist() == [kernel.DESCRIBE_UNHEALTHY,
                                               kernel.SCALE_DOWN_DEPLOYMENT, kernel.WAIT]


def test_config_is_checked_and_the_vecenv_comes_from_the_config():
    with pytest.raises(ConfigError, match="unknown cluster_ops keys"):
        cluster_ops_params({"node": 3})
    with pytest.raises(ConfigError, match="incident_rate"):
        cluster_ops_params({"incident_rate": 2.0})
    config = load_config("cluster_ops", ["--env.num_envs", "8", "--cluster_ops.nodes", "3"])
    env = make_cluster_ops_vecenv(config)
    assert env.num_agents == 8 and env.params.nodes == 3
    with pytest.raises(ConfigError, match="teacher"):
        validate_train_config(load_config("cluster_ops", ["--train.teacher", "heuristic"]))


def test_eval_cli_prints_the_cluster_ops_table(capsys):
    assert cli_main(["eval", "random", "heuristic", "--config", "cluster_ops", "--episodes", "4"]) == 0
    assert "CLUSTEROPS RESULTS" in capsys.readouterr().out
    assert puffer_cluster.CLUSTER_OPS_GYM_ID == GYM_ID


def test_shipped_checkpoint_beats_the_runbook_on_held_out_seeds():
    """checkpoints/cluster_ops_ppo.pt (README: how it was trained), paired seeds it never saw."""
    rows = evaluate(["heuristic", "cluster_ops_ppo"], 100, 12345, load_config("cluster_ops"))
    ppo = rows[1]
    assert ppo["reward_mean"] > rows[0]["reward_mean"]
    assert ppo["wins"] > ppo["episodes"] - ppo["wins"] - ppo["ties"]  # more wins than losses


def test_a_gardener_checkpoint_is_refused_by_cluster_ops():
    with pytest.raises(CheckpointError, match="does not fit the cluster_ops env"):
        evaluate(["gardener_ppo"], 2, 0, load_config("cluster_ops"))


def test_the_gardener_refuses_the_cluster_ops_checkpoint_in_one_line(capsys):
    assert cli_main(["eval", "heuristic", "cluster_ops_ppo", "--episodes", "2"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "trained on cluster_ops" in errors[0]
