"""SimKube trace replay: a trace compiled into a timeline of node loads, behind the gardener's
contract (the same 30-value observation, 8 actions, reward and episode statistics).

Compilation (`compile_timeline`, once per trace, NumPy) replays the trace as SimKube's driver does
(sk-driver's runner), on an `H x W` grid of identical nodes:

- Events in file order; within an event, the applied objects, then the deleted ones. Objects go
  to the virtual namespace `<virtual_ns_prefix>-<namespace>` (`virtual-default`), created on first
  use. Deleting an object deletes what it owns (its pods, a CronJob's Jobs); deleting something
  absent is ignored, as the driver ignores a 404.
- Time: the driver sleeps `int((next_ts - ts) / speed)` seconds between events; an env step is
  `step_seconds` of that (simulated wall-clock) time, so `step_seconds * speed` seconds of trace
  time. `duration > 0` truncates like `skctl run --duration`: events at or after
  `start + duration` are dropped and the episode ends after `int(duration / speed)` seconds.
  Otherwise the cluster persists after the last event until the episode's `max_steps`.
  Leading events that apply and delete nothing (sim-arena's placeholder at ts 0) are skipped
  when `skip_leading_empty` is on, so the replay starts at the first real event.
- Pods: Deployment / ReplicaSet / StatefulSet / ReplicationController keep `spec.replicas`
  (default 1) pods; a Job runs `parallelism` (default 1) pods at a time up to `completions`; a
  CronJob starts a Job per tick of its schedule (5-field cron, evaluated on the trace's clock),
  honouring `suspend` and `concurrencyPolicy`; a DaemonSet runs one pod per node; a bare Pod is
  one pod; another tracked kind with a pod template runs `spec.replicas` (default 1) pods per
  template. A pod's request is Kubernetes' effective request (containers summed, restartable init
  containers added, the largest regular init container as a floor, plus `overhead`), a limit
  standing in for a missing request; every quantity format is parsed.
- Run times: pod i of an owner (i counted per traced owner, from 0) uses the owner's recorded
  lifecycle `i % n` (`Trace.lookup_pod_lifecycle`, only for owners in the trace's index, as the
  driver checks). A Finished(start, end) pod completes `int((end - start) / speed)` seconds
  (at least 1) after it starts running and is then replaced by its controller (replicas,
  DaemonSet), counted as a success (Job) or simply gone (bare pod); other pods run until deleted.
- Scheduler (deterministic): pods wait in one FIFO queue in creation order; at every instant,
  after the controllers have acted, each waiting pod goes to the feasible node (requests within
  the node's capacity, fewer than `max_pods_per_node` pods) with the highest least-allocated
  score (kube-scheduler's NodeResourcesFit/LeastAllocated: the mean free fraction of CPU and
  memory after placement, counting 100m CPU / 200 MiB for a request of 0), ties to the lowest
  node index (row-major); `scheduler = first-fit` takes the lowest feasible index instead.
  DaemonSet pods only go to their own node. Pods that fit nowhere stay pending (counted).
- Priority of a pod: the annotation `priority_annotation` (a number in [0, 1]) on the pod
  template or the object wins; otherwise `critical_prio` when its `priorityClassName` matches
  one of `critical_classes` (comma-separated globs, `system-*`) or its original namespace is one
  of `critical_namespaces` (`kube-system`), else `pod_prio`. A node's priority is the highest of
  the pods that ran on it during the episode's horizon, 0 for a node that ran none.

Units: the timeline holds requested CPU and memory per node in units of one node's capacity
(`node_cpu` cores, `node_memory_gib` GiB). The dynamics (leak overlay, usage noise, CLEAN, SCALE,
OOMs, overloads, reward) are in `kernels.replay`; the scheduler does not see SCALE (placements
are compiled once, at the base capacity).
"""
from __future__ import annotations

import fnmatch
import heapq
import math
import warnings
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from kernels import replay as kernel
from kernels.world import NUM_ACTIONS, OBS_SIZE
from puffer_cluster import REPLAY_GYM_ID as GYM_ID  # registered by the package
from puffer_cluster.config import ConfigError, env_defaults
from puffer_cluster.env import (
    KernelVectorEnv, OneGridGymEnv, as_action_array, observation_space, world_params,
)
from puffer_cluster.render import render_ansi, render_rgb
from puffer_cluster.traces import (
    BUILTIN_POD_SPEC_TEMPLATE_PATHS, QuantityError, Trace, TraceError, load_trace, object_gvk,
    parse_cpu_cores, parse_gvk, parse_memory_bytes,
)

TRACE_SUFFIXES = (".msgpack", ".sktrace", ".json")
GIB = 2**30
# kube-scheduler scores a pod without requests as if it asked for this much (schedutil).
NONZERO_CPU_MILLICORES = 100
NONZERO_MEMORY_BYTES = 200 * 1024 * 1024
MAX_PODS_CREATED = 1_000_000
SCHEDULERS = ("least-allocated", "first-fit")

__all__ = [
    "GYM_ID", "ReplayError", "ReplayPod", "ReplaySettings", "Timeline", "TraceReplayEnv",
    "TraceReplayGymEnv", "compile_timeline", "find_trace_files", "load_timelines", "pod_requests",
    "replay_settings", "stack_timelines",
]


class ReplayError(ValueError):
    """A trace that cannot be replayed (e.g. an object the API server would refuse)."""


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class ReplaySettings:
    """The `[replay]` config section (`configs/gardener.ini` documents every key)."""
    node_cpu: float = 16.0
    node_memory_gib: float = 32.0
    max_pods_per_node: int = 110
    scheduler: str = "least-allocated"
    step_seconds: float = 1.0
    speed: float = 1.0
    duration: float = 0.0
    skip_leading_empty: bool = True
    virtual_ns_prefix: str = "virtual"
    leak_overlay: bool = True
    overlay_init: bool = True
    usage_noise: float = 0.2
    critical_classes: str = "system-*"
    critical_namespaces: str = "kube-system"
    priority_annotation: str = "puffer-cluster.io/priority"
    critical_prio: float = 1.0
    pod_prio: float = 0.5

    def __post_init__(self):
        checks = (
            (self.node_cpu > 0 and math.isfinite(self.node_cpu), "node_cpu must be > 0"),
            (self.node_memory_gib > 0 and math.isfinite(self.node_memory_gib),
             "node_memory_gib must be > 0"),
            (self.max_pods_per_node >= 1, "max_pods_per_node must be at least 1"),
            (self.scheduler in SCHEDULERS, f"scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.step_seconds > 0 and math.isfinite(self.step_seconds), "step_seconds must be > 0"),
            (self.speed > 0 and math.isfinite(self.speed), "speed must be > 0"),
            (self.duration >= 0 and math.isfinite(self.duration), "duration must be >= 0"),
            (0.0 <= self.usage_noise <= 1.0, "usage_noise must be in [0, 1]"),
            (0.0 <= self.critical_prio <= 1.0, "critical_prio must be in [0, 1]"),
            (0.0 <= self.pod_prio <= 1.0, "pod_prio must be in [0, 1]"),
            (bool(self.virtual_ns_prefix), "virtual_ns_prefix must not be empty"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"[replay] {message}")

    @property
    def node_cpu_millicores(self) -> int:
        return int(round(self.node_cpu * 1000))

    @property
    def node_memory_bytes(self) -> int:
        return int(round(self.node_memory_gib * GIB))

    def kernel_params(self) -> kernel.ReplayParams:
        return kernel.ReplayParams(float(self.usage_noise), bool(self.leak_overlay),
                                   bool(self.overlay_init))


def replay_settings(config: dict | ReplaySettings | None = None, **overrides) -> ReplaySettings:
    """Settings from a `[replay]` dict (or a full config holding one), updated by `overrides`.

    Missing keys keep the defaults (a checkpoint's config may predate the section)."""
    if isinstance(config, ReplaySettings):
        base, values = config, {}
    else:
        base, config = ReplaySettings(), dict(config or {})
        section = config.get("replay")
        values = dict(section) if isinstance(section, dict) else config
    values.update(overrides)
    known = {f.name: f for f in fields(ReplaySettings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown replay keys {unknown}; valid keys: {', '.join(known)}")
    typed = {}
    for name, value in values.items():
        default = getattr(ReplaySettings(), name)
        try:
            if isinstance(default, bool):
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError
                typed[name] = bool(value)
            elif isinstance(default, int):
                if isinstance(value, bool) or int(value) != value:
                    raise ValueError
                typed[name] = int(value)
            elif isinstance(default, float):
                if isinstance(value, bool):
                    raise ValueError
                typed[name] = float(value)
            else:
                typed[name] = str(value)
        except (TypeError, ValueError):
            raise ConfigError(f"[replay] {name}: expected {type(default).__name__}, "
                              f"got {value!r}") from None
    return replace(base, **typed)


def parse_duration(text: str | float | int) -> float:
    """Seconds from '300', '300s', '5m', '1h30m', '2d' (skctl's --duration, relative form)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        rest = str(text).strip().lower().replace(" ", "")
        if not rest:
            raise ConfigError("empty duration")
        try:
            seconds = float(rest)
        except ValueError:
            seconds = 0.0
            number = ""
            for char in rest:
                if char.isdigit() or char == ".":
                    number += char
                elif char in units and number:
                    seconds += float(number) * units[char]
                    number = ""
                else:
                    raise ConfigError(f"duration {text!r}: use seconds or e.g. 90s, 5m, 1h30m") \
                        from None
            if number:
                raise ConfigError(f"duration {text!r}: a number without a unit at the end")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"duration {text!r} must be a finite number of seconds >= 0")
    return seconds


# ---------------------------------------------------------------- pods and requests


def _cpu_millicores(value: Any, where: str) -> int:
    try:
        return int(round(parse_cpu_cores(value) * 1000))
    except QuantityError as error:
        raise ReplayError(f"{where}: {error}") from None


def _memory_bytes(value: Any, where: str) -> int:
    try:
        return int(parse_memory_bytes(value))
    except QuantityError as error:
        raise ReplayError(f"{where}: {error}") from None


def _container_requests(container: Any, where: str) -> tuple[int, int]:
    """(millicores, bytes) a container requests; a limit stands in for a missing request, as
    Kubernetes defaults requests to limits."""
    if not isinstance(container, dict):
        return 0, 0
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {} if isinstance(resources, dict) else {}
    limits = resources.get("limits") or {} if isinstance(resources, dict) else {}
    cpu = requests.get("cpu", limits.get("cpu")) if isinstance(requests, dict) else None
    memory = requests.get("memory", limits.get("memory")) if isinstance(requests, dict) else None
    return (0 if cpu is None else _cpu_millicores(cpu, f"{where}.cpu"),
            0 if memory is None else _memory_bytes(memory, f"{where}.memory"))


def pod_requests(pod_spec: dict, where: str = "pod") -> tuple[int, int]:
    """The effective (millicores, bytes) request of a pod spec, as the scheduler computes it:
    app containers summed plus restartable init containers (sidecars), at least each regular
    init container (plus the sidecars started before it), plus the pod overhead."""
    if not isinstance(pod_spec, dict):
        return 0, 0
    cpu = memory = 0
    for n, container in enumerate(pod_spec.get("containers") or []):
        c, m = _container_requests(container, f"{where}.containers[{n}]")
        cpu, memory = cpu + c, memory + m
    sidecar_cpu = sidecar_mem = 0
    init_cpu = init_mem = 0
    for n, container in enumerate(pod_spec.get("initContainers") or []):
        c, m = _container_requests(container, f"{where}.initContainers[{n}]")
        if isinstance(container, dict) and container.get("restartPolicy") == "Always":
            sidecar_cpu, sidecar_mem = sidecar_cpu + c, sidecar_mem + m
        else:
            init_cpu = max(init_cpu, sidecar_cpu + c)
            init_mem = max(init_mem, sidecar_mem + m)
    cpu, memory = max(cpu + sidecar_cpu, init_cpu), max(memory + sidecar_mem, init_mem)
    overhead = pod_spec.get("overhead") or {}
    if isinstance(overhead, dict):
        if "cpu" in overhead:
            cpu += _cpu_millicores(overhead["cpu"], f"{where}.overhead.cpu")
        if "memory" in overhead:
            memory += _memory_bytes(overhead["memory"], f"{where}.overhead.memory")
    return cpu, memory


def _resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at a JSON pointer ('' is the document itself), or None."""
    if pointer == "":
        return document
    node = document
    for token in pointer.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
        if node is None:
            return None
    return node


@dataclass(frozen=True)
class _Template:
    cpu: int        # millicores
    memory: int     # bytes
    prio: float


@dataclass(eq=False)
class ReplayPod:
    """One pod of the replay; times are simulated wall-clock seconds since the replay started."""
    namespace: str            # the virtual namespace it runs in
    name: str
    owner: str                # "GVK namespace/name" of the traced object it belongs to
    seq: int                  # launch number for its owner (picks the lifecycle)
    cpu: int                  # requested millicores
    memory: int               # requested bytes
    prio: float
    created: float
    pinned_node: int = -1     # DaemonSet pods only go to this node
    node: int = -1            # -1 while pending
    started: float | None = None
    ended: float | None = None
    run_seconds: float | None = None  # from a Finished lifecycle; None runs until deleted

    def running_at(self, t: float) -> bool:
        return self.started is not None and self.started <= t and (self.ended is None or t < self.ended)


# ---------------------------------------------------------------- cron


_CRON_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}
_MONTHS = {name: n for n, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_DAYS = {name: n for n, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


class _CronSchedule:
    """A standard 5-field cron schedule (minute hour day-of-month month day-of-week), with
    ranges, steps, lists, names and the @-macros; day-of-month and day-of-week both restricted
    means either matches, as in cron."""

    def __init__(self, text: str):
        text = str(text).strip()
        if text.startswith(("TZ=", "CRON_TZ=")):
            text = text.split(None, 1)[1] if " " in text else ""
        text = _CRON_MACROS.get(text.lower(), text)
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(f"schedule {text!r} does not have 5 fields")
        bounds = ((0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 7, _DAYS))
        self.fields = [self._parse(part, *b) for part, b in zip(parts, bounds)]
        if 7 in self.fields[4]:
            self.fields[4] = self.fields[4] | {0}
        self.dom_star = parts[2] in ("*", "?")
        self.dow_star = parts[4] in ("*", "?")

    @staticmethod
    def _parse(part: str, low: int, high: int, names: dict) -> frozenset:
        values = set()
        for item in part.lower().split(","):
            base, _, step_text = item.partition("/")
            step = int(step_text) if step_text else 1
            if step < 1:
                raise ValueError(f"bad step in {part!r}")
            if base in ("*", "?"):
                first, last = low, high
            else:
                first_text, dash, last_text = base.partition("-")
                first = names.get(first_text, None)
                first = int(first_text) if first is None else first
                last = (names.get(last_text) if last_text in names else int(last_text)) \
                    if dash else (high if step_text else first)
            if not (low <= first <= high and low <= last <= high and first <= last):
                raise ValueError(f"{part!r} is outside {low}-{high}")
            values.update(range(first, last + 1, step))
        return frozenset(values)

    def matches(self, moment: datetime) -> bool:
        minute, hour, dom, month, dow = self.fields
        if moment.minute not in minute or moment.hour not in hour or moment.month not in month:
            return False
        day_ok = moment.day in dom
        week_ok = (moment.isoweekday() % 7) in dow
        if self.dom_star or self.dow_star:
            return day_ok and week_ok
        return day_ok or week_ok

    def next_after(self, ts: float, limit: float) -> float | None:
        """The first scheduled time strictly after `ts` (seconds since the epoch), up to `limit`."""
        minute = math.floor(ts / 60.0) * 60 + 60
        while minute <= limit:
            if self.matches(datetime.fromtimestamp(minute, tz=timezone.utc)):
                return float(minute)
            minute += 60
        return None


# ---------------------------------------------------------------- the replay (discrete events)


@dataclass(eq=False)
class _Workload:
    key: tuple[str, str, str]       # (gvk, original namespace, name)
    gvk: str
    kind: str                       # controller: replicas, daemon, job, cron, pod
    namespace: str
    vns: str
    name: str
    obj: dict
    templates: list[_Template]
    desired: int = 1
    parallelism: int = 1
    completions: int | None = None
    succeeded: int = 0
    schedule: _CronSchedule | None = None
    suspend: bool = False
    concurrency: str = "Allow"
    job_templates: list[_Template] = field(default_factory=list)
    job_spec: dict = field(default_factory=dict)
    owner: "_Workload | None" = None   # the traced object (lifecycles, sequence numbers)
    parent: "_Workload | None" = None  # a CronJob's Job
    children: list = field(default_factory=list)
    active: list = field(default_factory=list)
    next_seq: int = 0
    alive: bool = True
    generation: int = 0

    @property
    def label(self) -> str:
        return f"{self.gvk} {self.namespace}/{self.name}"


_REPLICATED = {("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "StatefulSet"),
               ("", "ReplicationController")}

# Within one instant: completions free capacity first, then the trace's events, then cron ticks.
_COMPLETION, _TRACE_EVENT, _CRON_TICK = range(3)


class _Replay:
    def __init__(self, trace: Trace, settings: ReplaySettings, height: int, width: int,
                 start_ts: int, end_wall: float):
        self.trace = trace
        self.settings = settings
        self.nodes = height * width
        self.start_ts = start_ts
        self.end_wall = end_wall
        self.cap_cpu = settings.node_cpu_millicores
        self.cap_mem = settings.node_memory_bytes
        self.alloc_cpu = np.zeros(self.nodes, dtype=np.int64)
        self.alloc_mem = np.zeros(self.nodes, dtype=np.int64)
        self.score_cpu = np.zeros(self.nodes, dtype=np.int64)
        self.score_mem = np.zeros(self.nodes, dtype=np.int64)
        self.pod_count = np.zeros(self.nodes, dtype=np.int64)
        self.prio = np.zeros(self.nodes)
        self.pending: list[ReplayPod] = []
        self.pods: list[ReplayPod] = []
        self.workloads: dict[tuple[str, str, str], _Workload] = {}
        self.workload_of: dict[int, _Workload] = {}
        self.namespaces: list[str] = []
        self.warnings: list[str] = []
        self.queue: list = []
        self.counter = 0
        self.snapshots: list[tuple[float, np.ndarray, np.ndarray, np.ndarray, int]] = []
        self.objects_applied = 0
        self.objects_deleted = 0
        self.critical = [p.strip() for p in settings.critical_classes.split(",") if p.strip()]
        self.critical_ns = {n.strip() for n in settings.critical_namespaces.split(",") if n.strip()}

    # -- the event queue

    def push(self, time: float, order: int, action, *args):
        self.counter += 1
        heapq.heappush(self.queue, (time, order, self.counter, action, args))

    def run(self):
        while self.queue and self.queue[0][0] <= self.end_wall:
            now = self.queue[0][0]
            while self.queue and self.queue[0][0] == now:
                _, _, _, action, args = heapq.heappop(self.queue)
                action(now, *args)
            self.schedule_pending(now)
            self.snapshot(now)

    def snapshot(self, now: float):
        state = (self.alloc_cpu, self.alloc_mem, self.pod_count)
        if self.snapshots:
            last = self.snapshots[-1]
            if len(self.pending) == last[4] and all(np.array_equal(a, b) for a, b in zip(state, last[1:4])):
                return
        self.snapshots.append((now, self.alloc_cpu.copy(), self.alloc_mem.copy(),
                               self.pod_count.copy(), len(self.pending)))

    # -- trace events

    def apply_event(self, now: float, event):
        for obj in event.applied_objs:
            self.apply(now, obj)
        for obj in event.deleted_objs:
            self.delete(now, obj)

    def _key(self, obj: dict) -> tuple[str, str, str] | None:
        metadata = obj.get("metadata") or {}
        namespace = metadata.get("namespace")
        gvk = object_gvk(obj)
        name = metadata.get("name") or ""
        if not namespace:
            self.warnings.append(f"{gvk} {name}: cluster-scoped objects are not replayed "
                                 "(the driver only replays namespaced ones)")
            return None
        group, version, kind = parse_gvk(gvk)
        return f"{group}/{version}.{kind}" if group else f"{version}.{kind}", namespace, name

    def apply(self, now: float, obj: dict):
        key = self._key(obj)
        if key is None:
            return
        self.objects_applied += 1
        gvk, namespace, name = key
        vns = f"{self.settings.virtual_ns_prefix}-{namespace}"
        if vns not in self.namespaces:
            self.namespaces.append(vns)
        workload = self._build(key, vns, obj)
        existing = self.workloads.get(key)
        if existing is not None and existing.alive:
            self._update(now, existing, workload)
            return
        if workload is None:
            return
        self.workloads[key] = workload
        self._start(now, workload)

    def delete(self, now: float, obj: dict):
        key = self._key(obj)
        if key is None:
            return
        self.objects_deleted += 1
        workload = self.workloads.pop(key, None)
        if workload is None:
            return  # the driver ignores a 404
        self._kill(now, workload)

    # -- workloads

    def _templates(self, gvk: str, obj: dict, paths: list[str], where: str) -> list[_Template]:
        templates = []
        metadata = obj.get("metadata") or {}
        for path in paths:
            node = _resolve_pointer(obj, path)
            if isinstance(node, dict) and not isinstance(node.get("spec"), dict) \
                    and isinstance(node.get("template"), dict):
                node = node["template"]  # SimKube's ReplicaSet path is /spec, the template below
            if not isinstance(node, dict) or not isinstance(node.get("spec"), dict):
                continue
            cpu, memory = pod_requests(node["spec"], f"{where}{path}.spec")
            prio = self._prio(node, metadata, where)
            templates.append(_Template(cpu, memory, prio))
        return templates

    def _prio(self, template: dict, obj_metadata: dict, where: str) -> float:
        settings = self.settings
        for metadata in (template.get("metadata") or {}, obj_metadata):
            annotations = metadata.get("annotations") or {} if isinstance(metadata, dict) else {}
            if isinstance(annotations, dict) and settings.priority_annotation in annotations:
                value = annotations[settings.priority_annotation]
                try:
                    prio = float(value)
                    if not math.isfinite(prio):
                        raise ValueError
                    return min(1.0, max(0.0, prio))
                except (TypeError, ValueError):
                    self.warnings.append(f"{where}: annotation {settings.priority_annotation}="
                                         f"{value!r} is not a number in [0, 1]; ignored")
        spec = template.get("spec") or {}
        class_name = spec.get("priorityClassName") if isinstance(spec, dict) else None
        if isinstance(class_name, str) and any(fnmatch.fnmatchcase(class_name, pattern)
                                               for pattern in self.critical):
            return settings.critical_prio
        if obj_metadata.get("namespace") in self.critical_ns:
            return settings.critical_prio
        return settings.pod_prio

    def _build(self, key, vns: str, obj: dict) -> _Workload | None:
        gvk, namespace, name = key
        group, _, kind = parse_gvk(gvk)
        where = f"{gvk} {namespace}/{name}"
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        paths = self.trace.pod_spec_template_paths(gvk)
        if paths is None:
            paths = BUILTIN_POD_SPEC_TEMPLATE_PATHS.get(parse_gvk(gvk))
        workload = _Workload(key, gvk, "replicas", namespace, vns, name, obj, [])
        workload.owner = workload
        if (group, kind) == ("batch", "CronJob"):
            workload.kind = "cron"
            job_spec = _resolve_pointer(obj, "/spec/jobTemplate/spec")
            workload.job_spec = job_spec if isinstance(job_spec, dict) else {}
            workload.job_templates = self._templates(gvk, obj, paths or [], where)
            try:
                workload.schedule = _CronSchedule(spec.get("schedule", ""))
            except (ValueError, TypeError) as error:
                self.warnings.append(f"{where}: {error}; no Job is started")
            workload.suspend = spec.get("suspend") is True
            workload.concurrency = str(spec.get("concurrencyPolicy") or "Allow")
            return workload
        templates = self._templates(gvk, obj, paths or [], where)
        if not templates:
            return None  # no pods: a ConfigMap, a Service, ...
        workload.templates = templates
        if (group, kind) == ("", "Pod"):
            workload.kind, workload.desired = "pod", 1
        elif (group, kind) == ("apps", "DaemonSet"):
            workload.kind, workload.desired = "daemon", self.nodes
        elif (group, kind) == ("batch", "Job"):
            workload.kind = "job"
            self._job_counts(workload, spec)
        else:
            replicas = spec.get("replicas", 1)
            workload.desired = replicas if type(replicas) is int and replicas >= 0 else 1
        return workload

    @staticmethod
    def _job_counts(workload: _Workload, spec: dict):
        """Kubernetes' Job defaults: neither set means one pod to one completion; parallelism
        without completions is a work queue (done once a pod succeeds)."""
        parallelism = spec.get("parallelism")
        completions = spec.get("completions")
        if parallelism is None and completions is None:
            completions = 1
        workload.parallelism = parallelism if type(parallelism) is int and parallelism >= 0 else 1
        workload.completions = completions if type(completions) is int and completions >= 0 else None
        workload.suspend = spec.get("suspend") is True

    def _start(self, now: float, workload: _Workload):
        if workload.kind == "cron":
            self._next_tick(now, workload)
        else:
            self._reconcile(now, workload)

    def _update(self, now: float, old: _Workload, new: _Workload | None):
        """A re-applied object: a new pod template replaces the pods; a new count scales."""
        if new is None or new.kind != old.kind:
            self._kill(now, old)
            self.workloads.pop(old.key, None)
            if new is not None:
                self.workloads[new.key] = new
                self._start(now, new)
            return
        old.obj = new.obj
        if old.kind == "cron":
            old.schedule, old.suspend, old.concurrency = new.schedule, new.suspend, new.concurrency
            old.job_spec, old.job_templates = new.job_spec, new.job_templates
            old.generation += 1
            self._next_tick(now, old)
            return
        if old.kind == "pod":
            return  # a pod's spec is immutable
        if new.templates != old.templates and old.kind != "job":
            for pod in list(old.active):
                self._remove_pod(now, old, pod)
            old.templates = new.templates
        old.desired = new.desired
        if old.kind == "job":
            old.parallelism, old.suspend = new.parallelism, new.suspend
        self._reconcile(now, old)

    def _kill(self, now: float, workload: _Workload):
        workload.alive = False
        for child in workload.children:
            self._kill(now, child)
        for pod in list(workload.active):
            self._remove_pod(now, workload, pod)

    def _reconcile(self, now: float, workload: _Workload):
        """Create or remove pods so that the workload has as many as its controller wants."""
        if not workload.alive:
            return
        if workload.kind == "daemon":
            covered = {pod.pinned_node for pod in workload.active}
            for node in range(self.nodes):
                if node not in covered:
                    self._create_pod(now, workload, workload.templates[0], node)
            return
        per_set = len(workload.templates)
        if workload.kind == "job":
            if workload.suspend:
                target = 0
            elif workload.completions is None:
                # A work queue: no new pod once one succeeded; the others finish on their own.
                target = len(workload.active) if workload.succeeded > 0 \
                    else workload.parallelism * per_set
            else:
                target = max(0, min(workload.parallelism,
                                    workload.completions - workload.succeeded)) * per_set
        else:
            target = workload.desired * per_set
        while len(workload.active) < target:
            template = workload.templates[len(workload.active) % per_set]
            self._create_pod(now, workload, template)
        if len(workload.active) > target:
            # Scale down: pending pods first, then the newest running ones.
            ranked = sorted(workload.active, key=lambda p: (p.node >= 0, p.created, p.seq))
            for pod in ranked[:len(workload.active) - target]:
                self._remove_pod(now, workload, pod)

    def _next_tick(self, now: float, workload: _Workload):
        if workload.schedule is None:
            return
        tick = workload.schedule.next_after(self.start_ts + now, self.start_ts + self.end_wall)
        if tick is not None:
            self.push(tick - self.start_ts, _CRON_TICK, self.cron_tick, workload, workload.generation)

    def cron_tick(self, now: float, workload: _Workload, generation: int):
        if not workload.alive or generation != workload.generation:
            return
        self._next_tick(now, workload)
        if workload.suspend:
            return
        running = [job for job in workload.children if job.alive and job.active]
        if running and workload.concurrency == "Forbid":
            return
        if running and workload.concurrency == "Replace":
            for job in running:
                self._kill(now, job)
        if not workload.job_templates:
            return
        scheduled = int(self.start_ts + now) // 60
        job = _Workload((workload.gvk, workload.namespace, f"{workload.name}-{scheduled}"),
                        "batch/v1.Job", "job", workload.namespace, workload.vns,
                        f"{workload.name}-{scheduled}", {}, list(workload.job_templates))
        self._job_counts(job, workload.job_spec)
        job.owner, job.parent = workload, workload
        workload.children = [child for child in workload.children if child.alive] + [job]
        self._reconcile(now, job)

    # -- pods

    def _create_pod(self, now: float, workload: _Workload, template: _Template, node: int = -1):
        owner = workload.owner
        seq = owner.next_seq
        owner.next_seq += 1
        if len(self.pods) >= MAX_PODS_CREATED:
            raise ReplayError(f"more than {MAX_PODS_CREATED} pods within the horizon "
                              f"(pods of {owner.label} finish too fast?)")
        if workload.kind == "pod":
            name = workload.name
        else:
            name = f"{workload.name}-{node if node >= 0 else seq}"
        pod = ReplayPod(workload.vns, name, owner.label, seq,
                        template.cpu, template.memory, template.prio, now, pinned_node=node)
        pod.run_seconds = self._run_seconds(owner, seq)
        self.pods.append(pod)
        workload.active.append(pod)
        self.workload_of[id(pod)] = workload
        self.pending.append(pod)

    def _run_seconds(self, owner: _Workload, seq: int) -> float | None:
        """How long a pod runs, from its owner's recorded lifecycles (None: until deleted)."""
        trace = self.trace
        gvk, namespace, name = owner.key
        ns_name = f"{namespace}/{name}"
        in_index = any(ns_name in objects for index_gvk, objects in trace.index.items()
                       if _same_gvk(index_gvk, gvk))
        if not in_index:
            return None
        pod_hash = 0
        if parse_gvk(gvk) not in BUILTIN_POD_SPEC_TEMPLATE_PATHS:
            by_hash = next((hashes for (owner_gvk, owner_name), hashes in trace.pod_lifecycles.items()
                            if owner_name == ns_name and _same_gvk(owner_gvk, gvk)), {})
            if len(by_hash) != 1:
                return None  # SimKube matches by the pod's stable hash; not computable here
            pod_hash = next(iter(by_hash))
        lifecycle = trace.lookup_pod_lifecycle(gvk, ns_name, pod_hash, seq)
        if lifecycle.state != "Finished":
            return None
        return float(max(1, int(max(0, lifecycle.end_ts - lifecycle.start_ts) / self.settings.speed)))

    def _remove_pod(self, now: float, workload: _Workload, pod: ReplayPod):
        if pod in workload.active:
            workload.active.remove(pod)
        if pod.node >= 0 and pod.ended is None:
            self._unbind(pod)
        elif pod in self.pending:
            self.pending.remove(pod)
        if pod.ended is None:
            pod.ended = now

    def _unbind(self, pod: ReplayPod):
        node = pod.node
        self.alloc_cpu[node] -= pod.cpu
        self.alloc_mem[node] -= pod.memory
        self.score_cpu[node] -= pod.cpu or NONZERO_CPU_MILLICORES
        self.score_mem[node] -= pod.memory or NONZERO_MEMORY_BYTES
        self.pod_count[node] -= 1

    def complete(self, now: float, pod: ReplayPod):
        if pod.ended is not None:
            return  # deleted meanwhile
        workload = self.workload_of[id(pod)]
        self._remove_pod(now, workload, pod)
        if workload.kind == "job":
            workload.succeeded += 1
        if workload.kind in ("replicas", "daemon", "job"):
            self._reconcile(now, workload)

    def feasible(self, pod: ReplayPod) -> np.ndarray:
        return ((self.alloc_cpu + pod.cpu <= self.cap_cpu)
                & (self.alloc_mem + pod.memory <= self.cap_mem)
                & (self.pod_count < self.settings.max_pods_per_node))

    def choose_node(self, pod: ReplayPod) -> int:
        if pod.pinned_node >= 0:
            node = pod.pinned_node
            fits = (self.alloc_cpu[node] + pod.cpu <= self.cap_cpu
                    and self.alloc_mem[node] + pod.memory <= self.cap_mem
                    and self.pod_count[node] < self.settings.max_pods_per_node)
            return node if fits else -1
        feasible = self.feasible(pod)
        if not feasible.any():
            return -1
        if self.settings.scheduler == "first-fit":
            return int(np.argmax(feasible))
        cpu = self.score_cpu + (pod.cpu or NONZERO_CPU_MILLICORES)
        mem = self.score_mem + (pod.memory or NONZERO_MEMORY_BYTES)
        score = (np.maximum(0, self.cap_cpu - cpu) / self.cap_cpu
                 + np.maximum(0, self.cap_mem - mem) / self.cap_mem)
        score = np.where(feasible, score, -np.inf)
        return int(np.argmax(score))  # the first (lowest index) of the best

    def schedule_pending(self, now: float):
        waiting = []
        for pod in self.pending:
            node = self.choose_node(pod)
            if node < 0:
                waiting.append(pod)
                continue
            pod.node, pod.started = node, now
            self.alloc_cpu[node] += pod.cpu
            self.alloc_mem[node] += pod.memory
            self.score_cpu[node] += pod.cpu or NONZERO_CPU_MILLICORES
            self.score_mem[node] += pod.memory or NONZERO_MEMORY_BYTES
            self.pod_count[node] += 1
            self.prio[node] = max(self.prio[node], pod.prio)
            if pod.run_seconds is not None:
                self.push(now + pod.run_seconds, _COMPLETION, self.complete, pod)
        self.pending = waiting


def _same_gvk(a: str, b: str) -> bool:
    try:
        return parse_gvk(a) == parse_gvk(b)
    except TraceError:
        return False


# ---------------------------------------------------------------- timelines


@dataclass
class Timeline:
    """A trace compiled for one grid size: node loads per segment of steps, node priorities.

    Step k of an episode shows the cluster at simulated wall time `k * step_seconds` (trace time
    `start_ts + k * step_seconds * speed`); segment s covers steps `segment_step[s]` up to the
    next segment's first step."""
    name: str
    height: int
    width: int
    step_seconds: float
    speed: float
    horizon: int                   # steps in an episode on this trace
    start_ts: int                  # the trace time of step 0
    segment_step: np.ndarray       # int64 (S,), first step of each segment, segment_step[0] = 0
    cpu: np.ndarray                # float32 (S, nodes): requested CPU / node capacity
    mem: np.ndarray                # float32 (S, nodes): requested memory / node capacity
    pod_count: np.ndarray          # int32 (S, nodes): running pods
    pending: np.ndarray            # int32 (S,): pods waiting for a node
    prio: np.ndarray               # float32 (nodes,)
    pods: list[ReplayPod]
    namespaces: list[str]          # virtual namespaces, in creation order
    events: int                    # trace events replayed (after truncation)
    objects_applied: int
    objects_deleted: int
    warnings: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> int:
        return self.height * self.width

    @property
    def step_times(self) -> np.ndarray:
        """Simulated wall-clock seconds since the replay started, per step 0 .. horizon."""
        return np.arange(self.horizon + 1) * self.step_seconds

    @property
    def trace_times(self) -> np.ndarray:
        """The trace timestamp shown at each step 0 .. horizon."""
        return self.start_ts + self.step_times * self.speed

    def segment_at(self, step: int) -> int:
        step = min(max(int(step), 0), self.horizon)
        return int(np.searchsorted(self.segment_step, step, side="right") - 1)

    def step_segments(self, length: int | None = None) -> np.ndarray:
        """The segment of each step 0 .. length (default the horizon), the last one repeated."""
        length = self.horizon if length is None else length
        steps = np.minimum(np.arange(length + 1), self.horizon)
        return np.searchsorted(self.segment_step, steps, side="right").astype(np.int64) - 1

    def cpu_at(self, step: int) -> np.ndarray:
        return self.cpu[self.segment_at(step)]

    def mem_at(self, step: int) -> np.ndarray:
        return self.mem[self.segment_at(step)]

    def pods_at(self, step: int) -> np.ndarray:
        return self.pod_count[self.segment_at(step)]

    def pending_at(self, step: int) -> int:
        return int(self.pending[self.segment_at(step)])

    def summary(self, crit_threshold: float = 0.8) -> dict:
        return {
            "name": self.name, "events": self.events, "objects_applied": self.objects_applied,
            "objects_deleted": self.objects_deleted, "pods": len(self.pods),
            "pods_scheduled": sum(pod.started is not None for pod in self.pods),
            "max_running": int(self.pod_count.sum(axis=1).max(initial=0)),
            "max_pending": int(self.pending.max(initial=0)),
            "nodes_used": int((self.pod_count.max(axis=0, initial=0) > 0).sum()),
            "critical_nodes": int((self.prio >= crit_threshold).sum()),
            "max_cpu": float(self.cpu.max(initial=0.0)), "max_mem": float(self.mem.max(initial=0.0)),
            "segments": int(len(self.segment_step)), "horizon": self.horizon,
            "namespaces": list(self.namespaces), "warnings": list(self.warnings),
        }


def compile_timeline(trace: Trace | str | Path, *, height: int = 16, width: int = 16,
                     max_steps: int = 512, settings: ReplaySettings | dict | None = None,
                     name: str | None = None) -> Timeline:
    """Replay `trace` on an `height x width` grid (see the module docstring) into a Timeline."""
    settings = settings if isinstance(settings, ReplaySettings) else replay_settings(settings)
    if name is None:
        name = Path(trace).name if isinstance(trace, (str, Path)) else "trace"
    if isinstance(trace, (str, Path)):
        trace = load_trace(trace)
    if height < 1 or width < 1 or max_steps < 1:
        raise ConfigError("height, width and max_steps must be at least 1")
    events = list(trace.events)
    if settings.skip_leading_empty:
        while events and not events[0].applied_objs and not events[0].deleted_objs:
            events.pop(0)
    start_ts = events[0].ts if events else 0
    speed, dt = settings.speed, settings.step_seconds
    horizon = max_steps
    if settings.duration > 0:
        # skctl run --duration: keep the events before start + duration, end the run there.
        events = [event for event in events if event.ts < start_ts + settings.duration]
        run_seconds = int(settings.duration / speed)
        horizon = min(max_steps, max(1, math.ceil(run_seconds / dt - 1e-9)))
        end_wall = min(horizon * dt, float(run_seconds))
    else:
        end_wall = horizon * dt

    replay = _Replay(trace, settings, height, width, start_ts, end_wall)
    offset, current = 0, start_ts
    for event in events:
        # The driver sleeps int((next - current) / speed) seconds between two events.
        offset += int(max(0, event.ts - current) / speed)
        current = event.ts
        replay.push(float(offset), _TRACE_EVENT, replay.apply_event, event)
    replay.snapshot(0.0)
    replay.run()

    # Step k shows the last snapshot at or before k * dt.
    by_step: dict[int, tuple] = {}
    for snapshot in replay.snapshots:
        by_step[max(0, math.ceil(snapshot[0] / dt - 1e-9))] = snapshot
    steps, rows = [], []
    for step in sorted(by_step):
        if step > horizon:
            break
        snapshot = by_step[step]
        if rows and all(np.array_equal(a, b) for a, b in zip(rows[-1][1:4], snapshot[1:4])) \
                and rows[-1][4] == snapshot[4]:
            continue
        steps.append(step)
        rows.append(snapshot)
    cpu = np.stack([row[1] for row in rows]) / replay.cap_cpu
    mem = np.stack([row[2] for row in rows]) / replay.cap_mem
    return Timeline(
        name=name, height=height, width=width, step_seconds=dt, speed=speed, horizon=horizon,
        start_ts=start_ts, segment_step=np.asarray(steps, dtype=np.int64),
        cpu=cpu.astype(np.float32), mem=mem.astype(np.float32),
        pod_count=np.stack([row[3] for row in rows]).astype(np.int32),
        pending=np.asarray([row[4] for row in rows], dtype=np.int32),
        prio=replay.prio.astype(np.float32), pods=replay.pods, namespaces=replay.namespaces,
        events=len(events), objects_applied=replay.objects_applied,
        objects_deleted=replay.objects_deleted, warnings=replay.warnings,
    )


def stack_timelines(timelines: list[Timeline]) -> kernel.Timelines:
    """The kernel's view of several compiled traces (same grid size)."""
    if not timelines:
        raise ConfigError("no trace to replay")
    nodes = timelines[0].nodes
    if any(t.nodes != nodes for t in timelines):
        raise ConfigError("all timelines of one env must be compiled for the same grid size")
    length = max(t.horizon for t in timelines)
    offsets = np.cumsum([0] + [len(t.segment_step) for t in timelines])
    return kernel.Timelines(
        cpu=np.ascontiguousarray(np.concatenate([t.cpu for t in timelines]), dtype=np.float32),
        mem=np.ascontiguousarray(np.concatenate([t.mem for t in timelines]), dtype=np.float32),
        prio=np.ascontiguousarray(np.stack([t.prio for t in timelines]), dtype=np.float32),
        step_segment=np.stack([t.step_segments(length) + offsets[n]
                               for n, t in enumerate(timelines)]).astype(np.int64),
        horizon=np.asarray([t.horizon for t in timelines], dtype=np.int64),
    )


def find_trace_files(root: str | Path) -> list[Path]:
    """Trace candidates under `root` (recursively, sorted): .msgpack, .sktrace and .json files;
    `root` itself when it is a file."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(path for path in root.rglob("*")
                  if path.is_file() and path.suffix.lower() in TRACE_SUFFIXES)


def load_timelines(traces, params, settings: ReplaySettings) -> list[Timeline]:
    """Timelines for the grid of `params` from paths (files or directories), Traces or Timelines."""
    if isinstance(traces, (str, Path, Trace, Timeline)):
        traces = [traces]
    timelines = []
    for item in traces:
        if isinstance(item, Timeline):
            if (item.height, item.width) != (params.height, params.width):
                raise ConfigError(f"timeline {item.name} was compiled for {item.height}x{item.width}, "
                                  f"the env is {params.height}x{params.width}")
            timelines.append(item)
            continue
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            # A directory: the files that are replayable traces (the others are skipped, with a
            # warning, as `puffer-cluster validate` does). A file named on its own must be one.
            found = 0
            for path in find_trace_files(item):
                try:
                    timelines.append(compile_timeline(path, height=params.height,
                                                      width=params.width,
                                                      max_steps=params.max_steps,
                                                      settings=settings,
                                                      name=str(path.relative_to(item))))
                    found += 1
                except (TraceError, ReplayError) as error:
                    warnings.warn(f"skipped {path}: {error}", stacklevel=3)
            if not found:
                raise ConfigError(f"no replayable trace file (.msgpack, .sktrace, .json) under {item}")
            continue
        timelines.append(compile_timeline(item, height=params.height, width=params.width,
                                          max_steps=params.max_steps, settings=settings))
    if not timelines:
        raise ConfigError("no trace to replay")
    return timelines


# ---------------------------------------------------------------- environments


class _RenderView:
    """The attributes `puffer_cluster.render` reads, for one replayed grid."""

    def __init__(self, env, grid: int):
        s, tl = env.state, env.kernel_timelines
        self.cpu_base = s.cpu[grid:grid + 1]
        self.spike = np.zeros_like(self.cpu_base)
        self.mem = s.mem[grid:grid + 1] + s.overlay[grid:grid + 1]
        self.prio = tl.prio[s.trace[grid]][None, :]
        self.cap = s.cap[grid:grid + 1]
        for name in ("agent_y", "agent_x", "step", "budget", "ep_oom", "ep_crit", "ep_overload",
                     "ep_return"):
            setattr(self, name, getattr(s, name)[grid:grid + 1])


def _render(env, grid: int, mode: str | None):
    view = _RenderView(env, grid)
    params = env.params._replace(max_steps=int(env.kernel_timelines.horizon[env.state.trace[grid]]))
    if mode == "rgb_array":
        return render_rgb(view, params, 0, getattr(env, "last_action", None))
    return render_ansi(view, params, 0)


def _replay_setup(self, traces, replay, env_config):
    self.params = world_params(env_config)
    self.settings = replay_settings(replay)
    self.replay_params = self.settings.kernel_params()
    self.timelines = load_timelines(traces, self.params, self.settings)
    self.kernel_timelines = stack_timelines(self.timelines)


class TraceReplayEnv(KernelVectorEnv):
    """`num_envs` replayed clusters stepped together, auto-resetting; a native PufferLib 3.0 env.

    `traces`: a trace file, a directory of them (files that are not replayable traces are
    skipped with a warning), a Trace, a Timeline, or a list of these; grid g replays trace
    `g % len(traces)` with the seeds of grid g of `GardenerEnv(seed=seed)`, so the (trace, seed)
    pairs are the same for every policy. `num_envs` defaults to one grid per trace. `replay` overrides `[replay]` keys, the
    other keyword arguments `[env]` keys. Agents are ordered grid by grid, infos are the mean
    episode statistics every `log_interval` steps, as in `GardenerEnv`.
    """

    def __init__(self, traces, num_envs: int | None = None, log_interval: int | None = None,
                 render_mode: str | None = "ansi", buf=None, seed: int = 0,
                 replay: dict | ReplaySettings | None = None, **env_config):
        defaults = env_defaults()
        _replay_setup(self, traces, replay, env_config)
        self.num_grids = int(num_envs if num_envs is not None else len(self.timelines))
        if self.num_grids < 1:
            raise ConfigError("num_envs must be at least 1")
        self.log_interval = int(log_interval if log_interval is not None else defaults["log_interval"])
        self.render_mode = render_mode
        self.single_observation_space = observation_space()
        self.single_action_space = gymnasium.spaces.Discrete(NUM_ACTIONS)
        self.num_agents = self.num_grids * self.params.agents_per_grid
        super().__init__(buf)
        self.state = kernel.allocate_replay_state(self.num_grids, self.params)
        self.state.trace[:] = np.arange(self.num_grids) % len(self.timelines)
        self.seed = seed
        self._reset_kernel = kernel.reset_grids if self.num_grids > 1 else kernel.reset_grids_serial
        self._step_kernel = kernel.step if self.num_grids > 1 else kernel.step_serial

    def _reset_all(self):
        self._reset_kernel(self.state, self.params, self.replay_params, self.kernel_timelines,
                           self.observations)

    def _checked_actions(self, actions):
        actions = as_action_array(actions, self.num_agents)
        # One compiled signature: Numba types read-only arrays apart.
        return actions if actions.flags.writeable else actions.copy()

    def _step_all(self, actions):
        self._step_kernel(self.state, self.params, self.replay_params, self.kernel_timelines,
                          actions, self.observations, self.rewards, self.terminals,
                          self.truncations, True)

    def render(self, grid: int = 0):
        return _render(self, grid, self.render_mode)


class TraceReplayGymEnv(OneGridGymEnv):
    """One replayed cluster as a Gymnasium env (`PufferCluster/TraceReplay-v0`).

    `trace` as in `TraceReplayEnv` (several traces are played in turn, episode by episode).
    `reset(seed=s)` followed by plain `reset()`s replays exactly the episodes that grid 0 of
    `TraceReplayEnv(trace, num_envs=1, seed=s)` plays with the same actions (single trace).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8}

    def __init__(self, trace=None, render_mode: str | None = None,
                 replay: dict | ReplaySettings | None = None, **env_config):
        if trace is None:
            raise ConfigError("TraceReplayGymEnv needs trace=<a trace file, a directory, a Trace "
                              "or a Timeline>")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        _replay_setup(self, trace, replay, env_config)
        if self.params.agents_per_grid != 1:
            raise ConfigError("TraceReplayGymEnv is single-agent: agents_per_grid must be 1")
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = gymnasium.spaces.Discrete(NUM_ACTIONS)
        self.state = kernel.allocate_replay_state(1, self.params)
        self._init_buffers(OBS_SIZE)

    def _reset_kernel(self, options):
        self.state.trace[0] = int(self.state.episode[0]) % len(self.timelines)
        kernel.reset_grids_serial(self.state, self.params, self.replay_params,
                                  self.kernel_timelines, self._obs)

    def _step_kernel(self):
        kernel.step_serial(self.state, self.params, self.replay_params, self.kernel_timelines,
                           self._action, self._obs, self._reward, self._terminal,
                           self._truncated, False)

    def render(self):
        if self.render_mode is None:
            return None
        return _render(self, 0, self.render_mode)

