"""ClusterOps: cluster-code's ops agent (seed 004) as an env. Simulated Kubernetes incidents
whose causes a policy must read before it fixes them (`kernels.cluster_ops` has the rules), a
runbook heuristic, and the live diagnosis of a real cluster (`puffer_cluster.cluster_ops.live`).
Its entry in `puffer_cluster.registry` is what the trainer, eval and bench use."""
from __future__ import annotations

from puffer_cluster.kernels.cluster_ops import ACTION_NAMES, EPISODE_STATS, NUM_ACTIONS, OBS_NAMES, OBS_SIZE
from puffer_cluster.cluster_ops.env import (
    GYM_ID, ClusterOpsEnv, ClusterOpsGymEnv, cluster_ops_params, episode_env,
    make_cluster_ops_vecenv,
)
from puffer_cluster.cluster_ops.policies import format_table, heuristic_actions, random_actions

__all__ = ["ACTION_NAMES", "EPISODE_STATS", "GYM_ID", "NUM_ACTIONS", "OBS_NAMES", "OBS_SIZE",
           "ClusterOpsEnv", "ClusterOpsGymEnv", "cluster_ops_params", "episode_env",
           "format_table", "heuristic_actions", "make_cluster_ops_vecenv", "random_actions"]
