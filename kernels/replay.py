"""Trace replay: the gardener's contract on a cluster whose load comes from a SimKube trace.

`puffer_cluster.replay` compiles a trace once into a timeline: per segment of steps and per node,
the CPU and memory *requested* by the pods the deterministic scheduler placed there (in units of
one node's capacity), and per node a fixed priority. This module steps grids over those
timelines with the gardener's vocabulary (`kernels.world`: actions, observation layout, episode
statistics, `WorldParams` costs and penalties) so that every gardener policy plays unchanged and
the numbers are comparable:

- cpu (channel 0): the requested CPU of the node's pods times a usage factor
  `1 + usage_noise * (2u - 1)`, u drawn from (episode seed, step, node), divided by `cap`.
- mem (channel 1): `(requested memory + leak overlay) / cap`. The overlay is the spec's Red Queen
  effect on top of the trace: it starts in `[mem_init_min, mem_init_max)` (`overlay_init`) and
  grows by `leak_i * E(t)` per step, `E(t) = 1 + t / red_queen_horizon`, with the gardener's
  per-node leak rates, start and rates scaled by `overlay_scale` (so that the trace's own
  requests stay material); `leak_overlay = False` turns it off (memory is then the requests alone).
- prio (channel 2): the trace's node priority (critical pods make critical nodes).

One step, per grid (the gardener's order):
1. Actions in agent order, paid from the budget. CLEAN restarts the pods of the 3x3 nodes: their
   leak overlay goes to 0 (cleaning a node whose overlay is below `clean_useful_mem` is waste,
   penalised per unit of shortfall). SCALE_HALF / SCALE_FULL raise the node's capacity multiplier
   exactly as in the gardener (partial when the budget is short). Moves as in the gardener.
2. Time advances: the overlay leaks; the node loads are read from the timeline at the new step
   (the usage noise is redrawn every step).
3. An overload is a node whose cpu ratio crosses 1 (below 1 before, at or above 1 now); it also
   adds `overload_mem_jump * cap` to the overlay.
4. An OOM is a node with `(requested mem + overlay) / cap >= 1` and a positive overlay (requests
   alone never exceed a node: the scheduler placed them); penalty
   `oom_penalty * (1 + crit_weight * prio)`, critical when `prio >= crit_threshold`; the node's
   pods restart, clearing the overlay.
5. The budget recovers by `budget_regen`.
Reward and collapse exactly as in the gardener kernel; an episode is truncated at its trace's
horizon (`max_steps`, or fewer under a replay duration).

Two implementations with the same bits: a NumPy reference (vectorised over grids, sequential sums
in node order) and a Numba kernel (`prange` over grids, float64 arithmetic on float32 storage in
the reference's operation order). All randomness is the counter-based hash of `kernels.rng`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from puffer_cluster.kernels.fast import (  # also selects the threading layer
    move_agent, scale_node, settle_grid, start_agents_and_counters,
)
from puffer_cluster.kernels.reference import move_agents, scale_nodes, settle
from puffer_cluster.kernels.rng import (
    STREAM_AGENT_X, STREAM_AGENT_Y, STREAM_EPISODE, STREAM_LEAK, STREAM_MEM_INIT, counter_hash,
    counter_hash_nb, unit_float, unit_float_nb,
)
from puffer_cluster.kernels.world import CLEAN, NUM_ACTIONS, NUM_CHANNELS, NUM_STATS, OUTSIDE, SCALE_FULL, SCALE_HALF

# The usage noise gets its own stream (the gardener's use 1 .. 12, the policies 100).
STREAM_USAGE = np.uint64(13)

f64 = np.float64
_U0 = np.uint64(0)


class ReplayParams(NamedTuple):
    """The replay's own constants (the world's come from `WorldParams`)."""
    usage_noise: float   # cpu usage = request * (1 + usage_noise * (2u - 1)), u uniform
    leak_overlay: bool   # the Red Queen leak on top of the requested memory
    overlay_init: bool   # the overlay starts in [mem_init_min, mem_init_max) (else at 0)
    overlay_scale: float  # the overlay's start and leak rates are the gardener's times this


class Timelines(NamedTuple):
    """Compiled traces, stacked: segment rows of every trace, and per trace its step -> segment map."""
    cpu: np.ndarray           # float32 (segments, nodes): requested CPU / node capacity
    mem: np.ndarray           # float32 (segments, nodes): requested memory / node capacity
    prio: np.ndarray          # float32 (traces, nodes): node priority in [0, 1]
    step_segment: np.ndarray  # int64 (traces, max_horizon + 1): the segment row of each step
    horizon: np.ndarray       # int64 (traces,): steps in an episode on the trace (truncation)


class ReplayState(NamedTuple):
    """All mutable state of `num_grids` replayed clusters; node arrays are (grids, H * W)."""
    cpu: np.ndarray           # float32, CPU usage (absolute, units of one node's base capacity)
    mem: np.ndarray           # float32, requested memory (absolute)
    overlay: np.ndarray       # float32, leak overlay (absolute)
    leak: np.ndarray          # float32, leak rate (per step at E(t) = 1)
    cap: np.ndarray           # float32, capacity multiplier >= 1
    over: np.ndarray          # bool, cpu ratio >= 1 at the last step (for crossings)
    agent_y: np.ndarray       # int64 (grids, agents)
    agent_x: np.ndarray       # int64 (grids, agents)
    trace: np.ndarray         # int64, the timeline this grid replays
    budget: np.ndarray        # float64
    step: np.ndarray          # int64
    grid_seed: np.ndarray     # uint64
    episode: np.ndarray       # uint64
    episode_seed: np.ndarray  # uint64
    ep_return: np.ndarray     # float64
    ep_oom: np.ndarray        # int64
    ep_crit: np.ndarray       # int64
    ep_overload: np.ndarray   # int64
    ep_invalid: np.ndarray    # int64
    ep_load_sum: np.ndarray   # float64
    ep_spent: np.ndarray      # float64
    last_stats: np.ndarray    # float64 (grids, NUM_STATS)
    finished_sum: np.ndarray  # float64 (grids, NUM_STATS)
    finished_count: np.ndarray  # int64 (grids,)


def allocate_replay_state(num_grids: int, params) -> ReplayState:
    """Zeroed state; set `grid_seed` and `trace`, then call a `reset_grids*` before stepping."""
    nodes = params.height * params.width
    agents = params.agents_per_grid

    def node_array(dtype=np.float32):
        return np.zeros((num_grids, nodes), dtype=dtype)

    return ReplayState(
        cpu=node_array(), mem=node_array(), overlay=node_array(), leak=node_array(),
        cap=node_array(), over=node_array(np.bool_),
        agent_y=np.zeros((num_grids, agents), dtype=np.int64),
        agent_x=np.zeros((num_grids, agents), dtype=np.int64),
        trace=np.zeros(num_grids, dtype=np.int64),
        budget=np.zeros(num_grids), step=np.zeros(num_grids, dtype=np.int64),
        grid_seed=np.zeros(num_grids, dtype=np.uint64),
        episode=np.zeros(num_grids, dtype=np.uint64),
        episode_seed=np.zeros(num_grids, dtype=np.uint64),
        ep_return=np.zeros(num_grids), ep_oom=np.zeros(num_grids, dtype=np.int64),
        ep_crit=np.zeros(num_grids, dtype=np.int64),
        ep_overload=np.zeros(num_grids, dtype=np.int64),
        ep_invalid=np.zeros(num_grids, dtype=np.int64),
        ep_load_sum=np.zeros(num_grids), ep_spent=np.zeros(num_grids),
        last_stats=np.zeros((num_grids, NUM_STATS)),
        finished_sum=np.zeros((num_grids, NUM_STATS)),
        finished_count=np.zeros(num_grids, dtype=np.int64),
    )


def expected_overlay(params, rparams: ReplayParams, steps: int) -> float:
    """The mean overlay (a fraction of a node's memory) of a node nobody cleans after `steps`
    steps, before any OOM or overload: its expected start plus the expected leak (E[u^2] = 1/3)
    times the sum of E(t) over the steps."""
    if not rparams.leak_overlay:
        return 0.0
    start = 0.5 * (params.mem_init_min + params.mem_init_max) if rparams.overlay_init else 0.0
    leak = params.leak_min + (params.leak_max - params.leak_min) / 3.0
    entropy = steps + steps * (steps + 1) / (2.0 * params.red_queen_horizon)
    return rparams.overlay_scale * (start + leak * entropy)


# ================================================================ NumPy reference


def _uniform(seeds, step, node, stream):
    seeds, step, node = np.broadcast_arrays(seeds, np.asarray(step, dtype=np.uint64),
                                            np.asarray(node, dtype=np.uint64))
    return unit_float(counter_hash(seeds, step, node, np.full(seeds.shape, stream)))


def _sequential_sum(values):
    return np.cumsum(values, axis=1)[:, -1]


def _read_timeline(state, rparams, timelines, grids):
    """Node loads of `grids` at their current step: requests from the timeline, usage noise."""
    nodes = state.cpu.shape[1]
    last = timelines.step_segment.shape[1] - 1
    t = state.step[grids]
    segment = timelines.step_segment[state.trace[grids], np.minimum(t, last)]
    u = _uniform(state.episode_seed[grids][:, None], t[:, None],
                 np.arange(nodes, dtype=np.uint64)[None, :], STREAM_USAGE)
    state.cpu[grids] = timelines.cpu[segment].astype(f64) * (1.0 + rparams.usage_noise * (2.0 * u - 1.0))
    state.mem[grids] = timelines.mem[segment]


def observe_reference(state, params, timelines, observations, grids=None):
    """Write the 30-value observation of every agent of `grids` (default all)."""
    grids = np.arange(state.step.shape[0]) if grids is None else np.asarray(grids)
    height, width, agents = params.height, params.width, params.agents_per_grid
    prio_rows = timelines.prio[state.trace[grids]]
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
                cpu = np.minimum(1.0, state.cpu[grids, i].astype(f64) / cap)
                mem = np.minimum(1.0, (state.mem[grids, i].astype(f64)
                                       + state.overlay[grids, i].astype(f64)) / cap)
                prio = prio_rows[np.arange(grids.size), i]
                for c, value in enumerate((cpu, mem, prio)):
                    observations[rows, k + c] = np.where(inside, value, OUTSIDE)
                k += NUM_CHANNELS
        observations[rows, k] = y / (height - 1.0)
        observations[rows, k + 1] = x / (width - 1.0)
        observations[rows, k + 2] = state.budget[grids]


def reset_grids_reference(state, params, rparams, timelines, observations, grids=None):
    """Start a new episode on `grids` (default all) of their traces and write their observations."""
    grids = np.arange(state.step.shape[0]) if grids is None else np.asarray(grids)
    if grids.size == 0:
        return
    zero = np.zeros(grids.size, dtype=np.uint64)
    seeds = counter_hash(state.grid_seed[grids], state.episode[grids], zero,
                         np.full(grids.size, STREAM_EPISODE))
    state.episode_seed[grids] = seeds
    seed_col = seeds[:, None]
    nodes = np.arange(params.height * params.width, dtype=np.uint64)[None, :]
    if rparams.leak_overlay:
        u = _uniform(seed_col, 0, nodes, STREAM_LEAK)
        state.leak[grids] = rparams.overlay_scale * (
            params.leak_min + (params.leak_max - params.leak_min) * (u * u))
    else:
        state.leak[grids] = 0.0
    if rparams.leak_overlay and rparams.overlay_init:
        u = _uniform(seed_col, 0, nodes, STREAM_MEM_INIT)
        state.overlay[grids] = rparams.overlay_scale * (
            params.mem_init_min + (params.mem_init_max - params.mem_init_min) * u)
    else:
        state.overlay[grids] = 0.0
    state.cap[grids] = 1.0
    agents = np.arange(params.agents_per_grid, dtype=np.uint64)[None, :]
    state.agent_y[grids] = (_uniform(seed_col, 0, agents, STREAM_AGENT_Y) * params.height).astype(np.int64)
    state.agent_x[grids] = (_uniform(seed_col, 0, agents, STREAM_AGENT_X) * params.width).astype(np.int64)
    state.budget[grids] = params.budget_init
    for counter in (state.step, state.ep_oom, state.ep_crit, state.ep_overload, state.ep_invalid,
                    state.ep_return, state.ep_load_sum, state.ep_spent):
        counter[grids] = 0
    _read_timeline(state, rparams, timelines, grids)
    state.over[grids] = state.cpu[grids].astype(f64) / state.cap[grids].astype(f64) >= 1.0
    observe_reference(state, params, timelines, observations, grids)


def _apply_actions(state, params, actions):
    """Rule 1; returns the per-grid invalid-action count and cleaning waste."""
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
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                hit = cleaning & (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
                g, i = grids[hit], (ny * width + nx)[hit]
                ratio = state.overlay[g, i].astype(f64) / state.cap[g, i].astype(f64)
                clean_waste[g] += np.maximum(0.0, params.clean_useful_mem - ratio)
                state.overlay[g, i] = 0.0

        invalid += scale_nodes(state, params, a, action)
        move_agents(state, params, a, action)
    return invalid, clean_waste


def step_reference(state, params, rparams, timelines, actions, observations, rewards, terminals,
                   truncations, auto_reset=True):
    """One step of every grid; same contract and same bits as `step`."""
    grids = np.arange(state.step.shape[0])
    invalid, clean_waste = _apply_actions(state, params, actions)

    # 2. Time advances: the overlay leaks, the loads come from the timeline.
    state.step[:] += 1
    if rparams.leak_overlay:
        entropy = (1.0 + state.step / params.red_queen_horizon)[:, None]
        state.overlay[:] = state.overlay.astype(f64) + state.leak.astype(f64) * entropy
    _read_timeline(state, rparams, timelines, grids)

    # 3. Overloads: the cpu ratio crosses 1.
    cap = state.cap.astype(f64)
    over = state.cpu.astype(f64) / cap >= 1.0
    crossing = over & ~state.over
    overloads = crossing.sum(axis=1)
    if rparams.leak_overlay:
        state.overlay[:] = np.where(crossing, state.overlay.astype(f64)
                                    + params.overload_mem_jump * cap, state.overlay)
    state.over[:] = over

    # 4. OOMs: the pods restart, the overlay is cleared.
    overlay = state.overlay.astype(f64)
    oom = ((state.mem.astype(f64) + overlay) / cap >= 1.0) & (overlay > 0.0)
    prio = timelines.prio[state.trace].astype(f64)
    cost = np.where(oom, params.oom_penalty * (1.0 + params.crit_weight * prio), 0.0)
    state.overlay[oom] = 0.0
    ooms = oom.sum(axis=1)
    crits = (oom & (prio >= params.crit_threshold)).sum(axis=1)
    oom_cost = _sequential_sum(cost)
    cpu = np.minimum(1.0, state.cpu.astype(f64) / cap)
    mem = np.minimum(1.0, (state.mem.astype(f64) + state.overlay.astype(f64)) / cap)
    mean_load = _sequential_sum(0.5 * (cpu + mem)) / (params.height * params.width)

    # 5. The budget recovers slowly.
    state.budget[:] = np.minimum(1.0, state.budget + params.budget_regen)

    done = settle(state, params, ooms, crits, oom_cost, overloads, clean_waste, invalid, mean_load,
                  timelines.horizon[state.trace], rewards, terminals, truncations)
    observe_reference(state, params, timelines, observations)
    if auto_reset:
        state.episode[done] += np.uint64(1)
        reset_grids_reference(state, params, rparams, timelines, observations, done)


# ================================================================ Numba kernel


@njit(inline="always")
def _uniform_nb(seed, step, node, stream):
    return unit_float_nb(counter_hash_nb(seed, np.uint64(step), np.uint64(node), stream))


@njit(nogil=True, cache=True)
def _read_timeline_grid(state, rparams, timelines, g):
    last = timelines.step_segment.shape[1] - 1
    t = state.step[g]
    segment = timelines.step_segment[state.trace[g], min(t, last)]
    seed = state.episode_seed[g]
    for i in range(state.cpu.shape[1]):
        u = _uniform_nb(seed, t, i, STREAM_USAGE)
        state.cpu[g, i] = np.float64(timelines.cpu[segment, i]) \
            * (1.0 + rparams.usage_noise * (2.0 * u - 1.0))
        state.mem[g, i] = timelines.mem[segment, i]


@njit(nogil=True, cache=True)
def _observe_grid(state, params, timelines, g, observations):
    height, width = params.height, params.width
    trace = state.trace[g]
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
                    observations[row, k] = min(1.0, np.float64(state.cpu[g, i]) / cap)
                    observations[row, k + 1] = min(
                        1.0, (np.float64(state.mem[g, i]) + np.float64(state.overlay[g, i])) / cap)
                    observations[row, k + 2] = timelines.prio[trace, i]
                else:
                    observations[row, k] = OUTSIDE
                    observations[row, k + 1] = OUTSIDE
                    observations[row, k + 2] = OUTSIDE
                k += NUM_CHANNELS
        observations[row, k] = y / (height - 1.0)
        observations[row, k + 1] = x / (width - 1.0)
        observations[row, k + 2] = state.budget[g]


@njit(nogil=True, cache=True)
def _reset_grid(state, params, rparams, timelines, g):
    seed = counter_hash_nb(state.grid_seed[g], state.episode[g], _U0, STREAM_EPISODE)
    state.episode_seed[g] = seed
    for i in range(params.height * params.width):
        if rparams.leak_overlay:
            u = _uniform_nb(seed, 0, i, STREAM_LEAK)
            state.leak[g, i] = rparams.overlay_scale * (
                params.leak_min + (params.leak_max - params.leak_min) * (u * u))
        else:
            state.leak[g, i] = 0.0
        if rparams.leak_overlay and rparams.overlay_init:
            u = _uniform_nb(seed, 0, i, STREAM_MEM_INIT)
            state.overlay[g, i] = rparams.overlay_scale * (
                params.mem_init_min + (params.mem_init_max - params.mem_init_min) * u)
        else:
            state.overlay[g, i] = 0.0
        state.cap[g, i] = 1.0
    start_agents_and_counters(state, params, g, seed)
    _read_timeline_grid(state, rparams, timelines, g)
    for i in range(params.height * params.width):
        state.over[g, i] = np.float64(state.cpu[g, i]) / np.float64(state.cap[g, i]) >= 1.0


@njit(nogil=True, cache=True)
def _step_grid(state, params, rparams, timelines, g, actions, observations, rewards, terminals,
               truncations, auto_reset):
    height, width = params.height, params.width
    nodes = height * width
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
                y, x = state.agent_y[g, a], state.agent_x[g, a]
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < height and 0 <= nx < width:
                            i = ny * width + nx
                            ratio = np.float64(state.overlay[g, i]) / np.float64(state.cap[g, i])
                            clean_waste += max(0.0, params.clean_useful_mem - ratio)
                            state.overlay[g, i] = 0.0
            else:
                invalid += 1
        elif action == SCALE_HALF or action == SCALE_FULL:
            invalid += scale_node(state, params, g, a, action)
        else:
            move_agent(state, params, g, a, action)

    # 2. Time advances: the overlay leaks, the loads come from the timeline.
    t = state.step[g] + 1
    state.step[g] = t
    if rparams.leak_overlay:
        entropy = 1.0 + t / params.red_queen_horizon
        for i in range(nodes):
            state.overlay[g, i] = np.float64(state.overlay[g, i]) + np.float64(state.leak[g, i]) * entropy
    _read_timeline_grid(state, rparams, timelines, g)

    # 3-4. Overload crossings, OOMs (pods restart: overlay cleared), and the mean load.
    trace = state.trace[g]
    overloads = 0
    ooms = 0
    crits = 0
    oom_cost = 0.0
    load_sum = 0.0
    for i in range(nodes):
        cap = np.float64(state.cap[g, i])
        over = np.float64(state.cpu[g, i]) / cap >= 1.0
        if over and not state.over[g, i]:
            overloads += 1
            if rparams.leak_overlay:
                state.overlay[g, i] = np.float64(state.overlay[g, i]) + params.overload_mem_jump * cap
        state.over[g, i] = over
    for i in range(nodes):
        cap = np.float64(state.cap[g, i])
        overlay = np.float64(state.overlay[g, i])
        if (np.float64(state.mem[g, i]) + overlay) / cap >= 1.0 and overlay > 0.0:
            prio = np.float64(timelines.prio[trace, i])
            ooms += 1
            if prio >= params.crit_threshold:
                crits += 1
            oom_cost += params.oom_penalty * (1.0 + params.crit_weight * prio)
            state.overlay[g, i] = 0.0
        cpu = min(1.0, np.float64(state.cpu[g, i]) / cap)
        mem = min(1.0, (np.float64(state.mem[g, i]) + np.float64(state.overlay[g, i])) / cap)
        load_sum += 0.5 * (cpu + mem)
    mean_load = load_sum / nodes

    # 5. The budget recovers slowly.
    state.budget[g] = min(1.0, state.budget[g] + params.budget_regen)

    done = settle_grid(state, params, g, ooms, crits, oom_cost, overloads, clean_waste, invalid,
                       mean_load, timelines.horizon[trace], rewards, terminals, truncations)
    if done and auto_reset:
        state.episode[g] += np.uint64(1)
        _reset_grid(state, params, rparams, timelines, g)
    _observe_grid(state, params, timelines, g, observations)


def _reset_grids(state, params, rparams, timelines, observations):
    for g in prange(state.step.shape[0]):
        _reset_grid(state, params, rparams, timelines, g)
        _observe_grid(state, params, timelines, g, observations)


def _step(state, params, rparams, timelines, actions, observations, rewards, terminals,
          truncations, auto_reset):
    for g in prange(state.step.shape[0]):
        _step_grid(state, params, rparams, timelines, g, actions, observations, rewards,
                   terminals, truncations, auto_reset)


def _reset_grids_one_thread(state, params, rparams, timelines, observations):
    for g in range(state.step.shape[0]):
        _reset_grid(state, params, rparams, timelines, g)
        _observe_grid(state, params, timelines, g, observations)


def _step_one_thread(state, params, rparams, timelines, actions, observations, rewards, terminals,
                     truncations, auto_reset):
    for g in range(state.step.shape[0]):
        _step_grid(state, params, rparams, timelines, g, actions, observations, rewards,
                   terminals, truncations, auto_reset)


# Many grids: one thread per chunk of grids. One grid (the Gymnasium env): no thread start-up.
# Separate Python functions (Numba's on-disk cache is keyed by the function; see kernels.fast).
reset_grids = njit(parallel=True, nogil=True, cache=True)(_reset_grids)
step = njit(parallel=True, nogil=True, cache=True)(_step)
reset_grids_serial = njit(nogil=True, cache=True)(_reset_grids_one_thread)
step_serial = njit(nogil=True, cache=True)(_step_one_thread)
