"""SimArena's kernels: sim-arena's edit -> re-simulate -> observe loop on arrays.

A scenario (a trace compiled by `puffer_cluster.simarena`) is the target Deployment's initial
first-container requests and replicas, how its pod's effective request follows from the first
container (`pod = max(first + rest, floor) + overhead`, the rest being the other containers and
sidecars, the floor the largest init container), and the nodes as every other workload of the
trace leaves them at the observation time (requests, the scheduler's scoring sums, pod counts).

Each step applies the action's edit to the env's (cpu, memory, replicas) exactly as
`puffer_cluster.traces.ops` edits a trace (steps, floors, ceilings that refuse), then places the
target's `replicas` identical pods from scratch on the background nodes, as sim-arena re-runs a
whole simulation per step, with the scheduler of `puffer_cluster.replay`: pods in order, each to
the feasible node (requests within capacity, fewer than `max_pods` pods) with the highest
least-allocated score (ties to the lowest index), or the lowest feasible index (first-fit). A
pod that fits nowhere stays pending, and so do the identical pods after it; for it the kernel
counts the nodes short of CPU, of memory and of pod slots, as kube-scheduler's FailedScheduling
message does ("0/4 nodes are available: 4 Insufficient cpu").

Two backends compute the same bits: `place_reference` / `reset_reference` / `step_reference`
(NumPy placement, vectorised over nodes as in `puffer_cluster.replay`, and a Python loop over
envs) and the Numba kernel (`reset_envs`, `step_envs`, with `_serial` variants for one env).
The scalar rules (edits, rewards, the observation) are written once below and compiled by Numba
for the fast path, as `kernels.rng` does.

Rewards (sim-arena's `observe/reward.py`; success = ready == target == total, none pending):
    base        1 on success, else 0
    shaped      1 on success, else -d|ready - target| - p pending - o overshoot - u undershoot,
                clipped to [-1, 1]
    max_punish  base - penalty for each of cpu, memory, replicas above its ceiling
    cost_aware  shaped - cost_edit per edit action - cost_resource * the fraction of the
                cluster's CPU and memory the Deployment reserves (replicas x pod request)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

import puffer_cluster.kernels.fast  # noqa: F401  (selects Numba's fork-safe threading layer before any prange)
from puffer_cluster.kernels.rng import counter_hash, counter_hash_nb
# The scheduler `place_nb` compiles, its constants (blocked[:, k]: the resources a node lacks for
# the first pod that fits nowhere) and the reference it is tested against.
from puffer_cluster.kernels.placement import (
    BLOCKED_CPU, BLOCKED_MEM, BLOCKED_SLOT, NONZERO_CPU_MILLICORES, NONZERO_MEMORY_BYTES,
    NodeAllocations,
)

# Actions: Discrete(7), sim-arena's numbering (runner/one_step.py ACTION_SPACE).
NOOP, BUMP_CPU, BUMP_MEM, SCALE_UP, REDUCE_CPU, REDUCE_MEM, SCALE_DOWN = range(7)
NUM_ACTIONS = 7
ACTION_NAMES = ("noop", "bump_cpu", "bump_mem", "scale_up", "reduce_cpu", "reduce_mem", "scale_down")

# Observation: 14 floats in [0, OBS_HIGH].
(OBS_READY, OBS_PENDING, OBS_TOTAL, OBS_TARGET, OBS_POD_CPU, OBS_POD_MEM, OBS_CPU_CEILING,
 OBS_MEM_CEILING, OBS_REPLICAS_CEILING, OBS_NO_CPU, OBS_NO_MEM, OBS_NO_SLOT, OBS_TIME,
 OBS_IDLE_EDIT) = range(14)
OBS_SIZE = 14
OBS_HIGH = 4.0
OBS_NAMES = (
    "ready / target", "pending / target", "total / target", "target / max_replicas",
    "pod cpu request / node cpu", "pod memory request / node memory",
    "container cpu / max_cpu", "container memory / max_memory", "replicas / max_replicas",
    "nodes short of cpu / nodes", "nodes short of memory / nodes", "nodes without a pod slot / nodes",
    "step / max_steps", "last action was an edit that changed nothing",
)

REWARDS = ("base", "shaped", "max_punish", "cost_aware")
REWARD_BASE, REWARD_SHAPED, REWARD_MAX_PUNISH, REWARD_COST_AWARE = range(4)
SAMPLINGS = ("random", "cycle")
SAMPLE_RANDOM, SAMPLE_CYCLE = range(2)

EPISODE_STATS = ("episode_return", "episode_length", "solved", "edits", "refused_edits",
                 "idle_edits", "invalid_actions")
NUM_STATS = len(EPISODE_STATS)
(STAT_RETURN, STAT_LENGTH, STAT_SOLVED, STAT_EDITS, STAT_REFUSED, STAT_IDLE,
 STAT_INVALID) = range(NUM_STATS)

STREAM_SCENARIO = np.uint64(0x5A11A)  # the scenario draw (kernels.rng streams end at 12)


class SimArenaParams(NamedTuple):
    """Constants of the task (from the `[simarena]` and `[replay]` config sections)."""
    nodes: int
    cap_cpu: int          # millicores per node
    cap_mem: int          # bytes per node
    max_pods: int         # pods a node accepts
    first_fit: bool       # else least-allocated
    cpu_step: int
    mem_step: int
    replica_step: int
    min_cpu: int
    min_mem: int
    min_replicas: int
    max_cpu: int
    max_mem: int
    max_replicas: int
    max_steps: int
    reward: int           # REWARD_*
    sampling: int         # SAMPLE_*
    shaped_distance: float
    shaped_pending: float
    shaped_overshoot: float
    shaped_undershoot: float
    punish_penalty: float
    cost_edit: float
    cost_resource: float


class Scenarios(NamedTuple):
    """`S` compiled scenarios; node arrays are (S, nodes), all int64."""
    target: np.ndarray
    cpu: np.ndarray        # initial first-container cpu request (millicores)
    mem: np.ndarray        # initial first-container memory request (bytes)
    replicas: np.ndarray
    cpu_rest: np.ndarray   # pod cpu = max(cpu + cpu_rest, cpu_floor) + cpu_over
    cpu_floor: np.ndarray
    cpu_over: np.ndarray
    mem_rest: np.ndarray
    mem_floor: np.ndarray
    mem_over: np.ndarray
    bg_cpu: np.ndarray     # requested by every other pod, per node
    bg_mem: np.ndarray
    bg_score_cpu: np.ndarray  # the same with kube-scheduler's non-zero defaults (scoring)
    bg_score_mem: np.ndarray
    bg_pods: np.ndarray


class SimArenaState(NamedTuple):
    """Mutable state of `E` envs (first axis)."""
    scenario: np.ndarray   # int64
    cpu: np.ndarray        # int64, first-container cpu request (millicores)
    mem: np.ndarray        # int64, bytes
    replicas: np.ndarray   # int64
    step: np.ndarray       # int64, steps taken this episode
    ready: np.ndarray      # int64, pods placed by the last placement
    pending: np.ndarray    # int64
    blocked: np.ndarray    # int64 (E, 3): nodes short of cpu / memory / a pod slot
    idle_edit: np.ndarray  # int64, 1 when the last action was an edit that changed nothing
    slot: np.ndarray       # int64, the env's index (cycle sampling)
    stride: np.ndarray     # int64, envs sharing the cycle (cycle sampling)
    grid_seed: np.ndarray  # uint64
    episode: np.ndarray    # uint64, episodes started (0 for the first)
    ep_return: np.ndarray  # float64
    ep_edits: np.ndarray   # int64
    ep_refused: np.ndarray
    ep_idle: np.ndarray
    ep_invalid: np.ndarray
    last_stats: np.ndarray     # float64 (E, NUM_STATS)
    finished_sum: np.ndarray   # float64 (E, NUM_STATS)
    finished_count: np.ndarray  # int64 (E,)
    work_cpu: np.ndarray   # int64 (E, nodes): the placement's node sums
    work_mem: np.ndarray
    work_score_cpu: np.ndarray
    work_score_mem: np.ndarray
    work_pods: np.ndarray


def allocate_state(num_envs: int, nodes: int) -> SimArenaState:
    """Zeroed state; set `grid_seed`, `slot`, `stride`, then reset."""
    def ints():
        return np.zeros(num_envs, dtype=np.int64)

    def node_ints():
        return np.zeros((num_envs, nodes), dtype=np.int64)

    return SimArenaState(
        scenario=ints(), cpu=ints(), mem=ints(), replicas=ints(), step=ints(), ready=ints(),
        pending=ints(), blocked=np.zeros((num_envs, 3), dtype=np.int64), idle_edit=ints(),
        slot=np.arange(num_envs, dtype=np.int64), stride=np.full(num_envs, num_envs, dtype=np.int64),
        grid_seed=np.zeros(num_envs, dtype=np.uint64), episode=np.zeros(num_envs, dtype=np.uint64),
        ep_return=np.zeros(num_envs), ep_edits=ints(), ep_refused=ints(), ep_idle=ints(),
        ep_invalid=ints(), last_stats=np.zeros((num_envs, NUM_STATS)),
        finished_sum=np.zeros((num_envs, NUM_STATS)), finished_count=ints(),
        work_cpu=node_ints(), work_mem=node_ints(), work_score_cpu=node_ints(),
        work_score_mem=node_ints(), work_pods=node_ints(),
    )


# ---------------------------------------------------------------- scalar rules (written once)


def _pod_request(first, rest, floor, over):
    return max(first + rest, floor) + over


def _apply_edit(params, action, cpu, mem, replicas):
    """(cpu, mem, replicas, edit, refused, idle, invalid) after `action`, as the trace ops do:
    a bump past its ceiling is refused, a reduce stops at its floor (and does nothing at or
    below it)."""
    edit = 0
    refused = 0
    idle = 0
    invalid = 0
    if action < 0 or action >= NUM_ACTIONS:
        invalid = 1
    elif action != NOOP:
        edit = 1
        if action == BUMP_CPU:
            if cpu + params.cpu_step > params.max_cpu:
                refused = 1
            else:
                cpu = cpu + params.cpu_step
        elif action == BUMP_MEM:
            if mem + params.mem_step > params.max_mem:
                refused = 1
            else:
                mem = mem + params.mem_step
        elif action == SCALE_UP:
            if replicas + params.replica_step > params.max_replicas:
                refused = 1
            else:
                replicas = replicas + params.replica_step
        elif action == REDUCE_CPU:
            if cpu > params.min_cpu:
                cpu = max(params.min_cpu, cpu - params.cpu_step)
            else:
                idle = 1
        elif action == REDUCE_MEM:
            if mem > params.min_mem:
                mem = max(params.min_mem, mem - params.mem_step)
            else:
                idle = 1
        else:  # SCALE_DOWN
            if replicas > params.min_replicas:
                replicas = max(params.min_replicas, replicas - params.replica_step)
            else:
                idle = 1
    if refused:
        idle = 1
    return cpu, mem, replicas, edit, refused, idle, invalid


def _reward(params, target, ready, pending, total, cpu, mem, replicas, pod_cpu, pod_mem, edit):
    success = ready == target and total == target and pending == 0
    base = 1.0 if success else 0.0
    if params.reward == REWARD_BASE:
        return base
    if params.reward == REWARD_MAX_PUNISH:
        penalty = 0.0
        if cpu > params.max_cpu:
            penalty += params.punish_penalty
        if mem > params.max_mem:
            penalty += params.punish_penalty
        if replicas > params.max_replicas:
            penalty += params.punish_penalty
        return base - penalty
    if success:
        shaped = 1.0
    else:
        shaped = -params.shaped_distance * abs(ready - target) - params.shaped_pending * pending
        if total > target:
            shaped -= params.shaped_overshoot * (total - target)
        elif total < target:
            shaped -= params.shaped_undershoot * (target - total)
        shaped = min(1.0, max(-1.0, shaped))
    if params.reward == REWARD_SHAPED:
        return shaped
    reserved = total * (pod_cpu / params.cap_cpu + pod_mem / params.cap_mem) / (2.0 * params.nodes)
    return shaped - params.cost_edit * edit - params.cost_resource * reserved


def _write_observation(params, state, scenarios, e, observations, pod_cpu, pod_mem):
    """Row `e` of the observation (see OBS_NAMES), every value clipped to [0, OBS_HIGH]."""
    target = scenarios.target[state.scenario[e]]
    high = OBS_HIGH
    obs = observations[e]
    obs[OBS_READY] = min(high, max(0.0, state.ready[e] / target))
    obs[OBS_PENDING] = min(high, max(0.0, state.pending[e] / target))
    obs[OBS_TOTAL] = min(high, max(0.0, state.replicas[e] / target))
    obs[OBS_TARGET] = min(high, max(0.0, target / max(1, params.max_replicas)))
    obs[OBS_POD_CPU] = min(high, max(0.0, pod_cpu / params.cap_cpu))
    obs[OBS_POD_MEM] = min(high, max(0.0, pod_mem / params.cap_mem))
    obs[OBS_CPU_CEILING] = min(high, max(0.0, state.cpu[e] / max(1, params.max_cpu)))
    obs[OBS_MEM_CEILING] = min(high, max(0.0, state.mem[e] / max(1, params.max_mem)))
    obs[OBS_REPLICAS_CEILING] = min(high, max(0.0, state.replicas[e] / max(1, params.max_replicas)))
    obs[OBS_NO_CPU] = state.blocked[e, BLOCKED_CPU] / params.nodes
    obs[OBS_NO_MEM] = state.blocked[e, BLOCKED_MEM] / params.nodes
    obs[OBS_NO_SLOT] = state.blocked[e, BLOCKED_SLOT] / params.nodes
    obs[OBS_TIME] = min(high, max(0.0, state.step[e] / params.max_steps))
    obs[OBS_IDLE_EDIT] = 1.0 if state.idle_edit[e] else 0.0


def _cycle_scenario(state, num_scenarios, e):
    return (state.slot[e] + np.int64(state.episode[e]) * state.stride[e]) % num_scenarios


def _scenario_for(params, state, num_scenarios, e):
    if params.sampling == SAMPLE_CYCLE:
        return int(_cycle_scenario(state, num_scenarios, e))
    one = np.ones(1, dtype=np.uint64)
    drawn = counter_hash(state.grid_seed[e] * one, state.episode[e] * one, 0 * one,
                         STREAM_SCENARIO * one)[0]
    return int(drawn % np.uint64(num_scenarios))


def _begin_episode(params, state, scenarios, e, s):
    state.scenario[e] = s
    state.cpu[e] = scenarios.cpu[s]
    state.mem[e] = scenarios.mem[s]
    state.replicas[e] = scenarios.replicas[s]
    state.step[e] = 0
    state.idle_edit[e] = 0
    state.ep_return[e] = 0.0
    state.ep_edits[e] = 0
    state.ep_refused[e] = 0
    state.ep_idle[e] = 0
    state.ep_invalid[e] = 0


def _finish_episode(state, e, length, solved):
    stats = state.last_stats[e]
    stats[STAT_RETURN] = state.ep_return[e]
    stats[STAT_LENGTH] = length
    stats[STAT_SOLVED] = 1.0 if solved else 0.0
    stats[STAT_EDITS] = state.ep_edits[e]
    stats[STAT_REFUSED] = state.ep_refused[e]
    stats[STAT_IDLE] = state.ep_idle[e]
    stats[STAT_INVALID] = state.ep_invalid[e]
    for k in range(stats.shape[0]):
        state.finished_sum[e, k] += stats[k]
    state.finished_count[e] += 1


_pod_request_nb = njit(inline="always")(_pod_request)
_apply_edit_nb = njit(inline="always")(_apply_edit)
_reward_nb = njit(inline="always")(_reward)
_finish_episode_nb = njit(nogil=True, cache=True)(_finish_episode)
_begin_episode_nb = njit(nogil=True, cache=True)(_begin_episode)


_write_observation_nb = njit(nogil=True, cache=True)(_write_observation)
_cycle_scenario_nb = njit(inline="always")(_cycle_scenario)


# ---------------------------------------------------------------- placement: NumPy reference


def place_reference(bg_cpu, bg_mem, bg_score_cpu, bg_score_mem, bg_pods, cap_cpu, cap_mem,
                    max_pods, first_fit, pod_cpu, pod_mem, count, blocked):
    """Place `count` pods of (pod_cpu, pod_mem) on the background nodes; returns how many fit.
    `blocked[:]` gets the nodes short of cpu, memory and a pod slot for the first pod that fits
    nowhere (zeros when all fit). The replay's scheduler itself (`NodeAllocations.place`)."""
    nodes = NodeAllocations.from_arrays(bg_cpu, bg_mem, bg_score_cpu, bg_score_mem, bg_pods,
                                        cap_cpu, cap_mem, max_pods, first_fit)
    return nodes.place(pod_cpu, pod_mem, count, blocked)


def _place_env_reference(params, state, scenarios, e):
    s = state.scenario[e]
    pod_cpu = _pod_request(state.cpu[e], scenarios.cpu_rest[s], scenarios.cpu_floor[s], scenarios.cpu_over[s])
    pod_mem = _pod_request(state.mem[e], scenarios.mem_rest[s], scenarios.mem_floor[s], scenarios.mem_over[s])
    ready = place_reference(scenarios.bg_cpu[s], scenarios.bg_mem[s], scenarios.bg_score_cpu[s],
                            scenarios.bg_score_mem[s], scenarios.bg_pods[s], params.cap_cpu,
                            params.cap_mem, params.max_pods, params.first_fit, pod_cpu, pod_mem,
                            int(state.replicas[e]), state.blocked[e])
    state.ready[e] = ready
    state.pending[e] = state.replicas[e] - ready
    return pod_cpu, pod_mem


def reset_reference(params, state, scenarios, observations, envs=None):
    """Start an episode on each env (all, or the indices `envs`) and observe it."""
    num_scenarios = scenarios.target.shape[0]
    for e in range(state.step.shape[0]) if envs is None else envs:
        _begin_episode(params, state, scenarios, e, _scenario_for(params, state, num_scenarios, e))
        pod_cpu, pod_mem = _place_env_reference(params, state, scenarios, e)
        _write_observation(params, state, scenarios, e, observations, pod_cpu, pod_mem)


def step_reference(params, state, scenarios, actions, observations, rewards, terminals,
                   truncations, auto_reset):
    """One step of every env (see the module docstring); finished episodes restart when
    `auto_reset`, and the observation is then the new episode's first."""
    num_scenarios = scenarios.target.shape[0]
    for e in range(state.step.shape[0]):
        cpu, mem, replicas, edit, refused, idle, invalid = _apply_edit(
            params, actions[e], state.cpu[e], state.mem[e], state.replicas[e])
        state.cpu[e], state.mem[e], state.replicas[e] = cpu, mem, replicas
        state.idle_edit[e] = idle
        t = state.step[e] + 1
        state.step[e] = t
        pod_cpu, pod_mem = _place_env_reference(params, state, scenarios, e)
        s = state.scenario[e]
        target = scenarios.target[s]
        reward = _reward(params, target, state.ready[e], state.pending[e], state.replicas[e],
                         cpu, mem, replicas, pod_cpu, pod_mem, edit)
        terminal = state.ready[e] == target and state.replicas[e] == target and state.pending[e] == 0
        truncated = (not terminal) and t >= params.max_steps
        state.ep_return[e] += reward
        state.ep_edits[e] += edit
        state.ep_refused[e] += refused
        state.ep_idle[e] += idle
        state.ep_invalid[e] += invalid
        rewards[e] = reward
        terminals[e] = terminal
        truncations[e] = truncated
        if terminal or truncated:
            _finish_episode(state, e, t, terminal)
            if auto_reset:
                state.episode[e] += np.uint64(1)
                _begin_episode(params, state, scenarios, e,
                               _scenario_for(params, state, num_scenarios, e))
                pod_cpu, pod_mem = _place_env_reference(params, state, scenarios, e)
        _write_observation(params, state, scenarios, e, observations, pod_cpu, pod_mem)


# ---------------------------------------------------------------- the Numba kernel


@njit(nogil=True, cache=True)
def place_nb(bg_cpu, bg_mem, bg_score_cpu, bg_score_mem, bg_pods, cap_cpu, cap_mem, max_pods,
             first_fit, pod_cpu, pod_mem, count, alloc_cpu, alloc_mem, score_cpu, score_mem, pods,
             blocked):
    """`NodeAllocations.place` (the replay's scheduler) compiled, with work arrays for the node
    sums (no allocation): the same arithmetic in the same order, so the same nodes."""
    nodes = bg_cpu.shape[0]
    for i in range(nodes):
        alloc_cpu[i] = bg_cpu[i]
        alloc_mem[i] = bg_mem[i]
        score_cpu[i] = bg_score_cpu[i]
        score_mem[i] = bg_score_mem[i]
        pods[i] = bg_pods[i]
    nz_cpu = pod_cpu if pod_cpu > 0 else NONZERO_CPU_MILLICORES
    nz_mem = pod_mem if pod_mem > 0 else NONZERO_MEMORY_BYTES
    for k in range(3):
        blocked[k] = 0
    for placed in range(count):
        best = -1
        best_score = -np.inf
        for i in range(nodes):
            if alloc_cpu[i] + pod_cpu > cap_cpu or alloc_mem[i] + pod_mem > cap_mem \
                    or pods[i] >= max_pods:
                continue
            if first_fit:
                best = i
                break
            score = max(0, cap_cpu - (score_cpu[i] + nz_cpu)) / cap_cpu \
                + max(0, cap_mem - (score_mem[i] + nz_mem)) / cap_mem
            if score > best_score:
                best = i
                best_score = score
        if best < 0:
            for i in range(nodes):
                if alloc_cpu[i] + pod_cpu > cap_cpu:
                    blocked[BLOCKED_CPU] += 1
                if alloc_mem[i] + pod_mem > cap_mem:
                    blocked[BLOCKED_MEM] += 1
                if pods[i] >= max_pods:
                    blocked[BLOCKED_SLOT] += 1
            return placed
        alloc_cpu[best] += pod_cpu
        alloc_mem[best] += pod_mem
        score_cpu[best] += nz_cpu
        score_mem[best] += nz_mem
        pods[best] += 1
    return count


@njit(nogil=True, cache=True)
def _place_env_nb(params, state, scenarios, e):
    s = state.scenario[e]
    pod_cpu = _pod_request_nb(state.cpu[e], scenarios.cpu_rest[s], scenarios.cpu_floor[s], scenarios.cpu_over[s])
    pod_mem = _pod_request_nb(state.mem[e], scenarios.mem_rest[s], scenarios.mem_floor[s], scenarios.mem_over[s])
    ready = place_nb(scenarios.bg_cpu[s], scenarios.bg_mem[s], scenarios.bg_score_cpu[s],
                     scenarios.bg_score_mem[s], scenarios.bg_pods[s], params.cap_cpu, params.cap_mem,
                     params.max_pods, params.first_fit, pod_cpu, pod_mem, state.replicas[e],
                     state.work_cpu[e], state.work_mem[e], state.work_score_cpu[e],
                     state.work_score_mem[e], state.work_pods[e], state.blocked[e])
    state.ready[e] = ready
    state.pending[e] = state.replicas[e] - ready
    return pod_cpu, pod_mem


@njit(nogil=True, cache=True)
def _scenario_for_nb(params, state, num_scenarios, e):
    if params.sampling == SAMPLE_CYCLE:
        return _cycle_scenario_nb(state, num_scenarios, e)
    drawn = counter_hash_nb(state.grid_seed[e], state.episode[e], np.uint64(0), STREAM_SCENARIO)
    return np.int64(drawn % np.uint64(num_scenarios))


@njit(nogil=True, cache=True)
def _reset_env_nb(params, state, scenarios, e, observations):
    s = _scenario_for_nb(params, state, scenarios.target.shape[0], e)
    _begin_episode_nb(params, state, scenarios, e, s)
    pod_cpu, pod_mem = _place_env_nb(params, state, scenarios, e)
    _write_observation_nb(params, state, scenarios, e, observations, pod_cpu, pod_mem)


@njit(nogil=True, cache=True)
def _step_env_nb(params, state, scenarios, e, actions, observations, rewards, terminals,
                 truncations, auto_reset):
    cpu, mem, replicas, edit, refused, idle, invalid = _apply_edit_nb(
        params, actions[e], state.cpu[e], state.mem[e], state.replicas[e])
    state.cpu[e] = cpu
    state.mem[e] = mem
    state.replicas[e] = replicas
    state.idle_edit[e] = idle
    t = state.step[e] + 1
    state.step[e] = t
    pod_cpu, pod_mem = _place_env_nb(params, state, scenarios, e)
    target = scenarios.target[state.scenario[e]]
    reward = _reward_nb(params, target, state.ready[e], state.pending[e], state.replicas[e],
                        cpu, mem, replicas, pod_cpu, pod_mem, edit)
    terminal = state.ready[e] == target and state.replicas[e] == target and state.pending[e] == 0
    truncated = (not terminal) and t >= params.max_steps
    state.ep_return[e] += reward
    state.ep_edits[e] += edit
    state.ep_refused[e] += refused
    state.ep_idle[e] += idle
    state.ep_invalid[e] += invalid
    rewards[e] = reward
    terminals[e] = terminal
    truncations[e] = truncated
    if terminal or truncated:
        _finish_episode_nb(state, e, t, terminal)
        if auto_reset:
            state.episode[e] += np.uint64(1)
            _reset_env_nb(params, state, scenarios, e, observations)
            return
    _write_observation_nb(params, state, scenarios, e, observations, pod_cpu, pod_mem)


def _reset_envs_parallel(params, state, scenarios, observations):
    for e in prange(state.step.shape[0]):
        _reset_env_nb(params, state, scenarios, e, observations)


def _step_envs_parallel(params, state, scenarios, actions, observations, rewards, terminals,
                        truncations, auto_reset):
    for e in prange(state.step.shape[0]):
        _step_env_nb(params, state, scenarios, e, actions, observations, rewards, terminals,
                     truncations, auto_reset)


def _reset_envs_serial(params, state, scenarios, observations):
    for e in range(state.step.shape[0]):
        _reset_env_nb(params, state, scenarios, e, observations)


def _step_envs_serial(params, state, scenarios, actions, observations, rewards, terminals,
                      truncations, auto_reset):
    for e in range(state.step.shape[0]):
        _step_env_nb(params, state, scenarios, e, actions, observations, rewards, terminals,
                     truncations, auto_reset)


# Many envs: threads over chunks of envs. One env (the Gymnasium env): no thread start-up.
# Separate Python functions, not one compiled twice: Numba's on-disk cache is keyed by the
# function, so a parallel and a serial build of one function would load each other's code.
reset_envs = njit(parallel=True, nogil=True, cache=True)(_reset_envs_parallel)
step_envs = njit(parallel=True, nogil=True, cache=True)(_step_envs_parallel)
reset_envs_serial = njit(nogil=True, cache=True)(_reset_envs_serial)
step_envs_serial = njit(nogil=True, cache=True)(_step_envs_serial)


@njit(nogil=True, cache=True)
def start_scenario_nb(params, state, scenarios, e, s, observations):
    """Start env `e` on scenario `s` (whatever the sampling) and observe it."""
    _begin_episode_nb(params, state, scenarios, e, s)
    pod_cpu, pod_mem = _place_env_nb(params, state, scenarios, e)
    _write_observation_nb(params, state, scenarios, e, observations, pod_cpu, pod_mem)
