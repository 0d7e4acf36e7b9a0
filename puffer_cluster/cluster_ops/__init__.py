"""ClusterOps: cluster-code's ops agent (seed 004) as an env. Simulated Kubernetes incidents
whose causes a policy must read before it fixes them (`kernels.cluster_ops` has the rules), a
runbook heuristic, and the live diagnosis of a real cluster (`puffer_cluster.cluster_ops.live`).

What an env registry entry needs is here as plain names: `make_vecenv(config)`, `OBS_SIZE`,
`NUM_ACTIONS`, `ACTION_NAMES`, `EPISODE_STATS`, `POLICIES`, `format_table(rows)`, `GYM_ID` (registered by `import puffer_cluster`)."""
from __future__ import annotations

from kernels.cluster_ops import ACTION_NAMES, EPISODE_STATS, NUM_ACTIONS, OBS_NAMES, OBS_SIZE
from puffer_cluster.cluster_ops.env import (
    GYM_ID, ClusterOpsEnv, ClusterOpsGymEnv, cluster_ops_params,
)
from puffer_cluster.cluster_ops.policies import POLICIES, evaluate, format_table, make_policy
from puffer_cluster.config import ConfigError

VEC_BACKENDS = ("PufferEnv", "Serial", "Multiprocessing")


def make_vecenv(config: dict):
    """The trainer's env for `[base] env_name = cluster_ops` (`[vec]` as for the gardener)."""
    import pufferlib.vector
    if config["train"].get("teacher", "none") != "none":
        raise ConfigError("ClusterOps has no kickstarting teacher: set train.teacher = none "
                          "(configs/cluster_ops.ini does)")
    vec = config["vec"]
    kwargs = dict(num_envs=config["env"]["num_envs"], log_interval=config["env"]["log_interval"],
                  cluster_ops=dict(config.get("cluster_ops") or {}))
    backend = vec["backend"]
    if backend == "PufferEnv":
        return ClusterOpsEnv(seed=vec["seed"], **kwargs)
    if backend not in VEC_BACKENDS:
        raise ConfigError(f"vec.backend must be one of {', '.join(VEC_BACKENDS)}, got {backend!r}")
    extra = {}
    if backend == "Multiprocessing":
        extra = dict(num_workers=vec["num_workers"], batch_size=vec["num_envs"])
    return pufferlib.vector.make(ClusterOpsEnv, backend=getattr(pufferlib.vector, backend),
                                 num_envs=vec["num_envs"], env_kwargs=kwargs, seed=vec["seed"],
                                 **extra)

__all__ = ["ACTION_NAMES", "EPISODE_STATS", "GYM_ID", "NUM_ACTIONS", "OBS_NAMES", "OBS_SIZE",
           "POLICIES", "ClusterOpsEnv", "ClusterOpsGymEnv", "cluster_ops_params", "evaluate",
           "format_table", "make_policy", "make_vecenv"]
