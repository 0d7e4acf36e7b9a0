"""The replay as discrete events: SimKube's driver applying and deleting the trace's objects,
the workload controllers (`puffer_cluster.replay.controllers`) keeping their pods, and the
scheduler (`kernels.placement`) placing them.

- Events in file order; within an event, the applied objects, then the deleted ones. Objects go
  to the virtual namespace `<virtual_ns_prefix>-<namespace>`, created on first use. Deleting an
  object deletes what it owns (its pods, a CronJob's Jobs); deleting something absent is
  ignored, as the driver ignores a 404. Cluster-scoped objects are not replayed (a warning).
- Within one instant: pods that finish free their capacity first, then the trace's events, then
  cron ticks; after them, the pending pods are scheduled in creation order (one FIFO queue).
- Run times: pod i of an owner (i counted per traced owner, from 0) uses the owner's recorded
  lifecycle `i % n` (`Trace.lookup_pod_lifecycle`, only for owners in the trace's index, as the
  driver checks). A Finished(start, end) pod completes `int((end - start) / speed)` seconds (at
  least 1) after it starts running; other pods run until deleted.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from puffer_cluster.replay.controllers import Workload, build_workload
from puffer_cluster.replay.requests import PodTemplate, Priorities
from puffer_cluster.kernels.placement import MAX_POD_BYTES, MAX_POD_MILLICORES, NodeAllocations
from puffer_cluster.replay.settings import GIB, ReplayError, ReplaySettings
from puffer_cluster.traces import (
    BUILTIN_POD_SPEC_TEMPLATE_PATHS, Trace, TraceError, object_gvk, parse_gvk,
)

# Pods created within the replayed time, at most (pods that finish are replaced: lifecycles of a
# second over a long trace would create millions).
MAX_PODS_CREATED = 50_000
# Within one instant: completions free capacity first, then the trace's events, then cron ticks.
_COMPLETION, _TRACE_EVENT, _CRON_TICK = range(3)


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


def _size(millicores: int, num_bytes: int) -> str:
    return f"{millicores / 1000:g} CPU / {num_bytes / GIB:.4g} GiB"


def _same_gvk(a: str, b: str) -> bool:
    try:
        return parse_gvk(a) == parse_gvk(b)
    except TraceError:
        return False


class Simulator:
    """Replays a trace on the nodes of `allocations` up to simulated time `end_wall`;
    `snapshots` holds (time, requested cpu, requested memory, pod count per node, pending pods)
    at every change; `events_replayed` counts the trace events it applied."""

    def __init__(self, trace: Trace, settings: ReplaySettings, allocations: NodeAllocations,
                 start_ts: int, end_wall: float):
        self.trace = trace
        self.settings = settings
        self.allocations = allocations
        self.nodes = len(allocations.cpu)
        self.start_ts = start_ts
        self.end_wall = end_wall
        self.prio = np.zeros(self.nodes)
        self.pending: list[ReplayPod] = []
        self.pods: list[ReplayPod] = []
        self.workloads: dict[tuple[str, str, str], Workload] = {}
        self.workload_of: dict[int, Workload] = {}
        self.lifecycle_keys: dict[tuple[str, str, str], tuple | None] = {}
        self.namespaces: list[str] = []
        self.warnings: list[str] = []
        self.priorities = Priorities(settings, self.warnings)
        self.queue: list = []
        self.counter = 0
        self.snapshots: list[tuple[float, np.ndarray, np.ndarray, np.ndarray, int]] = []
        self.events_replayed = 0
        self.objects_applied = 0
        self.objects_deleted = 0

    # -- the event queue

    def push(self, time: float, order: int, action, *args):
        self.counter += 1
        heapq.heappush(self.queue, (time, order, self.counter, action, args))

    def at_trace_event(self, time: float, event):
        self.push(time, _TRACE_EVENT, self.apply_event, event)

    def at_cron_tick(self, time: float, action, *args):
        self.push(time, _CRON_TICK, action, *args)

    def run(self):
        while self.queue and self.queue[0][0] <= self.end_wall:
            now = self.queue[0][0]
            while self.queue and self.queue[0][0] == now:
                _, _, _, action, args = heapq.heappop(self.queue)
                action(now, *args)
            self.schedule_pending(now)
            self.snapshot(now)

    def snapshot(self, now: float):
        nodes = self.allocations
        state = (nodes.cpu, nodes.mem, nodes.pods)
        if self.snapshots:
            last = self.snapshots[-1]
            if len(self.pending) == last[4] \
                    and all(np.array_equal(a, b) for a, b in zip(state, last[1:4])):
                return
        self.snapshots.append((now, nodes.cpu.copy(), nodes.mem.copy(), nodes.pods.copy(),
                               len(self.pending)))

    # -- trace events

    def apply_event(self, now: float, event):
        self.events_replayed += 1
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
        gvk, namespace, _ = key
        vns = f"{self.settings.virtual_ns_prefix}-{namespace}"
        if vns not in self.namespaces:
            self.namespaces.append(vns)
        paths = self.trace.pod_spec_template_paths(gvk)
        if paths is None:
            paths = BUILTIN_POD_SPEC_TEMPLATE_PATHS.get(parse_gvk(gvk))
        workload = build_workload(self, key, vns, obj, paths or [])
        existing = self.workloads.get(key)
        if existing is not None and existing.alive:
            if workload is not None and type(workload) is type(existing):
                existing.update(now, workload)
                return
            # A new kind, or no pods any more: the old controller goes, the new one starts.
            existing.kill(now)
            self.workloads.pop(key, None)
        if workload is None:
            return
        self.workloads[key] = workload
        workload.start(now)

    def delete(self, now: float, obj: dict):
        key = self._key(obj)
        if key is None:
            return
        self.objects_deleted += 1
        workload = self.workloads.pop(key, None)
        if workload is not None:  # the driver ignores a 404
            workload.kill(now)

    # -- pods

    def create_pod(self, now: float, workload: Workload, template: PodTemplate, node: int = -1):
        owner = workload.owner
        seq = owner.next_seq
        owner.next_seq += 1
        if len(self.pods) >= MAX_PODS_CREATED:
            raise ReplayError(f"more than {MAX_PODS_CREATED} pods within the horizon "
                              f"(pods of {owner.label} finish too fast?)")
        if template.cpu > MAX_POD_MILLICORES or template.memory > MAX_POD_BYTES:
            raise ReplayError(f"{owner.label}: a pod requests {_size(template.cpu, template.memory)}, "
                              f"more than the replay takes "
                              f"({_size(MAX_POD_MILLICORES, MAX_POD_BYTES)})")
        nodes = self.allocations
        if (template.cpu > nodes.cap_cpu or template.memory > nodes.cap_mem) \
                and self.settings.oversized_pods == "error":
            raise ReplayError(f"{owner.label}: a pod requests {_size(template.cpu, template.memory)}, "
                              f"more than a node ({_size(nodes.cap_cpu, nodes.cap_mem)}): give "
                              "the nodes more ([replay] node_cpu, node_memory_gib) or size them "
                              "to the trace (cluster = trace)")
        pod = ReplayPod(workload.vns, workload.pod_name(node, seq), owner.label, seq,
                        template.cpu, template.memory, template.prio, now, pinned_node=node)
        pod.run_seconds = self._run_seconds(owner, seq)
        self.pods.append(pod)
        workload.active.append(pod)
        self.workload_of[id(pod)] = workload
        self.pending.append(pod)

    def _run_seconds(self, owner: Workload, seq: int) -> float | None:
        """How long a pod runs, from its owner's recorded lifecycles (None: until deleted)."""
        if owner.key not in self.lifecycle_keys:
            self.lifecycle_keys[owner.key] = self._lifecycle_key(owner)
        key = self.lifecycle_keys[owner.key]
        if key is None:
            return None
        lifecycle = self.trace.lookup_pod_lifecycle(*key, seq)
        if lifecycle.state != "Finished":
            return None
        return float(max(1, int(max(0, lifecycle.end_ts - lifecycle.start_ts) / self.settings.speed)))

    def _lifecycle_key(self, owner: Workload) -> tuple[str, str, int] | None:
        """(gvk, 'namespace/name', pod hash) of the owner's lifecycles, None without any."""
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
        return gvk, ns_name, pod_hash

    def remove_pod(self, now: float, workload: Workload, pod: ReplayPod):
        if pod in workload.active:
            workload.active.remove(pod)
        if pod.node >= 0 and pod.ended is None:
            self.allocations.unbind(pod.node, pod.cpu, pod.memory)
        elif pod in self.pending:
            self.pending.remove(pod)
        if pod.ended is None:
            pod.ended = now

    def complete(self, now: float, pod: ReplayPod):
        if pod.ended is not None:
            return  # deleted meanwhile
        workload = self.workload_of[id(pod)]
        self.remove_pod(now, workload, pod)
        workload.finished(now)

    def schedule_pending(self, now: float):
        waiting, refused = [], set()  # requests that fit nowhere stay refused: nodes only fill up
        for pod in self.pending:
            free = pod.pinned_node < 0
            if free and (pod.cpu, pod.memory) in refused:
                waiting.append(pod)
                continue
            node = self.allocations.choose(pod.cpu, pod.memory, pod.pinned_node)
            if node < 0:
                if free:
                    refused.add((pod.cpu, pod.memory))
                waiting.append(pod)
                continue
            pod.node, pod.started = node, now
            self.allocations.bind(node, pod.cpu, pod.memory)
            self.prio[node] = max(self.prio[node], pod.prio)
            if pod.run_seconds is not None:
                self.push(now + pod.run_seconds, _COMPLETION, self.complete, pod)
        self.pending = waiting
