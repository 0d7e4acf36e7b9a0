"""The Numba kernel: the whole gardener world, compiled, stepping many grids in parallel.

Grids are independent, so `prange` over grids gives the same bits whatever the thread count.
Arithmetic is float64 on float32 storage, in the exact operation order of `kernels.reference`
(which tests compare against bit for bit); sums run sequentially in node order.
"""
import os

import numba
import numpy as np
from numba import njit, prange

from kernels.rng import (
    STREAM_AGENT_X, STREAM_AGENT_Y, STREAM_BASE_LOAD, STREAM_CRITICAL, STREAM_EPISODE,
    STREAM_LEAK, STREAM_MEM_INIT, STREAM_PRIO, STREAM_SPIKE_COUNT, STREAM_SPIKE_NODE,
    STREAM_SPIKE_SIZE, counter_hash_nb, unit_float_nb,
)
from kernels.world import (
    CLEAN, MOVE_DX, MOVE_DY, NUM_ACTIONS, NUM_CHANNELS, OBS_BUDGET, OBS_X, OBS_Y, OUTSIDE,
    SCALE_FULL, SCALE_HALF,
    STAT_AVG_LOAD, STAT_BUDGET_SPENT, STAT_COLLAPSED, STAT_CRIT, STAT_CRIT_RATE, STAT_INVALID,
    STAT_LENGTH, STAT_OOM, STAT_OOM_RATE, STAT_OVERLOAD, STAT_RETURN,
)

# OpenMP's layer crashes in forked workers (PufferLib's Multiprocessing forks); workqueue does not.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

_U0 = np.uint64(0)


@njit(inline="always")
def _uniform(seed, step, node, stream):
    return unit_float_nb(counter_hash_nb(seed, np.uint64(step), np.uint64(node), stream))


@njit(nogil=True, cache=True)
def _reset_grid(state, params, g):
    """Start a new episode on grid `g` from its grid seed and episode counter."""
    seed = counter_hash_nb(state.grid_seed[g], state.episode[g], _U0, STREAM_EPISODE)
    state.episode_seed[g] = seed
    for i in range(params.height * params.width):
        u = _uniform(seed, 0, i, STREAM_BASE_LOAD)
        state.cpu_base[g, i] = params.base_load_min + (params.base_load_max - params.base_load_min) * u
        u = _uniform(seed, 0, i, STREAM_MEM_INIT)
        state.mem[g, i] = params.mem_init_min + (params.mem_init_max - params.mem_init_min) * u
        u = _uniform(seed, 0, i, STREAM_LEAK)
        state.leak[g, i] = params.leak_min + (params.leak_max - params.leak_min) * (u * u)
        up = _uniform(seed, 0, i, STREAM_PRIO)
        if _uniform(seed, 0, i, STREAM_CRITICAL) < params.crit_fraction:
            state.prio[g, i] = params.crit_threshold + (1.0 - params.crit_threshold) * up
        else:
            state.prio[g, i] = (params.crit_threshold - 0.01) * up
        state.cap[g, i] = 1.0
        state.spike[g, i] = 0.0
    start_agents_and_counters(state, params, g, seed)


@njit(inline="always")
def start_agents_and_counters(state, params, g, seed):
    """A new episode's gardener positions, full budget, and zeroed episode counters."""
    for a in range(params.agents_per_grid):
        state.agent_y[g, a] = int(_uniform(seed, 0, a, STREAM_AGENT_Y) * params.height)
        state.agent_x[g, a] = int(_uniform(seed, 0, a, STREAM_AGENT_X) * params.width)
    state.budget[g] = params.budget_init
    state.step[g] = 0
    state.ep_return[g] = 0.0
    state.ep_oom[g] = 0
    state.ep_crit[g] = 0
    state.ep_overload[g] = 0
    state.ep_invalid[g] = 0
    state.ep_load_sum[g] = 0.0
    state.ep_spent[g] = 0.0


@njit(nogil=True, cache=True)
def _observe_grid(state, params, g, observations):
    """Write the observation of every agent of grid `g` (rows g*A .. g*A+A-1)."""
    height, width = params.height, params.width
    for a in range(params.agents_per_grid):
        row = g * params.agents_per_grid + a
        y, x = state.agent_y[g, a], state.agent_x[g, a]
        k = 0
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width:
                    i = ny * width + nx
                    cap = np.float64(state.cap[g, i])
                    cpu = (np.float64(state.cpu_base[g, i]) + np.float64(state.spike[g, i])) / cap
                    observations[row, k] = min(1.0, cpu)
                    observations[row, k + 1] = min(1.0, np.float64(state.mem[g, i]) / cap)
                    observations[row, k + 2] = state.prio[g, i]
                else:
                    observations[row, k] = OUTSIDE
                    observations[row, k + 1] = OUTSIDE
                    observations[row, k + 2] = OUTSIDE
                k += NUM_CHANNELS
        observations[row, OBS_Y] = y / (height - 1.0)
        observations[row, OBS_X] = x / (width - 1.0)
        observations[row, OBS_BUDGET] = state.budget[g]


@njit(nogil=True, cache=True)
def _finish_episode(state, g, length, collapsed):
    stats = state.last_stats[g]
    stats[STAT_RETURN] = state.ep_return[g]
    stats[STAT_LENGTH] = length
    stats[STAT_OOM] = state.ep_oom[g]
    stats[STAT_CRIT] = state.ep_crit[g]
    stats[STAT_OVERLOAD] = state.ep_overload[g]
    stats[STAT_OOM_RATE] = 100.0 * state.ep_oom[g] / length
    stats[STAT_CRIT_RATE] = 100.0 * state.ep_crit[g] / length
    stats[STAT_AVG_LOAD] = state.ep_load_sum[g] / length
    stats[STAT_BUDGET_SPENT] = state.ep_spent[g]
    stats[STAT_COLLAPSED] = 1.0 if collapsed else 0.0
    stats[STAT_INVALID] = state.ep_invalid[g]
    for k in range(stats.shape[0]):
        state.finished_sum[g, k] += stats[k]
    state.finished_count[g] += 1


@njit(inline="always")
def scale_node(state, params, g, a, action):
    """SCALE_HALF / SCALE_FULL on agent a's node, partial when the budget is short.
    Returns 1 when nothing could be added (the node at cap_max, or no budget): invalid."""
    unit = 0.5 if action == SCALE_HALF else 1.0
    i = state.agent_y[g, a] * params.width + state.agent_x[g, a]
    added = min(unit, params.cap_max - np.float64(state.cap[g, i]))
    cost = params.scale_cost * added
    if added > 0.0 and state.budget[g] < cost:
        added = added * (state.budget[g] / cost)
        cost = state.budget[g]
    if added <= 0.0:
        return 1
    state.budget[g] -= cost
    state.ep_spent[g] += cost
    state.cap[g, i] = np.float64(state.cap[g, i]) + added
    return 0


@njit(inline="always")
def move_agent(state, params, g, a, action):
    """A move action (NOOP included); at the edge the agent stays."""
    ny = state.agent_y[g, a] + MOVE_DY[action]
    nx = state.agent_x[g, a] + MOVE_DX[action]
    if 0 <= ny < params.height and 0 <= nx < params.width:
        state.agent_y[g, a] = ny
        state.agent_x[g, a] = nx


@njit(inline="always")
def settle_grid(state, params, g, ooms, crits, oom_cost, overloads, clean_waste, invalid,
                mean_load, truncate_at, rewards, terminals, truncations):
    """The step's reward, statistics and ending for grid g; writes every agent's outputs.
    Returns True when the episode ended (its statistics are then recorded)."""
    state.ep_oom[g] += ooms
    state.ep_crit[g] += crits
    state.ep_overload[g] += overloads
    state.ep_invalid[g] += invalid
    state.ep_load_sum[g] += mean_load
    penalties = oom_cost + params.overload_penalty * overloads \
        + params.clean_waste_penalty * clean_waste + params.invalid_penalty * invalid
    reward = params.health_bonus * (1.0 - mean_load) - penalties
    terminal = state.ep_crit[g] >= params.crit_limit or state.ep_oom[g] >= params.oom_collapse_count
    if terminal:
        reward -= params.collapse_penalty
    t = state.step[g]
    truncated = (not terminal) and t >= truncate_at
    state.ep_return[g] += reward
    for a in range(params.agents_per_grid):
        row = g * params.agents_per_grid + a
        rewards[row] = reward
        terminals[row] = terminal
        truncations[row] = truncated
    if terminal or truncated:
        _finish_episode(state, g, t, terminal)
        return True
    return False


@njit(nogil=True, cache=True)
def _step_grid(state, params, g, actions, observations, rewards, terminals, truncations, auto_reset):
    height, width = params.height, params.width
    nodes = height * width
    seed = state.episode_seed[g]
    invalid = 0
    clean_waste = 0.0

    # 1. Actions, agent by agent, paid from the shared budget.
    for a in range(params.agents_per_grid):
        action = actions[g * params.agents_per_grid + a]
        if action < 0 or action >= NUM_ACTIONS:
            invalid += 1
        elif action == CLEAN:
            if state.budget[g] >= params.clean_cost:
                state.budget[g] -= params.clean_cost
                state.ep_spent[g] += params.clean_cost
                keep = 1.0 - params.clean_fraction
                y, x = state.agent_y[g, a], state.agent_x[g, a]
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < height and 0 <= nx < width:
                            i = ny * width + nx
                            ratio = np.float64(state.mem[g, i]) / np.float64(state.cap[g, i])
                            clean_waste += max(0.0, params.clean_useful_mem - ratio)
                            state.mem[g, i] = np.float64(state.mem[g, i]) * keep
                            state.spike[g, i] = np.float64(state.spike[g, i]) * keep
            else:
                invalid += 1
        elif action == SCALE_HALF or action == SCALE_FULL:
            invalid += scale_node(state, params, g, a, action)
        else:
            move_agent(state, params, g, a, action)

    # 2. Time advances; every node leaks, faster as the episode goes on (the Red Queen).
    t = state.step[g] + 1
    state.step[g] = t
    entropy = 1.0 + t / params.red_queen_horizon
    for i in range(nodes):
        state.mem[g, i] = np.float64(state.mem[g, i]) + np.float64(state.leak[g, i]) * entropy
        state.spike[g, i] = np.float64(state.spike[g, i]) * params.spike_decay

    # 3. New CPU spikes land; one that pushes cpu to 1 or more is an overload.
    overloads = 0
    count = int(params.spike_rate * nodes + _uniform(seed, t, 0, STREAM_SPIKE_COUNT))
    for j in range(count):
        i = min(int(_uniform(seed, t, j, STREAM_SPIKE_NODE) * nodes), nodes - 1)
        size = params.spike_min + (params.spike_max - params.spike_min) * _uniform(seed, t, j, STREAM_SPIKE_SIZE)
        state.spike[g, i] = np.float64(state.spike[g, i]) + size
        cap = np.float64(state.cap[g, i])
        if (np.float64(state.cpu_base[g, i]) + np.float64(state.spike[g, i])) / cap >= 1.0:
            overloads += 1
            state.mem[g, i] = np.float64(state.mem[g, i]) + params.overload_mem_jump * cap

    # 4. Out-of-memory nodes restart; the penalty grows with priority.
    ooms = 0
    crits = 0
    oom_cost = 0.0
    load_sum = 0.0
    for i in range(nodes):
        cap = np.float64(state.cap[g, i])
        if np.float64(state.mem[g, i]) / cap >= 1.0:
            prio = np.float64(state.prio[g, i])
            ooms += 1
            if prio >= params.crit_threshold:
                crits += 1
            oom_cost += params.oom_penalty * (1.0 + params.crit_weight * prio)
            state.mem[g, i] = params.restart_mem * cap
            state.spike[g, i] = 0.0
        cpu = min(1.0, (np.float64(state.cpu_base[g, i]) + np.float64(state.spike[g, i])) / cap)
        mem = min(1.0, np.float64(state.mem[g, i]) / cap)
        load_sum += 0.5 * (cpu + mem)
    mean_load = load_sum / nodes

    # 5. The budget recovers slowly.
    state.budget[g] = min(1.0, state.budget[g] + params.budget_regen)

    # Reward, statistics, and the end of the episode.
    done = settle_grid(state, params, g, ooms, crits, oom_cost, overloads, clean_waste, invalid,
                       mean_load, params.max_steps, rewards, terminals, truncations)
    if done and auto_reset:
        state.episode[g] += np.uint64(1)
        _reset_grid(state, params, g)
    _observe_grid(state, params, g, observations)


def _reset_grids(state, params, observations):
    for g in prange(state.step.shape[0]):
        _reset_grid(state, params, g)
        _observe_grid(state, params, g, observations)


def _step(state, params, actions, observations, rewards, terminals, truncations, auto_reset):
    for g in prange(state.step.shape[0]):
        _step_grid(state, params, g, actions, observations, rewards, terminals, truncations,
                   auto_reset)


def _reset_grids_one_thread(state, params, observations):
    for g in range(state.step.shape[0]):
        _reset_grid(state, params, g)
        _observe_grid(state, params, g, observations)


def _step_one_thread(state, params, actions, observations, rewards, terminals, truncations,
                     auto_reset):
    for g in range(state.step.shape[0]):
        _step_grid(state, params, g, actions, observations, rewards, terminals, truncations,
                   auto_reset)


# Many grids: one thread per chunk of grids. One grid (the Gymnasium env): no thread start-up.
# Separate Python functions, not one compiled twice: Numba's on-disk cache is keyed by the
# function, so a parallel and a serial build of one function would load each other's code.
reset_grids = njit(parallel=True, nogil=True, cache=True)(_reset_grids)
step = njit(parallel=True, nogil=True, cache=True)(_step)
reset_grids_serial = njit(nogil=True, cache=True)(_reset_grids_one_thread)
step_serial = njit(nogil=True, cache=True)(_step_one_thread)
