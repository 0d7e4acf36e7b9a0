"""sim-arena's agent loop against a real SimKube cluster (`puffer-cluster simkube loop`).

The SimArena env (`puffer_cluster.simarena`) with the cluster in place of the offline model:
each simulation is a SimKube Simulation of the current trace, and the pods counted are the
target Deployment's pods in its virtual namespace, as the cluster's scheduler placed them.

    observe the trace as it is (one Simulation), then per step:
      the policy picks an action from the observation (the env's 14 floats)
      the action edits the trace (`puffer_cluster.traces.ops`, the env's steps, floors, ceilings)
      preflight, create a Simulation of the edited trace, wait while it runs (--duration),
      count the Deployment's pods (ready, pending, total, and from the scheduler's message on a
      pending pod, "0/4 nodes are available: 4 Insufficient cpu", the nodes short of CPU,
      memory or a pod slot), delete the Simulation
      reward that count (the env's `[simarena] reward`, computed by the kernel's own code),
      record the step (`puffer_cluster.run_records`)
    until healthy (ready == target == replicas, none pending) or --steps steps.

As in the env, the reward is the one of the observation after the edit (sim-arena rewards the one
before it), so a step costs one Simulation, plus one for the first observation. Episodes chain
the edited trace: episode e + 1 starts from the trace episode e ended with, and its first
observation is episode e's last count (the same trace), so no Simulation is repeated.

The observation is computed from the count exactly as the env computes it from its placement:
what a policy trained offline saw in training, it sees here (a test plays a fixed scenario table
through the loopback API server and compares with `SimArenaEnv`). As in the env, "total" in the
observation and the reward is the Deployment's replica count; the record keeps the pods counted
too. By default a Simulation replays `[simarena] observe_seconds`, when the env counts.

Every trace the loop simulates is written to --trace-dir (default: the run directory's
`traces/`), which SimKube's driver must read at --trace-url (default: file://<the same absolute
path>, e.g. a kind node that mounts the host's directory at the same path).
"""
from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from puffer_cluster.kernels import simarena as kernel
from puffer_cluster.kernels.simarena import ACTION_NAMES
from puffer_cluster.replay import ReplaySettings
from puffer_cluster.run_records import observation_record, trace_record
from puffer_cluster.simarena import (
    Scenario, SimArenaSettings, compile_scenario, kernel_params, simarena_replay, stack_scenarios,
)
from puffer_cluster.simkube.client import _json, _request, preflight, run_simulation
from puffer_cluster.simkube.errors import PodsNotObservedError
from puffer_cluster.simkube.simulation import (
    MAX_NAME_LENGTH, SimkubeSettings, build_simulation, default_simulation_name, default_timeout,
    load_replayable_trace,
)
from puffer_cluster.traces import Trace, save_trace
from puffer_cluster.traces.ops import SafeguardError, apply_op, find_deployments

# The reasons of kube-scheduler's FailedScheduling message, as the env's "nodes short of" counts.
_SHORT_OF = {"Insufficient cpu": 0, "Insufficient memory": 1, "Too many pods": 2}
_REASON = re.compile(r"(\d+) (Insufficient cpu|Insufficient memory|Too many pods)")


# ----------------------------------------------------------------------------- observing pods

def scheduler_shortages(message: str) -> list[int]:
    """Nodes short of cpu, memory, a pod slot in a FailedScheduling message ('0/4 nodes are
    available: 3 Insufficient cpu, 1 Too many pods. preemption: ...'); zeros when none."""
    short = [0, 0, 0]
    for count, reason in _REASON.findall(message.split("preemption:")[0]):
        short[_SHORT_OF[reason]] += int(count)
    return short


def deployment_pods(pods: list[dict], deploy: str, match_labels: dict[str, str] | None) -> dict:
    """The counts of one Deployment's pods (selected by its matchLabels, else by the name
    prefix '<deploy>-'): total, ready (condition Ready), pending (phase Pending), the phases,
    and `short`: the nodes short of cpu / memory / a slot for the first pending pod."""
    if match_labels:
        mine = [p for p in pods if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v
                                       for k, v in match_labels.items())]
    else:
        mine = [p for p in pods if (p.get("metadata") or {}).get("name", "").startswith(deploy + "-")]
    mine.sort(key=lambda p: p["metadata"].get("name", ""))
    counts = {"total": len(mine), "ready": 0, "pending": 0, "phases": {}, "short": [0, 0, 0]}
    for pod in mine:
        status = pod.get("status") or {}
        phase = status.get("phase") or "Unknown"
        counts["phases"][phase] = counts["phases"].get(phase, 0) + 1
        conditions = status.get("conditions") or []
        counts["ready"] += any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        if phase == "Pending":
            counts["pending"] += 1
            if counts["pending"] == 1:
                unscheduled = [c for c in conditions
                               if c.get("type") == "PodScheduled" and c.get("status") == "False"]
                if unscheduled:
                    counts["short"] = scheduler_shortages(unscheduled[0].get("message") or "")
    counts["phases"] = dict(sorted(counts["phases"].items()))
    return counts


def deployment_observer(deploy: str, match_labels: dict[str, str] | None) -> Callable[..., dict]:
    """`run_simulation`'s `observe`: the Deployment's pod counts in each virtual namespace."""
    def observe(api, namespaces: list[str], request_timeout: float) -> dict[str, dict]:
        from kubernetes import client
        core = client.CoreV1Api(api)
        selector = ",".join(f"{k}={v}" for k, v in (match_labels or {}).items()) or None
        observed = {}
        for namespace in namespaces:
            pods = _json(_request(
                api.configuration.host, f"list pods in {namespace}",
                lambda: core.list_namespaced_pod(namespace, label_selector=selector,
                                                 _request_timeout=request_timeout,
                                                 _preload_content=False))).get("items") or []
            observed[namespace] = deployment_pods(pods, deploy, match_labels)
        return observed
    return observe


# ------------------------------------------------------------- the env's view of one count

class ArenaView:
    """The SimArena env's observation and reward for a pod count, by the kernel's own code
    (`_write_observation`, `_reward`) on a one-env state, and the env's edits applied to a
    trace with the trace ops."""

    def __init__(self, settings: SimArenaSettings, replay: ReplaySettings, deploy: str,
                 target: int | None):
        self.settings, self.replay = settings, simarena_replay(replay)
        self.params = kernel_params(settings, self.replay)
        self.deploy, self.target = deploy, target

    def scenario(self, trace: Trace, name: str) -> Scenario:
        """The trace's Deployment as the env reads it (requests, replicas, the target)."""
        scenario = compile_scenario(trace, self.settings, self.replay, name=name)
        return scenario if self.target is None else replace(scenario, target=self.target)

    def observe(self, scenario: Scenario, counts: dict, step: int, idle_edit: bool,
                edit: bool) -> tuple[np.ndarray, float]:
        """(observation, reward) of `counts` with `scenario`'s requests after `step` steps."""
        state = kernel.allocate_state(1, self.settings.nodes)
        scenarios = stack_scenarios([scenario])
        state.cpu[0], state.mem[0], state.replicas[0] = scenario.cpu, scenario.mem, scenario.replicas
        state.ready[0], state.pending[0] = counts["ready"], counts["pending"]
        state.blocked[0, :] = counts["short"]
        state.step[0], state.idle_edit[0] = step, int(idle_edit)
        pod_cpu = kernel._pod_request(scenario.cpu, scenario.cpu_rest, scenario.cpu_floor, scenario.cpu_over)
        pod_mem = kernel._pod_request(scenario.mem, scenario.mem_rest, scenario.mem_floor, scenario.mem_over)
        observation = np.zeros((1, kernel.OBS_SIZE), dtype=np.float32)
        kernel._write_observation(self.params, state, scenarios, 0, observation, pod_cpu, pod_mem)
        reward = kernel._reward(self.params, scenario.target, counts["ready"], counts["pending"],
                                scenario.replicas, scenario.cpu, scenario.mem, scenario.replicas,
                                pod_cpu, pod_mem, int(edit))
        return observation[0], float(np.float32(reward))  # as the env's reward buffer holds it

    def edit(self, trace: Trace, action: int, namespace: str | None) -> tuple[bool, str]:
        """Apply `action` to `trace` in place; (idle, what happened): idle when an edit changed
        nothing (at a floor, or refused at a ceiling), as the env counts it."""
        name = ACTION_NAMES[action]
        if name == "noop":
            return False, "noop"
        try:
            result = apply_op(trace, name, self.deploy, namespace=namespace,
                              step=self.settings.steps()[name], safeguards=self.settings.safeguards())
        except SafeguardError as error:
            return True, str(error)
        return not result.changed, result.describe()

    def is_healthy(self, scenario: Scenario, counts: dict) -> bool:
        return (counts["ready"] == scenario.target == scenario.replicas and counts["pending"] == 0)


# ----------------------------------------------------------------------------- the loop

def simulation_name(trace_file: Path, n: int) -> str:
    """The n-th Simulation of a loop (and its trace file's stem): '<trace name>-<n:03d>'."""
    return f"{default_simulation_name(trace_file)[:MAX_NAME_LENGTH - 4].rstrip('-')}-{n:03d}"


@dataclass
class LoopOptions:
    trace: Path              # the starting trace
    steps: int               # per episode, at most
    episodes: int
    duration_s: int          # each Simulation's
    timeout_s: int | None    # None: duration + [simkube] timeout_grace
    trace_dir: Path          # where the traces simulated are written
    trace_url: str | None    # where the driver reads trace_dir (None: file://<its path>)


class AgentLoop:
    """One run of the loop on a cluster (`api`), recording into `recorder`."""

    def __init__(self, api, options: LoopOptions, view: ArenaView, policy, sk: SimkubeSettings,
                 recorder, echo: Callable[[str], None] = print):
        self.api, self.options, self.view, self.policy = api, options, view, policy
        self.sk, self.recorder, self.echo = sk, recorder, echo
        self.simulations = 0

    def trace_url(self, path: Path) -> str:
        base = self.options.trace_url or f"file://{self.options.trace_dir.resolve()}"
        return f"{base.rstrip('/')}/{path.name}"

    def save(self, trace: Trace) -> Path:
        path = self.options.trace_dir / f"{simulation_name(self.options.trace, self.simulations)}.sktrace"
        save_trace(trace, path)
        return path

    def simulate(self, trace_file: Path, scenario: Scenario) -> tuple[dict, dict]:
        """(the Deployment's pod counts, timings) of one Simulation of `trace_file`."""
        local = load_replayable_trace(trace_file)
        name = simulation_name(self.options.trace, self.simulations)
        self.simulations += 1
        simulation = build_simulation(name, self.trace_url(trace_file), self.sk,
                                      duration_s=self.options.duration_s, trace=local)
        namespace = f"{self.sk.virtual_ns_prefix}-{scenario.namespace or 'default'}"
        started = time.monotonic()
        preflight(self.api, simulation, [namespace], self.sk, echo=lambda line: None)
        checked = time.monotonic()
        timeout = self.options.timeout_s or default_timeout(
            local.trace, self.options.duration_s, 1.0, 1, self.sk.timeout_grace)
        run = run_simulation(self.api, simulation, [namespace], timeout_s=timeout,
                             settings=self.sk, echo=self.echo,
                             observe=deployment_observer(self.view.deploy, _match_labels(local.trace, scenario)))
        running = [o["pods"][namespace] for o in run.observations if o["state"] == "Running"]
        if not running or running[-1]["total"] == 0:
            raise PodsNotObservedError(
                f"Simulation {name}: no pod of Deployment {self.view.deploy} in {namespace} "
                f"{'while it ran' if running else '(it never was Running)'}; check that the "
                f"driver reads {simulation['spec']['driver']['tracePath']} and its logs")
        return running[-1], {"preflight_s": round(checked - started, 3),
                             "simulation_s": round(time.monotonic() - checked, 3)}

    def run(self) -> None:
        options, view = self.options, self.view
        trace = load_replayable_trace(options.trace).trace
        trace_file = self.save(trace)
        scenario = view.scenario(trace, trace_file.name)
        counts, _ = self.simulate(trace_file, scenario)
        for episode in range(options.episodes):
            observation, _ = view.observe(scenario, counts, 0, False, False)
            for t in range(1, options.steps + 1):
                action = int(self.policy(observation[None], np.array([t == 1]))[0])
                edited = copy.deepcopy(trace)
                started = time.monotonic()
                idle, what = view.edit(edited, action, scenario.namespace)
                next_file = self.save(edited)
                next_scenario = view.scenario(edited, next_file.name)
                edit_s = time.monotonic() - started
                next_counts, timings = self.simulate(next_file, next_scenario)
                next_observation, reward = view.observe(next_scenario, next_counts, t, idle,
                                                        action != 0)
                terminated = view.is_healthy(next_scenario, next_counts)
                truncated = not terminated and t >= options.steps
                self.recorder.step({
                    "episode": episode, "step": t,
                    "trace_in": trace_record(trace_file, scenario.cpu, scenario.mem, scenario.replicas),
                    "trace_out": trace_record(next_file, next_scenario.cpu, next_scenario.mem,
                                              next_scenario.replicas),
                    "action": action, "action_name": ACTION_NAMES[action], "edit": what,
                    "observation": _observation(counts, observation),
                    "next_observation": _observation(next_counts, next_observation),
                    "reward": reward, "terminated": terminated, "truncated": truncated,
                    "timings": {"edit_s": round(edit_s, 3), **timings},
                })
                self.echo(f"episode {episode} step {t}: {ACTION_NAMES[action]} ({what}) -> ready "
                          f"{next_counts['ready']} pending {next_counts['pending']} total "
                          f"{next_counts['total']}, reward {reward:+.3f}")
                trace, trace_file, scenario, counts = edited, next_file, next_scenario, next_counts
                observation = next_observation
                if terminated or truncated:
                    break


def _observation(counts: dict, vector: np.ndarray) -> dict:
    return {**observation_record(counts["ready"], counts["pending"], counts["total"],
                                 counts["short"], vector), "phases": counts["phases"]}


def _match_labels(trace: Trace, scenario: Scenario) -> dict[str, str] | None:
    """The Deployment's spec.selector.matchLabels (its last applied object), if any."""
    selector = ((find_deployments(trace, scenario.deploy, scenario.namespace)[-1].get("spec") or {})
                .get("selector") or {}).get("matchLabels")
    if isinstance(selector, dict) and selector and all(isinstance(v, str) for v in selector.values()):
        return selector
    return None


__all__ = ["AgentLoop", "ArenaView", "LoopOptions", "deployment_observer",
           "deployment_pods", "scheduler_shortages", "simulation_name"]
