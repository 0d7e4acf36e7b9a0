"""The event kernel's shortcuts against the plain arithmetic they stand for: a node's OOM step
(the inverse table of G plus one correction, no branches), a phase end's step (a float estimate
plus one correction) and the state's memory (2 MiB pages for large arrays). The rollout tests
compare whole trajectories; these reach the corners a rollout seldom does."""
import numpy as np
import pytest

from puffer_cluster.env import world_params
from puffer_cluster.kernels.event import _fade_quotient, first_oom_step
from puffer_cluster.kernels.fixed import LEAK, LEAK_ONE, MEM, MEM_T, NEVER, ONE
from puffer_cluster.kernels.world import HUGE_PAGE, cache_aligned_zeros


def oom_step_by_search(table, mem, mem_t, leak, t_from, max_steps):
    """The first step t >= t_from with memory >= ONE, step by step."""
    for t in range(t_from, max_steps + 1):
        if mem + leak * (table[t] - table[mem_t]) >= ONE:
            return t
    return NEVER


@pytest.mark.parametrize("horizon", [0.25, 16.0, 256.0, 1e7])
@pytest.mark.parametrize("max_steps", [6, 512])
def test_first_oom_step_matches_a_search_of_the_table(horizon, max_steps):
    params = world_params(dict(height=4, width=4, max_steps=max_steps, red_queen_horizon=horizon,
                               leak_max=0.001))
    table = params.entropy_integral
    rng = np.random.default_rng(int(horizon * 7) + max_steps)
    nodes = np.zeros((1, 16), np.int64)
    checked = set()
    for _ in range(3000):
        t_from = int(rng.integers(1, max_steps + 1))
        mem_t = int(rng.integers(0, t_from + 1))
        mem = int(rng.integers(0, ONE + ONE // 8))  # some already at or past ONE
        leak = int(rng.choice([0, 1, int(rng.integers(1, LEAK_ONE // 8)),
                               int(rng.integers(1, ONE // max(1, table[-1])))]))
        nodes[0, MEM], nodes[0, MEM_T], nodes[0, LEAK] = mem, mem_t, leak
        expected = oom_step_by_search(table, mem, mem_t, leak, t_from, max_steps)
        assert first_oom_step(params, table, nodes, 0, t_from) == expected, \
            (mem, mem_t, leak, t_from)
        checked.add("never" if expected == NEVER else "now" if expected == t_from else "later")
    assert checked == {"never", "now", "later"}


# The default, and a fade at which the float estimate falls one short at whole multiples (found by
# search: about one fade in six does so somewhere), so that the correction is needed.
@pytest.mark.parametrize("spike_fade", [0.08, 14307201548198 / 2 ** 40])
def test_fade_quotient_is_floor_division(spike_fade):
    params = world_params(dict(height=4, width=4, spike_fade=spike_fade))
    rng = np.random.default_rng(5)
    for fade in (params.fade_fx, params.fade_fx // 3 + 1, 1, ONE):
        amounts = np.concatenate([rng.integers(0, 1 << 50, 2000),
                                  np.arange(0, 40) * fade, np.arange(1, 40) * fade - 1])
        for amount in amounts:
            assert _fade_quotient(params, int(amount), fade) == int(amount) // fade


@pytest.mark.parametrize("shape", [(3, 5, 16), (HUGE_PAGE // 8 + 1,), (2, HUGE_PAGE // 64, 4)])
def test_state_arrays_are_zeroed_writable_and_aligned(shape):
    array = cache_aligned_zeros(shape)
    assert array.shape == shape and array.dtype == np.int64
    assert array.flags.c_contiguous and array.flags.writeable
    assert array.ctypes.data % (4096 if array.nbytes >= HUGE_PAGE else 64) == 0
    assert not array.any()
    array[...] = 7
    assert (array == 7).all()
