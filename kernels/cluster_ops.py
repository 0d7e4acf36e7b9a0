"""ClusterOps' kernels: cluster-code's ops agent on simulated incidents, thousands of clusters per call.

A cluster is `nodes` nodes and `deployments` Deployments of `replicas` pods each, the pods spread
evenly over the nodes. Incidents start (one at reset, then with probability `incident_rate` per
step), spread (their severity, the share of their object's pods hurt, grows by `spread_rate` per
step) and resolve (by the right fix, or by themselves for a pending PVC). At most one incident
per object:

  incident        object      pods hurt                cause flag revealed by     fix
  CRASH_LOOP      Deployment  failed                   GET_PODS, CHECK_LOGS       RESTART_FAILED_PODS
  BAD_ROLLOUT     Deployment  failed                   GET_DEPLOYMENTS            SCALE_DOWN_DEPLOYMENT
  PVC_PENDING     Deployment  pending                  GET_EVENTS, QUOTAS         none: binds after pvc_bind_steps
  NETWORK         Deployment  running, not ready       CHECK_LOGS                 RESTART_FAILED_PODS
  UNDER_REPLICATED Deployment missing (not scheduled)  (visible)                  SCALE_UP_DEPLOYMENT
  NOT_READY       node        unknown                  (visible)                  DRAIN_NODE
  PRESSURE        node        failed (evicted)         GET_EVENTS, TOP_NODES      DRAIN_NODE
  CORDONED        node        pending (unschedulable)  GET_NODES                  UNCORDON_NODE

A node under PRESSURE whose severity reaches 1 goes NOT_READY. DRAIN_NODE cordons the node;
it is RECOVERING for `recover_steps`, then Ready but still cordoned (a CORDONED incident) until
UNCORDON_NODE. Scaling a bad rollout down leaves its Deployment UNDER_REPLICATED.
DESCRIBE_UNHEALTHY reveals the cause of the most urgent incident that has a flag; TOP_PODS
reveals crash loops (restarts), GET_RESOURCE_QUOTAS pending PVCs. A new incident hides every
cause again (the picture changed: look again).

Actions carry no target: each acts on the most urgent object of its kind. A fix first looks
for an object whose incident it fixes (the most pods hurt, ties to the lowest index); without
one it hits the fallback object and counts as a wrong fix (`wrong_fix_penalty`):
  RESTART_FAILED_PODS    the crash-looping or network-faulted Deployment with the most pods hurt;
                         else the Deployment with the most pods hurt (a pending PVC restarts its
                         bind wait), else Deployment 0
  SCALE_UP_DEPLOYMENT    the under-replicated Deployment with the most pods missing
  SCALE_DOWN_DEPLOYMENT  the Deployment with a bad rollout with the most pods failing (it becomes
                         under-replicated); else the first healthy Deployment, which becomes
                         under-replicated
  DRAIN_NODE             the NotReady or pressured node with the most failing pods; else the
                         first Ready schedulable node, which is left cordoned
  UNCORDON_NODE          the cordoned Ready node with the most pods pending; else the first
                         RECOVERING node, which goes NotReady again

Reward per step (seed: resolving pays, degradation costs, a healthy bonus, a step penalty):
  resolve_reward * incidents fixed - wrong_fix_penalty * wrong fixes - invalid_penalty * invalid
  - degrade_cost * (pods hurt / pods) + healthy_bonus (no incident at all) - step_penalty.
Episodes are truncated after `max_steps` steps.

The rules of actions, spread and arrivals are written once below (Numba functions). The NumPy
reference (`kernels.cluster_ops_reference`: `reset_reference`, `step_reference`) draws every env's randomness, observes, rewards
and keeps the statistics in NumPy, vectorised over the batch, and calls those rules env by env;
the Numba kernel (`reset_envs`, `step_envs`, `_serial` variants for one env) does all of it per
env. Tests prove them bit-identical.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

import puffer_cluster.kernels.fast  # noqa: F401  (selects Numba's fork-safe threading layer before any prange)
from puffer_cluster.kernels.rng import counter_hash_nb, unit_float_nb

# Actions: Discrete(15), the seed's table in its order.
(GET_NODES, GET_PODS, GET_EVENTS, GET_DEPLOYMENTS, CHECK_LOGS, DESCRIBE_UNHEALTHY,
 RESTART_FAILED_PODS, SCALE_UP_DEPLOYMENT, SCALE_DOWN_DEPLOYMENT, DRAIN_NODE, UNCORDON_NODE,
 TOP_NODES, TOP_PODS, GET_RESOURCE_QUOTAS, WAIT) = range(15)
NUM_ACTIONS = 15
ACTION_NAMES = ("GET_NODES", "GET_PODS", "GET_EVENTS", "GET_DEPLOYMENTS", "CHECK_LOGS",
                "DESCRIBE_UNHEALTHY", "RESTART_FAILED_PODS", "SCALE_UP_DEPLOYMENT",
                "SCALE_DOWN_DEPLOYMENT", "DRAIN_NODE", "UNCORDON_NODE", "TOP_NODES", "TOP_PODS",
                "GET_RESOURCE_QUOTAS", "WAIT")
READ_ACTIONS = (GET_NODES, GET_PODS, GET_EVENTS, GET_DEPLOYMENTS, CHECK_LOGS, DESCRIBE_UNHEALTHY,
                TOP_NODES, TOP_PODS, GET_RESOURCE_QUOTAS)
WRITE_ACTIONS = (RESTART_FAILED_PODS, SCALE_UP_DEPLOYMENT, SCALE_DOWN_DEPLOYMENT, DRAIN_NODE,
                 UNCORDON_NODE)

# Cause flags (observation slots OBS_FLAGS + flag): -1 unknown, 0 absent, 1 present.
FLAG_PVC, FLAG_NETWORK, FLAG_PRESSURE, FLAG_CRASH_LOOP, FLAG_BAD_ROLLOUT, FLAG_CORDONED = range(6)
NUM_FLAGS = 6
FLAG_NAMES = ("pvc_pending", "network_fault", "resource_pressure", "crash_loop", "bad_rollout",
              "cordoned_node")
# Which flags each read action reveals (DESCRIBE_UNHEALTHY: the most urgent incident's).
REVEALS = {GET_NODES: (FLAG_CORDONED,), GET_PODS: (FLAG_CRASH_LOOP,),
           GET_EVENTS: (FLAG_PVC, FLAG_PRESSURE), GET_DEPLOYMENTS: (FLAG_BAD_ROLLOUT,),
           CHECK_LOGS: (FLAG_CRASH_LOOP, FLAG_NETWORK), TOP_NODES: (FLAG_PRESSURE,),
           TOP_PODS: (FLAG_CRASH_LOOP,), GET_RESOURCE_QUOTAS: (FLAG_PVC,)}
# The same as a bit mask per action (0 for DESCRIBE_UNHEALTHY, writes and WAIT), for the kernel.
REVEAL_MASKS = np.array([sum(1 << f for f in REVEALS.get(a, ())) for a in range(NUM_ACTIONS)],
                        dtype=np.int64)

# Observation: 18 floats in [-1, 1].
(OBS_NODES, OBS_READY, OBS_NOT_READY, OBS_RUNNING, OBS_PENDING, OBS_FAILED, OBS_UNKNOWN,
 OBS_HEALTHY_DEPLOYMENTS, OBS_CPU, OBS_MEMORY, OBS_WARNINGS, OBS_NORMAL) = range(12)
OBS_FLAGS = 12
OBS_SIZE = 18
OBS_NAMES = (
    "nodes / max_nodes", "Ready nodes / nodes", "NotReady nodes / nodes",
    "Running pods / pods wanted", "Pending pods / pods wanted", "Failed pods / pods wanted",
    "Unknown pods / pods wanted", "Deployments with every replica available / Deployments",
    "CPU in use / allocatable", "memory in use / allocatable",
    "Warning events / event_scale (clipped to 1)", "Normal events / event_scale (clipped to 1)",
    *(f"{name} (-1 unknown, 0 no, 1 yes)" for name in FLAG_NAMES),
)
UNKNOWN = -1.0

# Incidents: a Deployment's or a node's.
DEP_OK, CRASH_LOOP, BAD_ROLLOUT, PVC_PENDING, NETWORK, UNDER_REPLICATED = range(6)
NODE_READY, NOT_READY, PRESSURE, RECOVERING = range(4)
# Kinds a new incident is drawn from (uniformly); node kinds after Deployment kinds.
NEW_CRASH_LOOP, NEW_BAD_ROLLOUT, NEW_PVC, NEW_NETWORK, NEW_NOT_READY, NEW_PRESSURE, \
    NEW_CORDONED = range(7)
NUM_NEW_KINDS = 7

EPISODE_STATS = ("episode_return", "episode_length", "resolved", "wrong_fixes", "reads",
                 "incidents", "healthy_fraction", "open_incidents", "invalid_actions")
NUM_STATS = len(EPISODE_STATS)
(STAT_RETURN, STAT_LENGTH, STAT_RESOLVED, STAT_WRONG, STAT_READS, STAT_INCIDENTS,
 STAT_HEALTHY, STAT_OPEN, STAT_INVALID) = range(NUM_STATS)

# Random streams (kernels.rng's end at 12, SimArena's are 0x5A11A-B).
STREAM_OPS_EPISODE = np.uint64(0xC0D0)
STREAM_OPS_ARRIVAL = np.uint64(0xC0D1)
STREAM_OPS_KIND = np.uint64(0xC0D2)
STREAM_OPS_TARGET = np.uint64(0xC0D3)
STREAM_OPS_BASE = np.uint64(0xC0D4)
DRAWS = 3  # per env and step: arrival, kind, target


class ClusterOpsParams(NamedTuple):
    """Constants of the simulated clusters (the `[cluster_ops]` config section)."""
    nodes: int
    deployments: int
    replicas: int
    max_nodes: int
    max_steps: int
    initial_incidents: int
    incident_rate: float
    initial_severity: float
    spread_rate: float
    under_replicated_severity: float
    pvc_bind_steps: int
    recover_steps: int
    cpu_min: float
    cpu_max: float
    memory_min: float
    memory_max: float
    pressure_memory: float
    event_scale: float
    resolve_reward: float
    wrong_fix_penalty: float
    invalid_penalty: float
    degrade_cost: float
    healthy_bonus: float
    step_penalty: float


class ClusterOpsState(NamedTuple):
    """Mutable state of `E` clusters (first axis)."""
    node_status: np.ndarray    # int64 (E, nodes): NODE_READY, NOT_READY, PRESSURE, RECOVERING
    node_cordoned: np.ndarray  # int64 (E, nodes)
    node_severity: np.ndarray  # float64 (E, nodes): pressure, or pods pending behind a cordon
    node_timer: np.ndarray     # int64 (E, nodes): steps left RECOVERING
    dep_issue: np.ndarray      # int64 (E, deployments): DEP_OK, CRASH_LOOP, ...
    dep_severity: np.ndarray   # float64 (E, deployments)
    dep_timer: np.ndarray      # int64 (E, deployments): steps until a pending PVC binds
    revealed: np.ndarray       # int64 (E,): bit f set when flag f has been read since the last incident
    cpu_base: np.ndarray       # float64 (E,)
    memory_base: np.ndarray    # float64 (E,)
    touched: np.ndarray        # float64 (E,): pods the last write restarted or moved (Normal events)
    step: np.ndarray           # int64
    grid_seed: np.ndarray      # uint64
    episode: np.ndarray        # uint64, episodes started (0 for the first)
    episode_seed: np.ndarray   # uint64, the episode's draws
    ep_return: np.ndarray      # float64
    ep_resolved: np.ndarray    # int64
    ep_wrong: np.ndarray
    ep_reads: np.ndarray
    ep_incidents: np.ndarray
    ep_healthy: np.ndarray
    ep_invalid: np.ndarray
    last_stats: np.ndarray     # float64 (E, NUM_STATS)
    finished_sum: np.ndarray   # float64 (E, NUM_STATS)
    finished_count: np.ndarray  # int64 (E,)


def allocate_state(num_envs: int, params: ClusterOpsParams) -> ClusterOpsState:
    """Zeroed state; set `grid_seed`, then reset."""
    def ints(*shape):
        return np.zeros((num_envs, *shape), dtype=np.int64)

    def floats(*shape):
        return np.zeros((num_envs, *shape))

    n, d = params.nodes, params.deployments
    return ClusterOpsState(
        node_status=ints(n), node_cordoned=ints(n), node_severity=floats(n), node_timer=ints(n),
        dep_issue=ints(d), dep_severity=floats(d), dep_timer=ints(d), revealed=ints(),
        cpu_base=floats(), memory_base=floats(), touched=floats(), step=ints(),
        grid_seed=np.zeros(num_envs, dtype=np.uint64), episode=np.zeros(num_envs, dtype=np.uint64),
        episode_seed=np.zeros(num_envs, dtype=np.uint64), ep_return=floats(), ep_resolved=ints(),
        ep_wrong=ints(), ep_reads=ints(), ep_incidents=ints(), ep_healthy=ints(),
        ep_invalid=ints(), last_stats=floats(NUM_STATS), finished_sum=floats(NUM_STATS),
        finished_count=ints(),
    )


# ---------------------------------------------------------------- scalar rules (written once)


def write_observation(obs, nodes, max_nodes, ready, not_ready, pods, running, pending, failed,
                      unknown, healthy_deployments, deployments, cpu, memory, warnings, normal,
                      event_scale):
    """Slots 0 .. 11 of an observation row from cluster counts (the kernel's, or a live
    cluster's): see OBS_NAMES. The cause flags follow at OBS_FLAGS + flag."""
    obs[OBS_NODES] = min(1.0, nodes / max_nodes)
    obs[OBS_READY] = ready / max(1, nodes)
    obs[OBS_NOT_READY] = not_ready / max(1, nodes)
    obs[OBS_RUNNING] = min(1.0, running / max(1, pods))
    obs[OBS_PENDING] = min(1.0, pending / max(1, pods))
    obs[OBS_FAILED] = min(1.0, failed / max(1, pods))
    obs[OBS_UNKNOWN] = min(1.0, unknown / max(1, pods))
    obs[OBS_HEALTHY_DEPLOYMENTS] = healthy_deployments / max(1, deployments)
    obs[OBS_CPU] = min(1.0, max(0.0, cpu))
    obs[OBS_MEMORY] = min(1.0, max(0.0, memory))
    obs[OBS_WARNINGS] = min(1.0, warnings / event_scale)
    obs[OBS_NORMAL] = min(1.0, normal / event_scale)


_write_observation_nb = njit(inline="always")(write_observation)


@njit(inline="always", nogil=True, cache=True)
def _dep_hurt(params, state, e, j):
    """Pods of Deployment j hurt by its incident."""
    if state.dep_issue[e, j] == DEP_OK:
        return 0.0
    return state.dep_severity[e, j] * params.replicas


@njit(inline="always", nogil=True, cache=True)
def _node_hurt(params, state, e, i):
    """Pods of node i hurt by its incident (RECOVERING nodes hold none: they were drained)."""
    status = state.node_status[e, i]
    per_node = params.deployments * params.replicas / params.nodes
    if status == NOT_READY:
        return per_node
    if status == PRESSURE or (status == NODE_READY and state.node_cordoned[e, i] == 1):
        return state.node_severity[e, i] * per_node
    return 0.0


@njit(inline="always", nogil=True, cache=True)
def _flag_present(state, e, nodes, deployments, flag):
    """Whether an incident with cause flag `flag` is open in env e."""
    if flag == FLAG_PRESSURE or flag == FLAG_CORDONED:
        for i in range(nodes):
            status = state.node_status[e, i]
            if flag == FLAG_PRESSURE and status == PRESSURE:
                return True
            if flag == FLAG_CORDONED and status == NODE_READY and state.node_cordoned[e, i] == 1:
                return True
        return False
    issue = PVC_PENDING if flag == FLAG_PVC else NETWORK if flag == FLAG_NETWORK else \
        CRASH_LOOP if flag == FLAG_CRASH_LOOP else BAD_ROLLOUT
    for j in range(deployments):
        if state.dep_issue[e, j] == issue:
            return True
    return False


@njit(inline="always", nogil=True, cache=True)
def _most_urgent_flag(params, state, e):
    """The cause flag of the incident with a flag that hurts the most pods (Deployments first,
    then nodes, lowest index on ties); -1 when none is open."""
    best, best_hurt = -1, -1.0
    for j in range(params.deployments):
        issue = state.dep_issue[e, j]
        flag = FLAG_CRASH_LOOP if issue == CRASH_LOOP else FLAG_BAD_ROLLOUT if issue == BAD_ROLLOUT \
            else FLAG_PVC if issue == PVC_PENDING else FLAG_NETWORK if issue == NETWORK else -1
        hurt = _dep_hurt(params, state, e, j)
        if flag >= 0 and hurt > best_hurt:
            best, best_hurt = flag, hurt
    for i in range(params.nodes):
        status = state.node_status[e, i]
        flag = FLAG_PRESSURE if status == PRESSURE else \
            FLAG_CORDONED if status == NODE_READY and state.node_cordoned[e, i] == 1 else -1
        hurt = _node_hurt(params, state, e, i)
        if flag >= 0 and hurt > best_hurt:
            best, best_hurt = flag, hurt
    return best


@njit(inline="always", nogil=True, cache=True)
def _best_deployment(params, state, e, issue_a, issue_b):
    """The Deployment whose incident is issue_a or issue_b hurting the most pods; -1 if none."""
    best, best_hurt = -1, -1.0
    for j in range(params.deployments):
        issue = state.dep_issue[e, j]
        if issue != DEP_OK and (issue == issue_a or issue == issue_b):
            hurt = _dep_hurt(params, state, e, j)
            if hurt > best_hurt:
                best, best_hurt = j, hurt
    return best


@njit(inline="always", nogil=True, cache=True)
def _apply_action(params, state, e, action):
    """(resolved, wrong, read, invalid) after `action` (see the module docstring)."""
    per_node = params.deployments * params.replicas / params.nodes
    resolved, wrong, read, invalid = 0, 0, 0, 0
    state.touched[e] = 0.0
    if action < 0 or action >= NUM_ACTIONS:
        invalid = 1
    elif action == DESCRIBE_UNHEALTHY:
        read = 1
        flag = _most_urgent_flag(params, state, e)
        if flag >= 0:
            state.revealed[e] |= 1 << flag
    elif action == RESTART_FAILED_PODS:
        j = _best_deployment(params, state, e, CRASH_LOOP, NETWORK)
        if j >= 0:
            resolved = 1
            state.touched[e] = params.replicas
            state.dep_issue[e, j] = DEP_OK
            state.dep_severity[e, j] = 0.0
        else:
            wrong = 1
            j = _best_deployment(params, state, e, BAD_ROLLOUT, PVC_PENDING)
            j = _best_deployment(params, state, e, UNDER_REPLICATED, -1) if j < 0 else j
            j = 0 if j < 0 else j
            state.touched[e] = params.replicas
            if state.dep_issue[e, j] == PVC_PENDING:
                state.dep_timer[e, j] = params.pvc_bind_steps
    elif action == SCALE_UP_DEPLOYMENT:
        j = _best_deployment(params, state, e, UNDER_REPLICATED, -1)
        if j >= 0:
            resolved = 1
            state.touched[e] = state.dep_severity[e, j] * params.replicas
            state.dep_issue[e, j] = DEP_OK
            state.dep_severity[e, j] = 0.0
        else:
            wrong = 1
    elif action == SCALE_DOWN_DEPLOYMENT:
        j = _best_deployment(params, state, e, BAD_ROLLOUT, -1)
        if j >= 0:
            resolved = 1
            state.touched[e] = params.replicas
            state.dep_issue[e, j] = UNDER_REPLICATED
            state.dep_severity[e, j] = params.under_replicated_severity
        else:
            wrong = 1
            for k in range(params.deployments):
                if state.dep_issue[e, k] == DEP_OK:
                    state.dep_issue[e, k] = UNDER_REPLICATED
                    state.dep_severity[e, k] = params.under_replicated_severity
                    break
    elif action == DRAIN_NODE:
        best, best_hurt = -1, -1.0
        for i in range(params.nodes):
            status = state.node_status[e, i]
            if status == NOT_READY or status == PRESSURE:
                hurt = _node_hurt(params, state, e, i)
                if hurt > best_hurt:
                    best, best_hurt = i, hurt
        if best >= 0:
            resolved = 1
            state.touched[e] = per_node
            state.node_status[e, best] = RECOVERING
            state.node_timer[e, best] = params.recover_steps
            state.node_cordoned[e, best] = 1
            state.node_severity[e, best] = 0.0
        else:
            wrong = 1
            for i in range(params.nodes):
                if state.node_status[e, i] == NODE_READY and state.node_cordoned[e, i] == 0:
                    state.touched[e] = per_node
                    state.node_cordoned[e, i] = 1
                    state.node_severity[e, i] = 0.0
                    break
    elif action == UNCORDON_NODE:
        best, best_hurt = -1, -1.0
        for i in range(params.nodes):
            if state.node_status[e, i] == NODE_READY and state.node_cordoned[e, i] == 1:
                hurt = _node_hurt(params, state, e, i)
                if hurt > best_hurt:
                    best, best_hurt = i, hurt
        if best >= 0:
            resolved = 1
            state.node_cordoned[e, best] = 0
            state.node_severity[e, best] = 0.0
        else:
            wrong = 1
            for i in range(params.nodes):
                if state.node_status[e, i] == RECOVERING:
                    state.node_status[e, i] = NOT_READY
                    state.node_cordoned[e, i] = 0
                    state.node_timer[e, i] = 0
                    break
    elif action != WAIT:
        read = 1
        state.revealed[e] |= REVEAL_MASKS[action]
    return resolved, wrong, read, invalid


@njit(inline="always", nogil=True, cache=True)
def _advance(params, state, e):
    """Incidents spread, timers run: pressure becomes NotReady at severity 1, a recovered node
    stays cordoned, a pending PVC binds."""
    for i in range(params.nodes):
        status = state.node_status[e, i]
        if status == PRESSURE:
            state.node_severity[e, i] = min(1.0, state.node_severity[e, i] + params.spread_rate)
            if state.node_severity[e, i] >= 1.0:
                state.node_status[e, i] = NOT_READY
        elif status == RECOVERING:
            state.node_timer[e, i] -= 1
            if state.node_timer[e, i] <= 0:
                state.node_status[e, i] = NODE_READY
                state.node_severity[e, i] = 0.0
        elif status == NODE_READY and state.node_cordoned[e, i] == 1:
            state.node_severity[e, i] = min(1.0, state.node_severity[e, i] + params.spread_rate)
    for j in range(params.deployments):
        issue = state.dep_issue[e, j]
        if issue == DEP_OK or issue == UNDER_REPLICATED:
            continue
        state.dep_severity[e, j] = min(1.0, state.dep_severity[e, j] + params.spread_rate)
        if issue == PVC_PENDING:
            state.dep_timer[e, j] -= 1
            if state.dep_timer[e, j] <= 0:
                state.dep_issue[e, j] = DEP_OK
                state.dep_severity[e, j] = 0.0


@njit(inline="always", nogil=True, cache=True)
def _start_incident(params, state, e, u_kind, u_target):
    """A new incident of a uniformly drawn kind on a uniformly drawn free object; returns 1 if
    one started (0: no free object of that kind)."""
    kind = min(NUM_NEW_KINDS - 1, int(u_kind * NUM_NEW_KINDS))
    on_node = kind >= NEW_NOT_READY
    count = params.nodes if on_node else params.deployments
    free = 0
    for k in range(count):
        if on_node:
            free += state.node_status[e, k] == NODE_READY and state.node_cordoned[e, k] == 0
        else:
            free += state.dep_issue[e, k] == DEP_OK
    if free == 0:
        return 0
    pick = min(free - 1, int(u_target * free))
    for k in range(count):
        if on_node:
            if state.node_status[e, k] != NODE_READY or state.node_cordoned[e, k] != 0:
                continue
        elif state.dep_issue[e, k] != DEP_OK:
            continue
        if pick == 0:
            if kind == NEW_NOT_READY:
                state.node_status[e, k] = NOT_READY
                state.node_severity[e, k] = 1.0
            elif kind == NEW_PRESSURE:
                state.node_status[e, k] = PRESSURE
                state.node_severity[e, k] = params.initial_severity
            elif kind == NEW_CORDONED:
                state.node_cordoned[e, k] = 1
                state.node_severity[e, k] = params.initial_severity
            else:
                state.dep_issue[e, k] = CRASH_LOOP if kind == NEW_CRASH_LOOP else \
                    BAD_ROLLOUT if kind == NEW_BAD_ROLLOUT else \
                    PVC_PENDING if kind == NEW_PVC else NETWORK
                state.dep_severity[e, k] = params.initial_severity
                state.dep_timer[e, k] = params.pvc_bind_steps
            break
        pick -= 1
    state.revealed[e] = 0
    return 1


@njit(inline="always", nogil=True, cache=True)
def _begin_episode(params, state, e, episode_seed, u_cpu, u_memory):
    state.episode_seed[e] = episode_seed
    for i in range(params.nodes):
        state.node_status[e, i] = NODE_READY
        state.node_cordoned[e, i] = 0
        state.node_severity[e, i] = 0.0
        state.node_timer[e, i] = 0
    for j in range(params.deployments):
        state.dep_issue[e, j] = DEP_OK
        state.dep_severity[e, j] = 0.0
        state.dep_timer[e, j] = 0
    state.revealed[e] = 0
    state.cpu_base[e] = params.cpu_min + (params.cpu_max - params.cpu_min) * u_cpu
    state.memory_base[e] = params.memory_min + (params.memory_max - params.memory_min) * u_memory
    state.touched[e] = 0.0
    state.step[e] = 0
    state.ep_return[e] = 0.0
    state.ep_resolved[e] = 0
    state.ep_wrong[e] = 0
    state.ep_reads[e] = 0
    state.ep_incidents[e] = 0
    state.ep_healthy[e] = 0
    state.ep_invalid[e] = 0


@njit(inline="always", nogil=True, cache=True)
def _finish_episode(state, e, length, open_incidents):
    stats = state.last_stats[e]
    stats[STAT_RETURN] = state.ep_return[e]
    stats[STAT_LENGTH] = length
    stats[STAT_RESOLVED] = state.ep_resolved[e]
    stats[STAT_WRONG] = state.ep_wrong[e]
    stats[STAT_READS] = state.ep_reads[e]
    stats[STAT_INCIDENTS] = state.ep_incidents[e]
    stats[STAT_HEALTHY] = state.ep_healthy[e] / length
    stats[STAT_OPEN] = open_incidents
    stats[STAT_INVALID] = state.ep_invalid[e]
    for k in range(stats.shape[0]):
        state.finished_sum[e, k] += stats[k]
    state.finished_count[e] += 1


@njit(inline="always", nogil=True, cache=True)
def _reward(params, resolved, wrong, invalid, hurt_fraction, healthy):
    return (params.resolve_reward * resolved - params.wrong_fix_penalty * wrong
            - params.invalid_penalty * invalid - params.degrade_cost * hurt_fraction
            + params.healthy_bonus * healthy - params.step_penalty)


@njit(inline="always", nogil=True, cache=True)
def _open_incidents(params, state, e):
    count = 0
    for i in range(params.nodes):
        count += state.node_status[e, i] != NODE_READY or state.node_cordoned[e, i] == 1
    for j in range(params.deployments):
        count += state.dep_issue[e, j] != DEP_OK
    return count



# ---------------------------------------------------------------- the Numba kernel


@njit(inline="always", nogil=True, cache=True)
def _draw_nb(seed, t, k, stream):
    return unit_float_nb(counter_hash_nb(seed, np.uint64(t), np.uint64(k), stream))


@njit(inline="always", nogil=True, cache=True)
def _observe_nb(params, state, e, observations):
    """Write env e's observation; returns (pods hurt / pods, 1 if no incident is open)."""
    nodes, deployments = params.nodes, params.deployments
    pods = deployments * params.replicas
    not_ready, incidents, healthy_deployments = 0, 0, 0
    pending, failed, unknown, missing, not_serving, pressure = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for i in range(nodes):
        status = state.node_status[e, i]
        cordoned = state.node_cordoned[e, i] == 1
        hurt = _node_hurt(params, state, e, i)
        if status == NOT_READY:
            not_ready += 1
            unknown += hurt
        elif status == PRESSURE:
            failed += hurt
            pressure += state.node_severity[e, i]
        elif status == NODE_READY and cordoned:
            pending += hurt
        if status != NODE_READY or cordoned:
            incidents += 1
    for j in range(deployments):
        issue = state.dep_issue[e, j]
        hurt = _dep_hurt(params, state, e, j)
        if issue == DEP_OK:
            healthy_deployments += 1
        else:
            incidents += 1
        if issue == CRASH_LOOP or issue == BAD_ROLLOUT:
            failed += hurt
        elif issue == PVC_PENDING:
            pending += hurt
        elif issue == NETWORK:
            not_serving += hurt
        elif issue == UNDER_REPLICATED:
            missing += hurt
    running = max(0.0, pods - pending - failed - unknown - missing)
    obs = observations[e]
    _write_observation_nb(obs, nodes, params.max_nodes, nodes - not_ready, not_ready, pods, running,
                          pending, failed, unknown, healthy_deployments, deployments,
                          state.cpu_base[e] * running / pods,
                          state.memory_base[e] + params.pressure_memory * pressure / nodes,
                          incidents + pending + failed + unknown + not_serving, state.touched[e],
                          params.event_scale)
    for f in range(NUM_FLAGS):
        if state.revealed[e] & (1 << f):
            obs[OBS_FLAGS + f] = 1.0 if _flag_present(state, e, nodes, deployments, f) else 0.0
        else:
            obs[OBS_FLAGS + f] = UNKNOWN
    hurt_fraction = min(1.0, (pending + failed + unknown + missing + not_serving) / pods)
    return hurt_fraction, 1 if incidents == 0 else 0


@njit(nogil=True, cache=True)
def _reset_env_nb(params, state, e, observations):
    seed = counter_hash_nb(state.grid_seed[e], state.episode[e], np.uint64(0), STREAM_OPS_EPISODE)
    _begin_episode(params, state, e, seed, _draw_nb(seed, 0, 0, STREAM_OPS_BASE),
                   _draw_nb(seed, 0, 1, STREAM_OPS_BASE))
    for k in range(params.initial_incidents):
        state.ep_incidents[e] += _start_incident(params, state, e, _draw_nb(seed, 0, k, STREAM_OPS_KIND),
                                                 _draw_nb(seed, 0, k, STREAM_OPS_TARGET))
    _observe_nb(params, state, e, observations)


@njit(nogil=True, cache=True)
def _step_env_nb(params, state, e, actions, observations, rewards, terminals, truncations,
                 auto_reset):
    resolved, wrong, read, invalid = _apply_action(params, state, e, actions[e])
    _advance(params, state, e)
    t = state.step[e] + 1
    seed = state.episode_seed[e]
    if _draw_nb(seed, t, 0, STREAM_OPS_ARRIVAL) < params.incident_rate:
        state.ep_incidents[e] += _start_incident(params, state, e, _draw_nb(seed, t, 0, STREAM_OPS_KIND),
                                                 _draw_nb(seed, t, 0, STREAM_OPS_TARGET))
    state.step[e] = t
    hurt_fraction, healthy = _observe_nb(params, state, e, observations)
    reward = _reward(params, resolved, wrong, invalid, hurt_fraction, healthy)
    state.ep_return[e] += reward
    state.ep_resolved[e] += resolved
    state.ep_wrong[e] += wrong
    state.ep_reads[e] += read
    state.ep_invalid[e] += invalid
    state.ep_healthy[e] += healthy
    rewards[e] = reward
    terminals[e] = False
    truncated = t >= params.max_steps
    truncations[e] = truncated
    if truncated:
        _finish_episode(state, e, t, _open_incidents(params, state, e))
        if auto_reset:
            state.episode[e] += np.uint64(1)
            _reset_env_nb(params, state, e, observations)


def _reset_envs_parallel(params, state, observations):
    for e in prange(state.step.shape[0]):
        _reset_env_nb(params, state, e, observations)


def _step_envs_parallel(params, state, actions, observations, rewards, terminals, truncations,
                        auto_reset):
    for e in prange(state.step.shape[0]):
        _step_env_nb(params, state, e, actions, observations, rewards, terminals, truncations,
                     auto_reset)


def _reset_envs_serial(params, state, observations):
    for e in range(state.step.shape[0]):
        _reset_env_nb(params, state, e, observations)


def _step_envs_serial(params, state, actions, observations, rewards, terminals, truncations,
                      auto_reset):
    for e in range(state.step.shape[0]):
        _step_env_nb(params, state, e, actions, observations, rewards, terminals, truncations,
                     auto_reset)


# Separate Python functions for the parallel and serial builds: Numba's on-disk cache is keyed by
# the function, so two builds of one function would load each other's code.
reset_envs = njit(parallel=True, nogil=True, cache=True)(_reset_envs_parallel)
step_envs = njit(parallel=True, nogil=True, cache=True)(_step_envs_parallel)
reset_envs_serial = njit(nogil=True, cache=True)(_reset_envs_serial)
step_envs_serial = njit(nogil=True, cache=True)(_step_envs_serial)
