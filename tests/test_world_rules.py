"""The rules of GARDENER.md (World v2), checked on every backend (NumPy reference, dense and
event-driven Numba kernels).

Every test builds its parameters explicitly (see `QUIET` in conftest): a world with no spikes,
no leak, no regeneration and no health bonus, where one forced situation has a result that can
be computed by hand.
"""
import numpy as np
import pytest

from conftest import BACKENDS, HARSH, World, node, obs_index, params_with, quiet_params
from puffer_cluster.kernels.world import (
    OBS_BUDGET, OBS_X, OBS_Y,
    CLEAN, CPU, DOWN, LEFT, MEM, NOOP, OBS_SIZE, OUTSIDE, RIGHT, SCALE_FULL, SCALE_HALF,
    STAT_AVG_LOAD, STAT_BUDGET_SPENT, STAT_COLLAPSED, STAT_CRIT, STAT_CRIT_RATE, STAT_INVALID,
    STAT_LENGTH, STAT_OOM, STAT_OOM_RATE, STAT_OVERLOAD, STAT_RETURN, UP, node_ratios,
)

pytestmark = pytest.mark.parametrize("backend", BACKENDS)

CENTER = obs_index(0, 0, 0)  # first channel of the agent's own node


def flat(world, cpu=0.25, mem=0.25, prio=0.25, cap=1.0, spike=0.0, grid=0):
    """Give every node of `grid` the same, exactly representable, values."""
    world.set(grid, cpu=cpu, mem=mem, prio=prio, cap=cap, spike=spike)


def window_nodes(params, y, x):
    return [node(params, y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
            if 0 <= y + dy < params.height and 0 <= x + dx < params.width]


# --- observation layout -------------------------------------------------------------------------

def test_observation_layout_every_position(backend):
    """Index ((dy+1)*3 + (dx+1))*3 + c, then y/(H-1), x/(W-1), budget; -1 outside the grid."""
    params = quiet_params(height=5, width=7)
    world = World(backend, params, seed=3)
    s = world.state
    n = params.height * params.width
    i = np.arange(n)
    world.set(0, cpu=(i + 1) / 128.0, mem=(i + 1) / 64.0, prio=((i * 7) % n) / 64.0,
              cap=np.where(i % 3 == 0, 2.0, 1.0), spike=0.0)
    s.budget[0] = 0.75
    for y in range(params.height):
        for x in range(params.width):
            world.place(y, x)
            obs = world.step(NOOP)[0][0]
            expected = np.empty(OBS_SIZE, dtype=np.float32)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    k = obs_index(dy, dx, 0)
                    if 0 <= ny < params.height and 0 <= nx < params.width:
                        j = ny * params.width + nx
                        cap = 2.0 if j % 3 == 0 else 1.0
                        expected[k:k + 3] = [(j + 1) / 128.0 / cap, (j + 1) / 64.0 / cap,
                                             ((j * 7) % n) / 64.0]
                    else:
                        expected[k:k + 3] = -1.0
            expected[OBS_Y:] = [y / 4.0, x / 6.0, 0.75]
            np.testing.assert_array_equal(obs, expected, err_msg=f"agent at ({y}, {x})")


@pytest.mark.parametrize("y, x, outside", [
    (0, 0, {(-1, -1), (-1, 0), (-1, 1), (0, -1), (1, -1)}),
    (0, 6, {(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)}),
    (4, 0, {(1, -1), (1, 0), (1, 1), (0, -1), (-1, -1)}),
    (4, 6, {(1, -1), (1, 0), (1, 1), (0, 1), (-1, 1)}),
    (0, 3, {(-1, -1), (-1, 0), (-1, 1)}),
    (4, 3, {(1, -1), (1, 0), (1, 1)}),
    (2, 0, {(-1, -1), (0, -1), (1, -1)}),
    (2, 6, {(-1, 1), (0, 1), (1, 1)}),
    (2, 3, set()),
])
def test_observation_padding_edges_and_corners(backend, y, x, outside):
    params = quiet_params(height=5, width=7)
    world = World(backend, params, seed=4)
    world.place(y, x)
    obs = world.step(NOOP)[0][0]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            values = obs[obs_index(dy, dx, 0):obs_index(dy, dx, 0) + 3]
            if (dy, dx) in outside:
                assert np.all(values == OUTSIDE), (dy, dx)
            else:
                assert np.all((values >= 0.0) & (values <= 1.0)), (dy, dx)
    assert obs[OBS_Y] == np.float32(y / 4.0) and obs[OBS_X] == np.float32(x / 6.0)


def test_cpu_observation_saturates_at_one(backend):
    params = quiet_params()
    world = World(backend, params)
    flat(world, cpu=0.875, spike=0.5)
    world.place(2, 2)
    obs = world.step(NOOP)[0][0]
    assert obs[obs_index(0, 0, CPU)] == 1.0
    assert obs[obs_index(0, 0, MEM)] == np.float32(0.25)


def test_multi_agent_observation_rows(backend):
    """Agent a of grid g writes row g*A + a, each from its own position; all share the reward."""
    params = quiet_params(height=5, width=7, agents_per_grid=2)
    world = World(backend, params, num_grids=2, seed=5)
    for g in range(2):
        flat(world, grid=g)
    positions = {(0, 0): (0, 0), (0, 1): (4, 6), (1, 0): (2, 3), (1, 1): (1, 5)}
    for (g, a), (y, x) in positions.items():
        world.place(y, x, grid=g, agent=a)
    obs, rewards, _, _ = world.step(NOOP)
    for (g, a), (y, x) in positions.items():
        row = obs[g * 2 + a]
        assert row[OBS_Y] == np.float32(y / 4.0) and row[OBS_X] == np.float32(x / 6.0)
    assert rewards[0] == rewards[1] and rewards[2] == rewards[3]


# --- moves --------------------------------------------------------------------------------------

def test_moves_and_staying_at_the_edge(backend):
    params = quiet_params(height=5, width=7)
    world = World(backend, params, seed=6)
    deltas = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}
    for y in range(params.height):
        for x in range(params.width):
            for action, (dy, dx) in deltas.items():
                world.place(y, x)
                obs, rewards, _, _ = world.step(action)
                ey = min(max(y + dy, 0), params.height - 1)
                ex = min(max(x + dx, 0), params.width - 1)
                assert (world.state.agent_y[0, 0], world.state.agent_x[0, 0]) == (ey, ex)
                assert obs[0, OBS_Y] == np.float32(ey / 4.0) and obs[0, OBS_X] == np.float32(ex / 6.0)
                assert rewards[0] == 0.0  # moves are free and never invalid
    assert world.state.budget[0] == 1.0
    assert world.state.ep_spent[0] == 0.0 and world.state.ep_invalid[0] == 0


def test_noop_changes_nothing_in_a_quiet_world(backend):
    world = World(backend, quiet_params(), seed=7)
    before = world.snapshot()
    obs, rewards, terminals, truncations = world.step(NOOP)
    after = world.snapshot()
    for name in before:
        if name not in ("step", "ep_load_sum"):
            np.testing.assert_array_equal(before[name], after[name], err_msg=name)
    assert after["step"][0] == 1
    assert rewards[0] == 0.0 and not terminals[0] and not truncations[0]


def test_budget_regeneration_is_capped_at_one(backend):
    world = World(backend, quiet_params(budget_regen=0.0625))
    world.state.budget[0] = 0.5
    assert world.step(NOOP)[0][0, OBS_BUDGET] == 0.5625
    world.state.budget[0] = 0.96875
    assert world.step(NOOP)[0][0, OBS_BUDGET] == 1.0
    assert world.state.budget[0] == 1.0


# --- CLEAN --------------------------------------------------------------------------------------

@pytest.mark.parametrize("y, x", [(2, 3), (0, 0), (4, 6), (4, 3), (2, 0)])
@pytest.mark.parametrize("fraction", [0.5, 0.25])
def test_clean_reduces_memory_and_spikes_on_the_window(backend, y, x, fraction):
    params = quiet_params(height=5, width=7, clean_fraction=fraction)
    world = World(backend, params, seed=8)
    flat(world, cpu=0.125, mem=0.75, spike=0.5)
    world.place(y, x)
    obs, rewards, _, _ = world.step(CLEAN)
    cleaned = np.zeros(params.height * params.width, dtype=bool)
    cleaned[window_nodes(params, y, x)] = True
    keep = 1.0 - fraction
    np.testing.assert_array_equal(world.mem[0], np.where(cleaned, 0.75 * keep, 0.75))
    np.testing.assert_array_equal(world.spike[0], np.where(cleaned, 0.5 * keep, 0.5))
    assert world.state.budget[0] == 1.0 - params.clean_cost
    assert obs[0, OBS_BUDGET] == np.float32(1.0 - params.clean_cost)
    assert world.state.ep_spent[0] == params.clean_cost
    assert obs[0, obs_index(0, 0, MEM)] == np.float32(0.75 * keep)
    assert rewards[0] == 0.0  # every cleaned node was above clean_useful_mem: no waste
    assert world.state.ep_invalid[0] == 0


def test_clean_without_budget_does_nothing_and_is_invalid(backend):
    params = quiet_params()
    world = World(backend, params)
    flat(world, mem=0.75, spike=0.5)
    world.place(2, 2)
    world.state.budget[0] = params.clean_cost - 0.03125
    before = world.snapshot()
    _, rewards, _, _ = world.step(CLEAN)
    np.testing.assert_array_equal(world.state.nodes, before["nodes"])
    assert world.state.budget[0] == before["budget"][0]
    assert world.state.ep_spent[0] == 0.0
    assert world.state.ep_invalid[0] == 1
    assert rewards[0] == np.float32(-params.invalid_penalty)


def test_clean_with_exactly_enough_budget_works(backend):
    params = quiet_params()
    world = World(backend, params)
    flat(world, mem=0.75)
    world.place(2, 2)
    world.state.budget[0] = params.clean_cost
    _, rewards, _, _ = world.step(CLEAN)
    assert world.state.budget[0] == 0.0
    assert world.mem[0, node(params, 2, 2)] == 0.375
    assert world.state.ep_invalid[0] == 0 and rewards[0] == 0.0


def test_inefficient_cleaning_penalty_formula(backend):
    """Penalty = clean_waste_penalty * sum over cleaned nodes of max(0, useful - mem/cap)."""
    params = quiet_params(height=5, width=7, clean_useful_mem=0.5, clean_waste_penalty=0.75)
    world = World(backend, params)
    flat(world, mem=0.75)
    y, x = 0, 1  # top edge: the window has 6 nodes inside the grid
    world.place(y, x)
    mems = {(0, 0): 0.125, (0, 1): 0.25, (0, 2): 0.875, (1, 0): 0.5, (1, 1): 0.375, (1, 2): 0.5}
    for (ny, nx), m in mems.items():
        world.set(0, node(params, ny, nx), mem=m)
    world.set(0, node(params, 1, 2), cap=4.0)  # ratio 0.125: wasteful although the absolute mem is 0.5
    world.set(0, node(params, 3, 3), mem=0.0)  # outside the window: never counts
    waste = (0.5 - 0.125) + (0.5 - 0.25) + 0.0 + 0.0 + (0.5 - 0.375) + (0.5 - 0.125)
    _, rewards, _, _ = world.step(CLEAN)
    assert rewards[0] == pytest.approx(-0.75 * waste, rel=1e-6)


def test_cleaning_low_memory_costs_more_than_cleaning_high_memory(backend):
    params = quiet_params(clean_useful_mem=0.5, clean_waste_penalty=0.5)
    results = {}
    for mem in (0.0625, 0.25, 0.4375, 0.5, 0.75):
        world = World(backend, params)
        flat(world, mem=mem)
        world.place(2, 2)
        results[mem] = world.step(CLEAN)[1][0]
    assert results[0.0625] < results[0.25] < results[0.4375] < results[0.5]
    assert results[0.5] == results[0.75] == 0.0
    # Proportional to the shortfall: 9 nodes each short by (0.5 - mem).
    for mem in (0.0625, 0.25, 0.4375):
        assert results[mem] == pytest.approx(-0.5 * 9 * (0.5 - mem), rel=1e-6)


# --- SCALE --------------------------------------------------------------------------------------

@pytest.mark.parametrize("action, added, cost_units",
                         [(SCALE_HALF, 0.5, 0.5), (SCALE_FULL, 1.0, 1.0)])
def test_scale_raises_capacity_and_lowers_ratios(backend, action, added, cost_units):
    params = quiet_params(scale_cost=0.5)
    world = World(backend, params)
    flat(world, cpu=0.25, mem=0.25)
    i = node(params, 3, 2)
    world.set(0, i, cpu=0.75)
    world.set(0, i, mem=0.75)
    world.place(3, 2)
    obs, rewards, _, _ = world.step(action)
    cap = 1.0 + added
    assert world.cap[0, i] == cap
    others = np.delete(world.cap[0], i)
    assert np.all(others == 1.0)
    assert world.state.budget[0] == 1.0 - params.scale_cost * cost_units
    assert world.state.ep_spent[0] == params.scale_cost * cost_units
    assert obs[0, obs_index(0, 0, CPU)] == pytest.approx(0.75 / cap, rel=1e-6)
    assert obs[0, obs_index(0, 0, MEM)] == pytest.approx(0.75 / cap, rel=1e-6)
    assert obs[0, obs_index(0, 1, MEM)] == 0.25  # neighbours unaffected
    assert rewards[0] == 0.0 and world.state.ep_invalid[0] == 0


def test_scale_stops_at_cap_max(backend):
    params = quiet_params(cap_max=3.0, scale_cost=0.5)
    world = World(backend, params)
    world.place(1, 1)
    i = node(params, 1, 1)
    world.set(0, i, cap=2.75)
    _, rewards, _, _ = world.step(SCALE_FULL)
    assert world.cap[0, i] == 3.0
    assert world.state.budget[0] == 1.0 - 0.5 * 0.25  # pays only for the quarter unit added
    assert rewards[0] == 0.0
    for action in (SCALE_HALF, SCALE_FULL):
        budget = world.state.budget[0]
        _, rewards, _, _ = world.step(action)
        assert world.cap[0, i] == 3.0
        assert world.state.budget[0] == budget
        assert rewards[0] == np.float32(-params.invalid_penalty)
    assert world.state.ep_invalid[0] == 2


@pytest.mark.parametrize("action, unit", [(SCALE_HALF, 0.5), (SCALE_FULL, 1.0)])
def test_partial_scaling_when_budget_is_short(backend, action, unit):
    params = quiet_params(scale_cost=0.5)
    world = World(backend, params)
    world.place(2, 4)
    i = node(params, 2, 4)
    world.state.budget[0] = 0.125
    obs, rewards, _, _ = world.step(action)
    cost = params.scale_cost * unit
    assert world.cap[0, i] == pytest.approx(1.0 + unit * 0.125 / cost, rel=1e-7)
    assert world.state.budget[0] == 0.0 and obs[0, OBS_BUDGET] == 0.0
    assert world.state.ep_spent[0] == 0.125
    assert rewards[0] == 0.0 and world.state.ep_invalid[0] == 0
    # With nothing left to pay, scaling adds nothing and is invalid.
    _, rewards, _, _ = world.step(action)
    assert world.cap[0, i] == pytest.approx(1.0 + unit * 0.125 / cost, rel=1e-7)
    assert world.state.ep_invalid[0] == 1
    assert rewards[0] == np.float32(-params.invalid_penalty)


def test_agents_share_one_budget_in_agent_order(backend):
    params = quiet_params(agents_per_grid=2)
    world = World(backend, params)
    flat(world, mem=0.75)
    world.place(1, 1, agent=0)
    world.place(4, 4, agent=1)
    world.state.budget[0] = 1.5 * params.clean_cost
    _, rewards, _, _ = world.step([CLEAN, CLEAN])
    assert world.mem[0, node(params, 1, 1)] == 0.375   # agent 0 paid and cleaned
    assert world.mem[0, node(params, 4, 4)] == 0.75    # agent 1 could not pay
    assert world.state.budget[0] == 0.5 * params.clean_cost
    assert world.state.ep_invalid[0] == 1
    assert rewards[0] == rewards[1] == np.float32(-params.invalid_penalty)


# --- out-of-range actions -----------------------------------------------------------------------

def test_out_of_range_actions_are_invalid_noops(backend, rng):
    """Same seed, NOOP vs out-of-range actions: identical worlds but for the invalid count."""
    params = params_with(height=6, width=5, **HARSH)
    grids = 12
    noop, bad = World(backend, params, grids, seed=21), World(backend, params, grids, seed=21)
    junk = np.array([-1, 8, 9, 100, -100, 2**31 - 1, -2**31], dtype=np.int32)
    for t in range(90):
        actions = rng.integers(0, 8, size=grids).astype(np.int32)
        chosen = rng.random(grids) < 0.5
        actions_noop = np.where(chosen, NOOP, actions).astype(np.int32)
        actions_bad = np.where(chosen, junk[rng.integers(0, len(junk), grids)], actions)
        o0, r0, d0, t0 = noop.step(actions_noop)
        o1, r1, d1, t1 = bad.step(actions_bad.astype(np.int32))
        np.testing.assert_array_equal(o0, o1)
        np.testing.assert_array_equal(d0, d1)
        np.testing.assert_array_equal(t0, t1)
        np.testing.assert_allclose(r0 - r1, np.where(chosen, params.invalid_penalty, 0.0),
                                   atol=5e-6)
    a, b = noop.snapshot(), bad.snapshot()
    for name in a:
        if name in ("ep_invalid", "ep_return", "last_stats", "finished_sum"):
            continue
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert np.all(b["ep_invalid"] >= a["ep_invalid"])
    other = [k for k in range(a["last_stats"].shape[1]) if k not in (STAT_RETURN, STAT_INVALID)]
    np.testing.assert_array_equal(a["last_stats"][:, other], b["last_stats"][:, other])
    assert b["finished_sum"][:, STAT_INVALID].sum() > a["finished_sum"][:, STAT_INVALID].sum()


# --- OOM ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("prio, critical", [(0.5, False), (0.75, True), (0.875, True)])
@pytest.mark.parametrize("cap", [1.0, 2.0])
def test_oom_restart_penalty_and_criticality(backend, prio, critical, cap):
    params = quiet_params(crit_threshold=0.75, oom_penalty=1.5, crit_weight=2.0, restart_mem=0.25)
    world = World(backend, params)
    flat(world)
    i = node(params, 3, 4)
    s = world.state
    world.set(0, i, cap=cap, mem=cap, prio=prio, spike=0.25)
    _, rewards, terminals, _ = world.step(NOOP)
    assert s.ep_oom[0] == 1
    assert s.ep_crit[0] == int(critical)
    assert rewards[0] == np.float32(-1.5 * (1.0 + 2.0 * prio))
    assert world.mem[0, i] == 0.25 * cap
    assert world.spike[0, i] == 0.0
    assert world.cap[0, i] == cap  # a restart keeps the capacity
    assert not terminals[0]
    # The restarted node does not OOM again.
    _, rewards, _, _ = world.step(NOOP)
    assert s.ep_oom[0] == 1 and rewards[0] == 0.0


def test_oom_at_or_above_capacity_only(backend):
    params = quiet_params()
    world = World(backend, params)
    flat(world, mem=0.9990234375)  # 1 - 2**-10
    world.set(0, 0, mem=1.0)
    world.set(0, 1, mem=1.25)
    _, rewards, _, _ = world.step(NOOP)
    assert world.state.ep_oom[0] == 2
    assert np.count_nonzero(world.mem[0] == params.restart_mem) == 2
    assert rewards[0] == np.float32(-2 * params.oom_penalty * (1 + params.crit_weight * 0.25))


# --- overloads ----------------------------------------------------------------------------------

SPIKY = dict(height=4, width=4, spike_rate=0.125, spike_min=0.25, spike_max=0.25,
             overload_mem_jump=0.25, overload_penalty=0.25, spike_fade=0.0)


def test_overload_counted_penalised_and_adds_memory(backend):
    params = quiet_params(**SPIKY)  # exactly 2 spikes of 0.25 per step on 16 nodes
    world = World(backend, params)
    flat(world, cpu=0.875, mem=0.125)
    _, rewards, _, _ = world.step(NOOP)
    s = world.state
    assert s.ep_overload[0] == 2
    assert rewards[0] == np.float32(-2 * 0.25)
    assert world.spike[0].sum() == pytest.approx(0.5)
    assert world.mem[0].sum() == pytest.approx(16 * 0.125 + 2 * 0.25 * 1.0)
    hit = world.spike[0] > 0
    assert np.all(world.mem[0][~hit] == 0.125) and np.all(world.mem[0][hit] > 0.125)


def test_overload_memory_jump_scales_with_capacity(backend):
    params = quiet_params(**SPIKY)
    world = World(backend, params)
    flat(world, cpu=1.875, mem=0.125, cap=2.0)  # (1.875 + 0.25) / 2 >= 1
    _, rewards, _, _ = world.step(NOOP)
    assert world.state.ep_overload[0] == 2
    assert world.mem[0].sum() == pytest.approx(16 * 0.125 + 2 * 0.25 * 2.0)
    assert rewards[0] == np.float32(-0.5)


@pytest.mark.parametrize("cpu, cap", [(0.25, 1.0), (0.875, 2.0)])
def test_no_overload_below_full_cpu(backend, cpu, cap):
    params = quiet_params(**SPIKY)
    world = World(backend, params)
    flat(world, cpu=cpu, mem=0.125, cap=cap)
    _, rewards, _, _ = world.step(NOOP)
    assert world.state.ep_overload[0] == 0
    assert np.all(world.mem[0] == 0.125)
    assert world.spike[0].sum() == pytest.approx(0.5)  # the spikes did land
    assert rewards[0] == 0.0


# --- the Red Queen ------------------------------------------------------------------------------

def test_memory_leak_accelerates_with_time(backend):
    horizon = 100.0
    params = quiet_params(leak_min=0.0005, leak_max=0.004, red_queen_horizon=horizon,
                          mem_init_min=0.05, mem_init_max=0.1)
    world = World(backend, params, seed=31)
    leak = world.loads("leak")[0]
    assert leak.min() >= 0.0005 and leak.max() <= 0.004 and leak.max() > leak.min()
    history = [world.mem[0]]
    for _ in range(120):
        world.step(NOOP)
        history.append(world.mem[0])
    increments = np.diff(np.array(history), axis=0)  # (steps, nodes)
    t = np.arange(1, 121)[:, None]
    np.testing.assert_allclose(increments, leak[None, :] * (1.0 + t / horizon), rtol=2e-3)
    assert np.all(increments[100] > 1.9 * increments[0])
    assert np.all(np.diff(np.array(history), axis=0) > 0)  # never falls by itself


def test_memory_ratio_leak_is_divided_by_capacity(backend):
    params = quiet_params(leak_min=0.004, leak_max=0.004, red_queen_horizon=100.0)
    world = World(backend, params)
    flat(world, mem=0.125)
    world.set(0, node(params, 2, 3), cap=2.0)
    world.set(0, node(params, 2, 3), mem=0.25)  # same ratio 0.125
    world.place(2, 2)
    obs = world.step(NOOP)[0][0]
    rise_full = obs[obs_index(0, 0, MEM)] - 0.125
    rise_double = obs[obs_index(0, 1, MEM)] - 0.125
    assert rise_full == pytest.approx(0.004 * 1.01, rel=1e-3)
    assert rise_double == pytest.approx(rise_full / 2, rel=1e-3)


# --- collapse and truncation --------------------------------------------------------------------

def _force_oom(world, y, x, prio):
    i = node(world.params, y, x)
    world.set(0, i, mem=world.cap[0, i], prio=prio)


def test_collapse_on_critical_ooms(backend):
    params = quiet_params(crit_limit=2, crit_threshold=0.75, oom_penalty=1.0, crit_weight=2.0,
                          collapse_penalty=10.0)
    world = World(backend, params)
    flat(world)
    _force_oom(world, 1, 1, 0.875)
    _, rewards, terminals, truncations = world.step(NOOP, auto_reset=False)
    assert not terminals[0] and rewards[0] == np.float32(-2.75)
    world.step(NOOP, auto_reset=False)
    _force_oom(world, 2, 2, 0.875)
    _force_oom(world, 3, 3, 0.5)
    _, rewards, terminals, truncations = world.step(NOOP, auto_reset=False)
    assert terminals[0] and not truncations[0]
    assert rewards[0] == np.float32(-(2.75 + 2.0) - 10.0)
    stats = world.state.last_stats[0]
    assert stats[STAT_COLLAPSED] == 1.0
    assert stats[STAT_LENGTH] == 3
    assert stats[STAT_OOM] == 3 and stats[STAT_CRIT] == 2
    assert stats[STAT_OOM_RATE] == pytest.approx(100.0)
    assert stats[STAT_CRIT_RATE] == pytest.approx(200.0 / 3)
    assert stats[STAT_RETURN] == pytest.approx(-2.75 + 0.0 - 14.75)
    assert world.state.finished_count[0] == 1


def test_collapse_on_total_ooms(backend):
    params = quiet_params(height=4, width=4, oom_limit=0.1875, crit_limit=1000,
                          collapse_penalty=7.0, oom_penalty=1.0, crit_weight=2.0)
    assert params.oom_collapse_count == 3  # a fraction of the 16 nodes
    world = World(backend, params)
    flat(world, prio=0.25)
    _force_oom(world, 0, 0, 0.25)
    _force_oom(world, 0, 1, 0.25)
    _, _, terminals, _ = world.step(NOOP, auto_reset=False)
    assert not terminals[0]
    _force_oom(world, 3, 3, 0.25)
    _, rewards, terminals, truncations = world.step(NOOP, auto_reset=False)
    assert terminals[0] and not truncations[0]
    assert rewards[0] == np.float32(-1.5 - 7.0)
    stats = world.state.last_stats[0]
    assert stats[STAT_COLLAPSED] == 1.0 and stats[STAT_OOM] == 3 and stats[STAT_CRIT] == 0
    assert stats[STAT_OOM_RATE] == pytest.approx(150.0)


def test_truncation_at_max_steps(backend):
    params = quiet_params(max_steps=5)
    world = World(backend, params)
    for t in range(1, 5):
        _, _, terminals, truncations = world.step(NOOP, auto_reset=False)
        assert not terminals[0] and not truncations[0], t
    _, rewards, terminals, truncations = world.step(NOOP, auto_reset=False)
    assert truncations[0] and not terminals[0]
    assert rewards[0] == 0.0  # no collapse penalty
    stats = world.state.last_stats[0]
    assert stats[STAT_COLLAPSED] == 0.0 and stats[STAT_LENGTH] == 5


def test_collapse_on_the_last_step_is_terminal_not_truncated(backend):
    params = quiet_params(max_steps=3, crit_limit=1)
    world = World(backend, params)
    world.step(NOOP, auto_reset=False)
    world.step(NOOP, auto_reset=False)
    _force_oom(world, 1, 1, 0.875)
    _, _, terminals, truncations = world.step(NOOP, auto_reset=False)
    assert terminals[0] and not truncations[0]
    assert world.state.last_stats[0, STAT_COLLAPSED] == 1.0


def test_auto_reset_starts_the_next_episode(backend):
    params = quiet_params(max_steps=4, crit_limit=1)
    world = World(backend, params, num_grids=3, seed=41)
    for _ in range(2):
        world.step(NOOP)
    _force_oom(world, 1, 1, 0.875)  # grid 0 collapses at step 3
    obs, _, terminals, truncations = world.step(NOOP)
    assert terminals.tolist() == [True, False, False]
    s = world.state
    assert s.step.tolist() == [0, 3, 3] and s.episode.tolist() == [1, 0, 0]
    assert s.ep_oom[0] == 0 and s.ep_return[0] == 0.0 and s.budget[0] == params.budget_init
    fresh = World(backend, params, num_grids=3, seed=41)
    fresh.state.episode[:] = 1
    backend.reset_grids(fresh.state, params, fresh.obs)
    np.testing.assert_array_equal(obs[0], fresh.obs[0])  # the new episode's first observation
    assert not np.array_equal(fresh.obs[0], World(backend, params, 3, seed=41).obs[0])
    obs, _, terminals, truncations = world.step(NOOP)
    assert truncations.tolist() == [False, True, True] and not terminals.any()
    assert s.step.tolist() == [1, 0, 0] and s.episode.tolist() == [1, 1, 1]


# --- episode statistics -------------------------------------------------------------------------

def test_episode_statistics_values(backend):
    params = quiet_params(height=4, width=4, max_steps=4, health_bonus=0.125, scale_cost=0.5,
                          clean_cost=0.125, clean_useful_mem=0.5, clean_waste_penalty=0.5,
                          invalid_penalty=0.0625, oom_penalty=1.0, crit_weight=2.0)
    world = World(backend, params)
    flat(world, cpu=0.25, mem=0.25, prio=0.25)
    world.place(1, 1)
    s = world.state

    def mean_load():
        cpu, mem, _ = node_ratios(s, params, 0)
        return float(np.mean(0.5 * (cpu + mem)))

    loads, rewards = [], []
    for t, action in enumerate([CLEAN, 9, SCALE_HALF, NOOP]):
        if t == 3:
            _force_oom(world, 3, 3, 0.25)
        _, r, terminals, truncations = world.step(action, auto_reset=False)
        loads.append(mean_load())
        rewards.append(float(r[0]))
    assert truncations[0] and not terminals[0]
    penalties = [0.5 * 9 * (0.5 - 0.25), 0.0625, 0.0, 1.0 * (1 + 2.0 * 0.25)]
    for reward, load, penalty in zip(rewards, loads, penalties):
        assert reward == pytest.approx(0.125 * (1 - load) - penalty, rel=1e-6, abs=1e-7)
    stats = s.last_stats[0]
    assert stats[STAT_RETURN] == pytest.approx(sum(rewards), rel=1e-6)
    assert stats[STAT_LENGTH] == 4
    assert stats[STAT_OOM] == 1 and stats[STAT_CRIT] == 0 and stats[STAT_OVERLOAD] == 0
    assert stats[STAT_OOM_RATE] == 25.0 and stats[STAT_CRIT_RATE] == 0.0
    assert stats[STAT_AVG_LOAD] == pytest.approx(np.mean(loads), rel=1e-9)
    assert stats[STAT_BUDGET_SPENT] == 0.125 + 0.25
    assert stats[STAT_COLLAPSED] == 0.0
    assert stats[STAT_INVALID] == 1
    np.testing.assert_array_equal(s.finished_sum[0], stats)
    assert s.finished_count[0] == 1
