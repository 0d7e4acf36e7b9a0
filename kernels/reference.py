"""The NumPy reference of World v2: the whole gardener world in plain array code, the
specification the Numba kernels (`kernels.dense`, `kernels.event`) reproduce bit for bit.

Dense: every step evaluates every node's closed forms (`kernels.fixed`). Vectorised over grids
(and nodes where a rule allows); integer sums are exact, so their order does not matter. It is
slow; tests and small benchmarks use it to check the kernels.

The trace replay's reference (`kernels.replay`) plays its overlay world with these rules.
"""
import numpy as np

from puffer_cluster.kernels.fixed import (
    CAP, CAP_ONE, CPU_BASE, FADE, FRACTION_ONE, LEAK, MEM, MEM_T, ONE, PRIO, PRIO_UNIT, SPIKE,
    SPIKE_T, clean_waste, cpu_at, entropy_integral, initial_node, mean_load, mem_at, mul_div,
    oom_cost, ratio_float, spike_at, to_fixed,
)
from puffer_cluster.kernels.rng import (
    STREAM_AGENT_X, STREAM_AGENT_Y, STREAM_BASE_LOAD, STREAM_CRITICAL, STREAM_EPISODE,
    STREAM_LEAK, STREAM_MEM_INIT, STREAM_PRIO, STREAM_SPIKE_COUNT, STREAM_SPIKE_NODE,
    STREAM_SPIKE_SIZE, counter_hash, unit_float,
)
from puffer_cluster.kernels.world import (
    CLEAN, MOVE_DX, MOVE_DY, NUM_ACTIONS, NUM_CHANNELS, OBS_BUDGET, OBS_X, OBS_Y, OUTSIDE,
    SCALE_FULL, SCALE_HALF,
    STAT_AVG_LOAD, STAT_BUDGET_SPENT, STAT_COLLAPSED, STAT_CRIT, STAT_CRIT_RATE, STAT_INVALID,
    STAT_LENGTH, STAT_OOM, STAT_OOM_RATE, STAT_OVERLOAD, STAT_RETURN,
)

f64 = np.float64
CAP_UNIT = 1.0 / CAP_ONE


def uniform(seeds, step, node, stream):
    """Uniform draws for per-grid `seeds` (grids,) and broadcastable `step`, `node` counters."""
    seeds, step, node = np.broadcast_arrays(seeds, np.asarray(step, dtype=np.uint64),
                                            np.asarray(node, dtype=np.uint64))
    return unit_float(counter_hash(seeds, step, node, np.full(seeds.shape, stream)))


def mem_now(params, record, t):
    """Memory ratios of node records (..., fields) at steps `t` (broadcast against them)."""
    table = params.entropy_integral
    return mem_at(record[..., MEM], record[..., LEAK], entropy_integral(table, t),
                  entropy_integral(table, record[..., MEM_T]))


def cpu_now(record, t):
    return cpu_at(record[..., CPU_BASE], record[..., SPIKE], record[..., FADE],
                  t - record[..., SPIKE_T])


def _spike_now(record, t):
    return spike_at(record[..., SPIKE], record[..., FADE], t - record[..., SPIKE_T])


def reset_grids(state, params, observations, grids=None):
    """Start a new episode on `grids` (default all) and write their observations."""
    grids = np.arange(state.step.shape[0]) if grids is None else np.asarray(grids)
    start_episodes(state, params, grids)
    observe(state, params, observations, grids)


def start_episodes(state, params, grids):
    """Every node of `grids` drawn from their new episode seeds, agents and counters."""
    if grids.size == 0:
        return
    zero = np.zeros(grids.size, dtype=np.uint64)
    seeds = counter_hash(state.grid_seed[grids], state.episode[grids], zero,
                         np.full(grids.size, STREAM_EPISODE))
    state.episode_seed[grids] = seeds
    seed_col = seeds[:, None]
    nodes = np.arange(params.height * params.width, dtype=np.uint64)[None, :]
    base, mem, leak, prio = initial_node(
        params, *(uniform(seed_col, 0, nodes, stream) for stream in (
            STREAM_BASE_LOAD, STREAM_MEM_INIT, STREAM_LEAK, STREAM_PRIO, STREAM_CRITICAL)))
    record = np.zeros(state.nodes[grids].shape, dtype=np.int64)
    record[..., MEM], record[..., LEAK] = mem, leak
    record[..., CPU_BASE], record[..., PRIO] = base, prio
    record[..., FADE], record[..., CAP] = params.fade_fx, CAP_ONE
    state.nodes[grids] = record
    agents = np.arange(params.agents_per_grid, dtype=np.uint64)[None, :]
    state.agent_y[grids] = (uniform(seed_col, 0, agents, STREAM_AGENT_Y) * params.height).astype(np.int64)
    state.agent_x[grids] = (uniform(seed_col, 0, agents, STREAM_AGENT_X) * params.width).astype(np.int64)
    state.budget[grids] = params.budget_init
    for counter in (state.step, state.ep_oom, state.ep_crit, state.ep_overload, state.ep_invalid,
                    state.ep_return, state.ep_load_sum, state.ep_spent):
        counter[grids] = 0


def observe(state, params, observations, grids=None):
    """Write the 30-value observation of every agent of `grids` (default all)."""
    grids = np.arange(state.step.shape[0]) if grids is None else np.asarray(grids)
    height, width, agents = params.height, params.width, params.agents_per_grid
    t = state.step[grids]
    for a in range(agents):
        rows = grids * agents + a
        y, x = state.agent_y[grids, a], state.agent_x[grids, a]
        k = 0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
                record = state.nodes[grids, np.where(inside, ny * width + nx, 0)]
                cpu = ratio_float(cpu_now(record, t))
                mem = ratio_float(np.minimum(ONE, mem_now(params, record, t)))
                prio = record[:, PRIO] * PRIO_UNIT
                for c, value in enumerate((cpu, mem, prio)):
                    observations[rows, k + c] = np.where(inside, value, OUTSIDE)
                k += NUM_CHANNELS
        observations[rows, OBS_Y] = y / (height - 1.0)
        observations[rows, OBS_X] = x / (width - 1.0)
        observations[rows, OBS_BUDGET] = state.budget[grids]


def apply_actions(state, params, actions):
    """Rule 1: each agent's action, in agent order, paid from the grid's budget, at the step
    before time advances. Returns the per-grid invalid-action count and cleaning waste."""
    num_grids = state.step.shape[0]
    grids = np.arange(num_grids)
    height, width = params.height, params.width
    t = state.step
    invalid = np.zeros(num_grids, dtype=np.int64)
    waste = np.zeros(num_grids, dtype=np.int64)
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
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                hit = cleaning & (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
                g, i = grids[hit], (ny * width + nx)[hit]
                record = state.nodes[g, i]
                mem = mem_now(params, record, t[g])
                waste[g] += np.maximum(0, params.useful_fx - mem)
                record[:, MEM] = mul_div(mem, params.keep_fx, FRACTION_ONE)
                record[:, MEM_T] = t[g]
                record[:, SPIKE] = mul_div(_spike_now(record, t[g]), params.keep_fx, FRACTION_ONE)
                record[:, SPIKE_T] = t[g]
                state.nodes[g, i] = record

        invalid += _scale(state, params, a, action)
        move_agents(state, params, a, action)
    return invalid, waste


def _scale(state, params, a, action):
    """SCALE_HALF / SCALE_FULL of agent a (World v2): capacity rises by a half or a full unit
    (partial when the budget is short), and every ratio of the node is rescaled by
    old cap / new cap. Returns, per grid, whether a scale added nothing (invalid)."""
    grids = np.arange(state.step.shape[0])
    scaling = (action == SCALE_HALF) | (action == SCALE_FULL)
    unit = np.where(action == SCALE_HALF, CAP_ONE // 2, CAP_ONE)
    i = state.agent_y[:, a] * params.width + state.agent_x[:, a]
    cap = state.nodes[grids, i, CAP]
    added = np.minimum(unit, params.cap_max_fx - cap)
    cost = params.scale_cost * (added * CAP_UNIT)
    short = scaling & (added > 0) & (state.budget < cost)
    added = np.where(short, (added * (state.budget / np.where(short, cost, 1.0))).astype(np.int64),
                     added)
    cost = np.where(short, state.budget, cost)
    paid = scaling & (added > 0)
    state.budget[paid] -= cost[paid]
    state.ep_spent[paid] += cost[paid]
    g, i, cap, new_cap = grids[paid], i[paid], cap[paid], cap[paid] + added[paid]
    t = state.step[g]
    record = state.nodes[g, i]
    record[:, MEM] = mul_div(mem_now(params, record, t), cap, new_cap)
    record[:, MEM_T] = t
    record[:, SPIKE] = mul_div(_spike_now(record, t), cap, new_cap)
    record[:, SPIKE_T] = t
    for field in (LEAK, CPU_BASE, FADE):
        record[:, field] = mul_div(record[:, field], cap, new_cap)
    record[:, CAP] = new_cap
    state.nodes[g, i] = record
    return scaling & ~paid


def move_agents(state, params, a, action):
    """Move actions of agent a (others move by (0, 0)); at the edge the agent stays."""
    y, x = state.agent_y[:, a], state.agent_x[:, a]
    ny, nx = y + MOVE_DY[action], x + MOVE_DX[action]
    inside = (ny >= 0) & (ny < params.height) & (nx >= 0) & (nx < params.width)
    state.agent_y[:, a] = np.where(inside, ny, y)
    state.agent_x[:, a] = np.where(inside, nx, x)


def land_spikes(state, params, t):
    """Rule 3: a seeded number of spikes land on seeded nodes; cpu >= 1 is an overload, which
    also raises the node's memory pressure."""
    num_grids = state.step.shape[0]
    nodes = params.height * params.width
    seeds = state.episode_seed
    count = (params.spike_rate * nodes + uniform(seeds, t, 0, STREAM_SPIKE_COUNT)).astype(np.int64)
    overloads = np.zeros(num_grids, dtype=np.int64)
    for j in range(int(count.max(initial=0))):
        g = np.flatnonzero(count > j)
        i = np.minimum((uniform(seeds[g], t[g], j, STREAM_SPIKE_NODE) * nodes).astype(np.int64),
                       nodes - 1)
        size = params.spike_min + (params.spike_max - params.spike_min) \
            * uniform(seeds[g], t[g], j, STREAM_SPIKE_SIZE)
        record = state.nodes[g, i]
        spike = _spike_now(record, t[g]) + mul_div(to_fixed(size, ONE), CAP_ONE, record[:, CAP])
        record[:, SPIKE] = spike
        record[:, SPIKE_T] = t[g]
        over = record[:, CPU_BASE] + spike >= ONE
        overloads[g[over]] += 1
        record[over, MEM] = mem_now(params, record[over], t[g[over]]) + params.jump_fx
        record[over, MEM_T] = t[g[over]]
        state.nodes[g, i] = record
    return overloads


def restart_out_of_memory(state, params, t, floor=0):
    """Rule 4, then the load: nodes whose memory reaches 1 restart (memory at restart_mem, spikes
    cleared), unless it is no more than `floor` (grids, nodes), memory that does not leak (the
    trace replay's requests), which the restart keeps. Returns OOMs, critical OOMs, the sum of
    their priorities and the sum over nodes of the clipped cpu and memory ratios, per grid, all
    exact in integers (`kernels.rules.restart_out_of_memory`)."""
    record = state.nodes
    mem = mem_now(params, record, t[:, None])
    oom = (mem >= ONE) & (mem > floor)
    restart = np.where(oom, 1, 0)
    keep = 1 - restart
    step = np.broadcast_to(t[:, None], oom.shape)
    record[..., MEM] = keep * record[..., MEM] + restart * (params.restart_fx + floor)
    record[..., MEM_T] = np.where(oom, step, record[..., MEM_T])
    record[..., SPIKE] = keep * record[..., SPIKE]
    record[..., SPIKE_T] = np.where(oom, step, record[..., SPIKE_T])
    prio = record[..., PRIO]
    crits = (oom & (prio >= params.crit_fx)).sum(axis=1)
    load = cpu_now(record, t[:, None]) + np.minimum(ONE, mem_now(params, record, t[:, None]))
    return oom.sum(axis=1), crits, (prio * restart).sum(axis=1), load.sum(axis=1)


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
    """One step of every grid; same contract as `kernels.dense.step`."""
    invalid, waste = apply_actions(state, params, actions)
    # Rule 2: time advances; the closed forms carry the leak and the spikes' fade.
    state.step[:] += 1
    t = state.step
    overloads = land_spikes(state, params, t)
    ooms, crits, prio_sum, load_sum = restart_out_of_memory(state, params, t)
    load = mean_load(load_sum, params.height * params.width)
    # Rule 5: the budget recovers slowly.
    state.budget[:] = np.minimum(1.0, state.budget + params.budget_regen)

    # Reward, statistics, and the end of the episode.
    done = settle(state, params, ooms, crits, oom_cost(params, ooms, prio_sum), overloads,
                  clean_waste(waste), invalid, load, params.max_steps, rewards, terminals,
                  truncations)
    observe(state, params, observations)
    if auto_reset:
        state.episode[done] += np.uint64(1)
        reset_grids(state, params, observations, done)
