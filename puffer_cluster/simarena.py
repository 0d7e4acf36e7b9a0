"""SimArena: sim-arena's task (fix a broken Deployment by editing its trace) as a fast RL env.

sim-arena (github.com/bobg0/sim-arena) runs one SimKube simulation per agent step: replay the
trace, wait, count the target Deployment's pods (ready, pending, total), let the agent edit the
trace (CPU, memory or replicas of the Deployment's first container), reward, repeat. Here the
simulation is the offline replay of `puffer_cluster.replay`, compiled once per scenario trace:

- `compile_scenario` replays the trace with the target Deployment's replicas set to 0 (so every
  other workload keeps its timing) and keeps, per node, what the other pods request at the
  observation time, `observe_seconds` after the first replayed event; it reads the target's
  first container, how the pod's effective request follows from it (`replay.pod_requests`),
  its replicas and the desired count (`metadata.scenario.target` of the trace, else the
  config's `target`).
- Each step edits the (cpu, memory, replicas) arrays exactly as `puffer_cluster.traces.ops`
  edits a trace, and re-places the target's pods from scratch with the replay's scheduler
  (`kernels.simarena`); a test replays the edited traces with `compile_timeline` and finds the
  same counts. The target's pods are placed after every other pod, as in the generated traces
  (where the target is applied last); they are counted at the observation time.
- Observation: 14 floats in [0, 4] (`kernels.simarena.OBS_NAMES`): ready, pending and total
  pods over the target, the target, the pod's requests over a node's capacity, the first
  container's requests and the replicas over their ceilings, the fraction of nodes short of
  CPU, memory or a pod slot for the first pending pod (kube-scheduler's FailedScheduling
  reasons), time, and whether the last edit changed nothing.
- Actions: Discrete(7) in sim-arena's numbering: noop, bump_cpu, bump_mem, scale_up,
  reduce_cpu, reduce_mem, scale_down.
- Reward (`[simarena] reward`): sim-arena's `base`, `shaped`, `max_punish`, or `cost_aware`
  (see `kernels.simarena`), computed on the observation after the edit (sim-arena rewards the
  observation before it).
- An episode plays one scenario and ends when healthy (ready == target == total, none
  pending; `terminated`) or after `max_steps` steps (`truncated`).

Front doors: `SimArenaEnv` (native PufferLib 3.0 env, many envs per call, auto-reset) and
`SimArenaGymEnv` (`PufferCluster/SimArena-v0`, registered when this module is imported), the
trainer's `make_simarena_vecenv`, the eval table's `episode_env`, `summarize_simarena` and
`format_simarena_table`, and the baselines' rules `random_actions` and `heuristic_actions`; the
registry entry (`puffer_cluster.registry`) ties them together.
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from puffer_cluster.kernels import simarena as kernel
from puffer_cluster.kernels.rng import counter_hash
from puffer_cluster.kernels.simarena import (
    ACTION_NAMES, EPISODE_STATS, NUM_ACTIONS, OBS_HIGH, OBS_SIZE, REWARDS, SAMPLINGS,
    STAT_LENGTH, STAT_RETURN, STAT_SOLVED,
)
from puffer_cluster.config import ConfigError, config_section, settings_from
from puffer_cluster.env import KernelVectorEnv, OneGridGymEnv, observation_space, vectorize
from puffer_cluster.replay import (
    NodeAllocations, ReplayError, ReplaySettings, compile_timeline, pod_requests, replay_settings,
)
from puffer_cluster.replay.discovery import compile_folder
from puffer_cluster.tables import paired_wins, results_table
from puffer_cluster.traces import Trace, TraceError, TraceEvent, load_trace
from puffer_cluster.traces.generate import GeneratedTrace, generate_traces
from puffer_cluster.traces.ops import Safeguards, TraceOpError, find_deployments

# sim-arena's spellings of the fixed policies that are one action here.
POLICY_ALIASES = {"scale_replicas": "scale_up"}
GYM_ID = "PufferCluster/SimArena-v0"
MIB = 2**20
# SimArenaEnv steps this many envs or more with the threaded kernel, fewer with the serial one.
PARALLEL_MIN_ENVS = 1024

__all__ = [
    "GYM_ID", "PARALLEL_MIN_ENVS", "Scenario", "ScenarioError", "SimArenaEnv", "SimArenaGymEnv",
    "SimArenaSettings", "compile_scenario", "episode_env", "format_simarena_table",
    "heldout_scenarios", "heuristic_actions", "kernel_params", "load_scenarios",
    "make_simarena_vecenv", "observe_steps", "random_actions", "simarena_replay",
    "simarena_settings", "stack_scenarios", "summarize_simarena",
]


class ScenarioError(ValueError):
    """A trace that cannot be a SimArena scenario (no target Deployment, a bad target...)."""


# ---------------------------------------------------------------- settings


@config_section("simarena")
class SimArenaSettings:
    """The `[simarena]` config section (`configs/gardener.ini` documents every key and gives the
    defaults)."""
    traces: str
    count: int
    generate_seed: int
    nodes: int
    observe_seconds: float
    deploy: str
    namespace: str
    target: int
    max_steps: int
    sampling: str
    reward: str
    cpu_step_millicores: int
    memory_step_mib: int
    replica_step: int
    min_cpu_millicores: int
    min_memory_mib: int
    min_replicas: int
    max_cpu_millicores: int
    max_memory_mib: int
    max_replicas: int
    shaped_distance: float
    shaped_pending: float
    shaped_overshoot: float
    shaped_undershoot: float
    max_punish_penalty: float
    cost_edit: float
    cost_resource: float

    def __post_init__(self):
        checks = [
            (self.count >= 1, "count must be at least 1"),
            (self.generate_seed >= 0, "generate_seed must be >= 0"),
            (1 <= self.nodes <= 4096, "nodes must be within 1 .. 4096"),
            (self.observe_seconds >= 0 and math.isfinite(self.observe_seconds),
             "observe_seconds must be >= 0"),
            (bool(self.deploy), "deploy must not be empty"),
            (self.target >= 1, "target must be at least 1"),
            (self.max_steps >= 1, "max_steps must be at least 1"),
            (self.sampling in SAMPLINGS, f"sampling must be one of {', '.join(SAMPLINGS)}"),
            (self.reward in REWARDS, f"reward must be one of {', '.join(REWARDS)}"),
        ]
        for name in ("cpu_step_millicores", "memory_step_mib", "replica_step"):
            checks.append((getattr(self, name) >= 1, f"{name} must be at least 1"))
        for name in ("shaped_distance", "shaped_pending", "shaped_overshoot", "shaped_undershoot",
                     "max_punish_penalty", "cost_edit", "cost_resource"):
            value = getattr(self, name)
            checks.append((value >= 0 and math.isfinite(value), f"{name} must be >= 0"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"[simarena] {message}")
        try:
            self.safeguards()
        except TraceOpError as error:
            raise ConfigError(f"[simarena] {error}") from None

    def safeguards(self) -> Safeguards:
        """The ceilings and floors, as `puffer_cluster.traces.ops` applies them."""
        return Safeguards(
            max_cpu_millicores=self.max_cpu_millicores, max_memory_bytes=self.max_memory_mib * MIB,
            max_replicas=self.max_replicas, min_cpu_millicores=self.min_cpu_millicores,
            min_memory_bytes=self.min_memory_mib * MIB, min_replicas=self.min_replicas)

    def steps(self) -> dict[str, Any]:
        """The edit sizes, as `ops.apply_op(step=...)` takes them, by op name."""
        cpu, mem = f"{self.cpu_step_millicores}m", f"{self.memory_step_mib}Mi"
        return {"bump_cpu": cpu, "reduce_cpu": cpu, "bump_mem": mem, "reduce_mem": mem,
                "scale_up": self.replica_step, "scale_down": self.replica_step}


def simarena_settings(config: dict | SimArenaSettings | None = None, **overrides) -> SimArenaSettings:
    """Settings from a full config, a `[simarena]` dict or settings, updated by `overrides`."""
    return settings_from(SimArenaSettings, config, **overrides)


def kernel_params(settings: SimArenaSettings, replay: ReplaySettings) -> kernel.SimArenaParams:
    return kernel.SimArenaParams(
        nodes=settings.nodes, cap_cpu=replay.node_cpu_millicores, cap_mem=replay.node_memory_bytes,
        max_pods=replay.max_pods_per_node, first_fit=replay.scheduler == "first-fit",
        cpu_step=settings.cpu_step_millicores, mem_step=settings.memory_step_mib * MIB,
        replica_step=settings.replica_step, min_cpu=settings.min_cpu_millicores,
        min_mem=settings.min_memory_mib * MIB, min_replicas=settings.min_replicas,
        max_cpu=settings.max_cpu_millicores, max_mem=settings.max_memory_mib * MIB,
        max_replicas=settings.max_replicas, max_steps=settings.max_steps,
        reward=REWARDS.index(settings.reward), sampling=SAMPLINGS.index(settings.sampling),
        shaped_distance=settings.shaped_distance, shaped_pending=settings.shaped_pending,
        shaped_overshoot=settings.shaped_overshoot, shaped_undershoot=settings.shaped_undershoot,
        punish_penalty=settings.max_punish_penalty, cost_edit=settings.cost_edit,
        cost_resource=settings.cost_resource)


# ---------------------------------------------------------------- scenarios


@dataclass(eq=False)
class Scenario:
    """A trace compiled for SimArena (see the module docstring). Requests in millicores/bytes."""
    name: str
    kind: str                  # metadata.scenario.name of the trace ('' when absent)
    deploy: str
    namespace: str | None
    target: int
    cpu: int                   # first container, initial
    mem: int
    replicas: int
    cpu_rest: int              # pod cpu = max(cpu + cpu_rest, cpu_floor) + cpu_over
    cpu_floor: int
    cpu_over: int
    mem_rest: int
    mem_floor: int
    mem_over: int
    bg_cpu: np.ndarray         # int64 (nodes,): what the other pods request at observation time
    bg_mem: np.ndarray
    bg_score_cpu: np.ndarray
    bg_score_mem: np.ndarray
    bg_pods: np.ndarray
    observe_seconds: float     # simulated seconds from the first replayed event to the count
    trace: Trace | None = field(default=None, repr=False)

    @property
    def nodes(self) -> int:
        return int(self.bg_cpu.shape[0])


def _scenario_metadata(trace: Trace) -> dict:
    metadata = trace.extra_fields.get("metadata")
    scenario = metadata.get("scenario") if isinstance(metadata, dict) else None
    return scenario if isinstance(scenario, dict) else {}


def _target_from(value: Any, default: int) -> int:
    """An int, or the leading number of sim-arena's '3 pods ready'; else the default."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        digits = ""
        for char in value.strip():
            if not char.isdigit():
                break
            digits += char
        if digits:
            return int(digits)
    return default


def _without_target_pods(trace: Trace, targets: list[dict]) -> Trace:
    """The trace with the target Deployment's objects at 0 replicas (events and timing kept)."""
    ids = {id(obj) for obj in targets}

    def muted(obj):
        if id(obj) not in ids:
            return obj
        quiet = copy.deepcopy(obj)
        if not isinstance(quiet.get("spec"), dict):
            quiet["spec"] = {}
        quiet["spec"]["replicas"] = 0
        return quiet

    events = [TraceEvent(event.ts, [muted(obj) for obj in event.applied_objs], event.deleted_objs,
                         event.extra_fields, key_order=event.key_order) for event in trace.events]
    return Trace(version=trace.version, config=trace.config, events=events, index=trace.index,
                 pod_lifecycles=trace.pod_lifecycles, extra_fields=trace.extra_fields)


def simarena_replay(replay: ReplaySettings) -> ReplaySettings:
    """The replay as sim-arena runs it: fixed nodes, a pod larger than a node pending (its
    broken Deployments are exactly that), the count at a fixed time."""
    return replace(replay, cluster="fixed", oversized_pods="pending", whole_trace=False)


def observe_steps(settings: SimArenaSettings, replay: ReplaySettings) -> int:
    """Replay steps up to the observation time (compile_timeline's max_steps)."""
    return max(1, math.ceil(settings.observe_seconds / replay.step_seconds - 1e-9))


def compile_scenario(trace: Trace | str | Path | GeneratedTrace, settings: SimArenaSettings | None = None,
                     replay: ReplaySettings | None = None, name: str | None = None) -> Scenario:
    """A trace compiled for SimArena on `settings.nodes` nodes of the `[replay]` shape."""
    settings = settings or SimArenaSettings()
    replay = simarena_replay(replay or ReplaySettings())
    if isinstance(trace, GeneratedTrace):
        name = name or trace.name
        trace = trace.trace
    if isinstance(trace, (str, Path)):
        name = name or Path(trace).name
        trace = load_trace(trace)
    name = name or "trace"
    meta = _scenario_metadata(trace)
    deploy = meta.get("deploy") if isinstance(meta.get("deploy"), str) and meta.get("deploy") \
        else settings.deploy
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) \
        else settings.namespace
    target = _target_from(meta.get("target"), settings.target)
    if target < 1:
        raise ScenarioError(f"{name}: the target must be at least 1 ready pod, got {target}")
    try:
        objects = find_deployments(trace, deploy, namespace or None)
    except TraceOpError as error:
        raise ScenarioError(f"{name}: {error}") from None
    last = objects[-1]
    pod_spec = ((last.get("spec") or {}).get("template") or {}).get("spec")
    if not isinstance(pod_spec, dict) or not pod_spec.get("containers"):
        raise ScenarioError(f"{name}: Deployment {deploy!r} has no container")
    where = f"{name}: Deployment {deploy}"
    containers = pod_spec["containers"]
    init = pod_spec.get("initContainers") or []
    sidecars = [c for c in init if isinstance(c, dict) and c.get("restartPolicy") == "Always"]
    try:
        first = pod_requests({"containers": containers[:1]}, where)
        rest = pod_requests({"containers": containers[1:], "initContainers": sidecars}, where)
        floor = pod_requests({"initContainers": init}, where)
        over = pod_requests({"overhead": pod_spec.get("overhead")}, where)
        whole = pod_requests(pod_spec, where)
    except ReplayError as error:
        raise ScenarioError(str(error)) from None
    for k in range(2):  # the decomposition must give back the scheduler's request
        if max(first[k] + rest[k], floor[k]) + over[k] != whole[k]:
            raise ScenarioError(f"{where}: cannot express the pod's request from its first container")
    replicas = (last.get("spec") or {}).get("replicas", 1)
    replicas = replicas if type(replicas) is int and replicas >= 0 else 1

    steps = observe_steps(settings, replay)
    try:
        timeline = compile_timeline(_without_target_pods(trace, objects), height=1,
                                    width=settings.nodes, max_steps=steps, settings=replay, name=name)
    except (TraceError, ReplayError) as error:
        raise ScenarioError(f"{name}: {error}") from None
    t_obs = timeline.horizon * timeline.step_seconds
    first_ts = next(event.ts for event in trace.events if any(obj is objects[0] for obj in event.applied_objs))
    if (first_ts - timeline.start_ts) / replay.speed > t_obs:
        raise ScenarioError(f"{name}: Deployment {deploy} is applied after the observation time "
                            f"({settings.observe_seconds:g} s after the first event)")
    bg = NodeAllocations(settings.nodes, replay.node_cpu_millicores, replay.node_memory_bytes,
                         replay.max_pods_per_node)
    for pod in timeline.pods:
        if pod.node >= 0 and pod.running_at(t_obs):
            bg.bind(pod.node, pod.cpu, pod.memory)
    kind = meta.get("name") if isinstance(meta.get("name"), str) else ""
    return Scenario(
        name=name, kind=kind, deploy=deploy,
        namespace=(last.get("metadata") or {}).get("namespace"), target=target,
        cpu=first[0], mem=first[1], replicas=replicas,
        cpu_rest=rest[0], cpu_floor=floor[0], cpu_over=over[0],
        mem_rest=rest[1], mem_floor=floor[1], mem_over=over[1],
        bg_cpu=bg.cpu, bg_mem=bg.mem, bg_score_cpu=bg.score_cpu, bg_score_mem=bg.score_mem,
        bg_pods=bg.pods, observe_seconds=t_obs, trace=trace)


@functools.lru_cache(maxsize=8)
def _generated_scenarios(count: int, seed: int, nodes: int, observe_seconds: float, deploy: str,
                         namespace: str, target: int, replay: ReplaySettings) -> tuple[Scenario, ...]:
    """The demo scenarios (cached: envs of one process share them; nothing mutates them)."""
    settings = SimArenaSettings(count=count, generate_seed=seed, nodes=nodes,
                                observe_seconds=observe_seconds, deploy=deploy,
                                namespace=namespace, target=target)
    generated = generate_traces(count, seed, node_cpu_millicores=replay.node_cpu_millicores,
                                node_memory_bytes=replay.node_memory_bytes, deploy=deploy,
                                namespace=namespace)
    return tuple(compile_scenario(item, settings, replay) for item in generated)


def load_scenarios(traces=None, settings: SimArenaSettings | None = None,
                   replay: ReplaySettings | None = None) -> list[Scenario]:
    """Scenarios from `traces` (a path to a trace or a directory of them, a Trace, a
    GeneratedTrace, a Scenario, or a list of these); None or '' takes `settings.traces`, and
    when that is empty too, `settings.count` demo traces generated with `generate_seed`.
    In a directory, files that are not usable scenarios are skipped with a warning."""
    settings = settings or SimArenaSettings()
    replay = replay or ReplaySettings()
    if traces is None or (isinstance(traces, str) and not traces):
        traces = settings.traces or None
    if traces is None:
        return list(_generated_scenarios(settings.count, settings.generate_seed, settings.nodes,
                                         settings.observe_seconds, settings.deploy,
                                         settings.namespace, settings.target, replay))
    if isinstance(traces, (str, Path, Trace, GeneratedTrace, Scenario)):
        traces = [traces]
    scenarios = []
    for position, item in enumerate(traces):
        if isinstance(item, Scenario):
            if item.nodes != settings.nodes:
                raise ConfigError(f"scenario {item.name} has {item.nodes} nodes, the env {settings.nodes}")
            scenarios.append(item)
        elif isinstance(item, (str, Path)) and Path(item).is_dir():
            scenarios += compile_folder(item, lambda path, name: compile_scenario(
                path, settings, replay, name=name), (TraceError, ScenarioError),
                "usable SimArena trace")
        elif isinstance(item, (str, Path)) and not Path(item).exists():
            raise ConfigError(f"[simarena] traces: {item} does not exist")
        else:
            try:  # a Trace has no name of its own: its position names it
                name = f"trace-{position:04d}" if isinstance(item, Trace) else None
                scenarios.append(compile_scenario(item, settings, replay, name=name))
            except TraceError as error:
                raise ScenarioError(f"{item}: {error}") from None
    if not scenarios:
        raise ConfigError("no SimArena scenario")
    return scenarios


def stack_scenarios(scenarios: list[Scenario]) -> kernel.Scenarios:
    """The kernel's arrays of several scenarios (same node count)."""
    if not scenarios:
        raise ConfigError("no SimArena scenario")
    nodes = scenarios[0].nodes
    if any(s.nodes != nodes for s in scenarios):
        raise ConfigError("all scenarios of one env must have the same node count")

    def column(name):
        return np.ascontiguousarray([getattr(s, name) for s in scenarios], dtype=np.int64)

    def nodes_of(name):
        return np.ascontiguousarray(np.stack([getattr(s, name) for s in scenarios]), dtype=np.int64)

    return kernel.Scenarios(
        target=column("target"), cpu=column("cpu"), mem=column("mem"), replicas=column("replicas"),
        cpu_rest=column("cpu_rest"), cpu_floor=column("cpu_floor"), cpu_over=column("cpu_over"),
        mem_rest=column("mem_rest"), mem_floor=column("mem_floor"), mem_over=column("mem_over"),
        bg_cpu=nodes_of("bg_cpu"), bg_mem=nodes_of("bg_mem"), bg_score_cpu=nodes_of("bg_score_cpu"),
        bg_score_mem=nodes_of("bg_score_mem"), bg_pods=nodes_of("bg_pods"))


# ---------------------------------------------------------------- environments


def _setup(self, traces, scenarios, simarena, replay):
    self.settings = simarena_settings(simarena)
    self.replay_settings = replay_settings(replay)
    self.params = kernel_params(self.settings, self.replay_settings)
    self.scenarios = list(scenarios) if scenarios is not None \
        else load_scenarios(traces, self.settings, self.replay_settings)
    if any(s.nodes != self.settings.nodes for s in self.scenarios):
        raise ConfigError(f"scenarios must be compiled for {self.settings.nodes} nodes")
    self.kernel_scenarios = stack_scenarios(self.scenarios)


def _render_text(env, e: int) -> str:
    state, scenario = env.state, env.scenarios[int(env.state.scenario[e])]
    return (f"SimArena {scenario.name} ({scenario.kind or 'trace'}), step {int(state.step[e])}/"
            f"{env.params.max_steps}: {scenario.deploy} target {scenario.target}: "
            f"ready {int(state.ready[e])} pending {int(state.pending[e])} "
            f"total {int(state.replicas[e])}; requests cpu {int(state.cpu[e])}m memory "
            f"{int(state.mem[e]) / MIB:g}Mi; nodes short of cpu/memory/slot for a pending pod "
            f"{int(state.blocked[e, 0])}/{int(state.blocked[e, 1])}/{int(state.blocked[e, 2])} "
            f"of {env.params.nodes}")


class SimArenaEnv(KernelVectorEnv):
    """`num_envs` SimArena envs stepped together, auto-resetting; a native PufferLib 3.0 env.

    `traces` (see `load_scenarios`) or precompiled `scenarios`; `simarena` and `replay` are
    `[simarena]` / `[replay]` dicts (or settings) overriding the defaults. `num_envs` defaults
    to one env per scenario. `parallel` picks the threaded kernel (default: from
    PARALLEL_MIN_ENVS envs on); both give the same bits. Env e's seed is grid e of `grid_seeds(seed)`; with `sampling =
    cycle` env e plays scenarios e, e + num_envs, ... Every `log_interval` steps `step` returns
    `[info]`, the mean statistics of the episodes finished meanwhile."""

    episode_stats = EPISODE_STATS

    def __init__(self, num_envs: int | None = None, log_interval: int | None = 128,
                 render_mode: str | None = "ansi", buf=None, seed: int = 0, traces=None,
                 scenarios=None, simarena: dict | SimArenaSettings | None = None,
                 replay: dict | ReplaySettings | None = None, parallel: bool | None = None):
        _setup(self, traces, scenarios, simarena, replay)
        self.num_envs_ = int(num_envs if num_envs is not None else len(self.scenarios))
        if self.num_envs_ < 1:
            raise ConfigError("num_envs must be at least 1")
        self.log_interval = int(log_interval if log_interval is not None else 128)
        self.render_mode = render_mode
        self.single_observation_space = observation_space(OBS_SIZE, 0.0, OBS_HIGH)
        self.single_action_space = gymnasium.spaces.Discrete(NUM_ACTIONS)
        self.num_agents = self.num_envs_
        super().__init__(buf)
        self.state = kernel.allocate_state(self.num_agents, self.settings.nodes)
        self.seed = seed
        # Threads pay off for large batches only (an env step is a fraction of a microsecond).
        self.parallel = self.num_agents >= PARALLEL_MIN_ENVS if parallel is None else bool(parallel)
        self._reset_kernel = kernel.reset_envs if self.parallel else kernel.reset_envs_serial
        self._step_kernel = kernel.step_envs if self.parallel else kernel.step_envs_serial

    def _reset_all(self):
        self._reset_kernel(self.params, self.state, self.kernel_scenarios, self.observations)
        self.reset_scenarios = self.state.scenario.copy()  # what each env plays first

    def _step_all(self, actions):
        self._step_kernel(self.params, self.state, self.kernel_scenarios, actions,
                          self.observations, self.rewards, self.terminals, self.truncations, True)

    def render(self, env: int = 0):
        return _render_text(self, env)


class SimArenaGymEnv(OneGridGymEnv):
    """One SimArena env as a Gymnasium env (`PufferCluster/SimArena-v0`).

    `reset(seed=s)` then plain `reset()`s play exactly the episodes env 0 of
    `SimArenaEnv(num_envs=1, seed=s)` plays with the same actions. `reset(options={"scenario":
    i})` plays scenario i. Infos: the pod counts each step, the episode statistics at its end."""

    episode_stats = EPISODE_STATS
    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, traces=None, render_mode: str | None = None, scenarios=None,
                 simarena: dict | SimArenaSettings | None = None,
                 replay: dict | ReplaySettings | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        _setup(self, traces, scenarios, simarena, replay)
        self.render_mode = render_mode
        self.observation_space = observation_space(OBS_SIZE, 0.0, OBS_HIGH)
        self.action_space = gymnasium.spaces.Discrete(NUM_ACTIONS)
        self.state = kernel.allocate_state(1, self.settings.nodes)
        self._init_buffers(OBS_SIZE)

    def _reset_kernel(self, options):
        scenario = (options or {}).get("scenario")
        if scenario is None:
            kernel.reset_envs_serial(self.params, self.state, self.kernel_scenarios, self._obs)
        else:
            if isinstance(scenario, str):
                names = [s.name for s in self.scenarios]
                if scenario not in names:
                    raise ValueError(f"no scenario named {scenario!r}")
                scenario = names.index(scenario)
            if not 0 <= int(scenario) < len(self.scenarios):
                raise ValueError(f"scenario {scenario} is not within 0 .. {len(self.scenarios) - 1}")
            kernel.start_scenario_nb(self.params, self.state, self.kernel_scenarios, 0,
                                     int(scenario), self._obs)

    def _info(self) -> dict:
        s = self.state
        return {"scenario": self.scenarios[int(s.scenario[0])].name, "ready": int(s.ready[0]),
                "pending": int(s.pending[0]), "total": int(s.replicas[0]),
                "target": int(self.kernel_scenarios.target[s.scenario[0]])}

    def _step_kernel(self):
        kernel.step_envs_serial(self.params, self.state, self.kernel_scenarios, self._action,
                                self._obs, self._reward, self._terminal, self._truncated, False)

    def render(self):
        if self.render_mode is None:
            return None
        return _render_text(self, 0)


if GYM_ID not in gymnasium.registry:
    gymnasium.register(id=GYM_ID, entry_point="puffer_cluster.simarena:SimArenaGymEnv")


# ---------------------------------------------------------------- baselines' rules


STREAM_ACTION = np.uint64(0x5A11B)


def random_actions(seed: int, step: int, out: np.ndarray) -> np.ndarray:
    """Uniform actions in [0, 7), a pure function of (seed, step, agent)."""
    n = out.shape[0]
    hashed = counter_hash(np.full(n, np.uint64(seed % 2**64)), np.full(n, np.uint64(step)),
                          np.arange(n, dtype=np.uint64), np.full(n, STREAM_ACTION))
    out[:] = (hashed % np.uint64(NUM_ACTIONS)).astype(np.int32)
    return out


def heuristic_actions(observations: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """sim-arena's `heuristic` policy made to work: sim-arena bumps CPU whenever pods are
    pending, which cannot help a pod that fits on no node; this one reads the scheduler's reasons:
    too many replicas -> scale_down; pending for want of CPU -> reduce_cpu, of memory ->
    reduce_mem; too few replicas -> scale_up; else noop."""
    obs = np.asarray(observations)
    pending = obs[:, kernel.OBS_PENDING] > 0
    total = obs[:, kernel.OBS_TOTAL]
    actions = np.select(
        [total > 1.0, pending & (obs[:, kernel.OBS_NO_CPU] > 0),
         pending & (obs[:, kernel.OBS_NO_MEM] > 0), total < 1.0],
        [kernel.SCALE_DOWN, kernel.REDUCE_CPU, kernel.REDUCE_MEM, kernel.SCALE_UP],
        kernel.NOOP).astype(np.int32)
    if out is None:
        return actions
    out[:] = actions
    return out


# ---------------------------------------------------------------- trainer and eval hooks


def _env_kwargs(config: dict) -> dict:
    return {"simarena": dict(config.get("simarena") or {}), "replay": dict(config.get("replay") or {})}


def make_simarena_vecenv(config: dict):
    """The trainer's env for `[base] env_name = simarena` (`[env]` sizes, `[vec]` as for the
    gardener)."""
    kwargs = dict(num_envs=config["env"]["num_envs"], log_interval=config["env"]["log_interval"],
                  **_env_kwargs(config))
    return vectorize(SimArenaEnv, kwargs, config["vec"])


def heldout_scenarios(config: dict) -> list[Scenario]:
    """The trainer's held-out scenarios, never the eval table's (which plays scenarios 0 ..
    `[eval] episodes` - 1 of the config's): demo traces generated with `[train] eval_seed`
    instead of `generate_seed`, or, from trace files, those after the table's."""
    settings = simarena_settings(config)
    replay = replay_settings(config.get("replay"))
    eval_seed, table_episodes = config["train"]["eval_seed"], config["eval"]["episodes"]
    if not settings.traces:
        if eval_seed == settings.generate_seed:
            raise ConfigError(f"train.eval_seed must differ from simarena.generate_seed "
                              f"({eval_seed}): the held-out scenarios would be the trained ones")
        episodes = config["train"]["eval_episodes"]
        return load_scenarios(None, replace(settings, generate_seed=eval_seed, count=episodes),
                              replay)
    held_out = load_scenarios(None, settings, replay)[table_episodes:]
    if not held_out:
        raise ConfigError(f"simarena.traces holds no scenario beyond the eval table's first "
                          f"{table_episodes} (eval.episodes) to evaluate on during training; "
                          "add traces or set train.eval_interval = 0")
    return held_out


def episode_env(config: dict, episodes: int, seed: int, heldout: bool = False) -> SimArenaEnv:
    """`episodes` envs seeded `seed` whose first episodes make a table: env e plays scenario e
    mod the number of scenarios (cycle sampling), of the config's scenarios or, `heldout`, of
    the trainer's held-out ones."""
    kwargs = _env_kwargs(config)
    kwargs["simarena"]["sampling"] = "cycle"
    return SimArenaEnv(num_envs=episodes, seed=seed, log_interval=2**62,
                       scenarios=heldout_scenarios(config) if heldout else None, **kwargs)


def summarize_simarena(name: str, stats: np.ndarray, baseline: np.ndarray | None,
                       env: SimArenaEnv) -> dict:
    """One row of the SimArena table: the statistics of the first episodes `env` played, the
    solved fraction per scenario kind, wins counted against the baseline."""
    by_kind: dict[str, list[float]] = {}
    for n, s in enumerate(env.reset_scenarios):
        by_kind.setdefault(env.scenarios[int(s)].kind or "trace", []).append(stats[n, STAT_SOLVED])
    return {
        "env": "simarena", "name": name, "episodes": len(stats),
        "reward_mean": float(stats[:, STAT_RETURN].mean()),
        "reward_std": float(stats[:, STAT_RETURN].std()),
        "steps_mean": float(stats[:, STAT_LENGTH].mean()),
        "solved_rate": float(stats[:, STAT_SOLVED].mean()),
        **{f"{stat}_mean": float(stats[:, k].mean()) for k, stat in enumerate(EPISODE_STATS)
           if stat not in ("episode_return", "episode_length", "solved")},
        "solved_by_scenario": {kind: float(np.mean(values)) for kind, values in by_kind.items()},
        "reward": env.settings.reward,
        **paired_wins(stats, baseline, STAT_RETURN),
    }


def format_simarena_table(rows: list[dict]) -> str:
    """The SimArena benchmark table, in the format of the gardener's, with the solved fraction
    of each scenario kind."""
    kinds = list(rows[0]["solved_by_scenario"])

    def solved_by_scenario(name_width: int) -> list[str]:
        return ["solved by scenario: " + ", ".join(kinds)] + [
            f"  {row['name']:<{name_width}} "
            + " ".join(f"{row['solved_by_scenario'][kind]:.2f}" for kind in kinds) for row in rows]

    return results_table(
        "SIMARENA RESULTS", rows,
        lambda row: f" | steps mu={row['steps_mean']:.1f} | solved={row['solved_rate']:.2f}"
                    f" | edits mu={row['edits_mean']:.1f} | refused mu={row['refused_edits_mean']:.1f}",
        ("random", "heuristic", *ACTION_NAMES, *POLICY_ALIASES), width=78,
        note=f"; reward {rows[0]['reward']}", sections=(solved_by_scenario,))
