"""Demo traces for sim-arena's scenarios, as proper SimKube v2 traces.

sim-arena's `demo/generate_traces.py` writes one fixed trace per scenario, and its early files
are a private "version 1" JSON that SimKube cannot load. These are v2 traces: a tracer config
(`trackedObjects` with the Deployment pod template path and `trackLifecycle`), an index of the
traced objects (name -> a stable 64-bit hash of the object) and pod lifecycles ("Running" from
the event on, one per replica), plus sim-arena's top-level `metadata.scenario` (name, target,
the Deployment to fix, what is wrong), which SimKube ignores and `puffer_cluster.simarena` reads.

Scenario `i` of `generate_traces(count, seed)` is `scenarios[i % len(scenarios)]`, drawn from
`numpy.random.default_rng([seed, i])`: the same seed gives byte-identical traces, and trace i
does not depend on `count`. Sizes are relative to one node (16 CPU / 32 GiB by default, like
sim-arena's KWOK nodes); the target Deployment is `default/web`:

    cpu-slight      each pod requests 0.5-1.5 CPU more than a node has     (reduce_cpu a few times)
    cpu-heavy       3-6 CPU more than a node                               (reduce_cpu many times)
    mem-slight      256Mi-1Gi more memory than a node                      (reduce_mem a few times)
    mem-heavy       4-8Gi more than a node                                 (reduce_mem many times)
    cpu-mem         both slightly over                                     (reduce both)
    replicas-over   1-3 replicas more than the target, pods fit            (scale_down)
    replicas-under  1-3 replicas fewer than the target, pods fit           (scale_up)
    composite       low CPU, memory over a node, replicas over the target  (reduce_mem, scale_down)

Half of the traces (drawn) also run a small `background` Deployment (1-4 pods of 0.5-2 CPU and
512Mi-4Gi), applied in the same event before `web`, so that nodes are not empty.

`generate_busy_trace(seed, index)` is no scenario but a busy cluster for training on replays
(`[replay] train_busy_fraction`): many Deployments whose pods fill most nodes, their memory
mostly requests.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from puffer_cluster.traces.ops import format_cpu, format_memory
from puffer_cluster.traces.simkube import Trace, TraceEvent, save_json_trace, save_trace

__all__ = [
    "BUSY_NAMESPACES",
    "GENERATED_INDEX",
    "SCENARIOS",
    "SCENARIO_INFO",
    "GeneratedTrace",
    "ScenarioInfo",
    "generate_busy_trace",
    "generate_trace",
    "generate_traces",
    "object_hash",
    "write_traces",
]

MIB = 2**20
GIB = 2**30
START_TS = 1730390400  # sim-arena's demo traces start here (2024-10-31T16:00:00Z)
DEPLOYMENT_GVK = "apps/v1.Deployment"
# Listing of a generated folder; not a trace suffix, so trace finders skip it.
GENERATED_INDEX = "scenarios.jsonl"


@dataclass(frozen=True)
class ScenarioInfo:
    name: str
    problem_type: str
    failure_mode: str
    severity: str
    expected_behavior: str


SCENARIO_INFO = {
    info.name: info for info in (
        ScenarioInfo("cpu-slight", "resource_contention", "cpu_quota_exceeded", "low",
                     "reduce CPU requests a few steps until every pod fits on a node"),
        ScenarioInfo("cpu-heavy", "resource_contention", "cpu_quota_exceeded", "high",
                     "reduce CPU requests many steps until every pod fits on a node"),
        ScenarioInfo("mem-slight", "resource_contention", "memory_quota_exceeded", "low",
                     "reduce memory requests a few steps until every pod fits on a node"),
        ScenarioInfo("mem-heavy", "resource_contention", "memory_quota_exceeded", "high",
                     "reduce memory requests many steps until every pod fits on a node"),
        ScenarioInfo("cpu-mem", "resource_contention", "cpu_and_memory_exceeded", "medium",
                     "reduce both CPU and memory requests"),
        ScenarioInfo("replicas-over", "replica_scaling", "too_many_replicas", "low",
                     "scale down to the target"),
        ScenarioInfo("replicas-under", "replica_scaling", "too_few_replicas", "low",
                     "scale up to the target"),
        ScenarioInfo("composite", "composite", "cpu_low_memory_high_replicas_over", "composite",
                     "reduce memory requests and scale down to the target"),
    )
}
SCENARIOS = tuple(SCENARIO_INFO)


@dataclass(frozen=True)
class GeneratedTrace:
    """One generated trace and what it is about (requests of the target's first container)."""
    name: str                 # file stem: trace-0007-replicas-over
    scenario: str
    trace: Trace
    target: int
    cpu_millicores: int
    memory_bytes: int
    replicas: int
    background_pods: int

    def summary(self, file: str | None = None) -> dict[str, Any]:
        info = SCENARIO_INFO[self.scenario]
        return {"name": self.scenario, "trace": file or self.name, "target": self.target,
                "problem_type": info.problem_type, "failure_mode": info.failure_mode,
                "severity": info.severity, "initial_replicas": self.replicas,
                "initial_cpu_m": self.cpu_millicores,
                "initial_memory_mib": self.memory_bytes / MIB,
                "background_pods": self.background_pods}


def object_hash(obj: Any) -> int:
    """A stable unsigned 64-bit hash of JSON data (canonical JSON, BLAKE2b)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def _deployment(name: str, namespace: str, replicas: int, cpu: int, memory: int,
                image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": name,
                    "image": image,
                    "resources": {"requests": {"cpu": format_cpu(cpu), "memory": format_memory(memory)}},
                }]},
            },
        },
    }


def _draw(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in [low, high]."""
    return int(rng.integers(low, high + 1))


def _trace(applied: list[dict[str, Any]], metadata: dict[str, Any]) -> Trace:
    """A v2 trace that applies the Deployments `applied` at START_TS, every replica Running from
    the next second on, with sim-arena's top-level `metadata`."""
    index_map = {f"{obj['metadata']['namespace']}/{obj['metadata']['name']}": object_hash(obj)
                 for obj in applied}
    lifecycles = {
        (DEPLOYMENT_GVK, f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"): {
            object_hash(obj["spec"]["template"]): [{"Running": START_TS + 1}
                                                   for _ in range(obj["spec"]["replicas"])]
        }
        for obj in applied if obj["spec"]["replicas"] > 0
    }
    return Trace(
        config={"trackedObjects": {DEPLOYMENT_GVK: {"podSpecTemplatePaths": ["/spec/template"],
                                                    "trackLifecycle": True}}},
        events=[TraceEvent(ts=START_TS, applied_objs=applied, deleted_objs=[])],
        index={DEPLOYMENT_GVK: index_map},
        pod_lifecycles=lifecycles,
        extra_fields={"metadata": metadata},
    )


def generate_trace(scenario: str, seed: int = 0, index: int = 0, *,
                   node_cpu_millicores: int = 16_000, node_memory_bytes: int = 32 * GIB,
                   deploy: str = "web", namespace: str = "default") -> GeneratedTrace:
    """Trace `index` of scenario `scenario` for `seed` (see the module docstring)."""
    if scenario not in SCENARIO_INFO:
        raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be >= 0")
    rng = np.random.default_rng([seed, index])
    target = _draw(rng, 2, 4)
    replicas = target
    cpu = 250 * _draw(rng, 1, 4)                  # 250m .. 1000m
    memory = 256 * MIB * _draw(rng, 1, 8)         # 256Mi .. 2Gi
    if scenario in ("cpu-slight", "cpu-mem"):
        cpu = node_cpu_millicores + 500 * _draw(rng, 1, 3)
    if scenario == "cpu-heavy":
        cpu = node_cpu_millicores + 500 * _draw(rng, 6, 12)
    if scenario in ("mem-slight", "cpu-mem", "composite"):
        memory = node_memory_bytes + 256 * MIB * _draw(rng, 1, 4)
    if scenario == "mem-heavy":
        memory = node_memory_bytes + GIB * _draw(rng, 4, 8)
    if scenario in ("replicas-over", "composite"):
        replicas = target + _draw(rng, 1, 3)
    if scenario == "replicas-under":
        replicas = max(1, target - _draw(rng, 1, 3))
    if scenario == "composite":
        cpu = 250

    applied = []
    background_pods = 0
    if rng.random() < 0.5:
        background_pods = _draw(rng, 1, 4)
        applied.append(_deployment("background", namespace, background_pods,
                                   500 * _draw(rng, 1, 4), 512 * MIB * _draw(rng, 1, 8),
                                   "ghcr.io/example/background:1.0"))
    applied.append(_deployment(deploy, namespace, replicas, cpu, memory, "ghcr.io/example/web:1.0"))

    info = SCENARIO_INFO[scenario]
    metadata = {
        "description": f"{scenario}: {replicas} x ({format_cpu(cpu)} CPU, {format_memory(memory)}) "
                       f"for a target of {target} ready pods on {node_cpu_millicores // 1000} CPU / "
                       f"{format_memory(node_memory_bytes)} nodes",
        "scenario": {
            "name": scenario, "deploy": deploy, "namespace": namespace, "target": target,
            "problem_type": info.problem_type, "failure_mode": info.failure_mode,
            "severity": info.severity, "expected_behavior": info.expected_behavior,
            "initial_replicas": replicas, "initial_cpu": format_cpu(cpu),
            "initial_memory": format_memory(memory),
        },
        "generator": {"tool": "puffer-cluster traces generate", "seed": seed, "index": index,
                      "node_cpu": format_cpu(node_cpu_millicores),
                      "node_memory": format_memory(node_memory_bytes)},
    }
    trace = _trace(applied, metadata)
    return GeneratedTrace(name=f"trace-{index:04d}-{scenario}", scenario=scenario, trace=trace,
                          target=target, cpu_millicores=cpu, memory_bytes=memory,
                          replicas=replicas, background_pods=background_pods)


# A busy cluster's namespaces; kube-system's pods are critical under the default [replay] keys.
BUSY_NAMESPACES = ("default", "apps", "batch", "monitoring", "web", "kube-system")


def generate_busy_trace(seed: int = 0, index: int = 0, *, node_cpu_millicores: int = 16_000,
                        node_memory_bytes: int = 32 * GIB, max_nodes: int = 16) -> Trace:
    """A busy cluster, for training on replays: up to 12 Deployments of 1-6 replicas in namespaces
    drawn from BUSY_NAMESPACES, each pod requesting 1/32 to 1/2 of a node's memory and its memory
    share times 1/8 to 2 of a node's CPU (both log-uniform: most pods bind on memory, some on
    CPU), replicas and Deployments cut so that the requests stay within `max_nodes` largest pods
    (sized to the trace, the cluster has about that many nodes: 16, the 4x4 cluster of the
    scenario traces). Most nodes hold pods and much of their memory is requests, which CLEAN
    does not free, unlike the scenarios' few pods on mostly empty nodes. Drawn from
    `numpy.random.default_rng([seed, index, 1])`: the same seed gives the same trace."""
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be >= 0")
    rng = np.random.default_rng([seed, index, 1])
    applied = []
    total, largest = np.zeros(2), np.zeros(2)  # node shares: cpu, memory
    for d in range(_draw(rng, 4, 12)):
        memory_share = 2.0 ** rng.uniform(-5, -1)
        cpu_share = min(1.0, memory_share * 2.0 ** rng.uniform(-3, 1))
        namespace, replicas = str(rng.choice(BUSY_NAMESPACES)), _draw(rng, 1, 6)
        pod, top = np.array([cpu_share, memory_share]), np.maximum(largest, (cpu_share, memory_share))
        while replicas and (total + replicas * pod).max() > max_nodes * top.max():
            replicas -= 1
        if not replicas:
            break
        total, largest = total + replicas * pod, top
        applied.append(_deployment(
            f"service-{d}", namespace, replicas, max(1, round(cpu_share * node_cpu_millicores)),
            MIB * max(1, round(memory_share * node_memory_bytes / MIB)),
            f"ghcr.io/example/service-{d}:1.0"))
    metadata = {
        "description": f"busy cluster: {len(applied)} Deployments of "
                       f"{sum(obj['spec']['replicas'] for obj in applied)} pods",
        "generator": {"tool": "puffer-cluster traces generate (busy)", "seed": seed, "index": index,
                      "node_cpu": format_cpu(node_cpu_millicores),
                      "node_memory": format_memory(node_memory_bytes)},
    }
    return _trace(applied, metadata)


def generate_traces(count: int, seed: int = 0, scenarios: tuple[str, ...] | list[str] = SCENARIOS,
                    **kwargs) -> list[GeneratedTrace]:
    """`count` traces, trace i of scenario `scenarios[i % len(scenarios)]`."""
    if count < 0:
        raise ValueError("count must be >= 0")
    scenarios = tuple(scenarios)
    if not scenarios:
        raise ValueError("no scenario to generate")
    for name in scenarios:
        if name not in SCENARIO_INFO:
            raise ValueError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
    return [generate_trace(scenarios[i % len(scenarios)], seed, i, **kwargs) for i in range(count)]


def write_traces(generated: list[GeneratedTrace], out_dir: str | os.PathLike[str], *,
                 fmt: str = "msgpack", overwrite: bool = False) -> list[Path]:
    """Write each trace (atomically) as `<name>.msgpack` (or `.json`), and the listing
    `scenarios.jsonl` (one JSON object per trace, like sim-arena's scenario index).

    Refuses (FileExistsError, before writing anything) to replace existing files unless
    `overwrite`."""
    if fmt not in ("msgpack", "json"):
        raise ValueError(f"format must be msgpack or json, got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{item.name}.{fmt}" for item in generated]
    listing = out / GENERATED_INDEX
    if not overwrite:
        clashes = [path for path in (*paths, listing) if path.exists()]
        if clashes:
            raise FileExistsError(f"{clashes[0]} already exists"
                                  + (f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""))
    for item, path in zip(generated, paths):
        (save_json_trace if fmt == "json" else save_trace)(item.trace, path)
    lines = [json.dumps(item.summary(path.name), sort_keys=True) for item, path in zip(generated, paths)]
    temp = listing.with_name(f".{listing.name}.partial")
    temp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(temp, listing)
    return paths
