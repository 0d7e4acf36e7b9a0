"""The event kernel's shortcuts against the plain arithmetic they stand for: a node's OOM step
(the inverse table of G plus one correction, no branches), a phase end's step (a float estimate
plus one correction) and the state's memory (2 MiB pages for large arrays). The rollout tests
compare whole trajectories; these reach the corners a rollout seldom does, and the OOM lists'
links, which a rollout reads only where a step walks them."""
import numpy as np
import pytest

from conftest import World, params_with, random_actions
from puffer_cluster.env import world_params
from puffer_cluster.kernels import event
from puffer_cluster.kernels.event import _fade_quotient, first_oom_step
from puffer_cluster.kernels.fixed import (
    G_BITS, LEAK, LEAK_ONE, MEM, MEM_T, NEVER, ONE, OOM_DUE, OOM_NEXT, OOM_PREV, WHEEL_OOM,
)
from puffer_cluster.kernels.rules import mem_now
from puffer_cluster.kernels.world import HUGE_PAGE, cache_aligned_zeros


def oom_step_by_search(table, mem, mem_t, leak, t_from, max_steps):
    """The first step t >= t_from with memory >= ONE, by testing every step."""
    reached = mem + leak * (table[t_from:max_steps + 1] - table[mem_t]) >= ONE
    return t_from + int(np.argmax(reached)) if reached.any() else NEVER


# 0.25 at 512 steps and 1.0 at 20,000: G outgrows a table of a few entries a step, so the
# inverse's buckets are wider than G_ONE (params.entropy_inverse_bits).
@pytest.mark.parametrize("horizon,max_steps", [
    (0.25, 6), (16.0, 6), (256.0, 6), (1e7, 6),
    (0.25, 512), (16.0, 512), (256.0, 512), (1e7, 512), (1.0, 20000),
])
def test_first_oom_step_matches_a_search_of_the_table(horizon, max_steps):
    params = world_params(dict(height=4, width=4, max_steps=max_steps, red_queen_horizon=horizon,
                               leak_min=0.0, leak_max=min(0.001, 1e5 / max_steps ** 2)))
    table = params.entropy_integral
    rng = np.random.default_rng(int(horizon * 7) + max_steps)
    nodes = np.zeros((1, 16), np.int64)
    largest_leak = min(LEAK_ONE // 8, (1 << 62) // int(table[-1]))  # no int64 overflow
    checked = set()
    for _ in range(3000):
        t_from = int(rng.integers(1, max_steps + 1))
        mem_t = int(rng.integers(0, t_from + 1))
        mem = int(rng.integers(0, ONE + ONE // 8))  # some already at or past ONE
        leak = int(rng.choice([0, 1, int(rng.integers(1, largest_leak)),
                               int(rng.integers(1, max(2, ONE // int(table[-1]))))]))
        nodes[0, MEM], nodes[0, MEM_T], nodes[0, LEAK] = mem, mem_t, leak
        expected = oom_step_by_search(table, mem, mem_t, leak, t_from, max_steps)
        assert first_oom_step(params, table, nodes, 0, t_from) == expected, \
            (mem, mem_t, leak, t_from)
        checked.add("never" if expected == NEVER else "now" if expected == t_from else "later")
    assert checked == {"never", "now", "later"}


def test_inverse_of_g_stays_a_few_entries_a_step():
    """A short horizon over a long episode makes G quadratic: the inverse's buckets widen
    instead of its table growing with G (here it would be 200M entries)."""
    params = world_params(dict(height=4, width=4, max_steps=20000, red_queen_horizon=1.0,
                               leak_min=0.0, leak_max=1e-6))
    assert params.entropy_inverse.size <= 4 * (params.max_steps + 1) + 2
    assert world_params(dict(height=4, width=4)).entropy_inverse_bits == G_BITS


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


def assert_oom_lists_hold_each_node_once(state, params):
    """Every node of every grid that reaches ONE within the episode in exactly one OOM list,
    the one of its OOM step, linked both ways; or, before the recheck step, in none and LATER
    (its OOM step then or after); every other node in none, due NEVER."""
    count = params.height * params.width
    table = params.entropy_integral
    recheck = event._recheck_step(params)
    for g in range(state.step.shape[0]):
        nodes, wheel, t = state.nodes[g], state.wheel[g], state.step[g]
        seen = np.zeros(count, dtype=np.int64)
        for row in range(params.max_steps + 1):
            i, before = wheel[row, WHEEL_OOM], NEVER
            while i != NEVER and seen[i] == 0:
                assert nodes[i, OOM_DUE] == row and nodes[i, OOM_PREV] == before
                assert first_oom_step(params, table, nodes, i, t + 1) == row
                seen[i] += 1
                before, i = i, nodes[i, OOM_NEXT]
            assert i == NEVER, f"grid {g}: node {i} twice in the lists"
        due = np.array([first_oom_step(params, table, nodes, i, t + 1) for i in range(count)])
        later = nodes[:, OOM_DUE] == event.LATER
        np.testing.assert_array_equal(seen, (due != NEVER) & ~later, err_msg=f"grid {g}")
        assert (due[later] >= recheck).all() and (t < recheck or not later.any())
        assert (nodes[seen == 0][:, [OOM_NEXT, OOM_PREV]] == NEVER).all()


def test_oom_lists_hold_each_node_once_after_resets_and_steps():
    """24x24: a reset lists its nodes in blocks (event.SCRATCH), the last one partial; the
    harsh leak makes OOMs, restarts and auto-resets move nodes between lists, and some
    episodes pass the recheck step."""
    params = params_with(height=24, width=24, max_steps=60, leak_max=0.02, spike_rate=0.05)
    assert 24 * 24 % event.SCRATCH != 0
    world = World(event, params, num_grids=3, seed=5)
    assert_oom_lists_hold_each_node_once(world.state, params)
    left_later = (world.state.nodes[..., OOM_DUE] == event.LATER).sum()
    rng = np.random.default_rng(8)
    steps_seen = set()
    for t in range(130):
        world.step(random_actions(rng, 3, -1, 9))
        steps_seen.update(world.state.step.tolist())
        if t % 10 == 9:
            assert_oom_lists_hold_each_node_once(world.state, params)
    assert left_later > 0 and event._recheck_step(params) in steps_seen
    assert world.state.finished_count.sum() > 0
