"""sim-arena's trace edits: a Deployment's first container and replica count, changed in place.

The six operations of sim-arena's action space (its `env/actions/ops.py`), on every applied
object of kind Deployment with the given name (optionally also the namespace), in every event:

    bump_cpu    requests.cpu    + step (500m)      refused past the ceiling (16 CPU)
    reduce_cpu  requests.cpu    - step (500m)      not below the floor (50m)
    bump_mem    requests.memory + step (256Mi)     refused past the ceiling (32Gi)
    reduce_mem  requests.memory - step (256Mi)     not below the floor (64Mi)
    scale_up    spec.replicas   + step (1)         refused past the ceiling (100)
    scale_down  spec.replicas   - step (1)         not below the floor (1)

sim-arena's spellings (`bump_cpu_small`, `scale_up_replicas`, ...) are accepted too.

- The current value is what the scheduler sees: the container's request, else its limit (which
  Kubernetes copies into a missing request), else 0; replicas default to 1. Quantities in any
  Kubernetes format are read (`cpu_millicores`, `memory_bytes`).
- A bump that would take any edited object past its ceiling raises `SafeguardError` and changes
  nothing (all objects are checked before any is written). A reduce stops at the floor, and a
  value already at or below it is left alone (`OpResult.changed` is False).
- New values are written as strings: CPU as millicores ("16500m"), or as whole cores when the
  old value was in cores ("3"); memory in the largest binary unit that divides it ("2304Mi",
  "3Gi"). A limit below the new request is raised with it, so that the object stays valid
  (Kubernetes refuses requests above limits).
- The index (object hashes) and pod lifecycles are left as they are: SimKube's driver only looks
  objects up in the index by name, and the edited objects keep their names.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from puffer_cluster.traces.quantity import QuantityError, cpu_millicores, memory_bytes
from puffer_cluster.traces.simkube import Trace, TraceError

__all__ = [
    "CPU_STEP",
    "DEFAULT_SAFEGUARDS",
    "MEMORY_STEP",
    "OPS",
    "OP_ALIASES",
    "REPLICA_STEP",
    "AmbiguousDeploymentError",
    "DeploymentNotFoundError",
    "DeploymentResources",
    "OpResult",
    "Safeguards",
    "SafeguardError",
    "TraceOpError",
    "apply_op",
    "bump_cpu",
    "bump_mem",
    "deployment_resources",
    "find_deployments",
    "format_cpu",
    "format_memory",
    "mutate_trace",
    "normalize_op",
    "reduce_cpu",
    "reduce_mem",
    "scale_down",
    "scale_up",
]

MIB = 2**20
GIB = 2**30

CPU_STEP = "500m"
MEMORY_STEP = "256Mi"
REPLICA_STEP = 1

OPS = ("bump_cpu", "reduce_cpu", "bump_mem", "reduce_mem", "scale_up", "scale_down")
OP_ALIASES = {
    "bump_cpu_small": "bump_cpu",
    "reduce_cpu_small": "reduce_cpu",
    "bump_mem_small": "bump_mem",
    "reduce_mem_small": "reduce_mem",
    "scale_up_replicas": "scale_up",
    "scale_down_replicas": "scale_down",
}
# op -> (resource, direction)
_OP_KIND = {
    "bump_cpu": ("cpu", +1), "reduce_cpu": ("cpu", -1),
    "bump_mem": ("memory", +1), "reduce_mem": ("memory", -1),
    "scale_up": ("replicas", +1), "scale_down": ("replicas", -1),
}
_BINARY_UNITS = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", GIB), ("Mi", MIB), ("Ki", 2**10))


class TraceOpError(TraceError):
    """An edit that cannot be made: no such Deployment, no container, a bad step or value."""


class DeploymentNotFoundError(TraceOpError):
    """The trace applies no Deployment with that name (and namespace)."""


class AmbiguousDeploymentError(TraceOpError):
    """Deployments of that name exist in several namespaces and none was chosen."""


class SafeguardError(TraceOpError):
    """A bump refused because it would take a value past its ceiling; nothing was changed."""

    def __init__(self, message: str, *, op: str, resource: str, requested: int, limit: int):
        super().__init__(message)
        self.op = op
        self.resource = resource
        self.requested = requested
        self.limit = limit


@dataclass(frozen=True)
class Safeguards:
    """Ceilings (a bump past them is refused) and floors (a reduce stops there), sim-arena's
    `runner/safeguards.py` defaults: 16 CPU, 32 GiB, 100 replicas; 50m, 64 MiB, 1 replica."""
    max_cpu_millicores: int = 16_000
    max_memory_bytes: int = 32 * GIB
    max_replicas: int = 100
    min_cpu_millicores: int = 50
    min_memory_bytes: int = 64 * MIB
    min_replicas: int = 1

    def __post_init__(self):
        for resource in ("cpu_millicores", "memory_bytes", "replicas"):
            low, high = getattr(self, f"min_{resource}"), getattr(self, f"max_{resource}")
            for name, value in ((f"min_{resource}", low), (f"max_{resource}", high)):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise TraceOpError(f"safeguard {name} must be an integer >= 0, got {value!r}")
            if low > high:
                raise TraceOpError(f"safeguard min_{resource} = {low} exceeds max_{resource} = {high}")

    def ceiling(self, resource: str) -> int:
        return {"cpu": self.max_cpu_millicores, "memory": self.max_memory_bytes,
                "replicas": self.max_replicas}[resource]

    def floor(self, resource: str) -> int:
        return {"cpu": self.min_cpu_millicores, "memory": self.min_memory_bytes,
                "replicas": self.min_replicas}[resource]


DEFAULT_SAFEGUARDS = Safeguards()


@dataclass(frozen=True)
class DeploymentResources:
    """What the scheduler sees of a Deployment: its first container's CPU (millicores) and
    memory (bytes) requests and its replica count, from the last applied object of that name."""
    namespace: str | None
    name: str
    cpu_millicores: int
    memory_bytes: int
    replicas: int
    objects: int  # applied objects of that Deployment in the trace


@dataclass(frozen=True)
class OpResult:
    """What an edit did; `before`/`after` are those of the last applied object (millicores,
    bytes or replicas), `objects` how many applied objects were edited."""
    op: str
    deploy: str
    namespace: str | None
    resource: str
    before: int
    after: int
    changed: bool
    objects: int

    def describe(self) -> str:
        render = {"cpu": format_cpu, "memory": format_memory, "replicas": str}[self.resource]
        what = f"{render(self.before)} -> {render(self.after)}" if self.changed \
            else f"{render(self.before)} unchanged (at the floor)"
        plural = "" if self.objects == 1 else "s"
        return f"{self.op} {self.deploy}: {self.resource} {what} ({self.objects} object{plural})"


# ---------------------------------------------------------------- quantities


def format_cpu(millicores: int, like: Any = None) -> str:
    """`millicores` as a CPU quantity: "<n>m", or whole cores ("3") when `like` (the old value)
    was written in cores and the new value is a whole number of them."""
    millicores = int(millicores)
    in_cores = isinstance(like, (int, float)) and not isinstance(like, bool) \
        or isinstance(like, str) and like.strip() != "" and not like.strip().endswith("m")
    if in_cores and millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores}m"


def format_memory(num_bytes: int) -> str:
    """`num_bytes` in the largest binary unit that divides it ("3Gi", "2304Mi"), else bytes."""
    num_bytes = int(num_bytes)
    for suffix, factor in _BINARY_UNITS:
        if num_bytes and num_bytes % factor == 0:
            return f"{num_bytes // factor}{suffix}"
    return str(num_bytes)


def _parse_amount(resource: str, value: Any, where: str) -> int:
    try:
        return cpu_millicores(value) if resource == "cpu" else memory_bytes(value)
    except QuantityError as error:
        raise TraceOpError(f"{where}: {error}") from None


def _parse_step(resource: str, step: Any) -> int:
    if step is None:
        step = {"cpu": CPU_STEP, "memory": MEMORY_STEP, "replicas": REPLICA_STEP}[resource]
    if resource == "replicas":
        if isinstance(step, int) and not isinstance(step, bool):
            value = step
        elif isinstance(step, float) and step.is_integer():
            value = int(step)
        elif isinstance(step, str) and step.strip().lstrip("+").isdigit():
            value = int(step.strip())
        else:
            raise TraceOpError(f"replica step {step!r} is not an integer")
    else:
        value = _parse_amount(resource, step, f"{resource} step")
    if value <= 0:
        raise TraceOpError(f"{resource} step {step!r} must be positive")
    return value


# ---------------------------------------------------------------- finding the Deployment


def normalize_op(op: str) -> str:
    """The canonical name of an op (sim-arena's spellings accepted)."""
    name = OP_ALIASES.get(op, op)
    if name not in _OP_KIND:
        raise TraceOpError(f"unknown op {op!r}; valid ops: {', '.join(OPS)} "
                           f"(or sim-arena's {', '.join(OP_ALIASES)})")
    return name


def find_deployments(trace: Trace, deploy: str, namespace: str | None = None) -> list[dict[str, Any]]:
    """The applied Deployment objects named `deploy` (in `namespace`, if given), in trace order.

    Raises DeploymentNotFoundError when there is none, AmbiguousDeploymentError when they span
    several namespaces and `namespace` is None."""
    found, names = [], set()
    for event in trace.events:
        for obj in event.applied_objs:
            if obj.get("kind") != "Deployment":
                continue
            metadata = obj.get("metadata") or {}
            names.add(f"{metadata.get('namespace') or ''}/{metadata.get('name')}")
            if metadata.get("name") != deploy:
                continue
            if namespace is not None and metadata.get("namespace") != namespace:
                continue
            found.append(obj)
    if not found:
        where = f" in namespace {namespace!r}" if namespace is not None else ""
        known = ", ".join(sorted(names)) or "none"
        raise DeploymentNotFoundError(f"no Deployment {deploy!r}{where} is applied in the trace "
                                      f"(Deployments: {known})")
    namespaces = sorted({str((obj.get("metadata") or {}).get("namespace")) for obj in found})
    if namespace is None and len(namespaces) > 1:
        raise AmbiguousDeploymentError(f"Deployment {deploy!r} exists in namespaces "
                                       f"{', '.join(namespaces)}: choose one")
    return found


def _where(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return f"Deployment {metadata.get('namespace') or ''}/{metadata.get('name')}"


def _first_container(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod_spec = template.get("spec") if isinstance(template, dict) else None
    containers = pod_spec.get("containers") if isinstance(pod_spec, dict) else None
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
        raise TraceOpError(f"{_where(obj)} has no container in spec.template.spec.containers")
    return containers[0]


def _container_amount(container: dict[str, Any], resource: str, where: str) -> int:
    """The request the scheduler uses: the request, else the limit, else 0."""
    resources = container.get("resources")
    resources = resources if isinstance(resources, dict) else {}
    for kind in ("requests", "limits"):
        values = resources.get(kind)
        if isinstance(values, dict) and values.get(resource) is not None:
            return _parse_amount(resource, values[resource], f"{where}.resources.{kind}.{resource}")
    return 0


def _replicas(obj: dict[str, Any]) -> int:
    spec = obj.get("spec")
    replicas = spec.get("replicas", 1) if isinstance(spec, dict) else 1
    return replicas if type(replicas) is int and replicas >= 0 else 1


def _current(obj: dict[str, Any], resource: str) -> int:
    if resource == "replicas":
        return _replicas(obj)
    return _container_amount(_first_container(obj), resource, f"{_where(obj)} container 0")


def deployment_resources(trace: Trace, deploy: str, namespace: str | None = None) -> DeploymentResources:
    """The Deployment's first-container requests and replicas (from its last applied object)."""
    objects = find_deployments(trace, deploy, namespace)
    last = objects[-1]
    return DeploymentResources(
        namespace=(last.get("metadata") or {}).get("namespace"), name=deploy,
        cpu_millicores=_current(last, "cpu"), memory_bytes=_current(last, "memory"),
        replicas=_current(last, "replicas"), objects=len(objects))


# ---------------------------------------------------------------- the edits


def _write(obj: dict[str, Any], resource: str, value: int) -> None:
    if resource == "replicas":
        if not isinstance(obj.get("spec"), dict):
            obj["spec"] = {}
        obj["spec"]["replicas"] = value
        return
    container = _first_container(obj)
    resources = container.get("resources")
    if not isinstance(resources, dict):
        resources = container["resources"] = {}
    requests = resources.get("requests")
    if not isinstance(requests, dict):
        requests = resources["requests"] = {}
    old = requests.get(resource)
    requests[resource] = format_cpu(value, old) if resource == "cpu" else format_memory(value)
    limits = resources.get("limits")
    if isinstance(limits, dict) and limits.get(resource) is not None:
        where = f"{_where(obj)} container 0.resources.limits.{resource}"
        if _parse_amount(resource, limits[resource], where) < value:
            limits[resource] = requests[resource]


def apply_op(trace: Trace, op: str, deploy: str, *, namespace: str | None = None,
             step: Any = None, safeguards: Safeguards | None = None) -> OpResult:
    """Edit `trace` in place (see the module docstring); returns what changed.

    `step` is a quantity for the CPU and memory ops ("500m", "1Gi", 0.25) and an integer for
    the replica ops; None takes sim-arena's (500m, 256Mi, 1). Raises SafeguardError for a bump
    past a ceiling, TraceOpError (or a subclass) for anything else; either way nothing changed."""
    op = normalize_op(op)
    resource, direction = _OP_KIND[op]
    safeguards = safeguards or DEFAULT_SAFEGUARDS
    amount = _parse_step(resource, step)
    objects = find_deployments(trace, deploy, namespace)
    ceiling, floor = safeguards.ceiling(resource), safeguards.floor(resource)
    plan = []
    for obj in objects:
        before = _current(obj, resource)
        if direction > 0:
            after = before + amount
            if after > ceiling:
                render = {"cpu": format_cpu, "memory": format_memory, "replicas": str}[resource]
                raise SafeguardError(
                    f"{op} refused: {_where(obj)} {resource} would be {render(after)}, past the "
                    f"ceiling {render(ceiling)} (now {render(before)}); the trace is unchanged",
                    op=op, resource=resource, requested=after, limit=ceiling)
        else:
            after = max(floor, before - amount) if before > floor else before
        plan.append((obj, before, after))
    for obj, before, after in plan:
        if after != before:
            _write(obj, resource, after)
    _, before, after = plan[-1]
    metadata = objects[-1].get("metadata") or {}
    return OpResult(op=op, deploy=deploy, namespace=metadata.get("namespace"), resource=resource,
                    before=before, after=after,
                    changed=any(b != a for _, b, a in plan), objects=len(plan))


def mutate_trace(trace: Trace, op: str, deploy: str, **kwargs) -> tuple[Trace, OpResult]:
    """A deep copy of `trace` with the edit applied (the original is untouched)."""
    edited = copy.deepcopy(trace)
    return edited, apply_op(edited, op, deploy, **kwargs)


def _named_op(op: str):
    def edit(trace: Trace, deploy: str, step: Any = None, **kwargs) -> OpResult:
        return apply_op(trace, op, deploy, step=step, **kwargs)

    edit.__name__ = edit.__qualname__ = op
    edit.__doc__ = f"`apply_op(trace, {op!r}, deploy, step=step, ...)`: sim-arena's op by its name."
    return edit


bump_cpu, reduce_cpu, bump_mem, reduce_mem, scale_up, scale_down = map(_named_op, OPS)
