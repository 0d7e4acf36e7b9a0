"""World v2's rules on one node, compiled: what the dense kernel (`kernels.dense`) does to every
node and the event kernel (`kernels.event`) to the nodes an event touches, in the NumPy
reference's arithmetic (`kernels.reference`), so that all three agree bit for bit.

`nodes` is one grid's records (`state.nodes[g]`) and `table` the G table; a rule evaluates the
closed forms at step `t`, changes node `i`, and stores its new values with `t` as its event
time. (Arrays come in as arguments, never as views made per call: Numba reference-counts every
view, and in the event kernel's hot loops that would cost more than the rules themselves.)
"""
import numpy as np
from numba import njit

from puffer_cluster.kernels.fast import settle_grid, start_agents_and_counters, uniform
from puffer_cluster.kernels.fixed import (
    CAP, CAP_ONE, CPU_BASE, FADE, FRACTION_ONE, LEAK, MEM, MEM_T, ONE, PRIO, PRIO_UNIT, SPIKE,
    SPIKE_T, clean_waste_nb, cpu_at_nb, entropy_integral_nb, initial_node_nb, mean_load_nb,
    mem_at_nb, mul_div_nb, oom_cost_nb, ratio_float_nb, spike_at_nb, to_fixed_nb,
)
from puffer_cluster.kernels.rng import (
    STREAM_BASE_LOAD, STREAM_CRITICAL, STREAM_EPISODE, STREAM_LEAK, STREAM_MEM_INIT,
    STREAM_PRIO, STREAM_SPIKE_COUNT, STREAM_SPIKE_NODE, STREAM_SPIKE_SIZE, counter_hash_nb, fold,
    stream_state, unit_float_nb,
)
from puffer_cluster.kernels.world import NUM_CHANNELS, OBS_BUDGET, OBS_X, OBS_Y, OUTSIDE, SCALE_HALF

_U0 = np.uint64(0)
CAP_UNIT = 1.0 / CAP_ONE


@njit(inline="always")
def mem_now(table, nodes, i, t):
    return mem_at_nb(nodes[i, MEM], nodes[i, LEAK], entropy_integral_nb(table, t),
                     entropy_integral_nb(table, nodes[i, MEM_T]))


@njit(inline="always")
def spike_now(nodes, i, t):
    return spike_at_nb(nodes[i, SPIKE], nodes[i, FADE], t - nodes[i, SPIKE_T])


@njit(inline="always")
def cpu_now(nodes, i, t):
    return cpu_at_nb(nodes[i, CPU_BASE], nodes[i, SPIKE], nodes[i, FADE], t - nodes[i, SPIKE_T])


@njit(inline="always")
def start_episode(state, params, g):
    """A new episode on grid g: every node drawn from the episode seed, agents and counters.
    Writes the NODE_FIELDS of each record and no more (a node's record is written once, not
    cleared first): a kernel's own fields are its to set."""
    seed = counter_hash_nb(state.grid_seed[g], state.episode[g], _U0, STREAM_EPISODE)
    state.episode_seed[g] = seed
    nodes = state.nodes[g]
    step = np.uint64(0)
    base_stream, mem_stream = stream_state(seed, step, STREAM_BASE_LOAD), \
        stream_state(seed, step, STREAM_MEM_INIT)
    leak_stream, prio_stream = stream_state(seed, step, STREAM_LEAK), \
        stream_state(seed, step, STREAM_PRIO)
    critical_stream = stream_state(seed, step, STREAM_CRITICAL)
    for i in range(params.height * params.width):
        node = np.uint64(i)
        base, mem, leak, prio = initial_node_nb(
            params, unit_float_nb(fold(base_stream, node)), unit_float_nb(fold(mem_stream, node)),
            unit_float_nb(fold(leak_stream, node)), unit_float_nb(fold(prio_stream, node)),
            unit_float_nb(fold(critical_stream, node)))
        nodes[i, MEM] = mem
        nodes[i, MEM_T] = 0
        nodes[i, SPIKE] = 0
        nodes[i, SPIKE_T] = 0
        nodes[i, LEAK] = leak
        nodes[i, CPU_BASE] = base
        nodes[i, FADE] = params.fade_fx
        nodes[i, CAP] = CAP_ONE
        nodes[i, PRIO] = prio
    start_agents_and_counters(state, params, g, seed)


@njit(inline="always")
def clean_node(params, table, nodes, i, t):
    """CLEAN on one node: memory and spike load keep (1 - clean_fraction). Returns the waste,
    max(0, clean_useful_mem - mem), in ratio units."""
    mem = mem_now(table, nodes, i, t)
    nodes[i, SPIKE] = mul_div_nb(spike_now(nodes, i, t), params.keep_fx, FRACTION_ONE)
    nodes[i, SPIKE_T] = t
    nodes[i, MEM] = mul_div_nb(mem, params.keep_fx, FRACTION_ONE)
    nodes[i, MEM_T] = t
    return max(0, params.useful_fx - mem)


@njit(inline="always")
def pay_for_scale(state, params, g, a, action):
    """The capacity (CAP_ONE units) SCALE_HALF / SCALE_FULL adds to agent a's node, paid from
    the budget: partial when the budget is short, 0 (invalid) when nothing can be added."""
    unit = CAP_ONE // 2 if action == SCALE_HALF else CAP_ONE
    i = state.agent_y[g, a] * params.width + state.agent_x[g, a]
    added = min(unit, params.cap_max_fx - state.nodes[g, i, CAP])
    cost = params.scale_cost * (added * CAP_UNIT)
    if added > 0 and state.budget[g] < cost:
        added = np.int64(added * (state.budget[g] / cost))
        cost = state.budget[g]
    if added <= 0:
        return 0
    state.budget[g] -= cost
    state.ep_spent[g] += cost
    return added


@njit(inline="always")
def rescale_node(table, nodes, i, t, new_cap):
    """A capacity change: every ratio of the node times old cap / new cap."""
    cap = nodes[i, CAP]
    mem = mem_now(table, nodes, i, t)
    spike = spike_now(nodes, i, t)
    nodes[i, MEM] = mul_div_nb(mem, cap, new_cap)
    nodes[i, MEM_T] = t
    nodes[i, SPIKE] = mul_div_nb(spike, cap, new_cap)
    nodes[i, SPIKE_T] = t
    nodes[i, LEAK] = mul_div_nb(nodes[i, LEAK], cap, new_cap)
    nodes[i, CPU_BASE] = mul_div_nb(nodes[i, CPU_BASE], cap, new_cap)
    nodes[i, FADE] = mul_div_nb(nodes[i, FADE], cap, new_cap)
    nodes[i, CAP] = new_cap


@njit(inline="always")
def spike_draws(params, seed, t, count):
    """Step t's number of spikes, and the hash states their nodes and sizes are drawn from
    (folded once per step, not per spike)."""
    spikes = int(params.spike_rate * count + uniform(seed, t, 0, STREAM_SPIKE_COUNT))
    step = np.uint64(t)
    return spikes, stream_state(seed, step, STREAM_SPIKE_NODE), \
        stream_state(seed, step, STREAM_SPIKE_SIZE)


@njit(inline="always")
def spike_node(node_stream, j, count):
    """The node spike j lands on, from `spike_draws`' node stream."""
    return min(int(unit_float_nb(fold(node_stream, np.uint64(j))) * count), count - 1)


@njit(inline="always")
def spike_size(params, size_stream, j):
    """The size of spike j (absolute load, ONE units), from `spike_draws`' size stream."""
    size = params.spike_min + (params.spike_max - params.spike_min) \
        * unit_float_nb(fold(size_stream, np.uint64(j)))
    return to_fixed_nb(size, ONE)


@njit(inline="always")
def land_spike(params, table, nodes, i, t, size):
    """A spike lands: the spike load restarts its fade from its value now plus the size. Returns
    True for an overload (cpu >= 1), which also raises the memory pressure."""
    cap = nodes[i, CAP]
    # At the base capacity (most nodes) the size is the ratio; mul_div would divide to find so.
    spike = spike_now(nodes, i, t) + (size if cap == CAP_ONE else mul_div_nb(size, CAP_ONE, cap))
    nodes[i, SPIKE] = spike
    nodes[i, SPIKE_T] = t
    if nodes[i, CPU_BASE] + spike >= ONE:
        nodes[i, MEM] = mem_now(table, nodes, i, t) + params.jump_fx
        nodes[i, MEM_T] = t
        return True
    return False


@njit(inline="always")
def land_spikes(params, table, nodes, seed, t, count):
    """Step t's spikes: a seeded number of them land on seeded nodes. Returns the overloads."""
    overloads = 0
    spikes, node_stream, size_stream = spike_draws(params, seed, t, count)
    for j in range(spikes):
        overloads += land_spike(params, table, nodes, spike_node(node_stream, j, count), t,
                                spike_size(params, size_stream, j))
    return overloads


@njit(inline="always")
def restart_node(params, nodes, i, t):
    """An OOM restart: memory at restart_mem, spikes cleared."""
    nodes[i, MEM] = params.restart_fx
    nodes[i, MEM_T] = t
    nodes[i, SPIKE] = 0
    nodes[i, SPIKE_T] = t


@njit(inline="always")
def no_floor(nodes, i):
    return 0


@njit(inline="always")
def restart_out_of_memory(params, table, nodes, t, count, floor):
    """Rule 4, then the load: a node whose memory reaches ONE restarts (`restart_node`), unless
    it is no more than `floor(nodes, i)`, memory that does not leak (the trace replay's requests;
    `no_floor` for the gardener), which the restart keeps. Returns the OOMs, the critical ones,
    the sum of their priorities and the sum over nodes of the clipped cpu and memory ratios."""
    ooms = 0
    crits = 0
    prio_sum = 0
    load = 0
    for i in range(count):
        mem = mem_now(table, nodes, i, t)
        kept = floor(nodes, i)
        if mem >= ONE and mem > kept:
            ooms += 1
            crits += nodes[i, PRIO] >= params.crit_fx
            prio_sum += nodes[i, PRIO]
            restart_node(params, nodes, i, t)
            nodes[i, MEM] += kept
            mem = nodes[i, MEM]
        load += cpu_now(nodes, i, t) + min(ONE, mem)
    return ooms, crits, prio_sum, load


@njit(inline="always")
def observe_grid(state, params, g, observations):
    """Write the observation of every agent of grid `g` (rows g*A .. g*A+A-1)."""
    height, width = params.height, params.width
    t = state.step[g]
    nodes = state.nodes[g]
    table = params.entropy_integral
    for a in range(params.agents_per_grid):
        row = g * params.agents_per_grid + a
        y, x = state.agent_y[g, a], state.agent_x[g, a]
        k = 0
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width:
                    i = ny * width + nx
                    observations[row, k] = ratio_float_nb(cpu_now(nodes, i, t))
                    observations[row, k + 1] = ratio_float_nb(min(ONE, mem_now(table, nodes, i, t)))
                    observations[row, k + 2] = nodes[i, PRIO] * PRIO_UNIT
                else:
                    observations[row, k] = OUTSIDE
                    observations[row, k + 1] = OUTSIDE
                    observations[row, k + 2] = OUTSIDE
                k += NUM_CHANNELS
        observations[row, OBS_Y] = y / (height - 1.0)
        observations[row, OBS_X] = x / (width - 1.0)
        observations[row, OBS_BUDGET] = state.budget[g]


@njit(inline="always")
def end_step(state, params, g, ooms, crits, prio_sum, overloads, waste, invalid, load,
             truncate_at, auto_reset, start_grid, context, observations, rewards, terminals,
             truncations):
    """Rule 5 and the step's settlement from its integer sums: the budget recovers, then the
    reward, statistics and ending (`settle_grid`). An ended episode auto-resets (when asked):
    `start_grid(state, params, g, context)` is the kernel's start of an episode, `context` what
    it needs beyond the grid. Last, the agents' observations."""
    state.budget[g] = min(1.0, state.budget[g] + params.budget_regen)
    done = settle_grid(state, params, g, ooms, crits, oom_cost_nb(params, ooms, prio_sum),
                       overloads, clean_waste_nb(waste), invalid,
                       mean_load_nb(load, params.height * params.width), truncate_at, rewards,
                       terminals, truncations)
    if done and auto_reset:
        state.episode[g] += np.uint64(1)
        start_grid(state, params, g, context)
    observe_grid(state, params, g, observations)
