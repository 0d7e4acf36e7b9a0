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
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from puffer_cluster.kernels.dense import CHUNK, apply_actions
from puffer_cluster.kernels.fast import settle_grid
from puffer_cluster.kernels.fixed import (
    CPU_BASE, CPU_DUE, CPU_NEXT, CPU_PREV, FADE, LEAK, NEVER, ONE, OOM_DUE, OOM_NEXT, OOM_PREV,
    PRIO, SLOPE, SPIKE, SPIKE_T, clean_waste_nb, entropy_integral_nb, mean_load_nb, oom_cost_nb,
)
from puffer_cluster.kernels.rng import STREAM_SPIKE_COUNT, STREAM_SPIKE_NODE
from puffer_cluster.kernels.rules import (
    cpu_now, draw_spike, land_spike, mem_now, observe_grid, restart_node, start_episode, uniform,
)

# Rows of state.sums[g], and the two wheels of state.wheel[g].
MEM_SUM, MEM_RATE, CPU_SUM, CPU_SLOPE = range(4)
CPU_WHEEL, OOM_WHEEL = 0, 1
SECOND_LINE = 8  # the field that starts a node record's second 64-byte cache line


@intrinsic
def _prefetch(typingctx, array, row, column):
    """A hint to the CPU to load array[row, column]'s cache line (LLVM's prefetch)."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array_value = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array_value, args[1:])
        byte_pointer, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
            "llvm.prefetch.p0")
        builder.call(function, [builder.bitcast(pointer, byte_pointer), ir.Constant(i32, 0),
                                ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(array, row, column), codegen


@njit(inline="always")
def _prefetch_grid(state, params, g):
    """Start loading what grid g's next step will touch at random (its spikes' records, its
    wheels' slots, its gardeners' views) while the previous grid steps: a grid's records are
    far apart in memory, and these loads, not the arithmetic, bound the event kernel."""
    count = params.height * params.width
    nodes, wheel = state.nodes[g], state.wheel[g]
    t = state.step[g] + 1
    if t <= params.max_steps:
        _prefetch(wheel, CPU_WHEEL, t)
        _prefetch(wheel, OOM_WHEEL, t)
    seed = state.episode_seed[g]
    for j in range(int(params.spike_rate * count + uniform(seed, t, 0, STREAM_SPIKE_COUNT))):
        i = min(int(uniform(seed, t, j, STREAM_SPIKE_NODE) * count), count - 1)
        _prefetch(nodes, i, 0)
        _prefetch(nodes, i, SECOND_LINE)
    for a in range(params.agents_per_grid):
        for dy in range(-1, 2):
            y = state.agent_y[g, a] + dy
            if 0 <= y < params.height:
                first = y * params.width + max(0, state.agent_x[g, a] - 1)
                last = y * params.width + min(params.width - 1, state.agent_x[g, a] + 1)
                for i in range(first, last + 1):
                    _prefetch(nodes, i, 0)
                    _prefetch(nodes, i, SECOND_LINE)


@njit(inline="always")
def first_oom_step(params, table, nodes, i, t_from):
    """The first step t >= t_from at which node i's memory reaches ONE, or NEVER within the
    episode: G is increasing, so a binary search over the table."""
    need = ONE - mem_now(table, nodes, i, t_from)
    if need <= 0:
        return t_from
    leak = nodes[i, LEAK]
    if leak == 0 or t_from >= params.max_steps:
        return NEVER
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
def cpu_phase(params, nodes, i, t):
    """Node i's cpu phase from step t on: (slope, due), the per-step fall of its clipped cpu and
    the step the phase ends (NEVER: not within the episode)."""
    base, spike, fade = nodes[i, CPU_BASE], nodes[i, SPIKE], nodes[i, FADE]
    if fade == 0 or base >= ONE:
        return 0, NEVER
    left = spike - min(spike, fade * (t - nodes[i, SPIKE_T]))
    if base + left >= ONE:  # saturated until base + spike - fade * age < ONE
        slope, due = 0, nodes[i, SPIKE_T] + (base + spike - ONE) // fade + 1
    elif left > 0:  # fading until the spike load reaches 0
        slope, due = fade, nodes[i, SPIKE_T] + (spike + fade - 1) // fade
    else:
        return 0, NEVER
    return slope, due if due <= params.max_steps else NEVER


@njit(inline="always")
def _unlink(nodes, wheel, i, kind, due_field, next_field, prev_field):
    due = nodes[i, due_field]
    if due == NEVER:
        return
    after, before = nodes[i, next_field], nodes[i, prev_field]
    if before == NEVER:
        wheel[kind, due] = after
    else:
        nodes[before, next_field] = after
    if after != NEVER:
        nodes[after, prev_field] = before
    nodes[i, due_field] = NEVER


@njit(inline="always")
def _link(nodes, wheel, i, due, kind, due_field, next_field, prev_field):
    nodes[i, due_field] = due
    if due == NEVER:
        return
    head = wheel[kind, due]
    nodes[i, next_field] = head
    nodes[i, prev_field] = NEVER
    if head != NEVER:
        nodes[head, prev_field] = i
    wheel[kind, due] = i


@njit(inline="always")
def _cpu_out(sums, nodes, wheel, i, t):
    """Take node i's clipped cpu out of the grid's sum (its phase is current at t)."""
    sums[CPU_SUM] -= cpu_now(nodes, i, t)
    sums[CPU_SLOPE] -= nodes[i, SLOPE]
    _unlink(nodes, wheel, i, CPU_WHEEL, CPU_DUE, CPU_NEXT, CPU_PREV)


@njit(inline="always")
def _cpu_in(params, sums, nodes, wheel, i, t):
    """Put node i's clipped cpu into the grid's sum and schedule its phase change."""
    slope, due = cpu_phase(params, nodes, i, t)
    sums[CPU_SUM] += cpu_now(nodes, i, t)
    sums[CPU_SLOPE] += slope
    nodes[i, SLOPE] = slope
    _link(nodes, wheel, i, due, CPU_WHEEL, CPU_DUE, CPU_NEXT, CPU_PREV)


@njit(inline="always")
def _schedule_oom(params, table, nodes, wheel, i, t_from):
    _unlink(nodes, wheel, i, OOM_WHEEL, OOM_DUE, OOM_NEXT, OOM_PREV)
    _link(nodes, wheel, i, first_oom_step(params, table, nodes, i, t_from), OOM_WHEEL, OOM_DUE,
          OOM_NEXT, OOM_PREV)


@njit(inline="always")
def _node_out(params, table, sums, nodes, wheel, i, t):
    sums[MEM_SUM] -= mem_now(table, nodes, i, t)
    sums[MEM_RATE] -= nodes[i, LEAK]
    _cpu_out(sums, nodes, wheel, i, t)


@njit(inline="always")
def _node_in(params, table, sums, nodes, wheel, i, t):
    """Node i back into the sums after a change at step t; its next OOM check is at t + 1."""
    sums[MEM_SUM] += mem_now(table, nodes, i, t)
    sums[MEM_RATE] += nodes[i, LEAK]
    _cpu_in(params, sums, nodes, wheel, i, t)
    _schedule_oom(params, table, nodes, wheel, i, t + 1)


@njit(inline="always")
def _action_hook(state, params, g, i, before):
    """Around an action's change to node i at the current step: out of the sums before, back
    in after, with its events rescheduled."""
    if before:
        _node_out(params, params.entropy_integral, state.sums[g], state.nodes[g],
                  state.wheel[g], i, state.step[g])
    else:
        _node_in(params, params.entropy_integral, state.sums[g], state.nodes[g],
                 state.wheel[g], i, state.step[g])


@njit(inline="always")
def _rebuild_grid(state, params, g):
    """The sums and both wheels of grid g from its node records at its current step."""
    t = state.step[g]
    sums, nodes, wheel = state.sums[g], state.nodes[g], state.wheel[g]
    table = params.entropy_integral
    wheel[:, :] = NEVER
    sums[:] = 0
    for i in range(params.height * params.width):
        nodes[i, SLOPE] = 0
        nodes[i, CPU_DUE] = NEVER
        nodes[i, OOM_DUE] = NEVER
        _node_in(params, table, sums, nodes, wheel, i, t)


@njit(inline="always")
def _cpu_events(params, sums, nodes, wheel, t):
    """The cpu phase changes due at t: each node's contribution moves to its next phase."""
    i = wheel[CPU_WHEEL, t]
    wheel[CPU_WHEEL, t] = NEVER
    while i != NEVER:
        after = nodes[i, CPU_NEXT]
        nodes[i, CPU_DUE] = NEVER
        # What the sum holds for it: ONE while saturated, the fading line while fading.
        slope = nodes[i, SLOPE]
        held = ONE if slope == 0 else nodes[i, CPU_BASE] + nodes[i, SPIKE] \
            - slope * (t - nodes[i, SPIKE_T])
        sums[CPU_SUM] -= held
        sums[CPU_SLOPE] -= slope
        _cpu_in(params, sums, nodes, wheel, i, t)
        i = after


@njit(inline="always")
def _step_grid(state, params, g, actions, observations, rewards, terminals, truncations, auto_reset):
    count = params.height * params.width
    invalid, waste = apply_actions(state, params, g, actions, _action_hook)
    sums, nodes, wheel = state.sums[g], state.nodes[g], state.wheel[g]
    table = params.entropy_integral

    # 2. Time advances: the sums follow their rates.
    t = state.step[g] + 1
    state.step[g] = t
    sums[MEM_SUM] += (entropy_integral_nb(table, t) - entropy_integral_nb(table, t - 1)) \
        * sums[MEM_RATE]
    sums[CPU_SUM] -= sums[CPU_SLOPE]
    _cpu_events(params, sums, nodes, wheel, t)

    # 3. New CPU spikes land; an overload's memory jump moves the node's OOM.
    seed = state.episode_seed[g]
    overloads = 0
    spikes = int(params.spike_rate * count + uniform(seed, t, 0, STREAM_SPIKE_COUNT))
    for j in range(spikes):
        i, size = draw_spike(params, seed, t, j, count)
        _cpu_out(sums, nodes, wheel, i, t)
        if land_spike(params, table, nodes, i, t, size):
            overloads += 1
            sums[MEM_SUM] += params.jump_fx
            _schedule_oom(params, table, nodes, wheel, i, t)
        _cpu_in(params, sums, nodes, wheel, i, t)

    # 4. The OOMs due now.
    ooms = 0
    crits = 0
    prio_sum = 0
    i = wheel[OOM_WHEEL, t]
    wheel[OOM_WHEEL, t] = NEVER
    while i != NEVER:
        after = nodes[i, OOM_NEXT]
        nodes[i, OOM_DUE] = NEVER
        ooms += 1
        crits += nodes[i, PRIO] >= params.crit_fx
        prio_sum += nodes[i, PRIO]
        sums[MEM_SUM] += params.restart_fx - mem_now(table, nodes, i, t)
        _cpu_out(sums, nodes, wheel, i, t)
        restart_node(params, nodes, i, t)
        _cpu_in(params, sums, nodes, wheel, i, t)
        _schedule_oom(params, table, nodes, wheel, i, t + 1)
        i = after
    load = sums[MEM_SUM] + sums[CPU_SUM]

    # 5. The budget recovers slowly.
    state.budget[g] = min(1.0, state.budget[g] + params.budget_regen)

    done = settle_grid(state, params, g, ooms, crits, oom_cost_nb(params, ooms, prio_sum),
                       overloads, clean_waste_nb(waste), invalid, mean_load_nb(load, count),
                       params.max_steps, rewards, terminals, truncations)
    if done and auto_reset:
        state.episode[g] += np.uint64(1)
        start_episode(state, params, g)
        _rebuild_grid(state, params, g)
    observe_grid(state, params, g, observations)


@njit(inline="always")
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


@njit(nogil=True, cache=True, _nrt=False)
def _reset_range(state, params, first, last, observations):
    for g in range(first, last):
        _reset_grid(state, params, g, observations)


@njit(nogil=True, cache=True, _nrt=False)
def _step_range(state, params, first, last, actions, observations, rewards, terminals,
                truncations, auto_reset):
    _prefetch_grid(state, params, first)
    for g in range(first, last):
        if g + 1 < last:
            _prefetch_grid(state, params, g + 1)
        _step_grid(state, params, g, actions, observations, rewards, terminals, truncations,
                   auto_reset)


def _reset_grids(state, params, observations):
    grids = state.step.shape[0]
    for chunk in prange((grids + CHUNK - 1) // CHUNK):
        _reset_range(state, params, chunk * CHUNK, min(grids, (chunk + 1) * CHUNK), observations)


def _step(state, params, actions, observations, rewards, terminals, truncations, auto_reset):
    grids = state.step.shape[0]
    for chunk in prange((grids + CHUNK - 1) // CHUNK):
        _step_range(state, params, chunk * CHUNK, min(grids, (chunk + 1) * CHUNK), actions,
                    observations, rewards, terminals, truncations, auto_reset)


def _reset_grids_one_thread(state, params, observations):
    _reset_range(state, params, 0, state.step.shape[0], observations)


def _step_one_thread(state, params, actions, observations, rewards, terminals, truncations,
                     auto_reset):
    _step_range(state, params, 0, state.step.shape[0], actions, observations, rewards, terminals,
                truncations, auto_reset)


# As in kernels.dense: parallel over grids, and a serial build for one grid.
reset_grids = njit(parallel=True, nogil=True, cache=True)(_reset_grids)
step = njit(parallel=True, nogil=True, cache=True)(_step)
reset_grids_serial = njit(nogil=True, cache=True)(_reset_grids_one_thread)
step_serial = njit(nogil=True, cache=True)(_step_one_thread)
