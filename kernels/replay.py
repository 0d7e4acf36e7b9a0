"""Trace replay: a SimKube trace's load added to a World v2 gardener world.

`puffer_cluster.replay` compiles a trace once into a timeline: per segment of steps and per node,
the CPU and memory *requested* by the pods the deterministic scheduler placed there (in units of
one node's capacity), and per node a fixed priority. A replayed cluster is a gardener world
(`kernels.world`, `kernels.rules`: its records, actions, spikes, OOM restarts, observation,
reward and statistics, so every gardener policy plays unchanged) whose node memory is an
*overlay*: the gardener's memory with its start, leak rates, restart level and overload jump
times `overlay_scale` (`overlay_world`). What this module adds is the trace, every step:

- cpu: the node's base load is its pods' requested CPU times a usage factor
  `1 + usage_noise * (2u - 1)`, u drawn from (episode seed, step, node); the gardener's spikes
  land and fade on top of it (a spike that brings cpu to 1 is an overload, as in the gardener).
- mem: the node's memory is its pods' requested memory (`REQUEST`, a ratio of the node's
  capacity, kept in an extra field of the node record) plus the overlay. The actions see the
  overlay alone: CLEAN restarts the pods of the 3x3 nodes, which removes `clean_fraction` of
  their overlay and spikes (the waste counts the overlay), SCALE rescales the overlay, and the
  requests come back at the node's capacity. An OOM is a node whose memory reaches 1 with a
  positive overlay (requests alone never overflow a node: the scheduler placed them); its pods
  restart at the overlay's restart level.
- prio: the trace's node priority (critical pods make critical nodes).

One step, per grid: the actions at step t (the gardener's), then at t + 1 the trace's load, the
spikes, the OOMs, the load, the budget; an episode is truncated at its trace's horizon
(`max_steps`, or fewer under a replay duration).

Two implementations with the same bits: a NumPy reference (the gardener's, `kernels.reference`,
around the trace's load) and a Numba kernel (`kernels.rules` around it, `prange` over grids).
"""
from __future__ import annotations

from collections import namedtuple
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from puffer_cluster.kernels import reference
from puffer_cluster.kernels.dense import CHUNK, apply_actions
from puffer_cluster.kernels.fast import uniform
from puffer_cluster.kernels.fixed import (
    CAP, CPU_BASE, G_ONE, MEM, NODE_FIELDS, ONE, PRIO, PRIO_ONE, clean_waste, mean_load, oom_cost,
    to_fixed, to_fixed_nb,
)
from puffer_cluster.kernels.rules import (
    CAP_UNIT, end_step, land_spikes, observe_grid, restart_out_of_memory, start_episode,
)
from puffer_cluster.kernels.world import WorldState, allocate_state

# The usage noise gets its own stream (the gardener's use 1 .. 12, the policies 100).
STREAM_USAGE = np.uint64(13)
# The replay's field after the world's in a node record: the requested memory MEM includes.
REQUEST = NODE_FIELDS
REPLAY_NODE_FIELDS = NODE_FIELDS + 1

f64 = np.float64


class ReplayParams(NamedTuple):
    """The replay's own constants (the world's come from `overlay_world`)."""
    usage_noise: float   # cpu usage = request * (1 + usage_noise * (2u - 1)), u uniform


class Timelines(NamedTuple):
    """Compiled traces, stacked: segment rows of every trace, and per trace its step -> segment map."""
    cpu: np.ndarray           # float32 (segments, nodes): requested CPU / node capacity
    mem: np.ndarray           # float32 (segments, nodes): requested memory / node capacity
    prio: np.ndarray          # float32 (traces, nodes): node priority in [0, 1]
    step_segment: np.ndarray  # int64 (traces, max_horizon + 1): the segment row of each step
    horizon: np.ndarray       # int64 (traces,): steps in an episode on the trace (truncation)


# A gardener world's state (dense layout, REPLAY_NODE_FIELDS per node record) and, per grid,
# the timeline it replays.
ReplayState = namedtuple("ReplayState", WorldState._fields + ("trace",))


def allocate_replay_state(num_grids: int, params) -> ReplayState:
    """Zeroed state; set `grid_seed` and `trace`, then call a `reset_grids*` before stepping."""
    world = allocate_state(num_grids, params)
    nodes = np.zeros((num_grids, params.height * params.width, REPLAY_NODE_FIELDS), dtype=np.int64)
    return ReplayState(*world._replace(nodes=nodes), trace=np.zeros(num_grids, dtype=np.int64))


def overlay_world(params, overlay_scale: float, overlay_init: bool = True):
    """The world the trace is added to: `params` with every memory constant (start, leak rates,
    restart level, overload jump) times `overlay_scale`, and the start 0 without `overlay_init`."""
    start = overlay_scale if overlay_init else 0.0
    restart_mem = overlay_scale * params.restart_mem
    jump = overlay_scale * params.overload_mem_jump
    return params._replace(
        mem_init_min=start * params.mem_init_min, mem_init_max=start * params.mem_init_max,
        leak_min=overlay_scale * params.leak_min, leak_max=overlay_scale * params.leak_max,
        restart_mem=restart_mem, overload_mem_jump=jump,
        restart_fx=int(to_fixed(restart_mem, ONE)), jump_fx=int(to_fixed(jump, ONE)))


def trace_ratio(load, cap):
    """A trace's load (units of one node's base capacity, float) as a fixed-point ratio of the
    capacity `cap` (CAP_ONE units): one float quotient, rounded down once."""
    return np.int64(load / (cap * CAP_UNIT) * ONE)


trace_ratio_nb = njit(inline="always")(trace_ratio)


def expected_overlay(params, steps: int) -> float:
    """The mean overlay (a fraction of a node's memory) of a node of the overlay world `params`
    that nobody cleans after `steps` steps, before any OOM or overload: its expected start plus
    the expected leak rate (E[u^2] = 1/3) times the entropy integral G[steps]."""
    start = 0.5 * (params.mem_init_min + params.mem_init_max)
    leak = params.leak_min + (params.leak_max - params.leak_min) / 3.0
    table = params.entropy_integral
    return start + leak * table[min(steps, table.shape[0] - 1)] / G_ONE


# ================================================================ NumPy reference


def _add_trace_load_reference(state, rparams, timelines, grids):
    """The trace's load of `grids` at their current step (see `_add_trace_load`)."""
    nodes = state.nodes[grids]
    last = timelines.step_segment.shape[1] - 1
    t = state.step[grids]
    segment = timelines.step_segment[state.trace[grids], np.minimum(t, last)]
    u = reference.uniform(state.episode_seed[grids][:, None], t[:, None],
                          np.arange(nodes.shape[1], dtype=np.uint64)[None, :], STREAM_USAGE)
    usage = timelines.cpu[segment].astype(f64) * (1.0 + rparams.usage_noise * (2.0 * u - 1.0))
    cap = nodes[..., CAP]
    nodes[..., CPU_BASE] = trace_ratio(usage, cap)
    request = trace_ratio(timelines.mem[segment].astype(f64), cap)
    nodes[..., MEM] += request - nodes[..., REQUEST]
    nodes[..., REQUEST] = request
    state.nodes[grids] = nodes


def reset_grids_reference(state, params, rparams, timelines, observations, grids=None):
    """Start a new episode on `grids` (default all) of their traces and write their observations."""
    grids = np.arange(state.step.shape[0]) if grids is None else np.asarray(grids)
    reference.start_episodes(state, params, grids)
    prio = timelines.prio[state.trace[grids]].astype(f64)
    state.nodes[grids, :, PRIO] = to_fixed(prio, PRIO_ONE)
    _add_trace_load_reference(state, rparams, timelines, grids)
    reference.observe(state, params, observations, grids)


def step_reference(state, params, rparams, timelines, actions, observations, rewards, terminals,
                   truncations, auto_reset=True):
    """One step of every grid; same contract and same bits as `step`."""
    record = state.nodes
    record[..., MEM] -= record[..., REQUEST]  # the actions see the overlay alone
    invalid, waste = reference.apply_actions(state, params, actions)
    record[..., MEM] += record[..., REQUEST]
    state.step[:] += 1
    t = state.step
    _add_trace_load_reference(state, rparams, timelines, np.arange(t.shape[0]))
    overloads = reference.land_spikes(state, params, t)
    ooms, crits, prio_sum, load = reference.restart_out_of_memory(state, params, t,
                                                                  record[..., REQUEST])
    state.budget[:] = np.minimum(1.0, state.budget + params.budget_regen)

    done = reference.settle(state, params, ooms, crits, oom_cost(params, ooms, prio_sum),
                            overloads, clean_waste(waste), invalid,
                            mean_load(load, params.height * params.width),
                            timelines.horizon[state.trace], rewards, terminals, truncations)
    reference.observe(state, params, observations)
    if auto_reset:
        state.episode[done] += np.uint64(1)
        reset_grids_reference(state, params, rparams, timelines, observations, done)


# ================================================================ Numba kernel


@njit(inline="always")
def _add_trace_load(state, rparams, timelines, g):
    """The trace's load at grid g's step: CPU_BASE is the pods' CPU usage, REQUEST their
    requested memory, both as ratios of the node's capacity; MEM holds REQUEST on the overlay."""
    t = state.step[g]
    nodes = state.nodes[g]
    segment = timelines.step_segment[state.trace[g], min(t, timelines.step_segment.shape[1] - 1)]
    seed = state.episode_seed[g]
    for i in range(nodes.shape[0]):
        usage = np.float64(timelines.cpu[segment, i]) \
            * (1.0 + rparams.usage_noise * (2.0 * uniform(seed, t, i, STREAM_USAGE) - 1.0))
        cap = nodes[i, CAP]
        nodes[i, CPU_BASE] = trace_ratio_nb(usage, cap)
        request = trace_ratio_nb(np.float64(timelines.mem[segment, i]), cap)
        nodes[i, MEM] += request - nodes[i, REQUEST]
        nodes[i, REQUEST] = request


@njit(inline="always")
def _overlay_only(state, params, g, i, before):
    """Around an action's change to node i: its requests out of MEM before, back after."""
    if before:
        state.nodes[g, i, MEM] -= state.nodes[g, i, REQUEST]
    else:
        state.nodes[g, i, MEM] += state.nodes[g, i, REQUEST]


@njit(inline="always")
def _requests(nodes, i):
    """What an OOM keeps of a node's memory: its pods' requests."""
    return nodes[i, REQUEST]


@njit(inline="always")
def _start_episode(state, params, g, context):
    """The gardener's new episode on grid g, with its trace's priorities and load at step 0;
    `context` is (the replay's parameters, the timelines)."""
    rparams, timelines = context
    start_episode(state, params, g)
    nodes = state.nodes[g]
    trace = state.trace[g]
    for i in range(nodes.shape[0]):
        nodes[i, PRIO] = to_fixed_nb(np.float64(timelines.prio[trace, i]), PRIO_ONE)
        nodes[i, REQUEST] = 0  # start_episode writes the gardener's fields only
    _add_trace_load(state, rparams, timelines, g)


@njit(inline="always")
def _step_grid(state, params, rparams, timelines, g, actions, observations, rewards, terminals,
               truncations, auto_reset):
    count = params.height * params.width
    nodes = state.nodes[g]
    table = params.entropy_integral
    invalid, waste, t = apply_actions(state, params, g, actions, _overlay_only)
    _add_trace_load(state, rparams, timelines, g)
    overloads = land_spikes(params, table, nodes, state.episode_seed[g], t, count)

    ooms, crits, prio_sum, load = restart_out_of_memory(params, table, nodes, t, count, _requests)
    end_step(state, params, g, ooms, crits, prio_sum, overloads, waste, invalid, load,
             timelines.horizon[state.trace[g]], auto_reset, _start_episode, (rparams, timelines),
             observations, rewards, terminals, truncations)


@njit(nogil=True, cache=True, _nrt=False)
def _reset_range(state, params, rparams, timelines, first, last, observations):
    for g in range(first, last):
        _start_episode(state, params, g, (rparams, timelines))
        observe_grid(state, params, g, observations)


@njit(nogil=True, cache=True, _nrt=False)
def _step_range(state, params, rparams, timelines, first, last, actions, observations, rewards,
                terminals, truncations, auto_reset):
    for g in range(first, last):
        _step_grid(state, params, rparams, timelines, g, actions, observations, rewards,
                   terminals, truncations, auto_reset)


def _reset_grids(state, params, rparams, timelines, observations):
    grids = state.step.shape[0]
    for chunk in prange((grids + CHUNK - 1) // CHUNK):
        _reset_range(state, params, rparams, timelines, chunk * CHUNK,
                     min(grids, (chunk + 1) * CHUNK), observations)


def _step(state, params, rparams, timelines, actions, observations, rewards, terminals,
          truncations, auto_reset):
    grids = state.step.shape[0]
    for chunk in prange((grids + CHUNK - 1) // CHUNK):
        _step_range(state, params, rparams, timelines, chunk * CHUNK,
                    min(grids, (chunk + 1) * CHUNK), actions, observations, rewards, terminals,
                    truncations, auto_reset)


# Many grids: one thread per chunk of grids (`kernels.dense.CHUNK`). One grid (the Gymnasium
# env): the range itself, no thread start-up.
reset_grids = njit(parallel=True, nogil=True, cache=True)(_reset_grids)
step = njit(parallel=True, nogil=True, cache=True)(_step)


@njit(nogil=True, cache=True)
def reset_grids_serial(state, params, rparams, timelines, observations):
    _reset_range(state, params, rparams, timelines, 0, state.step.shape[0], observations)


@njit(nogil=True, cache=True)
def step_serial(state, params, rparams, timelines, actions, observations, rewards, terminals,
                truncations, auto_reset):
    _step_range(state, params, rparams, timelines, 0, state.step.shape[0], actions,
                observations, rewards, terminals, truncations, auto_reset)
