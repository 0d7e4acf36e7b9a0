"""The one deterministic scheduler of the replay and of SimArena: what each node has allocated,
and where the next pod goes.

A pod goes to the feasible node (requests within the node's capacity, fewer than `max_pods`
pods) with the highest least-allocated score (kube-scheduler's NodeResourcesFit/LeastAllocated:
the mean free fraction of CPU and memory after placement, counting 100m CPU / 200 MiB for a
request of 0), ties to the lowest node index; `first_fit` takes the lowest feasible index
instead. `kernels.simarena.place_nb` is its Numba twin (same arithmetic, same bits; a test
compares them).
"""
from __future__ import annotations

import numpy as np

# kube-scheduler scores a pod without requests as if it asked for this much (schedutil).
NONZERO_CPU_MILLICORES = 100
NONZERO_MEMORY_BYTES = 200 * 1024 * 1024
# The largest pod the replay takes: 100,000 pods of it still sum within int64.
MAX_POD_MILLICORES = 2**30    # about a million cores
MAX_POD_BYTES = 2**44         # 16 TiB
# Which resources a node lacks for a pod that fits nowhere: blocked[k] of `NodeAllocations.place`.
BLOCKED_CPU, BLOCKED_MEM, BLOCKED_SLOT = range(3)


class NodeAllocations:
    """Requests bound to each node (millicores, bytes), the scheduler's scoring sums (with the
    non-zero defaults) and pod counts; int64 arrays over nodes."""

    def __init__(self, nodes: int, cap_cpu: int, cap_mem: int, max_pods: int,
                 first_fit: bool = False):
        self.cap_cpu, self.cap_mem, self.max_pods = cap_cpu, cap_mem, max_pods
        self.first_fit = bool(first_fit)
        self.cpu = np.zeros(nodes, dtype=np.int64)
        self.mem = np.zeros(nodes, dtype=np.int64)
        self.score_cpu = np.zeros(nodes, dtype=np.int64)
        self.score_mem = np.zeros(nodes, dtype=np.int64)
        self.pods = np.zeros(nodes, dtype=np.int64)

    @classmethod
    def from_arrays(cls, cpu, mem, score_cpu, score_mem, pods, cap_cpu: int, cap_mem: int,
                    max_pods: int, first_fit: bool = False) -> "NodeAllocations":
        """Allocations starting from copies of the given node sums."""
        nodes = cls(len(cpu), cap_cpu, cap_mem, max_pods, first_fit)
        for mine, given in ((nodes.cpu, cpu), (nodes.mem, mem), (nodes.score_cpu, score_cpu),
                            (nodes.score_mem, score_mem), (nodes.pods, pods)):
            mine[:] = given
        return nodes

    def bind(self, node: int, cpu: int, mem: int):
        self.cpu[node] += cpu
        self.mem[node] += mem
        self.score_cpu[node] += cpu or NONZERO_CPU_MILLICORES
        self.score_mem[node] += mem or NONZERO_MEMORY_BYTES
        self.pods[node] += 1

    def unbind(self, node: int, cpu: int, mem: int):
        self.cpu[node] -= cpu
        self.mem[node] -= mem
        self.score_cpu[node] -= cpu or NONZERO_CPU_MILLICORES
        self.score_mem[node] -= mem or NONZERO_MEMORY_BYTES
        self.pods[node] -= 1

    def fits(self, node: int, cpu: int, mem: int) -> bool:
        return bool(self.cpu[node] + cpu <= self.cap_cpu and self.mem[node] + mem <= self.cap_mem
                    and self.pods[node] < self.max_pods)

    def shortages(self, cpu: int, mem: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per node: short of CPU, of memory, of a pod slot for a pod of (cpu, mem)."""
        return (self.cpu + cpu > self.cap_cpu, self.mem + mem > self.cap_mem,
                self.pods >= self.max_pods)

    def choose(self, cpu: int, mem: int, pinned: int = -1) -> int:
        """The node a pod of (cpu, mem) goes to (`pinned`: only that one), or -1."""
        if pinned >= 0:
            return pinned if self.fits(pinned, cpu, mem) else -1
        feasible = (self.cpu <= self.cap_cpu - cpu) & (self.mem <= self.cap_mem - mem) \
            & (self.pods < self.max_pods)
        if not feasible.any():
            return -1
        if self.first_fit:
            return int(np.argmax(feasible))
        score = (np.maximum(0, self.cap_cpu - (self.score_cpu + (cpu or NONZERO_CPU_MILLICORES)))
                 / self.cap_cpu
                 + np.maximum(0, self.cap_mem - (self.score_mem + (mem or NONZERO_MEMORY_BYTES)))
                 / self.cap_mem)
        return int(np.argmax(np.where(feasible, score, -np.inf)))  # the first (lowest index) of the best

    def place(self, cpu: int, mem: int, count: int, blocked: np.ndarray) -> int:
        """Bind `count` identical pods one by one; returns how many fit. `blocked[:]` gets the
        nodes short of CPU, memory and a pod slot for the first pod that fits nowhere (zeros
        when all fit)."""
        blocked[:] = 0
        for placed in range(count):
            node = self.choose(cpu, mem)
            if node < 0:
                for k, short in enumerate(self.shortages(cpu, mem)):
                    blocked[k] = int(short.sum())
                return placed
            self.bind(node, cpu, mem)
        return count
