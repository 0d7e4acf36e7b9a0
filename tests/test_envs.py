"""The two front doors: `GardenerEnv` (native PufferLib vector env) and `GardenerGymEnv`
(Gymnasium), plus their use through `pufferlib.vector.make`."""
import warnings

import gymnasium
import numpy as np
import pufferlib
import pufferlib.vector
import pytest
from gymnasium.utils.env_checker import check_env

import puffer_cluster
from conftest import HARSH, QUIET, node, set_nodes
from puffer_cluster.kernels.fixed import CAP, CAP_ONE, PRIO
from puffer_cluster.kernels.world import CLEAN, EPISODE_STATS, NOOP, OBS_SIZE, OBS_X, OBS_Y
from puffer_cluster import GYM_ID, ConfigError, GardenerEnv, GardenerGymEnv, InvalidActionError
from puffer_cluster.render import CRITICAL, GARDENER, frame_layout


def assert_obs_valid(obs):
    """Finite, within [-1, 1], and a neighbour is either all -1 (outside) or all in [0, 1]."""
    assert obs.dtype == np.float32 and obs.shape[-1] == OBS_SIZE
    assert np.isfinite(obs).all()
    assert (obs >= -1.0).all() and (obs <= 1.0).all()
    window = obs[:, :OBS_Y].reshape(-1, 9, 3)
    outside = (window == -1.0).all(axis=2)
    inside = ((window >= 0.0) & (window <= 1.0)).all(axis=2)
    assert (outside | inside).all()
    assert ((obs[:, OBS_Y:] >= 0.0) & (obs[:, OBS_Y:] <= 1.0)).all()


# --- bounds over long rollouts ------------------------------------------------------------------

@pytest.mark.parametrize("grids, steps, config", [
    (2048, 500, {}),  # the shipped constants, whatever they are tuned to
    (512, 400, dict(HARSH, height=16, width=16, max_steps=150, cap_max=8.0, spike_max=3.0,
                    overload_mem_jump=0.5, budget_regen=0.2)),
    (1024, 300, dict(HARSH, height=4, width=7, agents_per_grid=2, max_steps=100)),
], ids=["defaults", "extreme", "small-2-agents"])
def test_long_random_rollouts_stay_bounded(grids, steps, config):
    env = GardenerEnv(num_envs=grids, seed=2024, log_interval=50, **config)
    obs, _ = env.reset()
    assert_obs_valid(obs)
    rng = np.random.default_rng(7)
    ends = 0
    infos_seen = 0
    for _ in range(steps):
        actions = rng.integers(-3, 11, size=env.num_agents).astype(np.int32)
        obs, rewards, terminals, truncations, infos = env.step(actions)
        assert_obs_valid(obs)
        assert rewards.dtype == np.float32 and np.isfinite(rewards).all()
        ends += int(terminals.sum() + truncations.sum())
        for info in infos:
            infos_seen += 1
            assert all(np.isfinite(v) for v in info.values())
            assert info["invalid_actions"] > 0
    assert ends > 0 and infos_seen > 0
    s = env.state
    cap = s.nodes[..., CAP] / CAP_ONE
    assert (cap >= 1.0).all() and (cap <= env.params.cap_max).all()
    assert (s.budget >= 0.0).all() and (s.budget <= 1.0).all()


@pytest.mark.parametrize("height, width", [(4, 4), (4, 256), (256, 4), (256, 256)])
def test_every_grid_size_from_4_to_256_works(height, width):
    env = GardenerEnv(num_envs=2, height=height, width=width, seed=1)
    obs, _ = env.reset()
    assert_obs_valid(obs)
    rng = np.random.default_rng(height + width)
    for _ in range(30):
        obs, rewards, _, _, _ = env.step(rng.integers(0, 8, 2))
        assert_obs_valid(obs)
        assert np.isfinite(rewards).all()
        np.testing.assert_array_equal(obs[:, OBS_Y], (env.state.agent_y[:, 0] / (height - 1))
                                      .astype(np.float32))
        np.testing.assert_array_equal(obs[:, OBS_X], (env.state.agent_x[:, 0] / (width - 1))
                                      .astype(np.float32))
    assert (env.state.agent_y < height).all() and (env.state.agent_x < width).all()


# --- GardenerEnv --------------------------------------------------------------------------------

def test_vector_env_spaces_and_buffers():
    env = GardenerEnv(num_envs=3, height=5, width=7, agents_per_grid=2)
    assert env.num_agents == 6
    assert env.single_observation_space == gymnasium.spaces.Box(-1.0, 1.0, (OBS_SIZE,), np.float32)
    assert env.single_action_space == gymnasium.spaces.Discrete(8)
    obs, infos = env.reset(seed=0)
    assert obs.shape == (6, OBS_SIZE) and infos == []
    obs, rewards, terminals, truncations, infos = env.step(np.zeros(6, dtype=np.int32))
    assert rewards.shape == terminals.shape == truncations.shape == (6,)
    assert obs is env.observations  # PufferLib buffers are written in place


def test_vector_env_infos_every_log_interval():
    config = {**QUIET, "max_steps": 4}
    env = GardenerEnv(num_envs=2, log_interval=4, seed=1, **config)
    env.reset()
    set_nodes(env.state, env.params, 0, node(env.params, 2, 2), mem=1.0, prio=0.25)  # one OOM
    for t in range(1, 9):
        actions = np.array([9 if t == 1 else NOOP, CLEAN if t == 2 else NOOP])
        _, _, _, truncations, infos = env.step(actions)
        if t % 4:
            assert infos == [], t
            continue
        assert truncations.all()
        assert isinstance(infos, list) and len(infos) == 1
        info = infos[0]
        assert set(info) == set(EPISODE_STATS) | {"n"}
        assert info["n"] == 2
        assert info["episode_length"] == 4.0
        assert info["collapsed"] == 0.0
        if t == 4:
            assert info["oom_count"] == 0.5 and info["crit_count"] == 0.0
            assert info["oom_rate"] == pytest.approx((100 * 1 / 4 + 0) / 2)
            assert info["invalid_actions"] == 0.5
            assert info["budget_spent"] == pytest.approx(QUIET["clean_cost"] / 2)
        else:  # statistics are reset after each report
            assert info["oom_count"] == 0.0 and info["invalid_actions"] == 0.0
            assert info["budget_spent"] == 0.0


def test_vector_env_no_info_without_finished_episodes():
    env = GardenerEnv(num_envs=2, log_interval=3, **{**QUIET, "max_steps": 4})
    env.reset(seed=0)
    reports = [env.step(np.zeros(2, dtype=np.int64))[4] for _ in range(6)]
    assert reports[2] == []          # tick 3: nothing finished yet
    assert [i["n"] for i in reports[5]] == [2]  # tick 6: both grids truncated at step 4


def test_vector_env_out_of_range_actions_count_invalid_and_act_as_noop():
    config = dict(HARSH, height=6, width=6, max_steps=30)
    a = GardenerEnv(num_envs=64, seed=3, log_interval=30, **config)
    b = GardenerEnv(num_envs=64, seed=3, log_interval=30, **config)
    a.reset()
    b.reset()
    junk = np.array([-1, 8, 9, 10**6, -10**6, 2**40, -2**40], dtype=np.int64)
    rng = np.random.default_rng(5)
    for t in range(30):
        oa, ra, da, ta, ia = a.step(np.full(64, NOOP, dtype=np.int64))
        ob, rb, db, tb, ib = b.step(junk[rng.integers(0, len(junk), 64)])
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(da, db)
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_allclose(ra - rb, HARSH["invalid_penalty"], atol=5e-6)
    for name in ("nodes", "sums", "wheel", "agent_y", "agent_x", "budget", "step"):
        np.testing.assert_array_equal(getattr(a.state, name), getattr(b.state, name))
    assert ia[0]["invalid_actions"] == 0.0
    # Each episode ends after at most 30 steps, all of them invalid.
    assert ib[0]["invalid_actions"] == pytest.approx(ib[0]["episode_length"])


@pytest.mark.parametrize("bad", [
    [np.nan, 0.0], [3.5, 0.0], [np.inf, 1.0], [0.0, -np.inf],
])
def test_vector_env_rejects_non_integral_actions(bad):
    env = GardenerEnv(num_envs=2, height=4, width=4)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="integer"):
        env.step(np.array(bad, dtype=np.float32))
    assert env.state.step.tolist() == [0, 0]
    assert issubclass(InvalidActionError, ValueError)


def test_vector_env_rejects_wrong_action_count():
    env = GardenerEnv(num_envs=3, height=4, width=4)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="3"):
        env.step(np.zeros(2, dtype=np.int32))


@pytest.mark.parametrize("shape", [(3, 1), (1, 3), (3, 3), ()])
def test_vector_env_refuses_action_arrays_of_another_shape(shape):
    """(N, 1) or (1, N) are not flattened: a batch of the wrong shape is a caller's bug."""
    env = GardenerEnv(num_envs=3, height=4, width=4)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"shape \(3,\)"):
        env.step(np.zeros(shape, dtype=np.int32))
    assert env.state.step.tolist() == [0, 0, 0]


@pytest.mark.parametrize("kwargs, name", [
    (dict(height=16.5), "height"), (dict(height="16"), "height"), (dict(seed=1.5), "seed"),
    (dict(log_interval=0), "log_interval"), (dict(num_envs=2.5), "num_envs"),
    (dict(spike_rate="0.1"), "spike_rate"), (dict(kernel="fast"), "kernel"),
])
def test_vector_env_refuses_bad_sizes_seeds_and_intervals(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        GardenerEnv(**{"num_envs": 2, **kwargs})


@pytest.mark.parametrize("kernel", ["event", "dense"])
def test_both_kernels_behind_both_front_doors(kernel):
    vec = GardenerEnv(num_envs=2, height=5, width=5, kernel=kernel, seed=3)
    gym = GardenerGymEnv(height=5, width=5, kernel=kernel)
    assert vec.state.wheel.size > 0 if kernel == "event" else vec.state.wheel.size == 0
    np.testing.assert_array_equal(vec.reset()[0][0], gym.reset(seed=3)[0])


def test_vector_env_accepts_integral_float_actions():
    a = GardenerEnv(num_envs=4, height=5, width=5, seed=2)
    b = GardenerEnv(num_envs=4, height=5, width=5, seed=2)
    a.reset()
    b.reset()
    for actions in ([1, 2, 3, 4], [5, 6, 7, 0], [8, -1, 2, 3]):
        oa = a.step(np.array(actions, dtype=np.float64))[0].copy()
        ob = b.step(np.array(actions, dtype=np.int32))[0].copy()
        np.testing.assert_array_equal(oa, ob)
    np.testing.assert_array_equal(a.state.ep_invalid, b.state.ep_invalid)
    assert a.state.ep_invalid[:2].tolist() == [1, 1]


def test_vector_env_render():
    env = GardenerEnv(num_envs=2, height=5, width=7)
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and "<" in text
    env = GardenerEnv(num_envs=2, height=5, width=7, render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render(grid=1)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@pytest.mark.parametrize("backend", ["PufferEnv", "Serial", "Multiprocessing"])
def test_pufferlib_vector_make(backend):
    kwargs = dict(num_workers=2, overwork=True) if backend == "Multiprocessing" else {}
    copies = 1 if backend == "PufferEnv" else 2
    vecenv = pufferlib.vector.make(
        GardenerEnv, backend=getattr(pufferlib.vector, backend), num_envs=copies,
        env_kwargs=dict(num_envs=32, log_interval=8, height=5, width=5, max_steps=8), **kwargs)
    try:
        obs, _ = vecenv.reset(seed=3)
        assert obs.shape == (32 * copies, OBS_SIZE)
        reports = []
        for t in range(16):
            actions = np.full(vecenv.num_agents, NOOP, dtype=np.int32)
            obs, rewards, terminals, truncations, infos = vecenv.step(actions)
            assert_obs_valid(obs)
            if t == 7:
                assert (terminals | truncations).all()
            reports.append(infos)
    finally:
        vecenv.close()
    for t, infos in enumerate(reports):
        if t in (7, 15):
            assert len(infos) == copies
            for info in infos:
                assert isinstance(info, dict) and info["n"] >= 32
                assert info["episode_length"] <= 8
        else:
            assert not infos


# --- GardenerGymEnv -----------------------------------------------------------------------------

def _messages(caught):
    return [str(w.message) for w in caught]


def test_check_env_passes_without_warnings():
    for mode in (None, "ansi", "rgb_array"):
        env = gymnasium.make(GYM_ID, render_mode=mode).unwrapped
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env)
        assert _messages(caught) == [], mode


def test_gymnasium_make_after_import():
    assert GYM_ID in gymnasium.registry
    env = gymnasium.make(GYM_ID, height=5, width=7)
    assert isinstance(env.unwrapped, GardenerGymEnv)
    obs, info = env.reset(seed=0)
    assert obs.shape == (OBS_SIZE,) and env.observation_space.contains(obs)
    assert env.unwrapped.params.height == 5 and env.unwrapped.params.width == 7
    obs, reward, terminated, truncated, info = env.step(0)
    assert isinstance(reward, float) and terminated is False and truncated is False
    assert puffer_cluster.GardenerGymEnv is GardenerGymEnv


def test_gym_reset_with_seed_is_reproducible():
    env = GardenerGymEnv(height=6, width=6)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 8, 60).tolist()
    runs = []
    for seed in (5, 5, 6):
        obs, _ = env.reset(seed=seed)
        run = [obs]
        for action in actions:
            obs, reward, terminated, truncated, _ = env.step(action)
            run += [obs, reward]
            if terminated or truncated:
                break
        runs.append(run)
    assert all(np.array_equal(x, y) for x, y in zip(runs[0], runs[1]))
    assert not np.array_equal(runs[0][0], runs[2][0])
    # Plain reset() starts a new episode (not a replay of the first one).
    env.reset(seed=5)
    assert not np.array_equal(env.reset()[0], runs[0][0])


def test_gym_unseeded_resets_differ_between_instances():
    a, b = GardenerGymEnv(), GardenerGymEnv()
    assert not np.array_equal(a.reset()[0], b.reset()[0]) \
        or not np.array_equal(a.state.nodes, b.state.nodes)


@pytest.mark.parametrize("action", [-1, 8, 9, 3.5, float("nan"), 2.0, "2", None, True,
                                    np.int64(-1), np.int64(8), np.float32(1.0), [1],
                                    2**63, -2**63 - 1, 2**64, np.uint64(2**63)])
def test_gym_env_rejects_actions_outside_discrete_8(action):
    env = GardenerGymEnv(height=5, width=5)
    env.reset(seed=0)
    before = env.state.step.copy()
    with pytest.raises(InvalidActionError, match=r"\[0, 8\)") as error:
        env.step(action)
    assert isinstance(error.value, ValueError)
    assert "Discrete(8)" in str(error.value)
    np.testing.assert_array_equal(env.state.step, before)


@pytest.mark.parametrize("action", [0, 7, np.int64(5), np.int32(3), np.array(2)])
def test_gym_env_accepts_integers_in_range(action):
    env = GardenerGymEnv(height=5, width=5)
    env.reset(seed=0)
    env.step(action)
    assert env.state.step[0] == 1


def test_gym_info_at_episode_end():
    env = GardenerGymEnv(**{**QUIET, "max_steps": 4})
    env.reset(seed=9)
    i = node(env.params, 1, 1)
    set_nodes(env.state, env.params, 0, i, mem=1.0, prio=0.25)
    rewards = []
    for t, action in enumerate([CLEAN, NOOP, NOOP, NOOP]):
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        if t < 3:
            assert info == {} and not terminated and not truncated
    assert truncated and not terminated
    assert set(info) == set(EPISODE_STATS)
    assert info["episode_length"] == 4.0
    assert info["oom_count"] == 1.0 and info["crit_count"] == 0.0
    assert info["oom_rate"] == 25.0 and info["crit_rate"] == 0.0
    assert info["budget_spent"] == QUIET["clean_cost"]
    assert info["collapsed"] == 0.0 and info["invalid_actions"] == 0.0
    assert info["episode_return"] == pytest.approx(sum(rewards), rel=1e-6)
    assert 0.0 < info["avg_load"] < 1.0
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step(NOOP)


def test_gym_collapse_info():
    env = GardenerGymEnv(**{**QUIET, "crit_limit": 1, "collapse_penalty": 10.0})
    env.reset(seed=0)
    i = node(env.params, 0, 0)
    set_nodes(env.state, env.params, 0, i, mem=1.0, prio=0.875)
    _, reward, terminated, truncated, info = env.step(NOOP)
    assert terminated and not truncated
    assert info["collapsed"] == 1.0 and info["crit_count"] == 1.0
    assert reward == pytest.approx(-(1.0 * (1 + 2.0 * 0.875)) - 10.0)


def test_gym_env_is_single_agent():
    with pytest.raises(ValueError, match="agents_per_grid"):
        GardenerGymEnv(agents_per_grid=2)


# --- rendering ----------------------------------------------------------------------------------

def test_render_ansi_marks_the_gardener():
    env = GardenerGymEnv(render_mode="ansi", height=5, width=7)
    env.reset(seed=0)
    for y, x in [(0, 0), (2, 3), (4, 6), (1, 5)]:
        env.state.agent_y[0, 0], env.state.agent_x[0, 0] = y, x
        text = env.render()
        assert isinstance(text, str)
        lines = text.splitlines()
        header, grid = lines[0], lines[1:1 + 5]
        assert "step" in header
        assert len({len(line) for line in grid}) == 1 and len(grid[0]) >= 7
        marked = [k for k, line in enumerate(grid) if "<" in line]
        assert marked == [y], (y, x)
        cell = len(grid[0]) // 7
        assert grid[y].index("<") // cell == x


def test_render_ansi_has_one_line_per_row():
    for height, width in [(4, 4), (9, 5), (16, 12)]:
        env = GardenerGymEnv(render_mode="ansi", height=height, width=width)
        env.reset(seed=1)
        lines = env.render().splitlines()
        widths = [len(line) for line in lines[1:1 + height]]
        assert len(set(widths)) == 1 and widths[0] % width == 0
        assert sum("<" in line for line in lines[1:1 + height]) == 1


def test_render_rgb_array():
    for height, width in [(4, 4), (5, 7), (64, 64), (128, 128)]:
        env = GardenerGymEnv(render_mode="rgb_array", height=height, width=width)
        env.reset(seed=2)
        image = env.render()
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8
        assert image.ndim == 3 and image.shape[2] == 3
        layout = frame_layout(height, width)
        assert image.shape[:2] == layout.size and image.shape[1] >= 600  # readable
        assert layout.cell >= 2 and layout.lefts[2] + width * layout.cell <= image.shape[1]
        assert layout.top + height * layout.cell <= image.shape[0]
        y, x = env.state.agent_y[0, 0], env.state.agent_x[0, 0]
        for panel in range(3):  # the gardener's outline on the cpu, mem and prio panels
            assert tuple(image[layout.node_origin(panel, y, x)]) == GARDENER


def test_render_rgb_marks_critical_nodes_and_draws_the_status():
    env = GardenerGymEnv(render_mode="rgb_array", height=6, width=6)
    env.reset(seed=0)
    layout = frame_layout(6, 6)
    prio = env.state.nodes[0, :, PRIO].reshape(6, 6)
    agent = (env.state.agent_y[0, 0], env.state.agent_x[0, 0])
    before = env.render()
    assert (prio >= env.params.crit_fx).sum() >= 2
    for y, x in zip(*np.nonzero(prio >= env.params.crit_fx)):
        if abs(y - agent[0]) > 1 or abs(x - agent[1]) > 1:  # not under the gardener's boxes
            assert tuple(before[layout.node_origin(1, y, x)]) == CRITICAL
    for y, x in zip(*np.nonzero(prio < env.params.crit_fx)):
        if abs(y - agent[0]) > 1 or abs(x - agent[1]) > 1:
            assert tuple(before[layout.node_origin(1, y, x)]) != CRITICAL
    env.step(5)  # CLEAN: the status line (step, budget, return, last action) changes
    after = env.render()
    assert not np.array_equal(before[:layout.top], after[:layout.top])


def test_render_none_and_invalid_mode():
    env = GardenerGymEnv()
    env.reset(seed=0)
    assert env.render() is None
    with pytest.raises(ValueError, match="render_mode"):
        GardenerGymEnv(render_mode="human")
    with pytest.raises(ValueError):
        GardenerGymEnv(render_mode="bogus")
