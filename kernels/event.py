"""The event-driven Numba kernel of World v2: a step costs the agents' actions, their 3x3 views
and the events that fall due (spike landings, cpu phase changes, OOMs), not the node count.

Each grid keeps exact integer sums of its nodes' memory and clipped cpu ratios, and how fast
they move: memory rises by (G[t] - G[t-1]) * the sum of leak rates, the cpu sum falls by the
sum of the fading nodes' slopes. A node's clipped cpu is piecewise linear between events:
saturated (cpu >= 1, contributes ONE), fading (contributes base + spike, falling by its fade per
step) or flat (base); the step a node leaves a phase is a cpu event. A node's OOM is the first
step its closed-form memory reaches ONE, found by a binary search over the G table whenever its
memory changes. Events wait in two timing wheels per grid (cpu, OOM), one slot per step of the
episode, each slot the head of an intrusive doubly linked list through the node records, so
(re)scheduling is O(1) and a node is in at most one slot of each wheel: the queue never holds
more than 2 entries per node. Every change goes through `kernels.rules`, the dense kernel's
own arithmetic, so both give the same bits.
"""
import numpy as np
from numba import njit, prange

from kernels.dense import apply_actions
from kernels.fast import settle_grid
from kernels.fixed import (
    CPU_BASE, CPU_DUE, CPU_NEXT, CPU_PREV, FADE, LEAK, MEM, MEM_T, NEVER, ONE, OOM_DUE,
    OOM_NEXT, OOM_PREV, PRIO, SLOPE, SPIKE, SPIKE_T, clean_waste_nb, entropy_integral_nb,
    mean_load_nb, oom_cost_nb,
)
from kernels.rng import STREAM_SPIKE_COUNT
from kernels.rules import (
    cpu_now, draw_spike, land_spike, mem_now, observe_grid, restart_node, start_episode, uniform,
)

CPU_WHEEL, OOM_WHEEL = 0, 1


@njit(inline="always")
def first_oom_step(params, rec, t_from):
    """The first step t >= t_from at which the node's memory reaches ONE, or NEVER within the
    episode: G is increasing, so a binary search over the table."""
    need = ONE - mem_now(params, rec, t_from)
    if need <= 0:
        return t_from
    leak = rec[LEAK]
    if leak == 0 or t_from >= params.max_steps:
        return NEVER
    table = params.entropy_integral
    target = table[t_from] + (need + leak - 1) // leak
    lo, hi = t_from + 1, params.max_steps + 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if table[mid] >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo if lo <= params.max_steps else NEVER


@njit(inline="always")
def cpu_phase(params, rec, t):
    """The node's cpu phase from step t on: (slope, due), the per-step fall of its clipped cpu
    and the step the phase ends (NEVER: not within the episode)."""
    base, spike, fade = rec[CPU_BASE], rec[SPIKE], rec[FADE]
    if fade == 0 or base >= ONE:
        return 0, NEVER
    age = t - rec[SPIKE_T]
    left = spike - min(spike, fade * age)
    if base + left >= ONE:  # saturated until base + spike - fade * age < ONE
        slope, due = 0, rec[SPIKE_T] + (base + spike - ONE) // fade + 1
    elif left > 0:  # fading until the spike load reaches 0
        slope, due = fade, rec[SPIKE_T] + (spike + fade - 1) // fade
    else:
        return 0, NEVER
    return slope, due if due <= params.max_steps else NEVER


@njit(inline="always")
def _unlink(state, g, i, wheel, due_field, next_field, prev_field):
    nodes = state.nodes[g]
    due = nodes[i, due_field]
    if due == NEVER:
        return
    after, before = nodes[i, next_field], nodes[i, prev_field]
    if before == NEVER:
        state.wheel[g, wheel, due] = after
    else:
        nodes[before, next_field] = after
    if after != NEVER:
        nodes[after, prev_field] = before
    nodes[i, due_field] = NEVER


@njit(inline="always")
def _link(state, g, i, due, wheel, due_field, next_field, prev_field):
    nodes = state.nodes[g]
    nodes[i, due_field] = due
    if due == NEVER:
        return
    head = state.wheel[g, wheel, due]
    nodes[i, next_field] = head
    nodes[i, prev_field] = NEVER
    if head != NEVER:
        nodes[head, prev_field] = i
    state.wheel[g, wheel, due] = i


@njit(inline="always")
def _cpu_out(state, g, i, t):
    """Take node i's clipped cpu out of the grid's sum (its phase is current at t)."""
    rec = state.nodes[g, i]
    state.cpu_sum[g] -= cpu_now(rec, t)
    state.cpu_slope[g] -= rec[SLOPE]
    _unlink(state, g, i, CPU_WHEEL, CPU_DUE, CPU_NEXT, CPU_PREV)


@njit(inline="always")
def _cpu_in(state, params, g, i, t):
    """Put node i's clipped cpu into the grid's sum and schedule its phase change."""
    rec = state.nodes[g, i]
    slope, due = cpu_phase(params, rec, t)
    state.cpu_sum[g] += cpu_now(rec, t)
    state.cpu_slope[g] += slope
    rec[SLOPE] = slope
    _link(state, g, i, due, CPU_WHEEL, CPU_DUE, CPU_NEXT, CPU_PREV)


@njit(inline="always")
def _schedule_oom(state, params, g, i, t_from):
    _unlink(state, g, i, OOM_WHEEL, OOM_DUE, OOM_NEXT, OOM_PREV)
    _link(state, g, i, first_oom_step(params, state.nodes[g, i], t_from), OOM_WHEEL, OOM_DUE,
          OOM_NEXT, OOM_PREV)


@njit(inline="always")
def _action_hook(state, params, g, i, before):
    """Around an action's change to node i at the current step t: out of the sums before, back
    in after, with its events rescheduled (its next OOM check is at t + 1)."""
    t = state.step[g]
    rec = state.nodes[g, i]
    if before:
        state.mem_sum[g] -= mem_now(params, rec, t)
        state.mem_rate[g] -= rec[LEAK]
        _cpu_out(state, g, i, t)
    else:
        state.mem_sum[g] += mem_now(params, rec, t)
        state.mem_rate[g] += rec[LEAK]
        _cpu_in(state, params, g, i, t)
        _schedule_oom(state, params, g, i, t + 1)


@njit(inline="always")
def _rebuild_grid(state, params, g):
    """The sums and both wheels of grid g from its node records at its current step."""
    t = state.step[g]
    state.wheel[g] = NEVER
    state.mem_sum[g] = 0
    state.mem_rate[g] = 0
    state.cpu_sum[g] = 0
    state.cpu_slope[g] = 0
    for i in range(params.height * params.width):
        rec = state.nodes[g, i]
        rec[SLOPE] = 0
        rec[CPU_DUE] = NEVER
        rec[OOM_DUE] = NEVER
        _action_hook(state, params, g, i, False)


@njit(inline="always")
def _cpu_events(state, params, g, t):
    """The cpu phase changes due at t: each node's contribution moves to its next phase."""
    i = state.wheel[g, CPU_WHEEL, t]
    state.wheel[g, CPU_WHEEL, t] = NEVER
    while i != NEVER:
        rec = state.nodes[g, i]
        after = rec[CPU_NEXT]
        rec[CPU_DUE] = NEVER
        # What the sum holds for it: ONE while saturated, the fading line while fading.
        slope = rec[SLOPE]
        held = ONE if slope == 0 else rec[CPU_BASE] + rec[SPIKE] - slope * (t - rec[SPIKE_T])
        state.cpu_sum[g] -= held
        state.cpu_slope[g] -= slope
        _cpu_in(state, params, g, i, t)
        i = after


@njit(nogil=True, cache=True)
def _step_grid(state, params, g, actions, observations, rewards, terminals, truncations, auto_reset):
    nodes = params.height * params.width
    invalid, waste = apply_actions(state, params, g, actions, _action_hook)

    # 2. Time advances: the sums follow their rates.
    t = state.step[g] + 1
    state.step[g] = t
    state.mem_sum[g] += (entropy_integral_nb(params, t) - entropy_integral_nb(params, t - 1)) \
        * state.mem_rate[g]
    state.cpu_sum[g] -= state.cpu_slope[g]
    _cpu_events(state, params, g, t)

    # 3. New CPU spikes land; an overload's memory jump moves the node's OOM.
    seed = state.episode_seed[g]
    overloads = 0
    count = int(params.spike_rate * nodes + uniform(seed, t, 0, STREAM_SPIKE_COUNT))
    for j in range(count):
        i, size = draw_spike(params, seed, t, j, nodes)
        _cpu_out(state, g, i, t)
        if land_spike(params, state.nodes[g, i], t, size):
            overloads += 1
            state.mem_sum[g] += params.jump_fx
            _schedule_oom(state, params, g, i, t)
        _cpu_in(state, params, g, i, t)

    # 4. The OOMs due now.
    ooms = 0
    crits = 0
    prio_sum = 0
    i = state.wheel[g, OOM_WHEEL, t]
    state.wheel[g, OOM_WHEEL, t] = NEVER
    while i != NEVER:
        rec = state.nodes[g, i]
        after = rec[OOM_NEXT]
        rec[OOM_DUE] = NEVER
        ooms += 1
        crits += rec[PRIO] >= params.crit_fx
        prio_sum += rec[PRIO]
        state.mem_sum[g] += params.restart_fx - mem_now(params, rec, t)
        _cpu_out(state, g, i, t)
        restart_node(params, rec, t)
        _cpu_in(state, params, g, i, t)
        _schedule_oom(state, params, g, i, t + 1)
        i = after
    load = state.mem_sum[g] + state.cpu_sum[g]

    # 5. The budget recovers slowly.
    state.budget[g] = min(1.0, state.budget[g] + params.budget_regen)

    done = settle_grid(state, params, g, ooms, crits, oom_cost_nb(params, ooms, prio_sum),
                       overloads, clean_waste_nb(waste), invalid, mean_load_nb(load, nodes),
                       params.max_steps, rewards, terminals, truncations)
    if done and auto_reset:
        state.episode[g] += np.uint64(1)
        start_episode(state, params, g)
        _rebuild_grid(state, params, g)
    observe_grid(state, params, g, observations)


@njit(nogil=True, cache=True)
def _reset_grid(state, params, g, observations):
    start_episode(state, params, g)
    _rebuild_grid(state, params, g)
    observe_grid(state, params, g, observations)


@njit(nogil=True, cache=True)
def rebuild_grids(state, params):
    """Recompute every grid's sums and wheels from its node records: after editing the records
    by hand (tests), before the next step."""
    for g in range(state.step.shape[0]):
        _rebuild_grid(state, params, g)


def _reset_grids(state, params, observations):
    for g in prange(state.step.shape[0]):
        _reset_grid(state, params, g, observations)


def _step(state, params, actions, observations, rewards, terminals, truncations, auto_reset):
    for g in prange(state.step.shape[0]):
        _step_grid(state, params, g, actions, observations, rewards, terminals, truncations,
                   auto_reset)


def _reset_grids_one_thread(state, params, observations):
    for g in range(state.step.shape[0]):
        _reset_grid(state, params, g, observations)


def _step_one_thread(state, params, actions, observations, rewards, terminals, truncations,
                     auto_reset):
    for g in range(state.step.shape[0]):
        _step_grid(state, params, g, actions, observations, rewards, terminals, truncations,
                   auto_reset)


# As in kernels.dense: parallel over grids, and a serial build for one grid.
reset_grids = njit(parallel=True, nogil=True, cache=True)(_reset_grids)
step = njit(parallel=True, nogil=True, cache=True)(_step)
reset_grids_serial = njit(nogil=True, cache=True)(_reset_grids_one_thread)
step_serial = njit(nogil=True, cache=True)(_step_one_thread)
