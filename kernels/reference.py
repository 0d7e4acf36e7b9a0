"""The NumPy reference: the whole gardener world in plain array code, the kernel's specification.

Vectorised over grids (and nodes where a rule allows). It reproduces the Numba kernel bit for
bit: float64 arithmetic on float32 storage in the same operation order, and sequential sums
(`np.cumsum`, never the pairwise `np.sum`) in node order. It is slow; tests and small
benchmarks use it to check `kernels.fast`.
"""
import numpy as np

from kernels.rng import (
    STREAM_AGENT_X, STREAM_AGENT_Y, STREAM_BASE_LOAD, STREAM_CRITICAL, STREAM_EPISODE,
    STREAM_LEAK, STREAM_MEM_INIT, STREAM_PRIO, STREAM_SPIKE_COUNT, STREAM_SPIKE_NODE,
    STREAM_SPIKE_SIZE, counter_hash, unit_float,
)
from kernels.world import (
    CLEAN, MOVE_DX, MOVE_DY, NUM_ACTIONS, NUM_CHANNELS, OBS_BUDGET, OBS_X, OBS_Y, OUTSIDE,
    SCALE_FULL, SCALE_HALF,
    STAT_AVG_LOAD, STAT_BUDGET_SPENT, STAT_COLLAPSED, STAT_CRIT, STAT_CRIT_RATE, STAT_INVALID,
    STAT_LENGTH, STAT_OOM, STAT_OOM_RATE, STAT_OVERLOAD, STAT_RETURN,
)

f64 = np.float64


def _uniform(seeds, step, node, stream):
    """Uniform draws for per-grid `seeds` (grids,) and broadcastable `step`, `node` counters."""
    seeds, step, node = np.broadcast_arrays(seeds, np.asarray(step, dtype=np.uint64),
                                            np.asarray(node, dtype=np.uint64))
    return unit_float(counter_hash(seeds, step, node, np.full(seeds.shape, stream)))


def _sequential_sum(values):
    """Row sums accumulated left to right, as the kernel's loops do."""
    return np.cumsum(values, axis=1)[:, -1]


def reset_grids(state, params, observations, grids=None):
    """Start a new episode on `grids` (default all) and write their observations."""
    grids = np.arange(state.step.shape[0]) if grids is None else np.asarray(grids)
    if grids.size == 0:
        return
    zero = np.zeros(grids.size, dtype=np.uint64)
    seeds = counter_hash(state.grid_seed[grids], state.episode[grids], zero,
                         np.full(grids.size, STREAM_EPISODE))
    state.episode_seed[grids] = seeds
    seed_col = seeds[:, None]
    nodes = np.arange(params.height * params.width, dtype=np.uint64)[None, :]

    u = _uniform(seed_col, 0, nodes, STREAM_BASE_LOAD)
    state.cpu_base[grids] = params.base_load_min + (params.base_load_max - params.base_load_min) * u
    u = _uniform(seed_col, 0, nodes, STREAM_MEM_INIT)
    state.mem[grids] = params.mem_init_min + (params.mem_init_max - params.mem_init_min) * u
    u = _uniform(seed_col, 0, nodes, STREAM_LEAK)
    state.leak[grids] = params.leak_min + (params.leak_max - params.leak_min) * (u * u)
    up = _uniform(seed_col, 0, nodes, STREAM_PRIO)
    critical = _uniform(seed_col, 0, nodes, STREAM_CRITICAL) < params.crit_fraction
    state.prio[grids] = np.where(critical,
                                 params.crit_threshold + (1.0 - params.crit_threshold) * up,
                                 (params.crit_threshold - 0.01) * up)
    state.cap[grids] = 1.0
    state.spike[grids] = 0.0
    agents = np.arange(params.agents_per_grid, dtype=np.uint64)[None, :]
    state.agent_y[grids] = (_uniform(seed_col, 0, agents, STREAM_AGENT_Y) * params.height).astype(np.int64)
    state.agent_x[grids] = (_uniform(seed_col, 0, agents, STREAM_AGENT_X) * params.width).astype(np.int64)
    state.budget[grids] = params.budget_init
    for counter in (state.step, state.ep_oom, state.ep_crit, state.ep_overload, state.ep_invalid,
                    state.ep_return, state.ep_load_sum, state.ep_spent):
        counter[grids] = 0
    observe(state, params, observations, grids)


def observe(state, params, observations, grids=None):
    """Write the 30-value observation of every agent of `grids` (default all)."""
    grids = np.arange(state.step.shape[0]) if grids is None else np.asarray(grids)
    height, width, agents = params.height, params.width, params.agents_per_grid
    for a in range(agents):
        rows = grids * agents + a
        y, x = state.agent_y[grids, a], state.agent_x[grids, a]
        k = 0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
                i = np.where(inside, ny * width + nx, 0)
                cap = state.cap[grids, i].astype(f64)
                cpu = np.minimum(1.0, (state.cpu_base[grids, i].astype(f64)
                                       + state.spike[grids, i].astype(f64)) / cap)
                mem = np.minimum(1.0, state.mem[grids, i].astype(f64) / cap)
                for c, value in enumerate((cpu, mem, state.prio[grids, i])):
                    observations[rows, k + c] = np.where(inside, value, OUTSIDE)
                k += NUM_CHANNELS
        observations[rows, OBS_Y] = y / (height - 1.0)
        observations[rows, OBS_X] = x / (width - 1.0)
        observations[rows, OBS_BUDGET] = state.budget[grids]


def _apply_actions(state, params, actions):
    """Rule 1: each agent's action, in agent order, paid from the grid's budget.
    Returns the per-grid invalid-action count and cleaning waste."""
    num_grids = state.step.shape[0]
    grids = np.arange(num_grids)
    height, width = params.height, params.width
    invalid = np.zeros(num_grids, dtype=np.int64)
    clean_waste = np.zeros(num_grids)
    for a in range(params.agents_per_grid):
        action = actions[grids * params.agents_per_grid + a].astype(np.int64)
        out_of_range = (action < 0) | (action >= NUM_ACTIONS)
        invalid += out_of_range
        action = np.where(out_of_range, 0, action)
        y, x = state.agent_y[:, a], state.agent_x[:, a]

        cleaning = action == CLEAN
        can_pay = state.budget >= params.clean_cost
        invalid += cleaning & ~can_pay
        cleaning &= can_pay
        state.budget[cleaning] -= params.clean_cost
        state.ep_spent[cleaning] += params.clean_cost
        keep = 1.0 - params.clean_fraction
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                hit = cleaning & (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
                g, i = grids[hit], (ny * width + nx)[hit]
                ratio = state.mem[g, i].astype(f64) / state.cap[g, i].astype(f64)
                clean_waste[g] += np.maximum(0.0, params.clean_useful_mem - ratio)
                state.mem[g, i] = state.mem[g, i].astype(f64) * keep
                state.spike[g, i] = state.spike[g, i].astype(f64) * keep

        invalid += scale_nodes(state, params, a, action)
        move_agents(state, params, a, action)
    return invalid, clean_waste


def scale_nodes(state, params, a, action):
    """SCALE_HALF / SCALE_FULL of agent a where `action` asks for it, partial when the budget is
    short. Returns, per grid, whether a scale added nothing (invalid)."""
    grids = np.arange(state.step.shape[0])
    scaling = (action == SCALE_HALF) | (action == SCALE_FULL)
    unit = np.where(action == SCALE_HALF, 0.5, 1.0)
    i = state.agent_y[:, a] * params.width + state.agent_x[:, a]
    added = np.minimum(unit, params.cap_max - state.cap[grids, i].astype(f64))
    cost = params.scale_cost * added
    short = scaling & (added > 0.0) & (state.budget < cost)
    added = np.where(short, added * (state.budget / np.where(short, cost, 1.0)), added)
    cost = np.where(short, state.budget, cost)
    paid = scaling & (added > 0.0)
    state.budget[paid] -= cost[paid]
    state.ep_spent[paid] += cost[paid]
    state.cap[grids[paid], i[paid]] = state.cap[grids[paid], i[paid]].astype(f64) + added[paid]
    return scaling & ~paid


def move_agents(state, params, a, action):
    """Move actions of agent a (others move by (0, 0)); at the edge the agent stays."""
    y, x = state.agent_y[:, a], state.agent_x[:, a]
    ny, nx = y + MOVE_DY[action], x + MOVE_DX[action]
    inside = (ny >= 0) & (ny < params.height) & (nx >= 0) & (nx < params.width)
    state.agent_y[:, a] = np.where(inside, ny, y)
    state.agent_x[:, a] = np.where(inside, nx, x)


def _advance_time(state, params):
    """Rule 2: memory leaks at leak * E(t), E(t) = 1 + t / horizon; spikes decay."""
    state.step[:] += 1
    entropy = (1.0 + state.step / params.red_queen_horizon)[:, None]
    state.mem[:] = state.mem.astype(f64) + state.leak.astype(f64) * entropy
    state.spike[:] = state.spike.astype(f64) * params.spike_decay


def _land_spikes(state, params):
    """Rule 3: a seeded number of spikes land on seeded nodes; cpu >= 1 is an overload."""
    num_grids = state.step.shape[0]
    nodes = params.height * params.width
    seeds, t = state.episode_seed, state.step
    count = (params.spike_rate * nodes + _uniform(seeds, t, 0, STREAM_SPIKE_COUNT)).astype(np.int64)
    overloads = np.zeros(num_grids, dtype=np.int64)
    for j in range(int(count.max(initial=0))):
        g = np.flatnonzero(count > j)
        i = np.minimum((_uniform(seeds[g], t[g], j, STREAM_SPIKE_NODE) * nodes).astype(np.int64),
                       nodes - 1)
        size = params.spike_min + (params.spike_max - params.spike_min) \
            * _uniform(seeds[g], t[g], j, STREAM_SPIKE_SIZE)
        state.spike[g, i] = state.spike[g, i].astype(f64) + size
        cap = state.cap[g, i].astype(f64)
        over = (state.cpu_base[g, i].astype(f64) + state.spike[g, i].astype(f64)) / cap >= 1.0
        overloads[g[over]] += 1
        state.mem[g[over], i[over]] = state.mem[g[over], i[over]].astype(f64) \
            + params.overload_mem_jump * cap[over]
    return overloads


def _out_of_memory(state, params):
    """Rule 4: nodes at mem >= 1 restart; returns OOMs, critical OOMs and their cost."""
    cap = state.cap.astype(f64)
    oom = state.mem.astype(f64) / cap >= 1.0
    prio = state.prio.astype(f64)
    cost = np.where(oom, params.oom_penalty * (1.0 + params.crit_weight * prio), 0.0)
    state.mem[:] = np.where(oom, params.restart_mem * cap, state.mem)
    state.spike[oom] = 0.0
    crits = (oom & (prio >= params.crit_threshold)).sum(axis=1)
    return oom.sum(axis=1), crits, _sequential_sum(cost)


def _mean_load(state, params):
    cap = state.cap.astype(f64)
    cpu = np.minimum(1.0, (state.cpu_base.astype(f64) + state.spike.astype(f64)) / cap)
    mem = np.minimum(1.0, state.mem.astype(f64) / cap)
    return _sequential_sum(0.5 * (cpu + mem)) / (params.height * params.width)


def settle(state, params, ooms, crits, oom_cost, overloads, clean_waste, invalid, mean_load,
           truncate_at, rewards, terminals, truncations):
    """The step's reward, statistics and endings (truncation at `truncate_at`, a number or one per
    grid); writes every agent's outputs. Returns the grids whose episode ended."""
    state.ep_oom[:] += ooms
    state.ep_crit[:] += crits
    state.ep_overload[:] += overloads
    state.ep_invalid[:] += invalid
    state.ep_load_sum[:] += mean_load
    penalties = oom_cost + params.overload_penalty * overloads \
        + params.clean_waste_penalty * clean_waste + params.invalid_penalty * invalid
    reward = params.health_bonus * (1.0 - mean_load) - penalties
    terminal = (state.ep_crit >= params.crit_limit) | (state.ep_oom >= params.oom_collapse_count)
    reward = np.where(terminal, reward - params.collapse_penalty, reward)
    truncated = ~terminal & (state.step >= truncate_at)
    state.ep_return[:] += reward

    agents = params.agents_per_grid
    rewards[:] = np.repeat(reward, agents)
    terminals[:] = np.repeat(terminal, agents)
    truncations[:] = np.repeat(truncated, agents)

    done = np.flatnonzero(terminal | truncated)
    length = state.step[done].astype(f64)
    stats = state.last_stats
    stats[done, STAT_RETURN] = state.ep_return[done]
    stats[done, STAT_LENGTH] = length
    stats[done, STAT_OOM] = state.ep_oom[done]
    stats[done, STAT_CRIT] = state.ep_crit[done]
    stats[done, STAT_OVERLOAD] = state.ep_overload[done]
    stats[done, STAT_OOM_RATE] = 100.0 * state.ep_oom[done] / length
    stats[done, STAT_CRIT_RATE] = 100.0 * state.ep_crit[done] / length
    stats[done, STAT_AVG_LOAD] = state.ep_load_sum[done] / length
    stats[done, STAT_BUDGET_SPENT] = state.ep_spent[done]
    stats[done, STAT_COLLAPSED] = terminal[done]
    stats[done, STAT_INVALID] = state.ep_invalid[done]
    state.finished_sum[done] += stats[done]
    state.finished_count[done] += 1

    return done


def step(state, params, actions, observations, rewards, terminals, truncations, auto_reset=True):
    """One step of every grid; same contract as `kernels.fast.step`."""
    invalid, clean_waste = _apply_actions(state, params, actions)
    _advance_time(state, params)
    overloads = _land_spikes(state, params)
    ooms, crits, oom_cost = _out_of_memory(state, params)
    mean_load = _mean_load(state, params)
    # Rule 5: the budget recovers slowly.
    state.budget[:] = np.minimum(1.0, state.budget + params.budget_regen)

    # Reward, statistics, and the end of the episode.
    done = settle(state, params, ooms, crits, oom_cost, overloads, clean_waste, invalid, mean_load,
                  params.max_steps, rewards, terminals, truncations)
    observe(state, params, observations)
    if auto_reset:
        state.episode[done] += np.uint64(1)
        reset_grids(state, params, observations, done)
