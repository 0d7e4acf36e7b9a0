"""ClusterOps on a real cluster: the observer (the 18 observations from nodes, pods, Deployments,
events, PVCs and metrics), the findings with their evidence, and the planner that turns the
policy's write actions into the exact `kubectl` command, on the object the simulation's rule
picks (`kernels.cluster_ops`), with that object's real name.

Reads go through the `kubernetes` client as GET / LIST only. A 403 (or any API error) on a read
is recorded for that resource and the diagnosis goes on without it; metrics.k8s.io falls back to
the pods' requests when it is not served. Writes happen only in `apply`, each one confirmed.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from puffer_cluster.kernels import cluster_ops as kernel
from puffer_cluster.kernels.world import ACTION_NAMES as GARDENER_ACTIONS
from puffer_cluster.kernels.world import CLEAN, NUM_CHANNELS, OBS_SIZE, OUTSIDE, SCALE_FULL, SCALE_HALF
from puffer_cluster.env import world_params
from puffer_cluster.simkube.client import _api_reason, _connection_errors, _request, _server
from puffer_cluster.simkube.errors import ApiUnreachableError, KubeApiError, SimkubeRunError
from puffer_cluster.traces.quantity import QuantityError, parse_cpu_cores, parse_memory_bytes

CRASH_REASONS = ("CrashLoopBackOff", "RunContainerError", "CreateContainerError")
ROLLOUT_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError")
NETWORK_EVENT_REASONS = ("NetworkNotReady", "FailedCreatePodSandBox", "DNSConfigForming")
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")
# What each read action lists (DESCRIBE_UNHEALTHY and CHECK_LOGS read about one object).
READ_RESOURCES = {
    kernel.GET_NODES: ("nodes",), kernel.GET_PODS: ("pods",), kernel.GET_EVENTS: ("events",),
    kernel.GET_DEPLOYMENTS: ("deployments",), kernel.TOP_NODES: ("node_metrics",),
    kernel.TOP_PODS: ("pod_metrics",), kernel.GET_RESOURCE_QUOTAS: ("resourcequotas", "pvcs"),
}


class WriteFailedError(SimkubeRunError):
    """The API refused a write of `--apply`."""

    exit_code = 6


class _NotServed(Exception):
    """A 404 on a read: the resource is not served (metrics.k8s.io without metrics-server)."""


def _cores(value) -> float:
    """CPU cores of a quantity, with metrics-server's nano- and micro-cores."""
    if isinstance(value, str) and value[-1:] in ("n", "u"):
        return float(value[:-1]) / (1e9 if value[-1] == "n" else 1e6)
    return parse_cpu_cores(value)


def _quantity(value, parse) -> float:
    try:
        return parse(value) if value is not None else 0.0
    except (QuantityError, ValueError):
        return 0.0


def _name(obj: dict) -> str:
    return obj.get("metadata", {}).get("name", "?")


def _namespace(obj: dict) -> str:
    return obj.get("metadata", {}).get("namespace", "default")


def _conditions(obj: dict) -> dict[str, dict]:
    return {c.get("type"): c for c in obj.get("status", {}).get("conditions") or []}


class ClusterReader:
    """GET / LIST requests to one cluster; every read's outcome is kept in `log`, and the
    resources a read was refused for in `forbidden` (resource -> reason)."""

    def __init__(self, api, timeout: float = 10.0):
        from kubernetes import client
        self.api, self.timeout = api, timeout
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.custom, self.scheduling = client.CustomObjectsApi(api), client.SchedulingV1Api(api)
        self.version_api = client.VersionApi(api)
        self.forbidden: dict[str, str] = {}
        self.log: list[str] = []

    def check_reachable(self) -> str:
        """The server's version; ApiUnreachableError when nothing answers."""
        from kubernetes.client.exceptions import ApiException
        server = _server(self.api)
        try:
            response = self.version_api.get_code(_request_timeout=self.timeout, _preload_content=False)
        except ApiException as exc:
            raise ApiUnreachableError(f"the API server {server} answered GET /version with "
                                      f"{_api_reason(exc)}: check the kubeconfig's credentials") from None
        except _connection_errors() as exc:
            raise ApiUnreachableError(f"the API server {server} is unreachable: {exc}") from None
        return json.loads(response.data or b"{}").get("gitVersion", "?")

    def _call(self, resource: str, request: Callable, **kwargs) -> Any:
        """One GET through the client's request helper; a refusal is recorded, not raised."""
        what = f"read {resource}"
        try:
            response = _request(_server(self.api), what, lambda: request(
                _request_timeout=self.timeout, _preload_content=False, **kwargs), missing=_NotServed())
        except _NotServed:
            self.log.append(f"{resource}: not served (404)")
            return None
        except KubeApiError as error:
            reason = str(error).removeprefix(f"cannot {what}: ")
            self.forbidden[resource] = reason
            self.log.append(f"{resource}: refused ({reason})")
            return None
        self.forbidden.pop(resource, None)
        data = response.data
        try:
            return json.loads(data)
        except ValueError:
            return data.decode("utf-8", "replace") if isinstance(data, bytes) else data

    def items(self, resource: str) -> list[dict] | None:
        """The items of one resource list (None when refused or not served)."""
        requests = {
            "nodes": (self.core.list_node, {}),
            "pods": (self.core.list_pod_for_all_namespaces, {}),
            "deployments": (self.apps.list_deployment_for_all_namespaces, {}),
            "events": (self.core.list_event_for_all_namespaces, {}),
            "pvcs": (self.core.list_persistent_volume_claim_for_all_namespaces, {}),
            "resourcequotas": (self.core.list_resource_quota_for_all_namespaces, {}),
            "priorityclasses": (self.scheduling.list_priority_class, {}),
            "node_metrics": (self.custom.list_cluster_custom_object,
                             dict(group="metrics.k8s.io", version="v1beta1", plural="nodes")),
            "pod_metrics": (self.custom.list_cluster_custom_object,
                            dict(group="metrics.k8s.io", version="v1beta1", plural="pods")),
        }
        request, kwargs = requests[resource]
        document = self._call(resource, request, **kwargs)
        if not isinstance(document, dict):
            return None
        items = document.get("items") or []
        self.log.append(f"{resource}: {len(items)} listed")
        return items

    def pod_log(self, namespace: str, name: str, lines: int = 20) -> str | None:
        text = self._call(f"logs of {namespace}/{name}", self.core.read_namespaced_pod_log,
                          name=name, namespace=namespace, tail_lines=lines)
        return text if isinstance(text, str) else None


@dataclass
class Finding:
    """An unhealthy object and why: kind is node, pod or deployment; cause a FLAG_* or -1."""
    kind: str
    name: str
    namespace: str | None
    cause: int
    evidence: list[str]
    hurt: float = 1.0           # pods it hurts
    deployment: str | None = None  # a pod's Deployment ("namespace/name")
    node: str | None = None        # a pod's node

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def as_dict(self) -> dict:
        cause = kernel.FLAG_NAMES[self.cause] if self.cause >= 0 else None
        return {"kind": self.kind, "name": self.name, "namespace": self.namespace, "cause": cause,
                "evidence": self.evidence, "pods_hurt": self.hurt}


@dataclass
class Snapshot:
    """What has been read of the cluster (None: never read, or refused)."""
    resources: dict[str, list[dict] | None] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)

    def get(self, resource: str) -> list[dict]:
        return self.resources.get(resource) or []


def _deployment_of(pod: dict) -> str | None:
    """'namespace/name' of the Deployment owning a pod (through its ReplicaSet's name)."""
    for owner in pod.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("kind") == "ReplicaSet" and "-" in owner.get("name", ""):
            return f"{_namespace(pod)}/{owner['name'].rsplit('-', 1)[0]}"
    return None


def _restarts(pod: dict) -> int:
    return sum(int(s.get("restartCount", 0)) for s in pod.get("status", {}).get("containerStatuses") or [])


def _waiting_reasons(pod: dict) -> list[str]:
    return [s["state"]["waiting"].get("reason", "") for s in pod.get("status", {}).get("containerStatuses") or []
            if (s.get("state") or {}).get("waiting")]


def findings(snapshot: Snapshot) -> list[Finding]:
    """Every unhealthy node, pod and Deployment, with the evidence and the cause it points to."""
    found: list[Finding] = []
    events: dict[str, list[str]] = {}
    for event in snapshot.get("events"):
        if event.get("type") == "Warning":
            involved = event.get("involvedObject") or {}
            events.setdefault(involved.get("name", ""), []).append(
                f"event {event.get('reason', '?')}: {event.get('message', '')}".strip())
    nodes = {_name(n): n for n in snapshot.get("nodes")}
    not_ready_nodes = set()
    for name, node in nodes.items():
        conditions = _conditions(node)
        ready = conditions.get("Ready", {})
        if ready.get("status") != "True":
            not_ready_nodes.add(name)
            found.append(Finding("node", name, None, -1, [
                f"Ready={ready.get('status', 'Unknown')} ({ready.get('reason', 'no reason')})",
                *events.get(name, [])[:2]]))
            continue
        pressure = [c for c in PRESSURE_CONDITIONS if conditions.get(c, {}).get("status") == "True"]
        if pressure:
            found.append(Finding("node", name, None, kernel.FLAG_PRESSURE,
                                 [f"{c}=True" for c in pressure] + events.get(name, [])[:2]))
        elif node.get("spec", {}).get("unschedulable"):
            found.append(Finding("node", name, None, kernel.FLAG_CORDONED,
                                 ["Ready,SchedulingDisabled (cordoned)", *events.get(name, [])[:2]]))
    pending_claims = {f"{_namespace(c)}/{_name(c)}" for c in snapshot.get("pvcs")
                      if c.get("status", {}).get("phase") == "Pending"}
    cordoned = any(f.cause == kernel.FLAG_CORDONED for f in found)
    for pod in snapshot.get("pods"):
        status, name, namespace = pod.get("status", {}), _name(pod), _namespace(pod)
        phase, node = status.get("phase", "Unknown"), pod.get("spec", {}).get("nodeName")
        waiting, restarts = _waiting_reasons(pod), _restarts(pod)
        ready = _conditions(pod).get("Ready", {}).get("status") == "True"
        evidence = [f"phase {phase}"] + [f"waiting: {r}" for r in waiting]
        if restarts:
            evidence.append(f"{restarts} restarts")
        cause = None
        if phase == "Succeeded":
            continue
        if node in not_ready_nodes or phase == "Unknown":
            cause = -1
            evidence.append(f"on NotReady node {node}" if node in not_ready_nodes else "status Unknown")
        elif any(r in ROLLOUT_REASONS for r in waiting):
            cause = kernel.FLAG_BAD_ROLLOUT
        elif any(r in CRASH_REASONS for r in waiting):
            cause = kernel.FLAG_CRASH_LOOP
        elif phase == "Failed":
            cause = kernel.FLAG_PRESSURE if status.get("reason") == "Evicted" else kernel.FLAG_CRASH_LOOP
            evidence.append(f"reason {status.get('reason', '?')}")
        elif phase == "Pending":
            claims = [f"{namespace}/{v['persistentVolumeClaim']['claimName']}"
                      for v in pod.get("spec", {}).get("volumes") or [] if v.get("persistentVolumeClaim")]
            waiting_claims = [c for c in claims if c in pending_claims]
            if waiting_claims:
                cause = kernel.FLAG_PVC
                evidence.append(f"waiting for PVC {', '.join(waiting_claims)} (Pending)")
            else:
                cause = kernel.FLAG_CORDONED if cordoned else -1
        elif phase == "Running" and not ready:
            cause = kernel.FLAG_NETWORK
            evidence.append("Running but not Ready (readiness failing)")
        if cause is not None:
            found.append(Finding("pod", name, namespace, cause, evidence + events.get(name, [])[:2],
                                 deployment=_deployment_of(pod), node=node))
    for deployment in snapshot.get("deployments"):
        spec, status = deployment.get("spec", {}), deployment.get("status", {})
        wanted, available = int(spec.get("replicas", 1)), int(status.get("availableReplicas", 0) or 0)
        progressing = _conditions(deployment).get("Progressing", {})
        stalled = progressing.get("status") == "False"
        if available >= wanted and not stalled:
            continue
        evidence = [f"{available}/{wanted} replicas available"]
        if stalled:
            evidence.append(f"Progressing=False ({progressing.get('reason', '?')})")
        found.append(Finding("deployment", _name(deployment), _namespace(deployment),
                             kernel.FLAG_BAD_ROLLOUT if stalled else -1,
                             evidence + events.get(_name(deployment), [])[:2],
                             hurt=float(wanted - available)))
    return found


@dataclass
class LiveView:
    """The snapshot seen by a policy: findings, the causes it has revealed, and the objects its
    planned fixes have taken care of (counted as healthy from then on)."""
    snapshot: Snapshot
    revealed: int = 0
    handled: set = field(default_factory=set)

    def open_findings(self) -> list[Finding]:
        out = []
        for f in findings(self.snapshot):
            keys = {(f.kind, f.ref), ("deployment", f.deployment), ("node", f.node)}
            if not keys & self.handled:
                out.append(f)
        return out

    def observation(self, params: kernel.ClusterOpsParams) -> np.ndarray:
        """The 18 observations, as `kernel.write_observation` writes the simulation's."""
        snap, found = self.snapshot, self.open_findings()
        nodes = snap.get("nodes")
        pods = [p for p in snap.get("pods") if p.get("status", {}).get("phase") != "Succeeded"]
        deployments = snap.get("deployments")
        not_ready = sum(1 for f in found if f.kind == "node" and f.cause == -1)
        hurt_pods = {f.ref: f for f in found if f.kind == "pod"}
        pending = sum(1 for f in hurt_pods.values() if "phase Pending" in f.evidence)
        unknown = sum(1 for f in hurt_pods.values() if f.cause == -1 and "phase Pending" not in f.evidence)
        failed = sum(1 for f in hurt_pods.values() if f.cause in (kernel.FLAG_CRASH_LOOP, kernel.FLAG_BAD_ROLLOUT,
                                                                  kernel.FLAG_PRESSURE))
        wanted = max(len(pods), sum(int(d.get("spec", {}).get("replicas", 1)) for d in deployments))
        running = max(0, len(pods) - pending - unknown - failed)
        unhealthy_deployments = {f.ref for f in found if f.kind == "deployment"}
        cpu, memory = self.usage()
        warnings = sum(1 for e in snap.get("events") if e.get("type") == "Warning")
        normal = sum(1 for e in snap.get("events") if e.get("type") == "Normal")
        obs = np.zeros(kernel.OBS_SIZE, dtype=np.float32)
        kernel.write_observation(obs, len(nodes), params.max_nodes, len(nodes) - not_ready, not_ready,
                                 wanted, running, pending, failed, unknown,
                                 len(deployments) - len(unhealthy_deployments), len(deployments),
                                 cpu, memory, warnings, normal, params.event_scale)
        present = {f.cause for f in found}
        for flag in range(kernel.NUM_FLAGS):
            known = self.revealed >> flag & 1
            obs[kernel.OBS_FLAGS + flag] = (1.0 if flag in present else 0.0) if known else kernel.UNKNOWN
        return obs

    def usage(self) -> tuple[float, float]:
        """CPU and memory in use / allocatable: metrics.k8s.io when served, else requests."""
        nodes = self.snapshot.get("nodes")
        allocatable = [(_quantity(n.get("status", {}).get("allocatable", {}).get("cpu"), _cores),
                        _quantity(n.get("status", {}).get("allocatable", {}).get("memory"), parse_memory_bytes))
                       for n in nodes]
        total_cpu = sum(a[0] for a in allocatable) or 1.0
        total_memory = sum(a[1] for a in allocatable) or 1.0
        metrics = self.snapshot.get("node_metrics")
        if metrics:
            cpu = sum(_quantity(m.get("usage", {}).get("cpu"), _cores) for m in metrics)
            memory = sum(_quantity(m.get("usage", {}).get("memory"), parse_memory_bytes) for m in metrics)
        else:
            cpu = memory = 0.0
            for pod in self.snapshot.get("pods"):
                if pod.get("status", {}).get("phase") in ("Running", "Pending"):
                    for c in pod.get("spec", {}).get("containers") or []:
                        requests = (c.get("resources") or {}).get("requests") or {}
                        cpu += _quantity(requests.get("cpu"), _cores)
                        memory += _quantity(requests.get("memory"), parse_memory_bytes)
        return cpu / total_cpu, memory / total_memory

    def most_urgent(self) -> Finding | None:
        """The open finding with a cause that hurts the most (DESCRIBE_UNHEALTHY's object)."""
        causes = [f for f in self.open_findings() if f.cause >= 0]
        return max(causes, key=lambda f: f.hurt, default=None)


@dataclass
class Plan:
    """A write action on its object: the kubectl command, and the requests `apply` sends."""
    action: int
    target: str
    command: str
    requests: list[tuple[str, str, dict | None]]  # (method, path, body)
    wrong: bool = False
    handles: tuple = ()

    def as_dict(self) -> dict:
        return {"action": kernel.ACTION_NAMES[self.action], "target": self.target,
                "command": self.command, "wrong_fix": self.wrong,
                "requests": [f"{m} {p}" for m, p, _ in self.requests]}


def _group(items: list[Finding], key) -> dict[str, list[Finding]]:
    groups: dict[str, list[Finding]] = {}
    for f in items:
        if key(f):
            groups.setdefault(key(f), []).append(f)
    return groups


def plan_write(view: LiveView, action: int) -> Plan | None:
    """The write `action` on the object the simulation's rule picks (kernels.cluster_ops):
    None when there is no object of its kind at all."""
    found = view.open_findings()
    pods = [f for f in found if f.kind == "pod"]
    deployments = {f"{_namespace(d)}/{_name(d)}": d for d in view.snapshot.get("deployments")}
    if action == kernel.RESTART_FAILED_PODS:
        restartable = _group([p for p in pods if p.cause in (kernel.FLAG_CRASH_LOOP, kernel.FLAG_NETWORK)],
                             lambda f: f.deployment or f.ref)
        wrong = not restartable
        groups = restartable or _group(pods, lambda f: f.deployment or f.ref)
        if not groups:
            return None
        owner, members = max(groups.items(), key=lambda kv: len(kv[1]))
        namespace = members[0].namespace
        names = sorted(p.name for p in members)
        return Plan(action, owner, f"kubectl delete pod -n {namespace} {' '.join(names)}",
                    [("DELETE", f"/api/v1/namespaces/{namespace}/pods/{n}", None) for n in names],
                    wrong, (("deployment", owner),) + tuple(("pod", p.ref) for p in members))
    if action in (kernel.SCALE_UP_DEPLOYMENT, kernel.SCALE_DOWN_DEPLOYMENT):
        up = action == kernel.SCALE_UP_DEPLOYMENT
        unhealthy = [f for f in found if f.kind == "deployment"]
        if up:
            right = [f for f in unhealthy if f.cause == -1]
        else:
            stalled = _group([p for p in pods if p.cause == kernel.FLAG_BAD_ROLLOUT], lambda f: f.deployment)
            right = [f for f in unhealthy if f.cause == kernel.FLAG_BAD_ROLLOUT or f.ref in stalled]
        target = max(right, key=lambda f: f.hurt).ref if right else next(iter(deployments), None)
        if target is None or target not in deployments:
            return None
        namespace, name = target.split("/", 1)
        replicas = int(deployments[target].get("spec", {}).get("replicas", 1))
        replicas = replicas + 1 if up else max(0, replicas - 1)
        return Plan(action, target,
                    f"kubectl scale deployment/{name} -n {namespace} --replicas={replicas}",
                    [("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
                      {"spec": {"replicas": replicas}})], not right, (("deployment", target),))
    node_findings = [f for f in found if f.kind == "node"]
    failing = {n: sum(1 for p in pods if p.node == n) for n in (f.name for f in node_findings)}
    if action == kernel.DRAIN_NODE:
        right = [f for f in node_findings if f.cause in (-1, kernel.FLAG_PRESSURE)]
        healthy = [_name(n) for n in view.snapshot.get("nodes")
                   if _name(n) not in {f.name for f in node_findings}]
        target = max(right, key=lambda f: failing.get(f.name, 0)).name if right else \
            (healthy[0] if healthy else None)
        if target is None:
            return None
        on_node = [p for p in view.snapshot.get("pods") if p.get("spec", {}).get("nodeName") == target
                   and not any(o.get("kind") == "DaemonSet"
                               for o in p.get("metadata", {}).get("ownerReferences") or [])]
        return Plan(action, target, f"kubectl drain {target} --ignore-daemonsets --delete-emptydir-data",
                    [("PATCH", f"/api/v1/nodes/{target}", {"spec": {"unschedulable": True}})]
                    + [("DELETE", f"/api/v1/namespaces/{_namespace(p)}/pods/{_name(p)}", None) for p in on_node],
                    not right, (("node", target),))
    if action == kernel.UNCORDON_NODE:
        right = [f for f in node_findings if f.cause == kernel.FLAG_CORDONED]
        if not right:
            return None
        target = max(right, key=lambda f: failing.get(f.name, 0)).name
        return Plan(action, target, f"kubectl uncordon {target}",
                    [("PATCH", f"/api/v1/nodes/{target}", {"spec": {"unschedulable": False}})],
                    False, (("node", target),))
    return None


def apply_plan(api, plan: Plan, timeout: float = 10.0) -> None:
    """Send a plan's requests (WriteFailedError on a refusal); PATCHes are merge patches."""
    for method, path, body in plan.requests:
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        try:
            _request(_server(api), f"{method} {path}", lambda: api.call_api(
                path, method, header_params=headers, body=body, auth_settings=["BearerToken"],
                _preload_content=False, _request_timeout=timeout))
        except KubeApiError as error:
            raise WriteFailedError(f"the API refused a write: {error}") from None


def read_for_action(reader: ClusterReader, view: LiveView, action: int) -> str:
    """Run a read action for real (GET / LIST only), reveal the causes it shows; a summary."""
    snap = view.snapshot
    if action == kernel.DESCRIBE_UNHEALTHY:
        snap.resources["events"] = reader.items("events")
        urgent = view.most_urgent()
        if urgent is None:
            return "nothing unhealthy with a cause to describe"
        view.revealed |= 1 << urgent.cause
        return f"{urgent.kind} {urgent.ref}: {'; '.join(urgent.evidence)}"
    if action == kernel.CHECK_LOGS:
        worst = max((f for f in view.open_findings() if f.kind == "pod"), key=lambda f: f.hurt, default=None)
        view.revealed |= int(kernel.REVEAL_MASKS[action])
        if worst is None:
            return "no unhealthy pod to read logs of"
        text = reader.pod_log(worst.namespace, worst.name)
        if text:
            snap.logs[worst.ref] = text
        tail = text.strip().splitlines()[-1] if text and text.strip() else "(no log served)"
        return f"logs of pod {worst.ref}: {tail}"
    for resource in READ_RESOURCES[action]:
        snap.resources[resource] = reader.items(resource)
    view.revealed |= int(kernel.REVEAL_MASKS[action])
    counts = ", ".join(f"{len(snap.get(r))} {r}" for r in READ_RESOURCES[action])
    return f"read {counts}"


def read_cluster(reader: ClusterReader) -> Snapshot:
    """The first look: every resource the observation is built from."""
    snapshot = Snapshot()
    for resource in ("nodes", "pods", "deployments", "events", "pvcs", "node_metrics", "priorityclasses"):
        snapshot.resources[resource] = reader.items(resource)
    return snapshot


# ---------------------------------------------------------------- the gardener's grid


def gardener_grid(snapshot: Snapshot) -> tuple[int, int, list[dict]]:
    """The live nodes laid row by row on the smallest gardener grid that holds them (at least
    4 x 4, as the world allows): (height, width, cells) with each node's name, cpu and memory
    (use / allocatable: metrics.k8s.io, else requests) and priority (the highest priority class
    value of its pods over the cluster's highest, 0 without classes)."""
    nodes = sorted(snapshot.get("nodes"), key=_name)
    width = max(4, math.ceil(math.sqrt(len(nodes))))
    height = max(4, math.ceil(len(nodes) / width))
    classes = {_name(c): float(c.get("value", 0)) for c in snapshot.get("priorityclasses")}
    top = max(classes.values(), default=0.0)
    metrics = {_name(m): m.get("usage", {}) for m in snapshot.get("node_metrics")}
    cells = []
    for node in nodes:
        name = _name(node)
        allocatable = node.get("status", {}).get("allocatable", {})
        cap_cpu = _quantity(allocatable.get("cpu"), _cores) or 1.0
        cap_memory = _quantity(allocatable.get("memory"), parse_memory_bytes) or 1.0
        pods = [p for p in snapshot.get("pods") if p.get("spec", {}).get("nodeName") == name]
        if name in metrics:
            cpu = _quantity(metrics[name].get("cpu"), _cores)
            memory = _quantity(metrics[name].get("memory"), parse_memory_bytes)
        else:
            requests = [((c.get("resources") or {}).get("requests") or {})
                        for p in pods for c in p.get("spec", {}).get("containers") or []]
            cpu = sum(_quantity(r.get("cpu"), _cores) for r in requests)
            memory = sum(_quantity(r.get("memory"), parse_memory_bytes) for r in requests)
        priority = max((classes.get(p.get("spec", {}).get("priorityClassName"), 0.0) for p in pods), default=0.0)
        cells.append({"name": name, "cpu": min(1.0, cpu / cap_cpu), "memory": min(1.0, memory / cap_memory),
                      "priority": priority / top if top > 0 else 0.0})
    return height, width, cells


def gardener_recommendations(snapshot: Snapshot, make_policy) -> tuple[dict, list[dict]]:
    """The gardener policy (`make_policy(num_agents, params)`) standing on each live node with a
    full budget: its CLEAN (kept where that node is the most pressured of the 3x3 it cleans) and
    SCALE targets, by node name. Returns (grid description, recommendations)."""
    height, width, cells = gardener_grid(snapshot)
    grid = {"height": height, "width": width,
            "cells": [[cells[y * width + x]["name"] if y * width + x < len(cells) else None
                       for x in range(width)] for y in range(height)]}
    if not cells:
        return grid, []
    obs = np.full((len(cells), OBS_SIZE), OUTSIDE, dtype=np.float32)
    for n in range(len(cells)):
        y, x = divmod(n, width)
        k = 0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                i = ny * width + nx
                if 0 <= ny < height and 0 <= nx < width and i < len(cells):
                    obs[n, k:k + 3] = (cells[i]["cpu"], cells[i]["memory"], cells[i]["priority"])
                k += NUM_CHANNELS
        obs[n, k:k + 3] = (y / (height - 1.0), x / (width - 1.0), 1.0)
    params = world_params({"height": height, "width": width})
    actions = make_policy(len(cells), params)(obs, np.ones(len(cells), dtype=bool))
    recommendations = []
    for n, action in enumerate(np.asarray(actions).tolist()):
        center = obs[n, 4 * NUM_CHANNELS + 1]
        window = obs[n, 1:9 * NUM_CHANNELS:NUM_CHANNELS]
        if action == CLEAN and center >= window.max() or action in (SCALE_HALF, SCALE_FULL):
            recommendations.append({"action": GARDENER_ACTIONS[action], "node": cells[n]["name"],
                                    "cpu": round(cells[n]["cpu"], 3), "memory": round(cells[n]["memory"], 3),
                                    "priority": round(cells[n]["priority"], 3)})
    return grid, recommendations
