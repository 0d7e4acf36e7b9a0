"""Numba pieces shared by the gardener kernels (`kernels.dense`, `kernels.event`) and the trace
replay's kernel (`kernels.replay`): a new episode's agents and counters, moves, and the step's
settlement (reward, statistics, endings). Importing it selects Numba's fork-safe threading layer.
"""
import os

import numba
import numpy as np
from numba import njit

from puffer_cluster.kernels.rng import STREAM_AGENT_X, STREAM_AGENT_Y, counter_hash_nb, unit_float_nb
from puffer_cluster.kernels.world import (
    MOVE_DX, MOVE_DY, STAT_AVG_LOAD, STAT_BUDGET_SPENT, STAT_COLLAPSED, STAT_CRIT,
    STAT_CRIT_RATE, STAT_INVALID, STAT_LENGTH, STAT_OOM, STAT_OOM_RATE, STAT_OVERLOAD,
    STAT_RETURN,
)

# OpenMP's layer crashes in forked workers (PufferLib's Multiprocessing forks); workqueue does not.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


@njit(inline="always")
def uniform(seed, step, node, stream):
    return unit_float_nb(counter_hash_nb(seed, np.uint64(step), np.uint64(node), stream))


@njit(inline="always")
def start_agents_and_counters(state, params, g, seed):
    """A new episode's gardener positions, full budget, and zeroed episode counters."""
    for a in range(params.agents_per_grid):
        state.agent_y[g, a] = int(uniform(seed, 0, a, STREAM_AGENT_Y) * params.height)
        state.agent_x[g, a] = int(uniform(seed, 0, a, STREAM_AGENT_X) * params.width)
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


