"""The cluster a trace is replayed on: sized to the trace (`cluster = trace`) or as configured
(`cluster = fixed`).

Sized to the trace, from the trace's demand (a first replay on one node without limits: the
peak of the requests of the running pods, CPU and memory each at its own peak, the peak count
of running pods, the largest pod):

- the grid is `s x s` nodes with `s = ceil(sqrt(peak running pods))`, at least 4 and at most the
  `[env]` grid (least-allocated spreads pods one per node before it doubles up, so most pods
  get a node of their own where the agent can see them);
- the nodes keep the shape `node_cpu : node_memory_gib` and are scaled so that the trace's peak
  requests fill `fill` of the whole cluster in its binding resource (CPU or memory, whichever
  the trace fills more), and so that no single pod takes more than `fill` of a node.

DaemonSet pods count once in the demand (one per node in the replay), so a trace of many
DaemonSets fills more than `fill`; the summary reports the fill the replay really reached.
Fixed nodes are `node_cpu` cores and `node_memory_gib` GiB on the `[env]` grid.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from puffer_cluster.replay.scheduler import MAX_POD_BYTES, MAX_POD_MILLICORES, NodeAllocations
from puffer_cluster.replay.settings import ReplaySettings

UNLIMITED = 2**62
MIN_SIDE = 4


class Demand(NamedTuple):
    """What a trace asks for within the replayed time (millicores, bytes, pods)."""
    peak_cpu: int
    peak_mem: int
    peak_pods: int
    pod_cpu: int   # the largest pod
    pod_mem: int


class Cluster(NamedTuple):
    height: int
    width: int
    cap_cpu: int   # millicores per node
    cap_mem: int   # bytes per node

    def allocations(self, settings: ReplaySettings) -> NodeAllocations:
        return NodeAllocations(self.height * self.width, self.cap_cpu, self.cap_mem,
                               settings.max_pods_per_node,
                               first_fit=settings.scheduler == "first-fit")


def unlimited_node() -> NodeAllocations:
    """One node that takes every pod: the demand replay."""
    return NodeAllocations(1, MAX_POD_MILLICORES, MAX_POD_BYTES, UNLIMITED)


def demand_of(snapshots: list, pods: list) -> Demand:
    """The demand from a replay on `unlimited_node` (its snapshots and pods)."""
    return Demand(peak_cpu=max((int(s[1][0]) for s in snapshots), default=0),
                  peak_mem=max((int(s[2][0]) for s in snapshots), default=0),
                  peak_pods=max((int(s[3][0]) for s in snapshots), default=0),
                  pod_cpu=max((pod.cpu for pod in pods), default=0),
                  pod_mem=max((pod.memory for pod in pods), default=0))


def fixed_cluster(settings: ReplaySettings, height: int, width: int) -> Cluster:
    return Cluster(height, width, settings.node_cpu_millicores, settings.node_memory_bytes)


def sized_cluster(settings: ReplaySettings, demand: Demand, height: int, width: int,
                  fit_grid: bool = True) -> Cluster:
    """The cluster sized to `demand` (see the module docstring); `fit_grid=False` keeps the
    `height x width` grid and sizes the nodes only."""
    if fit_grid:
        side = max(MIN_SIDE, math.ceil(math.sqrt(demand.peak_pods)))
        height, width = min(height, side), min(width, side)
    nodes, fill = height * width, settings.fill
    cpu, mem = settings.node_cpu_millicores, settings.node_memory_bytes
    scale = max(demand.peak_cpu / (fill * nodes * cpu), demand.peak_mem / (fill * nodes * mem),
                demand.pod_cpu / (fill * cpu), demand.pod_mem / (fill * mem))
    if scale <= 0:
        scale = 1.0  # nothing requested: the configured node
    return Cluster(height, width, min(UNLIMITED, max(1, math.ceil(scale * cpu))),
                   min(UNLIMITED, max(1, math.ceil(scale * mem))))
