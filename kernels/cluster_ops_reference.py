"""ClusterOps' NumPy reference: what `kernels.cluster_ops`' Numba kernel computes, with every
env's randomness, observation, reward and statistics in NumPy, vectorised over the batch, and the
kernel's scalar rules called env by env. Tests prove the two bit-identical."""
from __future__ import annotations

import numpy as np

from puffer_cluster.kernels.cluster_ops import (
    BAD_ROLLOUT, CRASH_LOOP, DEP_OK, FLAG_BAD_ROLLOUT, FLAG_CORDONED, FLAG_CRASH_LOOP,
    FLAG_NETWORK, FLAG_PRESSURE, FLAG_PVC, NETWORK, NODE_READY, NOT_READY, NUM_FLAGS, OBS_CPU,
    OBS_FAILED, OBS_FLAGS, OBS_HEALTHY_DEPLOYMENTS, OBS_MEMORY, OBS_NODES, OBS_NORMAL,
    OBS_NOT_READY, OBS_PENDING, OBS_READY, OBS_RUNNING, OBS_UNKNOWN, OBS_WARNINGS, PRESSURE,
    PVC_PENDING, STREAM_OPS_ARRIVAL, STREAM_OPS_BASE, STREAM_OPS_EPISODE, STREAM_OPS_KIND,
    STREAM_OPS_TARGET, UNDER_REPLICATED, UNKNOWN, _advance, _apply_action, _begin_episode,
    _finish_episode, _open_incidents, _start_incident,
)
from puffer_cluster.kernels.rng import counter_hash, unit_float


def _draws_reference(seeds, t, k, stream):
    """`_draw_nb` over a batch of episode seeds (uint64 arrays)."""
    n = seeds.shape[0]
    return unit_float(counter_hash(seeds, np.full(n, np.uint64(t)) if np.isscalar(t) else
                                   t.astype(np.uint64), np.full(n, np.uint64(k)),
                                   np.full(n, stream)))


def observe_reference(params, state, observations):
    """`_observe_nb` for every env at once, in NumPy (objects looped in the kernel's order, envs
    vectorised); returns (pods hurt / pods, no incident open) arrays."""
    nodes, deployments = params.nodes, params.deployments
    num_envs = state.step.shape[0]
    pods = deployments * params.replicas
    per_node = pods / nodes
    not_ready = np.zeros(num_envs, dtype=np.int64)
    incidents = np.zeros(num_envs, dtype=np.int64)
    healthy_deployments = np.zeros(num_envs, dtype=np.int64)
    pending, failed, unknown, missing, not_serving, pressure = (np.zeros(num_envs) for _ in range(6))
    for i in range(nodes):
        status, severity = state.node_status[:, i], state.node_severity[:, i]
        cordoned = state.node_cordoned[:, i] == 1
        is_not_ready = status == NOT_READY
        is_pressure = status == PRESSURE
        is_cordoned = (status == NODE_READY) & cordoned
        not_ready += is_not_ready
        unknown = np.where(is_not_ready, unknown + per_node, unknown)
        failed = np.where(is_pressure, failed + severity * per_node, failed)
        pressure = np.where(is_pressure, pressure + severity, pressure)
        pending = np.where(is_cordoned, pending + severity * per_node, pending)
        incidents += (status != NODE_READY) | cordoned
    for j in range(deployments):
        issue = state.dep_issue[:, j]
        hurt = state.dep_severity[:, j] * params.replicas
        healthy_deployments += issue == DEP_OK
        incidents += issue != DEP_OK
        failed = np.where((issue == CRASH_LOOP) | (issue == BAD_ROLLOUT), failed + hurt, failed)
        pending = np.where(issue == PVC_PENDING, pending + hurt, pending)
        not_serving = np.where(issue == NETWORK, not_serving + hurt, not_serving)
        missing = np.where(issue == UNDER_REPLICATED, missing + hurt, missing)
    running = np.maximum(0.0, pods - pending - failed - unknown - missing)
    obs = observations
    obs[:, OBS_NODES] = min(1.0, nodes / params.max_nodes)
    obs[:, OBS_READY] = (nodes - not_ready) / max(1, nodes)
    obs[:, OBS_NOT_READY] = not_ready / max(1, nodes)
    obs[:, OBS_RUNNING] = np.minimum(1.0, running / pods)
    obs[:, OBS_PENDING] = np.minimum(1.0, pending / pods)
    obs[:, OBS_FAILED] = np.minimum(1.0, failed / pods)
    obs[:, OBS_UNKNOWN] = np.minimum(1.0, unknown / pods)
    obs[:, OBS_HEALTHY_DEPLOYMENTS] = healthy_deployments / max(1, deployments)
    obs[:, OBS_CPU] = np.minimum(1.0, np.maximum(0.0, state.cpu_base * running / pods))
    obs[:, OBS_MEMORY] = np.minimum(1.0, np.maximum(
        0.0, state.memory_base + params.pressure_memory * pressure / nodes))
    obs[:, OBS_WARNINGS] = np.minimum(
        1.0, (incidents + pending + failed + unknown + not_serving) / params.event_scale)
    obs[:, OBS_NORMAL] = np.minimum(1.0, state.touched / params.event_scale)
    present = {
        FLAG_PVC: (state.dep_issue == PVC_PENDING).any(axis=1),
        FLAG_NETWORK: (state.dep_issue == NETWORK).any(axis=1),
        FLAG_PRESSURE: (state.node_status == PRESSURE).any(axis=1),
        FLAG_CRASH_LOOP: (state.dep_issue == CRASH_LOOP).any(axis=1),
        FLAG_BAD_ROLLOUT: (state.dep_issue == BAD_ROLLOUT).any(axis=1),
        FLAG_CORDONED: ((state.node_status == NODE_READY) & (state.node_cordoned == 1)).any(axis=1),
    }
    for f in range(NUM_FLAGS):
        known = (state.revealed & (1 << f)) != 0
        obs[:, OBS_FLAGS + f] = np.where(known, present[f].astype(np.float64), UNKNOWN)
    hurt_fraction = np.minimum(1.0, (pending + failed + unknown + missing + not_serving) / pods)
    return hurt_fraction, (incidents == 0).astype(np.int64)


def _reset_reference(params, state, envs):
    """Start an episode on the envs `envs` (their observation is written by the caller)."""
    seeds = counter_hash(state.grid_seed[envs], state.episode[envs], np.zeros(len(envs), np.uint64),
                         np.full(len(envs), STREAM_OPS_EPISODE))
    u_cpu = _draws_reference(seeds, 0, 0, STREAM_OPS_BASE)
    u_memory = _draws_reference(seeds, 0, 1, STREAM_OPS_BASE)
    kinds = [_draws_reference(seeds, 0, k, STREAM_OPS_KIND) for k in range(params.initial_incidents)]
    targets = [_draws_reference(seeds, 0, k, STREAM_OPS_TARGET) for k in range(params.initial_incidents)]
    for n, e in enumerate(envs):
        _begin_episode(params, state, e, seeds[n], u_cpu[n], u_memory[n])
        for k in range(params.initial_incidents):
            state.ep_incidents[e] += _start_incident(params, state, e, kinds[k][n], targets[k][n])


def reset_reference(params, state, observations):
    """Start an episode on every env and observe it."""
    _reset_reference(params, state, np.arange(state.step.shape[0]))
    observe_reference(params, state, observations)


def step_reference(params, state, actions, observations, rewards, terminals, truncations,
                   auto_reset):
    """One step of every env; finished episodes restart when `auto_reset`, and the observation
    is then the new episode's first."""
    num_envs = state.step.shape[0]
    t = state.step + 1
    arrival = _draws_reference(state.episode_seed, t, 0, STREAM_OPS_ARRIVAL)
    kind = _draws_reference(state.episode_seed, t, 0, STREAM_OPS_KIND)
    target = _draws_reference(state.episode_seed, t, 0, STREAM_OPS_TARGET)
    outcome = np.zeros((num_envs, 4), dtype=np.int64)  # resolved, wrong, read, invalid
    for e in range(num_envs):
        outcome[e] = _apply_action(params, state, e, actions[e])
        _advance(params, state, e)
        if arrival[e] < params.incident_rate:
            state.ep_incidents[e] += _start_incident(params, state, e, kind[e], target[e])
    state.step[:] = t
    hurt_fraction, healthy = observe_reference(params, state, observations)
    resolved, wrong, read, invalid = outcome.T
    reward = (params.resolve_reward * resolved - params.wrong_fix_penalty * wrong
              - params.invalid_penalty * invalid - params.degrade_cost * hurt_fraction
              + params.healthy_bonus * healthy - params.step_penalty)
    state.ep_return[:] += reward
    state.ep_resolved[:] += resolved
    state.ep_wrong[:] += wrong
    state.ep_reads[:] += read
    state.ep_invalid[:] += invalid
    state.ep_healthy[:] += healthy
    rewards[:] = reward
    terminals[:] = False
    truncations[:] = t >= params.max_steps
    ended = np.flatnonzero(truncations)
    for e in ended:
        _finish_episode(state, e, t[e], _open_incidents(params, state, e))
    if auto_reset and len(ended):
        state.episode[ended] += np.uint64(1)
        _reset_reference(params, state, ended)
        observe_reference(params, state, observations)
