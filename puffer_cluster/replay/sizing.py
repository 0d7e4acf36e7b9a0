"""The cluster a trace is replayed on: sized to the trace (`cluster = trace`) or as configured
(`cluster = fixed`).

Sized to the trace, from the trace's demand (a first replay on one node without limits: the
peak of the requests of the running pods, CPU and memory each at its own peak, and the largest
pod). Nodes keep the shape `node_cpu : node_memory_gib` and are scaled by k. In units of that
shape, with `d` the peak demand and `p` the largest pod, each the larger of CPU and memory
(the binding resource):

- no pod may take more than `fill` of a node: k >= p / fill;
- the peak demand fills `fill` of the cluster of N nodes: k = d / (fill * N);
- both hold with N = d / p nodes (as many as the trace has largest pods' worth of requests,
  so that equal pods get a node each): the grid is `rows x columns`, `columns =
  ceil(sqrt(d / p))`, `rows = ceil(d / p / columns)`, each at least 4 and at most the `[env]`
  grid's, and k = max(d / (fill * rows * columns), p / fill).

The cluster's fill is then `fill` up to the rounding of the grid; a trace with few pods, or one
pod much larger than the others, fills less of a 4x4 cluster (the summary reports what it
fills); a trace that needs more nodes than the `[env]` grid packs several pods per node, and
pods that fit nowhere stay pending (counted).

DaemonSet pods count once in the demand (one per node in the replay), so a trace of many
DaemonSets fills more than `fill`. Fixed nodes are `node_cpu` cores and `node_memory_gib` GiB
on the `[env]` grid.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from puffer_cluster.kernels.placement import MAX_POD_BYTES, MAX_POD_MILLICORES, NodeAllocations
from puffer_cluster.replay.settings import ReplaySettings

UNLIMITED = 2**62
MIN_SIDE = 4


class Demand(NamedTuple):
    """What a trace asks for within the replayed time (millicores, bytes, pods)."""
    peak_cpu: int
    peak_mem: int
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
                  pod_cpu=max((pod.cpu for pod in pods), default=0),
                  pod_mem=max((pod.memory for pod in pods), default=0))


def fixed_cluster(settings: ReplaySettings, height: int, width: int) -> Cluster:
    return Cluster(height, width, settings.node_cpu_millicores, settings.node_memory_bytes)


def sized_cluster(settings: ReplaySettings, demand: Demand, height: int, width: int,
                  fit_grid: bool = True) -> Cluster:
    """The cluster sized to `demand` (see the module docstring); `fit_grid=False` keeps the
    `height x width` grid and sizes the nodes only."""
    cpu, mem, fill = settings.node_cpu_millicores, settings.node_memory_bytes, settings.fill
    need = max(demand.peak_cpu / cpu, demand.peak_mem / mem)
    largest = max(demand.pod_cpu / cpu, demand.pod_mem / mem)
    if fit_grid:
        nodes = need / largest if largest > 0 else 0.0
        columns = min(width, max(MIN_SIDE, math.ceil(math.sqrt(nodes))))
        height, width = min(height, max(MIN_SIDE, math.ceil(nodes / columns))), columns
    scale = max(need / (fill * height * width), largest / fill)
    if scale <= 0:
        scale = 1.0  # nothing requested: the configured node
    return Cluster(height, width, min(UNLIMITED, max(1, math.ceil(scale * cpu))),
                   min(UNLIMITED, max(1, math.ceil(scale * mem))))
