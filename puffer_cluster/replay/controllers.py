"""One small controller per workload kind: how many pods a traced object wants, and what a
re-apply, a deletion or a finished pod does to them.

- Deployment / ReplicaSet / StatefulSet / ReplicationController (and any other tracked kind
  with a pod template): `spec.replicas` (default 1) pods per template; a finished pod is
  replaced; a new template replaces the pods, a new count scales.
- DaemonSet: one pod per node, pinned there.
- Job: `parallelism` (default 1) pods at a time up to `completions` (Kubernetes' defaults:
  neither set is one pod to one completion; parallelism alone is a work queue, done once a pod
  succeeds); a finished pod is a success.
- CronJob: a Job per tick of its schedule, honouring `suspend` and `concurrencyPolicy`.
- Pod: one pod, immutable, simply gone when it finishes.

A controller acts through its simulator (`puffer_cluster.replay.simulator`): it creates and
removes pods there, and the simulator's scheduler places them.
"""
from __future__ import annotations

from puffer_cluster.replay.cron import CronSchedule
from puffer_cluster.replay.requests import PodTemplate, resolve_pointer
from puffer_cluster.replay.settings import ReplayError
from puffer_cluster.traces import parse_gvk


# More pods than this for one object is refused before anything is allocated (a Kubernetes
# cluster holds at most 150,000 pods; one object asking for more is a broken trace).
MAX_REPLICAS = 10_000


def _count(spec: dict, field: str, default, where: str):
    """`spec[field]` as a count: the default when absent or not a count; refused when huge."""
    value = spec.get(field, default)
    if type(value) is not int or value < 0:
        return default
    if value > MAX_REPLICAS:
        raise ReplayError(f"{where}: spec.{field} = {value} is more than the replay allows "
                          f"({MAX_REPLICAS} pods per object)")
    return value


class Workload:
    """A traced object and its pods; the base keeps `target()` pods, one template after another."""

    def __init__(self, sim, key: tuple[str, str, str], vns: str, templates: list[PodTemplate],
                 spec: dict):
        self.sim = sim
        self.key = key                   # (gvk, original namespace, name)
        self.gvk, self.namespace, self.name = key
        self.vns = vns                   # the virtual namespace its pods run in
        self.templates = templates
        self.owner = self                # the traced object (lifecycles, sequence numbers)
        self.children: list[Workload] = []
        self.active: list = []           # its pods, pending or running
        self.next_seq = 0
        self.alive = True

    @property
    def label(self) -> str:
        return f"{self.gvk} {self.namespace}/{self.name}"

    def pod_name(self, node: int, seq: int) -> str:
        return f"{self.name}-{node if node >= 0 else seq}"

    def target(self) -> int:
        raise NotImplementedError

    def start(self, now: float):
        self.reconcile(now)

    def update(self, now: float, new: "Workload"):
        """The object was re-applied (same kind)."""
        raise NotImplementedError

    def kill(self, now: float):
        self.alive = False
        for child in self.children:
            child.kill(now)
        for pod in list(self.active):
            self.sim.remove_pod(now, self, pod)

    def finished(self, now: float):
        """One of its pods completed (already removed)."""
        self.reconcile(now)

    def reconcile(self, now: float):
        """Create or remove pods so that the workload has as many as its controller wants."""
        if not self.alive:
            return
        target, per_set = self.target(), len(self.templates)
        while len(self.active) < target:
            self.sim.create_pod(now, self, self.templates[len(self.active) % per_set])
        if len(self.active) > target:
            # Scale down: pending pods first, then the newest running ones.
            ranked = sorted(self.active, key=lambda p: (p.node >= 0, p.created, p.seq))
            for pod in ranked[:len(self.active) - target]:
                self.sim.remove_pod(now, self, pod)


class Replicas(Workload):
    def __init__(self, sim, key, vns, templates, spec):
        super().__init__(sim, key, vns, templates, spec)
        self.desired = _count(spec, "replicas", 1, self.label)

    def target(self) -> int:
        return self.desired * len(self.templates)

    def update(self, now, new):
        if new.templates != self.templates:
            for pod in list(self.active):
                self.sim.remove_pod(now, self, pod)
            self.templates = new.templates
        self.desired = new.desired
        self.reconcile(now)


class DaemonSet(Replicas):
    def reconcile(self, now):
        if not self.alive:
            return
        covered = {pod.pinned_node for pod in self.active}
        for node in range(self.sim.nodes):
            if node not in covered:
                self.sim.create_pod(now, self, self.templates[0], node)


class Job(Workload):
    def __init__(self, sim, key, vns, templates, spec):
        super().__init__(sim, key, vns, templates, spec)
        parallelism, completions = spec.get("parallelism"), spec.get("completions")
        if parallelism is None and completions is None:
            completions = 1
        self.parallelism = _count(spec, "parallelism", 1, self.label)
        # Not bounded: the pods run `parallelism` at a time.
        self.completions = completions if type(completions) is int and completions >= 0 else None
        self.suspend = spec.get("suspend") is True
        self.succeeded = 0

    def target(self) -> int:
        per_set = len(self.templates)
        if self.suspend:
            return 0
        if self.completions is None:
            # A work queue: no new pod once one succeeded; the others finish on their own.
            return len(self.active) if self.succeeded > 0 else self.parallelism * per_set
        return max(0, min(self.parallelism, self.completions - self.succeeded)) * per_set

    def update(self, now, new):
        self.parallelism, self.suspend = new.parallelism, new.suspend
        self.reconcile(now)

    def finished(self, now):
        self.succeeded += 1
        self.reconcile(now)


class BarePod(Workload):
    def pod_name(self, node, seq):
        return self.name

    def target(self) -> int:
        return len(self.templates)

    def update(self, now, new):
        pass  # a pod's spec is immutable

    def finished(self, now):
        pass  # nothing replaces a bare pod


class CronJob(Workload):
    def __init__(self, sim, key, vns, templates, spec):
        super().__init__(sim, key, vns, [], spec)
        self.job_templates = templates
        job_spec = resolve_pointer(spec, "/jobTemplate/spec")
        self.job_spec = job_spec if isinstance(job_spec, dict) else {}
        self.schedule = None
        try:
            self.schedule = CronSchedule(spec.get("schedule", ""))
        except (ValueError, TypeError) as error:
            sim.warnings.append(f"{self.label}: {error}; no Job is started")
        self.suspend = spec.get("suspend") is True
        self.concurrency = str(spec.get("concurrencyPolicy") or "Allow")
        self.generation = 0  # a re-apply cancels the ticks already scheduled

    def start(self, now):
        self.next_tick(now)

    def update(self, now, new):
        self.schedule, self.suspend, self.concurrency = new.schedule, new.suspend, new.concurrency
        self.job_spec, self.job_templates = new.job_spec, new.job_templates
        self.generation += 1
        self.next_tick(now)

    def next_tick(self, now: float):
        if self.schedule is None:
            return
        sim = self.sim
        tick = self.schedule.next_after(sim.start_ts + now, sim.start_ts + sim.end_wall)
        if tick is not None:
            sim.at_cron_tick(tick - sim.start_ts, self.tick, self.generation)

    def tick(self, now: float, generation: int):
        if not self.alive or generation != self.generation:
            return
        self.next_tick(now)
        if self.suspend:
            return
        running = [job for job in self.children if job.alive and job.active]
        if running and self.concurrency == "Forbid":
            return
        if running and self.concurrency == "Replace":
            for job in running:
                job.kill(now)
        if not self.job_templates:
            return
        scheduled = int(self.sim.start_ts + now) // 60
        job = Job(self.sim, ("batch/v1.Job", self.namespace, f"{self.name}-{scheduled}"), self.vns,
                  list(self.job_templates), self.job_spec)
        job.owner = self
        self.children = [child for child in self.children if child.alive] + [job]
        job.reconcile(now)


CONTROLLERS = {("batch", "CronJob"): CronJob, ("", "Pod"): BarePod, ("apps", "DaemonSet"): DaemonSet,
               ("batch", "Job"): Job}


def build_workload(sim, key: tuple[str, str, str], vns: str, obj: dict,
                   paths: list[str]) -> Workload | None:
    """The controller of an applied object; None for an object without pods (a ConfigMap...)."""
    gvk, namespace, name = key
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    templates = sim.priorities.templates(obj, paths, f"{gvk} {namespace}/{name}")
    group, _, kind = parse_gvk(gvk)
    controller = CONTROLLERS.get((group, kind), Replicas)
    if not templates and controller is not CronJob:
        return None
    return controller(sim, key, vns, templates, spec)
