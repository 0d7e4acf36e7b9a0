"""The dense Numba kernel of World v2: every step evaluates every node's closed forms, in the
reference's arithmetic (`kernels.reference`), `prange` over grids. Integer sums are exact, so the
thread count never changes a bit.
"""
from numba import njit

from puffer_cluster.kernels.drivers import grid_drivers
from puffer_cluster.kernels.fast import move_agent
from puffer_cluster.kernels.fixed import CAP
from puffer_cluster.kernels.rules import (
    clean_node, end_step, land_spikes, no_floor, pay_for_scale, rescale_node,
    restart_out_of_memory, start_episode,
)
from puffer_cluster.kernels.world import CLEAN, NUM_ACTIONS, SCALE_FULL, SCALE_HALF

# Grids per call of the compiled per-grid loop (`_step_range`), the unit of work of a thread. The
# loop itself runs without Numba's reference counting (`_nrt=False`): it allocates nothing, and
# counting every view and argument of the per-node rules would cost more than the rules.
CHUNK = 32


@njit(inline="always")
def apply_actions(state, params, g, actions, event_hook):
    """Rule 1: each agent's action, in agent order, paid from the shared budget, at the step
    before time advances. `event_hook(state, params, g, i, before)` runs around every node
    change (before=True, then False): the event kernel's bookkeeping, nothing for the dense one.
    Then time advances. Returns the invalid-action count, the cleaning waste (ratio units) and
    the new step."""
    height, width = params.height, params.width
    t = state.step[g]
    nodes = state.nodes[g]
    table = params.entropy_integral
    invalid = 0
    waste = 0
    for a in range(params.agents_per_grid):
        action = actions[g * params.agents_per_grid + a]
        if action < 0 or action >= NUM_ACTIONS:
            invalid += 1
        elif action == CLEAN:
            if state.budget[g] >= params.clean_cost:
                state.budget[g] -= params.clean_cost
                state.ep_spent[g] += params.clean_cost
                y, x = state.agent_y[g, a], state.agent_x[g, a]
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < height and 0 <= nx < width:
                            i = ny * width + nx
                            event_hook(state, params, g, i, True)
                            waste += clean_node(params, table, nodes, i, t)
                            event_hook(state, params, g, i, False)
            else:
                invalid += 1
        elif action == SCALE_HALF or action == SCALE_FULL:
            added = pay_for_scale(state, params, g, a, action)
            if added == 0:
                invalid += 1
            else:
                i = state.agent_y[g, a] * width + state.agent_x[g, a]
                event_hook(state, params, g, i, True)
                rescale_node(table, nodes, i, t, nodes[i, CAP] + added)
                event_hook(state, params, g, i, False)
        else:
            move_agent(state, params, g, a, action)
    state.step[g] = t + 1
    return invalid, waste, t + 1


@njit(inline="always")
def no_hook(state, params, g, i, before):
    pass


@njit(inline="always")
def _start_grid(state, params, g, context):
    start_episode(state, params, g)


@njit(inline="always")
def _step_grid(state, params, g, actions, observations, rewards, terminals, truncations, auto_reset):
    count = params.height * params.width
    nodes = state.nodes[g]
    table = params.entropy_integral

    # 1, 2. The actions, then time advances: the closed forms carry the leak and the spikes' fade.
    invalid, waste, t = apply_actions(state, params, g, actions, no_hook)

    # 3. New CPU spikes land; one that pushes cpu to 1 or more is an overload.
    overloads = land_spikes(params, table, nodes, state.episode_seed[g], t, count)

    # 4. Out-of-memory nodes restart; the load sums both ratios of every node, in integers.
    ooms, crits, prio_sum, load = restart_out_of_memory(params, table, nodes, t, count, no_floor)

    # 5. The budget recovers slowly; the step settles, the grid auto-resets.
    end_step(state, params, g, ooms, crits, prio_sum, overloads, waste, invalid, load,
             params.max_steps, auto_reset, _start_grid, (), observations, rewards, terminals,
             truncations)


@njit(nogil=True, cache=True, _nrt=False)
def _step_range(state, params, first, last, actions, observations, rewards, terminals,
                truncations, auto_reset):
    for g in range(first, last):
        _step_grid(state, params, g, actions, observations, rewards, terminals, truncations,
                   auto_reset)


# Many grids: one thread per chunk of grids. One grid (the Gymnasium env): no thread start-up.
reset_grids, step, reset_grids_serial, step_serial = grid_drivers(_start_grid, _step_range, CHUNK)
