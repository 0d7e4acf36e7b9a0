"""World v2's rules on one node record, compiled: what the dense kernel (`kernels.dense`) does
to every node and the event kernel (`kernels.event`) to the nodes an event touches, in the
NumPy reference's arithmetic (`kernels.reference`), so that all three agree bit for bit.

A record is a view `state.nodes[g, i]`; every rule evaluates the closed forms at step `t`,
changes the node, and stores the new values with `t` as the node's event time.
"""
import numpy as np
from numba import njit

from kernels.fast import start_agents_and_counters, uniform
from kernels.fixed import (
    CAP, CAP_ONE, CPU_BASE, FADE, FRACTION_ONE, LEAK, MEM, MEM_T, ONE, PRIO, PRIO_UNIT, SPIKE,
    SPIKE_T, cpu_at_nb, entropy_integral_nb, initial_node_nb, mem_at_nb, mul_div_nb,
    ratio_float_nb, spike_at_nb, to_fixed_nb,
)
from kernels.rng import (
    STREAM_BASE_LOAD, STREAM_CRITICAL, STREAM_EPISODE, STREAM_LEAK, STREAM_MEM_INIT,
    STREAM_PRIO, STREAM_SPIKE_NODE, STREAM_SPIKE_SIZE, counter_hash_nb,
)
from kernels.world import NUM_CHANNELS, OUTSIDE, SCALE_HALF

_U0 = np.uint64(0)
CAP_UNIT = 1.0 / CAP_ONE


@njit(inline="always")
def mem_now(params, rec, t):
    return mem_at_nb(rec[MEM], rec[LEAK], entropy_integral_nb(params, t),
                     entropy_integral_nb(params, rec[MEM_T]))


@njit(inline="always")
def spike_now(rec, t):
    return spike_at_nb(rec[SPIKE], rec[FADE], t - rec[SPIKE_T])


@njit(inline="always")
def cpu_now(rec, t):
    return cpu_at_nb(rec[CPU_BASE], rec[SPIKE], rec[FADE], t - rec[SPIKE_T])


@njit(inline="always")
def start_episode(state, params, g):
    """A new episode on grid g: every node drawn from the episode seed, agents and counters."""
    seed = counter_hash_nb(state.grid_seed[g], state.episode[g], _U0, STREAM_EPISODE)
    state.episode_seed[g] = seed
    for i in range(params.height * params.width):
        base, mem, leak, prio = initial_node_nb(
            params, uniform(seed, 0, i, STREAM_BASE_LOAD), uniform(seed, 0, i, STREAM_MEM_INIT),
            uniform(seed, 0, i, STREAM_LEAK), uniform(seed, 0, i, STREAM_PRIO),
            uniform(seed, 0, i, STREAM_CRITICAL))
        rec = state.nodes[g, i]
        rec[:] = 0
        rec[MEM] = mem
        rec[LEAK] = leak
        rec[CPU_BASE] = base
        rec[FADE] = params.fade_fx
        rec[CAP] = CAP_ONE
        rec[PRIO] = prio
    start_agents_and_counters(state, params, g, seed)


@njit(inline="always")
def clean_node(params, rec, t):
    """CLEAN on one node: memory and spike load keep (1 - clean_fraction). Returns the waste,
    max(0, clean_useful_mem - mem), in ratio units."""
    mem = mem_now(params, rec, t)
    rec[SPIKE] = mul_div_nb(spike_now(rec, t), params.keep_fx, FRACTION_ONE)
    rec[SPIKE_T] = t
    rec[MEM] = mul_div_nb(mem, params.keep_fx, FRACTION_ONE)
    rec[MEM_T] = t
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
def rescale_node(params, rec, t, new_cap):
    """A capacity change: every ratio of the node times old cap / new cap."""
    cap = rec[CAP]
    mem = mem_now(params, rec, t)
    spike = spike_now(rec, t)
    rec[MEM] = mul_div_nb(mem, cap, new_cap)
    rec[MEM_T] = t
    rec[SPIKE] = mul_div_nb(spike, cap, new_cap)
    rec[SPIKE_T] = t
    rec[LEAK] = mul_div_nb(rec[LEAK], cap, new_cap)
    rec[CPU_BASE] = mul_div_nb(rec[CPU_BASE], cap, new_cap)
    rec[FADE] = mul_div_nb(rec[FADE], cap, new_cap)
    rec[CAP] = new_cap


@njit(inline="always")
def draw_spike(params, seed, t, j, nodes):
    """Spike j of step t: its node and its size (absolute load, ONE units)."""
    i = min(int(uniform(seed, t, j, STREAM_SPIKE_NODE) * nodes), nodes - 1)
    size = params.spike_min + (params.spike_max - params.spike_min) \
        * uniform(seed, t, j, STREAM_SPIKE_SIZE)
    return i, to_fixed_nb(size, ONE)


@njit(inline="always")
def land_spike(params, rec, t, size):
    """A spike lands: the spike load restarts its fade from its value now plus the size. Returns
    True for an overload (cpu >= 1), which also raises the memory pressure."""
    spike = spike_now(rec, t) + mul_div_nb(size, CAP_ONE, rec[CAP])
    rec[SPIKE] = spike
    rec[SPIKE_T] = t
    if rec[CPU_BASE] + spike >= ONE:
        rec[MEM] = mem_now(params, rec, t) + params.jump_fx
        rec[MEM_T] = t
        return True
    return False


@njit(inline="always")
def restart_node(params, rec, t):
    """An OOM restart: memory at restart_mem, spikes cleared."""
    rec[MEM] = params.restart_fx
    rec[MEM_T] = t
    rec[SPIKE] = 0
    rec[SPIKE_T] = t


@njit(inline="always")
def observe_grid(state, params, g, observations):
    """Write the observation of every agent of grid `g` (rows g*A .. g*A+A-1)."""
    height, width = params.height, params.width
    t = state.step[g]
    for a in range(params.agents_per_grid):
        row = g * params.agents_per_grid + a
        y, x = state.agent_y[g, a], state.agent_x[g, a]
        k = 0
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width:
                    rec = state.nodes[g, ny * width + nx]
                    observations[row, k] = ratio_float_nb(cpu_now(rec, t))
                    observations[row, k + 1] = ratio_float_nb(min(ONE, mem_now(params, rec, t)))
                    observations[row, k + 2] = rec[PRIO] * PRIO_UNIT
                else:
                    observations[row, k] = OUTSIDE
                    observations[row, k + 1] = OUTSIDE
                    observations[row, k + 2] = OUTSIDE
                k += NUM_CHANNELS
        observations[row, k] = y / (height - 1.0)
        observations[row, k + 1] = x / (width - 1.0)
        observations[row, k + 2] = state.budget[g]
