"""Bit-identical trajectories across implementations (NumPy reference, dense and event-driven
kernels), thread counts, batch splits, vectorisation backends and front doors (GARDENER.md: "the
same seeds give bit-identical trajectories")."""
import signal
from contextlib import contextmanager

import numba
import numpy as np
import pufferlib
import pufferlib.vector
import pytest

from conftest import HARSH, World, params_with, random_actions
from puffer_cluster.kernels import dense, event, reference
from puffer_cluster.kernels.fixed import NODE_FIELDS
from puffer_cluster.kernels.world import EPISODE_STATS, grid_seeds
from puffer_cluster import GardenerEnv, GardenerGymEnv

SMALL_HARSH = dict(height=6, width=6, **HARSH)


def assert_same_step(a, b, t):
    for name, x, y in zip(("obs", "rewards", "terminals", "truncations"), a, b):
        np.testing.assert_array_equal(x, y, err_msg=f"{name} differ at step {t}")


def assert_same_state(a, b):
    """Every state array but the event kernel's own bookkeeping (its sums, wheels and the queue
    fields of its node records)."""
    for name in a.state._fields:
        x, y = getattr(a.state, name), getattr(b.state, name)
        if name == "nodes":
            x, y = x[..., :NODE_FIELDS], y[..., :NODE_FIELDS]
        elif name in ("sums", "wheel"):
            continue
        np.testing.assert_array_equal(x, y, err_msg=f"state.{name}")


def run_all_three(params, grids, steps, seed, rng, low=0, high=8):
    """The reference, the dense and the event kernel on the same actions: every output equal at
    every step, and the states at the end. Returns (terminals, truncations) seen."""
    worlds = [World(backend, params, grids, seed=seed) for backend in (reference, dense, event)]
    for other in worlds[1:]:
        np.testing.assert_array_equal(worlds[0].obs, other.obs)
    ends = np.zeros(2, dtype=np.int64)
    agents = grids * params.agents_per_grid
    for t in range(steps):
        actions = random_actions(rng, agents, low, high)
        first, *others = [world.step(actions) for world in worlds]
        for other in others:
            assert_same_step(first, other, t)
        ends += first[2].sum(), first[3].sum()
    for other in worlds[1:]:
        assert_same_state(worlds[0], other)
        np.testing.assert_array_equal(worlds[0].state.last_stats, other.state.last_stats)
    return ends


# --- (a) NumPy reference vs dense vs event-driven kernel ----------------------------------------

@pytest.mark.parametrize("height, width, agents", [(6, 6, 1), (5, 7, 2), (4, 9, 3)])
def test_three_implementations_are_bit_identical(height, width, agents):
    params = params_with(**{**SMALL_HARSH, "height": height, "width": width,
                            "agents_per_grid": agents})
    rng = np.random.default_rng(height * 100 + width)
    # Out-of-range actions included; collapses, truncations and auto-resets all happen.
    terminals, truncations = run_all_three(params, 16, 300, 77, rng, -2, 10)
    assert terminals > 0 and truncations > 0


@pytest.mark.parametrize("size, grids, agents, steps", [
    (4, 16, 2, 400), (16, 8, 3, 300), (64, 2, 4, 160), (128, 1, 2, 90)])
def test_three_implementations_agree_with_the_shipped_defaults(size, grids, agents, steps):
    """The shipped constants (whatever they are tuned to), several gardeners per grid; longer
    rollouts are bench/throughput.py's --check."""
    params = params_with(height=size, width=size, agents_per_grid=agents,
                         max_steps=max(40, steps // 3))
    terminals, truncations = run_all_three(params, grids, steps, size, np.random.default_rng(size),
                                           -1, 9)
    assert terminals + truncations > 0


@pytest.mark.parametrize("size", [16, 24])
def test_three_implementations_agree_when_a_step_draws_many_spikes(size):
    """The event kernel draws a step's spikes a block at a time into a ring: 256 spikes a step
    (16x16) fill it exactly, 576 (24x24) wrap around it."""
    params = params_with(height=size, width=size, spike_rate=1.0, max_steps=40)
    assert size * size >= event.SCRATCH
    run_all_three(params, 4, 60, size, np.random.default_rng(size), -1, 9)


@pytest.mark.parametrize("height, width", [(4, 256), (256, 4)])
def test_three_implementations_agree_on_extreme_shapes(height, width):
    params = params_with(**{**HARSH, "height": height, "width": width})
    run_all_three(params, 4, 80, 13, np.random.default_rng(1), -1, 9)


# --- (b) thread count ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", [dense, event], ids=["dense", "event"])
def test_numba_thread_count_does_not_change_results(backend):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    params = params_with(**{**SMALL_HARSH, "height": 8, "width": 8})
    rng = np.random.default_rng(3)
    actions = [random_actions(rng, 512, -1, 9) for _ in range(150)]
    previous = numba.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            world = World(backend, params, 512, seed=11)
            runs.append((world, [world.step(a) for a in actions]))
    finally:
        numba.set_num_threads(previous)
    (w1, steps1), (w2, steps2) = runs
    for t, (a, b) in enumerate(zip(steps1, steps2)):
        assert_same_step(a, b, t)
    assert_same_state(w1, w2)
    assert sum(int(s[2].sum()) for s in steps1) > 0


# --- (c) batch split ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", [dense, event], ids=["dense", "event"])
def test_one_batch_equals_two_half_batches(backend):
    params = params_with(**{**SMALL_HARSH, "height": 4, "width": 4, "max_steps": 30})
    seed, half = 99, 2048
    whole = World(backend, params, 2 * half, seed=seed)
    first = World(backend, params, half, seed=seed, first_grid=0)
    second = World(backend, params, half, seed=seed, first_grid=half)
    np.testing.assert_array_equal(whole.state.grid_seed,
                                  np.concatenate([grid_seeds(seed, 0, half),
                                                  grid_seeds(seed, half, half)]))
    np.testing.assert_array_equal(whole.obs, np.concatenate([first.obs, second.obs]))
    rng = np.random.default_rng(4)
    for t in range(50):
        actions = random_actions(rng, 2 * half, -1, 9)
        a = whole.step(actions)
        b1, b2 = first.step(actions[:half]), second.step(actions[half:])
        assert_same_step(a, tuple(np.concatenate([x, y]) for x, y in zip(b1, b2)), t)
    for name in whole.state._fields:
        np.testing.assert_array_equal(
            getattr(whole.state, name),
            np.concatenate([getattr(first.state, name), getattr(second.state, name)]),
            err_msg=name)
    assert whole.state.finished_count.sum() > 0


# --- (d) PufferLib Serial vs Multiprocessing ----------------------------------------------------

@contextmanager
def time_limit(seconds):
    """A crashed worker leaves Multiprocessing.recv spinning forever: fail instead."""
    def handler(signum, frame):
        raise TimeoutError(f"no answer from the vector env within {seconds} s")
    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


VEC_KWARGS = dict(num_envs=64, log_interval=20, height=6, width=6,
                  **{**HARSH, "max_steps": 20})


def _run_vec(backend, steps, seed, **kwargs):
    vecenv = pufferlib.vector.make(GardenerEnv, backend=backend, num_envs=2,
                                   env_kwargs=VEC_KWARGS, seed=seed, **kwargs)
    try:
        with time_limit(90):
            obs, infos = vecenv.reset(seed=seed)
            trajectory = [(obs.copy(),)]
            all_infos = []
            rng = np.random.default_rng(8)
            for _ in range(steps):
                actions = rng.integers(0, 8, size=vecenv.num_agents).astype(np.int32)
                obs, rewards, terminals, truncations, infos = vecenv.step(actions)
                trajectory.append((obs.copy(), rewards.copy(), terminals.copy(),
                                   truncations.copy()))
                all_infos.append(list(infos))
    finally:
        vecenv.close()
    return trajectory, all_infos


def test_serial_and_multiprocessing_are_identical():
    # Run the parallel Numba kernel in this (parent) process first: forking afterwards must not
    # crash the workers (OpenMP's threading layer does; the kernel selects one that does not).
    warm = GardenerEnv(num_envs=8, height=4, width=4)
    warm.reset(seed=1)
    warm.step(np.zeros(8, dtype=np.int32))
    serial, serial_infos = _run_vec(pufferlib.vector.Serial, 40, seed=5)
    multi, multi_infos = _run_vec(pufferlib.vector.Multiprocessing, 40, seed=5,
                                  num_workers=2, overwork=True)
    assert len(serial) == len(multi)
    for t, (a, b) in enumerate(zip(serial, multi)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y, err_msg=f"step {t}")
    # The two copies are seeded differently (seed + i): their halves differ.
    assert not np.array_equal(serial[0][0][:64], serial[0][0][64:])
    # Infos: an aggregated stats dict per copy every log_interval (20) steps, when every grid
    # has finished at least one episode (max_steps is 20).
    for t, (si, mi) in enumerate(zip(serial_infos, multi_infos)):
        if (t + 1) % 20:
            assert si == [] and mi == [], t
        else:
            assert len(si) == 2 and len(mi) == 2, t
            key = lambda d: d["episode_return"]  # noqa: E731 (worker order may vary)
            for a, b in zip(sorted(si, key=key), sorted(mi, key=key)):
                assert set(a) == set(EPISODE_STATS) | {"n"}
                assert a == pytest.approx(b)
                assert a["n"] >= 64 and a["episode_length"] <= 20


# --- (e) Gymnasium env vs grid 0 of the vector env ----------------------------------------------

@pytest.mark.parametrize("gym_kernel, vec_kernel", [("event", "event"), ("dense", "event")])
def test_gym_episodes_replay_grid_zero_of_the_vector_env(gym_kernel, vec_kernel):
    config = dict(height=6, width=6, **HARSH)
    seed = 1234
    gym_env = GardenerGymEnv(kernel=gym_kernel, **config)
    vec_env = GardenerEnv(num_envs=1, seed=seed, log_interval=10**9, kernel=vec_kernel, **config)
    gym_obs, _ = gym_env.reset(seed=seed)
    vec_obs, _ = vec_env.reset()
    np.testing.assert_array_equal(gym_obs, vec_obs[0])
    rng = np.random.default_rng(2)
    ends = {"terminated": 0, "truncated": 0}
    for t in range(600):
        action = int(rng.integers(0, 8))
        gym_obs, reward, terminated, truncated, info = gym_env.step(action)
        vec_obs, rewards, terminals, truncations, _ = vec_env.step(np.array([action]))
        assert reward == float(rewards[0]), t
        assert (terminated, truncated) == (bool(terminals[0]), bool(truncations[0])), t
        if terminated or truncated:
            ends["terminated" if terminated else "truncated"] += 1
            np.testing.assert_array_equal(
                np.array([info[k] for k in EPISODE_STATS]), vec_env.state.last_stats[0])
            gym_obs, _ = gym_env.reset()  # plain reset: the next episode of the same grid
        np.testing.assert_array_equal(gym_obs, vec_obs[0], err_msg=f"step {t}")
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends


# --- (f) seeds ----------------------------------------------------------------------------------

def _trajectory(seed, steps=100):
    env = GardenerEnv(num_envs=32, seed=seed, height=8, width=8,
                      **{**HARSH, "max_steps": 50})
    obs, _ = env.reset()
    out = [obs.copy()]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, rewards, terminals, truncations, _ = env.step(rng.integers(0, 8, 32))
        out += [obs.copy(), rewards.copy(), terminals.copy(), truncations.copy()]
    return out


def test_same_seed_same_trajectory_different_seed_different():
    a, b, c = _trajectory(7), _trajectory(7), _trajectory(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_reset_with_a_seed_restarts_the_same_trajectory():
    env = GardenerEnv(num_envs=16, height=5, width=7, **{**HARSH, "max_steps": 30})
    rng = np.random.default_rng(1)
    actions = [rng.integers(0, 8, 16) for _ in range(45)]
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=3)
        run = [obs.copy()]
        for a in actions:
            obs, rewards, _, _, _ = env.step(a)
            run += [obs.copy(), rewards.copy()]
        runs.append(run)
    for x, y in zip(*runs):
        np.testing.assert_array_equal(x, y)


def test_grids_of_one_env_differ():
    env = GardenerEnv(num_envs=4, seed=0, height=8, width=8)
    obs, _ = env.reset()
    assert len({row.tobytes() for row in obs}) == 4
    assert len({s.tobytes() for s in env.state.nodes}) == 4
