"""The privileged critic's channel: training-only grid features after the 30 plain values, under
every vector backend, and a model whose actor never reads them."""
import numpy as np
import pufferlib.vector
import pytest
import torch

from conftest import HARSH
from puffer_cluster.kernels.critic import NUM_CRITIC_FEATURES
from puffer_cluster.kernels.fixed import PRIO_UNIT
from puffer_cluster.kernels.world import NUM_ACTIONS, OBS_SIZE, node_ratios
from puffer_cluster import GardenerEnv
from puffer_cluster.trainers.models import make_policy

WORLD = dict(HARSH, height=6, width=5, agents_per_grid=2)


def numpy_features(env):
    """The features of every grid, recomputed from the state in NumPy."""
    s, p = env.state, env.params
    cpu, mem, prio = np.array([node_ratios(s, p, g) for g in range(env.num_grids)]).transpose(1, 0, 2)
    crit = prio >= p.crit_fx * PRIO_UNIT
    crit_mem = np.where(crit.any(1), (mem * crit).sum(1) / np.maximum(crit.sum(1), 1), 0.0)
    y, x = np.divmod(np.arange(p.height * p.width), p.width)
    block = (y * 4 // p.height) * 4 + x * 4 // p.width
    blocks = [mem[:, block == b].mean(1) for b in range(16)]
    return np.stack([np.minimum(1.0, s.step / p.max_steps), cpu.mean(1), mem.mean(1), mem.max(1),
                     (mem >= 0.6).mean(1), crit_mem, np.minimum(1.0, s.ep_oom / p.oom_collapse_count),
                     np.minimum(1.0, s.ep_crit / p.crit_limit), *blocks], axis=1)


def test_features_follow_the_state_and_leave_the_observation_alone():
    plain = GardenerEnv(num_envs=32, seed=5, **WORLD)
    wide = GardenerEnv(num_envs=32, seed=5, critic_features=True, **WORLD)
    assert wide.single_observation_space.shape == (OBS_SIZE + NUM_CRITIC_FEATURES,)
    obs_plain, _ = plain.reset()
    obs_wide, _ = wide.reset()
    rng = np.random.default_rng(0)
    clocks = set()
    for _ in range(80):
        assert np.array_equal(obs_wide[:, :OBS_SIZE], obs_plain)
        features = obs_wide[:, OBS_SIZE:]
        assert ((features >= 0) & (features <= 1)).all()
        expected = np.repeat(numpy_features(wide), 2, axis=0).astype(np.float32)
        np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-6)
        clocks.update(features[:, 0].tolist())
        actions = rng.integers(0, NUM_ACTIONS, plain.num_agents).astype(np.int32)
        obs_plain = plain.step(actions)[0]
        obs_wide = wide.step(actions)[0]
    assert len(clocks) > 50 and 0.0 in clocks  # the clock moves and restarts with the episode


@pytest.mark.parametrize("backend", ["Serial", "Multiprocessing"])
def test_features_cross_the_vector_backends(backend):
    kwargs = dict(num_envs=8, critic_features=True, **WORLD)
    extra = dict(num_workers=2, batch_size=2) if backend == "Multiprocessing" else {}
    vecenv = pufferlib.vector.make(GardenerEnv, backend=getattr(pufferlib.vector, backend),
                                   num_envs=2, env_kwargs=kwargs, seed=3, **extra)
    native = GardenerEnv(seed=3, **kwargs)
    try:
        vecenv.async_reset(3)
        obs = vecenv.recv()[0]
        assert obs.shape[1] == OBS_SIZE + NUM_CRITIC_FEATURES
        native.reset()
        assert np.array_equal(obs[:native.num_agents], native.observations)
    finally:
        vecenv.close()


@pytest.mark.parametrize("name", ["mlp", "lstm"])
def test_the_actor_ignores_the_critic_columns(name):
    torch.manual_seed(0)
    model = make_policy({"name": name, "hidden_size": 16}, OBS_SIZE, NUM_ACTIONS,
                        NUM_CRITIC_FEATURES)
    obs = torch.rand(4, OBS_SIZE + NUM_CRITIC_FEATURES)
    other = obs.clone()
    other[:, OBS_SIZE:] = torch.rand(4, NUM_CRITIC_FEATURES)
    start = torch.ones(4, dtype=torch.bool)
    state = model.initial_state(4)
    logits, value, _ = model.step(obs, state, start)
    logits2, value2, _ = model.step(other, state, start)
    plain_logits, _ = model.act(obs[:, :OBS_SIZE], state, start)
    assert torch.equal(logits, logits2) and torch.equal(logits, plain_logits)
    assert not torch.equal(value, value2)  # the critic does read them
