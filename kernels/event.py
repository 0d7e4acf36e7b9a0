"""The event-driven Numba kernel of World v2: a step costs the agents' actions, their 3x3 views
and the events that fall due (spike landings, OOMs), not the node count.

Each grid keeps exact integer sums of its nodes' memory and clipped cpu ratios, and how fast
they move: memory rises by (G[t] - G[t-1]) * the sum of leak rates, the cpu sum falls by the
sum of the fading nodes' slopes. A node's clipped cpu is piecewise linear between its events:
saturated (cpu >= 1, contributes ONE), fading (contributes base + spike, falling by its fade per
step) or flat (base). When a node changes, the steps it will leave those phases follow from its
record, so the changes they make to the cpu sum and to its slope are added to the grid's wheel
at those steps at once (and taken back if the node changes again first): a phase change costs
no work when it falls due, and a spike touches one record. A node's OOM is the first step its
closed-form memory reaches ONE, found from the G table whenever its memory changes; the OOMs
due at a step are an intrusive doubly linked list through the node records, headed in the
wheel's row of that step, so (re)scheduling is O(1) and the wheel holds each node at most once:
a node that does not reach ONE in the episode is in no list (its links NEVER), nor is one whose
OOM step a reset left for later (LATER, `_start_grid`).
Every change goes through `kernels.rules`, the dense kernel's own arithmetic, so both give the
same bits.
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from puffer_cluster.kernels.dense import CHUNK, apply_actions
from puffer_cluster.kernels.drivers import grid_drivers
from puffer_cluster.kernels.fixed import (
    CPU_BASE, FADE, LEAK, MEM, NEVER, ONE, OOM_DUE, OOM_NEXT, OOM_PREV, PRIO, SPIKE, SPIKE_T,
    WHEEL_CPU, WHEEL_OOM, WHEEL_SLOPE, entropy_integral_nb,
)
from puffer_cluster.kernels.rules import (
    end_step, land_spike, mem_now, restart_node, spike_draws, spike_node,
    spike_size, start_episode,
)

# Rows of state.sums[g].
MEM_SUM, MEM_RATE, CPU_SUM, CPU_SLOPE = range(4)
# Spikes ahead whose record is requested while one lands: the records of a grid's spikes are
# scattered over its node array, and a spike's own arithmetic is too short to hide the wait
# for its record; 16 in flight keep the memory busy (at 128x128, 6, 12, 24 and 32 measured
# slower).
PREFETCH_AHEAD = 16
SECOND_LINE = 8  # the field that starts a node record's second 64-byte cache line
LATER = -2  # the OOM_DUE of a node in no list whose OOM step a reset left to the recheck step
# Columns of the int64 (2, SCRATCH) array on the stack (`_scratch`) that a step and a reset
# work in. A step's spike draws (nodes and sizes) are hashed a block at a time into it as a
# ring, one block ahead of the landings: a loop of hashes alone vectorises, and the landing
# loop, which waits on memory, loses three hashes a spike (at 128x128 a step took 15-18% less).
SCRATCH = 256
SPIKE_BLOCK = SCRATCH // 2
_SCRATCH_TYPE = types.Array(types.int64, 2, "C")


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


@intrinsic
def _scratch(typingctx):
    """An uninitialised int64 (2, SCRATCH) array on the calling function's stack: no
    allocation, and memory that nothing else can alias."""
    def codegen(context, builder, signature, args):
        data = cgutils.alloca_once(builder, ir.IntType(64), size=2 * SCRATCH)
        array = context.make_array(_SCRATCH_TYPE)(context, builder)
        intp = context.get_value_type(types.intp)
        context.populate_array(
            array, data=data, shape=[ir.Constant(intp, 2), ir.Constant(intp, SCRATCH)],
            strides=[ir.Constant(intp, 8 * SCRATCH), ir.Constant(intp, 8)],
            itemsize=ir.Constant(intp, 8), meminfo=None)
        return array._getvalue()
    return _SCRATCH_TYPE(), codegen


@njit(inline="always")
def _draw_spikes(params, ring, node_stream, size_stream, first, last, count):
    """The nodes (row 0) and sizes (row 1) of spikes first..last-1 (one block at most, first a
    multiple of SPIKE_BLOCK) into the ring's columns j % SCRATCH."""
    column = first % SCRATCH
    for k in range(last - first):
        ring[0, column + k] = spike_node(node_stream, first + k, count)
    for k in range(last - first):
        ring[1, column + k] = spike_size(params, size_stream, first + k)


@njit(inline="always")
def _prefetch_grid(state, params, g):
    """Start loading what grid g's next step will touch at random (its first spikes' records,
    its wheel's rows, its gardeners' views) while the previous grid steps: a grid's records are
    far apart in memory, and these loads, not the arithmetic, bound the event kernel. The spike
    loop requests the later spikes' records itself, PREFETCH_AHEAD ahead. A spike needs the
    first cache line of its record only."""
    count = params.height * params.width
    nodes = state.nodes[g]
    t = state.step[g] + 1
    wheel = state.wheel[g]
    if t <= params.max_steps:
        _prefetch(wheel, t, 0)
    # The rows where its spikes' fades will end (a row is 24 bytes: every other row covers
    # every line): the wheels of thousands of small grids are not in the cache.
    last = min(t + params.fade_steps_max, params.max_steps)
    for row in range(t + params.fade_steps_min, last + 2, 2):
        _prefetch(wheel, min(row, last), 0)
    spikes, node_stream, _ = spike_draws(params, state.episode_seed[g], t, count)
    for j in range(min(spikes, PREFETCH_AHEAD)):
        _prefetch(nodes, spike_node(node_stream, j, count), 0)
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
    episode. G rises by at least G_ONE a step, so the first step of the target's G_ONE bucket
    (`params.entropy_inverse`) is the step or the one before, and the table settles it (a
    closed-form inverse of G measured slower: a square root per node; where G outgrows that
    table, its buckets are wider and a search goes on from there). Written without
    branches on the node's values (selects, not jumps): half of a fresh grid's nodes never
    reach ONE, and a mispredicted jump per node cost more than all the arithmetic."""
    last = params.max_steps
    need = ONE - mem_now(table, nodes, i, t_from)
    leak = nodes[i, LEAK]
    target = table[min(t_from, last)] + (max(need, 1) + leak - 1) // max(leak, 1)
    first_steps = params.entropy_inverse
    t = first_steps[min(target >> params.entropy_inverse_bits, first_steps.shape[0] - 1)]
    t = min(max(t, t_from + 1), last)
    t = min(t + (table[t] < target), last)
    if ((table[t] < target) & (t < last)) | ((t > t_from + 1) & (table[t - 1] >= target)):
        while t < last and table[t] < target:  # reached with wide buckets only
            t += 1
        while t > t_from + 1 and table[t - 1] >= target:
            t -= 1
    never = (table[t] < target) | (leak == 0) | (t_from >= last)
    due = t - never * (t + 1)
    return due + (need <= 0) * (t_from - due)


@njit(inline="always")
def _wheel_add(params, wheel, step, cpu_change, slope_change):
    if step <= params.max_steps:  # beyond: the episode ends first
        wheel[step, WHEEL_CPU] += cpu_change
        wheel[step, WHEEL_SLOPE] += slope_change


@njit(inline="always")
def _fade_quotient(params, amount, fade):
    """floor(amount / fade) for 0 <= amount < 2^50 and fade > 0: at the default fade (most
    nodes) from the float estimate amount * (1 / fade), which is within one below, and one
    exact correction; otherwise by an integer division (the estimate saves one per spike)."""
    if fade != params.fade_fx:
        return amount // fade
    q = int(amount * params.fade_inverse)
    return q + ((q + 1) * fade <= amount)


@njit(inline="always")
def _cpu_account(params, nodes, wheel, i, t, sign):
    """Node i's clipped cpu into (sign 1) or out of (sign -1) the grid's cpu sum at step t:
    returns the changes of the sum and of its slope now, and adds the phase changes its record
    makes due after t to the wheel. (Returned, not added to `sums`: a loop keeps its running
    changes in registers, which a store into an array that might alias the records prevents.)"""
    base, spike, fade = nodes[i, CPU_BASE], nodes[i, SPIKE], nodes[i, FADE]
    spike_t = nodes[i, SPIKE_T]
    left = spike - min(spike, fade * (t - spike_t))
    cpu_change = sign * min(ONE, base + left)
    if left == 0 or fade == 0 or base >= ONE:  # flat, or constant for good
        return cpu_change, 0
    # The first step the spike has faded: cpu = base from then on.
    faded = spike_t + _fade_quotient(params, spike + fade - 1, fade)
    _wheel_add(params, wheel, faded, sign * (fade * (faded - spike_t) - spike), -sign * fade)
    if base + left >= ONE:  # saturated until the first step with base + spike - fade * age < ONE
        falls = spike_t + _fade_quotient(params, base + spike - ONE, fade) + 1
        _wheel_add(params, wheel, falls, sign * (base + spike - fade * (falls - spike_t) - ONE),
                   sign * fade)
        return cpu_change, 0
    return cpu_change, sign * fade


@njit(inline="always")
def _unlink_oom(nodes, wheel, i):
    """Node i out of its OOM list, with stores only: where a list ends or starts is a coin
    toss, so a select (not a jump) picks each store's target, and a store that is not needed
    goes to node i's own link, which `_link_oom` rewrites next. (Its neighbours' records are
    seldom in the cache; a store to them does not wait for them, a load would.)"""
    row = max(nodes[i, OOM_DUE], 0)
    after, before = nodes[i, OOM_NEXT], nodes[i, OOM_PREV]
    first, last = before == NEVER, after == NEVER
    wheel[row, WHEEL_OOM] = after if first else wheel[row, WHEEL_OOM]
    nodes[i if first else before, OOM_NEXT] = after
    nodes[i if last else after, OOM_PREV] = before


@njit(inline="always")
def _link_oom(params, table, nodes, wheel, i, t_from):
    """Node i (in no list) into the list of the step its memory now reaches ONE. A node that
    never does stays in no list: its stores go to row 0, which no step walks (steps start at
    1) and whose head stays NEVER, so that `_unlink_oom` of such a node (or of a LATER one)
    changes nothing."""
    due = first_oom_step(params, table, nodes, i, t_from)
    nodes[i, OOM_DUE] = due
    row = max(due, 0)
    head = wheel[row, WHEEL_OOM]
    nodes[i, OOM_NEXT] = head
    nodes[head if head != NEVER else i, OOM_PREV] = i
    nodes[i, OOM_PREV] = NEVER
    wheel[row, WHEEL_OOM] = i if due != NEVER else NEVER


@njit(inline="always")
def _schedule_oom(params, table, nodes, wheel, i, t_from):
    """Move node i in the OOM lists to the step its memory now reaches ONE."""
    _unlink_oom(nodes, wheel, i)
    _link_oom(params, table, nodes, wheel, i, t_from)


@njit(inline="always")
def _node_out(params, table, sums, nodes, wheel, i, t):
    sums[MEM_SUM] -= mem_now(table, nodes, i, t)
    sums[MEM_RATE] -= nodes[i, LEAK]
    cpu_change, slope_change = _cpu_account(params, nodes, wheel, i, t, -1)
    sums[CPU_SUM] += cpu_change
    sums[CPU_SLOPE] += slope_change


@njit(inline="always")
def _node_in(params, table, sums, nodes, wheel, i, t, linked):
    """Node i back into the sums after a change at step t; its next OOM check is at t + 1
    (`linked`: it is in an OOM list now)."""
    sums[MEM_SUM] += mem_now(table, nodes, i, t)
    sums[MEM_RATE] += nodes[i, LEAK]
    cpu_change, slope_change = _cpu_account(params, nodes, wheel, i, t, 1)
    sums[CPU_SUM] += cpu_change
    sums[CPU_SLOPE] += slope_change
    if linked:
        _unlink_oom(nodes, wheel, i)
    _link_oom(params, table, nodes, wheel, i, t + 1)


@njit(inline="always")
def _action_hook(state, params, g, i, before):
    """Around an action's change to node i at the current step: out of the sums before, back
    in after, with its events rescheduled."""
    if before:
        _node_out(params, params.entropy_integral, state.sums[g], state.nodes[g],
                  state.wheel[g], i, state.step[g])
    else:
        _node_in(params, params.entropy_integral, state.sums[g], state.nodes[g],
                 state.wheel[g], i, state.step[g], True)


@njit(inline="always")
def _empty_wheel(wheel):
    """No cpu change and no OOM due at any step."""
    wheel[:, WHEEL_CPU] = 0
    wheel[:, WHEEL_SLOPE] = 0
    wheel[:, WHEEL_OOM] = NEVER


@njit(inline="always")
def _rebuild_grid(state, params, g):
    """The sums and the wheel of grid g from its node records at its current step."""
    t = state.step[g]
    sums, nodes, wheel = state.sums[g], state.nodes[g], state.wheel[g]
    table = params.entropy_integral
    _empty_wheel(wheel)
    sums[:] = 0
    for i in range(params.height * params.width):
        _node_in(params, table, sums, nodes, wheel, i, t, False)


@njit(inline="always")
def _recheck_step(params):
    """The step that lists the nodes a reset left LATER (`_list_later`): the episode's middle."""
    return params.max_steps // 2 + 1


@njit(inline="always")
def _start_grid(state, params, g, context):
    """A new episode on grid g, with its sums and wheel: `_rebuild_grid` for a fresh world, where
    no spike has landed yet (every cpu flat at its base, no phase change due). Only a node whose
    memory reaches ONE in the episode's first half gets `first_oom_step` now (about one in
    twenty of a fresh grid's); one that reaches it later (about two in five) is left LATER, for
    the recheck step (`_list_later`), which most episodes do not reach (a random gardener's at
    128x128 lasts about 220 of 512 steps); one that never does (about half) is in no list.
    Which a node is, is a coin toss: selects and counting, not jumps."""
    start_episode(state, params, g)
    sums, nodes, wheel = state.sums[g], state.nodes[g], state.wheel[g]
    table = params.entropy_integral
    _empty_wheel(wheel)
    mem_sum = mem_rate = cpu_sum = 0
    count = params.height * params.width
    recheck = _recheck_step(params)
    soon = _scratch()[0]
    for first in range(0, count, SCRATCH):
        soon_count = 0
        for i in range(first, min(first + SCRATCH, count)):
            mem_sum += nodes[i, MEM]
            mem_rate += nodes[i, LEAK]
            cpu_sum += min(ONE, nodes[i, CPU_BASE])
            reaches = mem_now(table, nodes, i, params.max_steps) >= ONE
            nodes[i, OOM_DUE] = LATER if reaches else NEVER
            nodes[i, OOM_NEXT] = nodes[i, OOM_PREV] = NEVER
            soon[soon_count] = i
            soon_count += mem_now(table, nodes, i, recheck - 1) >= ONE
        for k in range(soon_count):
            _link_oom(params, table, nodes, wheel, soon[k], 1)
    sums[MEM_SUM], sums[MEM_RATE], sums[CPU_SUM], sums[CPU_SLOPE] = mem_sum, mem_rate, cpu_sum, 0


@njit(inline="always")
def _list_later(params, table, nodes, wheel, t):
    """At the recheck step t: every node a reset left LATER (its memory unchanged since, or it
    would have been listed) into the list of its OOM step, t or after. A pass over the records
    in order, not a walk of a list: at the grid's own pace its records are far from the cache."""
    later = _scratch()[0]
    count = nodes.shape[0]
    for first in range(0, count, SCRATCH):
        later_count = 0
        for i in range(first, min(first + SCRATCH, count)):
            later[later_count] = i
            later_count += nodes[i, OOM_DUE] == LATER
        for k in range(later_count):
            _link_oom(params, table, nodes, wheel, later[k], t)


@njit(inline="always")
def _step_grid(state, params, g, actions, observations, rewards, terminals, truncations, auto_reset):
    count = params.height * params.width
    invalid, waste, t = apply_actions(state, params, g, actions, _action_hook)
    sums, nodes, wheel = state.sums[g], state.nodes[g], state.wheel[g]
    table = params.entropy_integral
    if t == _recheck_step(params):
        _list_later(params, table, nodes, wheel, t)

    # 2. Time advances: the sums follow their rates, and the cpu phase changes due now apply.
    sums[MEM_SUM] += (entropy_integral_nb(table, t) - entropy_integral_nb(table, t - 1)) \
        * sums[MEM_RATE]
    sums[CPU_SUM] += wheel[t, WHEEL_CPU] - sums[CPU_SLOPE]
    sums[CPU_SLOPE] += wheel[t, WHEEL_SLOPE]

    # 3. New CPU spikes land; an overload's memory jump moves the node's OOM.
    seed = state.episode_seed[g]
    overloads = 0
    cpu_change = slope_change = 0
    spikes, node_stream, size_stream = spike_draws(params, seed, t, count)
    # An overloaded node's OOM moves at the next overload (or after the loop), once its record's
    # second cache line, requested now, has arrived: its memory is the same then.
    pending = NEVER
    ring = _scratch()
    _draw_spikes(params, ring, node_stream, size_stream, 0, min(spikes, SPIKE_BLOCK), count)
    for j in range(spikes):
        if j % SPIKE_BLOCK == 0:
            _draw_spikes(params, ring, node_stream, size_stream, j + SPIKE_BLOCK,
                         min(spikes, j + 2 * SPIKE_BLOCK), count)
        if j + PREFETCH_AHEAD < spikes:
            _prefetch(nodes, ring[0, (j + PREFETCH_AHEAD) % SCRATCH], 0)
        i = ring[0, j % SCRATCH]
        cpu_out, slope_out = _cpu_account(params, nodes, wheel, i, t, -1)
        if land_spike(params, table, nodes, i, t, ring[1, j % SCRATCH]):
            overloads += 1
            _prefetch(nodes, i, SECOND_LINE)
            if pending != NEVER:
                _schedule_oom(params, table, nodes, wheel, pending, t)
            pending = i
        cpu_in, slope_in = _cpu_account(params, nodes, wheel, i, t, 1)
        cpu_change += cpu_out + cpu_in
        slope_change += slope_out + slope_in
    if pending != NEVER:
        _schedule_oom(params, table, nodes, wheel, pending, t)

    # 4. The OOMs due now.
    ooms = 0
    crits = 0
    prio_sum = 0
    mem_change = overloads * params.jump_fx
    i = wheel[t, WHEEL_OOM]
    wheel[t, WHEEL_OOM] = NEVER
    while i != NEVER:
        after = nodes[i, OOM_NEXT]
        ooms += 1
        crits += nodes[i, PRIO] >= params.crit_fx
        prio_sum += nodes[i, PRIO]
        mem_change += params.restart_fx - mem_now(table, nodes, i, t)
        cpu_out, slope_out = _cpu_account(params, nodes, wheel, i, t, -1)
        restart_node(params, nodes, i, t)
        cpu_in, slope_in = _cpu_account(params, nodes, wheel, i, t, 1)
        cpu_change += cpu_out + cpu_in
        slope_change += slope_out + slope_in
        _link_oom(params, table, nodes, wheel, i, t + 1)  # the walk took it out of its list
        i = after
    sums[MEM_SUM] += mem_change
    sums[CPU_SUM] += cpu_change
    sums[CPU_SLOPE] += slope_change
    load = sums[MEM_SUM] + sums[CPU_SUM]

    # 5. The budget recovers slowly; the step settles, the grid auto-resets.
    end_step(state, params, g, ooms, crits, prio_sum, overloads, waste, invalid, load,
             params.max_steps, auto_reset, _start_grid, (), observations, rewards, terminals,
             truncations)


@njit(nogil=True, cache=True)
def rebuild_grids(state, params):
    """Recompute every grid's sums and wheels from its node records: after editing the records
    by hand (tests), before the next step."""
    for g in range(state.step.shape[0]):
        _rebuild_grid(state, params, g)


@njit(nogil=True, cache=True, _nrt=False)
def _step_range(state, params, first, last, actions, observations, rewards, terminals,
                truncations, auto_reset):
    _prefetch_grid(state, params, first)
    for g in range(first, last):
        if g + 1 < last:
            _prefetch_grid(state, params, g + 1)
        _step_grid(state, params, g, actions, observations, rewards, terminals, truncations,
                   auto_reset)


# As in kernels.dense: parallel over grids, and a serial build for one grid.
reset_grids, step, reset_grids_serial, step_serial = grid_drivers(_start_grid, _step_range, CHUNK)
