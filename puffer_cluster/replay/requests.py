"""What a pod asks for: Kubernetes' effective request of a pod spec, and its priority.

A pod's request is what kube-scheduler computes: app containers summed, restartable init
containers (sidecars) added, the largest regular init container (plus the sidecars started
before it) as a floor, plus `overhead`; a limit stands in for a missing request, as Kubernetes
defaults requests to limits. Every quantity format is parsed (`puffer_cluster.traces.quantity`).
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any

from puffer_cluster.replay.settings import ReplayError, ReplaySettings
from puffer_cluster.traces import QuantityError, cpu_millicores, memory_bytes


def _quantity(parse, value: Any, where: str) -> int:
    try:
        return parse(value)
    except QuantityError as error:
        raise ReplayError(f"{where}: {error}") from None


def _field(parent: dict, name: str, kind: type, where: str):
    """`parent[name]`, an empty `kind` when absent or null; anything else the API server would
    refuse is a ReplayError."""
    value = parent.get(name)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        expected = "a map" if kind is dict else "an array"
        raise ReplayError(f"{where}.{name}: expected {expected}, got {type(value).__name__} "
                          f"{_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _container_requests(container: Any, where: str) -> tuple[int, int]:
    """(millicores, bytes) a container requests."""
    if not isinstance(container, dict):
        raise ReplayError(f"{where}: expected a container (a map), got {type(container).__name__}")
    resources = _field(container, "resources", dict, where)
    requests = _field(resources, "requests", dict, f"{where}.resources")
    limits = _field(resources, "limits", dict, f"{where}.resources")
    cpu = requests.get("cpu", limits.get("cpu"))
    memory = requests.get("memory", limits.get("memory"))
    return (0 if cpu is None else _quantity(cpu_millicores, cpu, f"{where}.cpu"),
            0 if memory is None else _quantity(memory_bytes, memory, f"{where}.memory"))


def pod_requests(pod_spec: dict, where: str = "pod") -> tuple[int, int]:
    """The effective (millicores, bytes) request of a pod spec, as the scheduler computes it."""
    if not isinstance(pod_spec, dict):
        return 0, 0
    cpu = memory = 0
    for n, container in enumerate(_field(pod_spec, "containers", list, where)):
        c, m = _container_requests(container, f"{where}.containers[{n}]")
        cpu, memory = cpu + c, memory + m
    sidecar_cpu = sidecar_mem = 0
    init_cpu = init_mem = 0
    for n, container in enumerate(_field(pod_spec, "initContainers", list, where)):
        c, m = _container_requests(container, f"{where}.initContainers[{n}]")
        if isinstance(container, dict) and container.get("restartPolicy") == "Always":
            sidecar_cpu, sidecar_mem = sidecar_cpu + c, sidecar_mem + m
        else:
            init_cpu = max(init_cpu, sidecar_cpu + c)
            init_mem = max(init_mem, sidecar_mem + m)
    cpu, memory = max(cpu + sidecar_cpu, init_cpu), max(memory + sidecar_mem, init_mem)
    overhead = _field(pod_spec, "overhead", dict, where)
    if "cpu" in overhead:
        cpu += _quantity(cpu_millicores, overhead["cpu"], f"{where}.overhead.cpu")
    if "memory" in overhead:
        memory += _quantity(memory_bytes, overhead["memory"], f"{where}.overhead.memory")
    return cpu, memory


def resolve_pointer(document: Any, pointer: str) -> Any:
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
class PodTemplate:
    """The pods of one template of a workload."""
    cpu: int        # millicores
    memory: int     # bytes
    prio: float


class Priorities:
    """A pod's priority: the annotation `priority_annotation` (a number in [0, 1]) on the pod
    template or the object wins; otherwise `critical_prio` when its `priorityClassName` matches
    one of `critical_classes` (globs) or its original namespace is one of
    `critical_namespaces`, else `pod_prio`."""

    def __init__(self, settings: ReplaySettings, warnings: list[str]):
        self.settings = settings
        self.warnings = warnings
        self.classes = [p.strip() for p in settings.critical_classes.split(",") if p.strip()]
        self.namespaces = {n.strip() for n in settings.critical_namespaces.split(",") if n.strip()}

    def __call__(self, template: dict, obj_metadata: dict, where: str) -> float:
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
                                               for pattern in self.classes):
            return settings.critical_prio
        if obj_metadata.get("namespace") in self.namespaces:
            return settings.critical_prio
        return settings.pod_prio

    def templates(self, obj: dict, paths: list[str], where: str) -> list[PodTemplate]:
        """The pod templates of `obj` at the JSON pointers `paths`."""
        templates = []
        metadata = obj.get("metadata") or {}
        for path in paths:
            node = resolve_pointer(obj, path)
            if isinstance(node, dict) and not isinstance(node.get("spec"), dict) \
                    and isinstance(node.get("template"), dict):
                node = node["template"]  # SimKube's ReplicaSet path is /spec, the template below
            if not isinstance(node, dict) or not isinstance(node.get("spec"), dict):
                continue
            cpu, memory = pod_requests(node["spec"], f"{where}{path}.spec")
            templates.append(PodTemplate(cpu, memory, self(node, metadata, where)))
        return templates
