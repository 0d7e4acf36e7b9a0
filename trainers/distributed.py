"""One run in several processes (`torchrun --nproc_per_node N -m puffer_cluster train ...`).

`Ranks` says which process this is (torchrun's RANK, WORLD_SIZE, LOCAL_RANK variables, or a
process group already joined) and holds the few collectives PPO needs besides
DistributedDataParallel's gradient all-reduce. With one process every collective returns its
input, so the trainer calls them unconditionally and a one-process run is unchanged.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from puffer_cluster.config import ConfigError
from puffer_cluster.trainers.stopping import PeerFailed


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")  # where the collectives' tensors live

    @classmethod
    def from_environment(cls) -> "Ranks":
        if dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        return cls(rank, world_size, int(os.environ.get("LOCAL_RANK", rank)),
                   int(os.environ.get("LOCAL_WORLD_SIZE", world_size)))

    @property
    def main(self) -> bool:
        """Rank 0 alone writes TensorBoard, checkpoints, the held-out evaluation and the table."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def rank_device(self, device: torch.device) -> torch.device:
        """Each process of a CUDA run takes the GPU of its local rank."""
        if not self.distributed or device.type != "cuda":
            return device
        if device.index is not None:
            raise ConfigError(f"train.device names one GPU ({device}) but {self.world_size} "
                              "processes run: use auto or cuda (process i takes cuda:<local rank>)")
        return torch.device("cuda", self.local_rank)

    # --- Collectives (identities for one process) -------------------------------------------

    def mean(self, values: list[float]) -> list[float]:
        """Each value averaged over the processes (logged statistics, approx_kl)."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        self.collective(dist.all_reduce, tensor)
        return (tensor / self.world_size).tolist()

    def max(self, values: list[int]) -> list[int]:
        """Each value's maximum over the processes (stop requests)."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.int64, device=self.device)
        self.collective(dist.all_reduce, tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    def mean_std(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and (unbiased) standard deviation of every process's `x` together."""
        if not self.distributed:
            return x.mean(), x.std()
        x64 = x.double()
        sums = torch.stack([x64.sum(), (x64 * x64).sum(), torch.tensor(float(x.numel()),
                                                                       dtype=torch.float64,
                                                                       device=x.device)])
        self.collective(dist.all_reduce, sums)
        total, squares, count = sums.tolist()
        mean = total / count
        variance = max(squares - count * mean * mean, 0.0) / max(count - 1, 1)
        return (torch.tensor(mean, dtype=x.dtype, device=x.device),
                torch.tensor(variance ** 0.5, dtype=x.dtype, device=x.device))

    def all_gather(self, obj) -> list:
        """Every process's `obj`, in rank order, on every process."""
        if not self.distributed:
            return [obj]
        gathered = [None] * self.world_size
        self.collective(dist.all_gather_object, gathered, obj)
        return gathered

    def gather(self, obj) -> list | None:
        """Every process's `obj`, in rank order, on rank 0 (None elsewhere)."""
        if not self.distributed:
            return [obj]
        gathered = [None] * self.world_size if self.main else None
        self.collective(dist.gather_object, obj, gathered, dst=0)
        return gathered

    def broadcast(self, obj):
        """Rank 0's `obj` on every process."""
        if not self.distributed:
            return obj
        box = [obj]
        self.collective(dist.broadcast_object_list, box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process has come here."""
        if self.distributed:
            self.collective(dist.barrier)

    def collective(self, function, *args, **kwargs):
        """`function(*args, **kwargs)`: a collective, or a call that runs DDP's (its
        construction, the backward pass). A process that failed, or did not come within the
        process group's timeout, raises `PeerFailed` instead of an error of torch's."""
        if not self.distributed:
            return function(*args, **kwargs)
        try:
            return function(*args, **kwargs)
        except (dist.DistError, RuntimeError) as error:
            reason = " ".join(str(error).split())[:200]
            raise PeerFailed("another process of the run stopped or exceeded "
                             f"train.collective_timeout ({reason})") from None


@contextmanager
def process_group(ranks: Ranks, device: torch.device, timeout_s: float):
    """Join the run's process group for the `with` block: `gloo` on CPU, `nccl` on CUDA (one
    process, or a group the caller already joined: nothing to do). A collective waits at most
    `timeout_s` seconds for the other processes, then fails (`PeerFailed`). Each process's Numba
    threads get an even share of the machine's cores unless NUMBA_NUM_THREADS says otherwise
    (torchrun already sets OMP_NUM_THREADS=1)."""
    if not ranks.distributed or dist.is_initialized():
        yield
        return
    if ranks.local_world_size > 1 and "NUMBA_NUM_THREADS" not in os.environ:
        import numba
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS,
                                         cores // ranks.local_world_size)))
    # Imported before the group exists: importing it while one does (the first optimizer and
    # DistributedDataParallel import it) keeps the group alive after destroy_process_group, and
    # gloo's threads then outlive the interpreter (now and then an abort at exit).
    import torch._dynamo  # noqa: F401
    timeout = timedelta(seconds=timeout_s)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    try:
        yield
    finally:
        dist.destroy_process_group()
