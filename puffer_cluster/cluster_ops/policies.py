"""ClusterOps' baseline rules (random, the runbook heuristic) and its benchmark table; the
registry (`puffer_cluster.registry`) makes policies of them and plays them on paired seeds."""
from __future__ import annotations

import numpy as np

from puffer_cluster.kernels import cluster_ops as kernel
from puffer_cluster.kernels.rng import counter_hash
from puffer_cluster.tables import BASELINES, results_table

STREAM_ACTION = np.uint64(0xC0D5)
# A share of pods this small counts as none (the observation is float32).
EPSILON = 1e-4


def random_actions(seed: int, step: int, out: np.ndarray) -> np.ndarray:
    """Uniform actions in [0, 15), a pure function of (seed, step, agent)."""
    n = out.shape[0]
    hashed = counter_hash(np.full(n, np.uint64(seed % 2**64)), np.full(n, np.uint64(step)),
                          np.arange(n, dtype=np.uint64), np.full(n, STREAM_ACTION))
    out[:] = (hashed % np.uint64(kernel.NUM_ACTIONS)).astype(np.int32)
    return out


def heuristic_actions(observations: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The runbook, written from the seed's semantics: look, then fix what the look revealed.

    First the fixes the observation justifies: a NotReady node -> DRAIN_NODE; a revealed
    resource pressure -> DRAIN_NODE, bad rollout -> SCALE_DOWN_DEPLOYMENT, crash loop or network
    fault -> RESTART_FAILED_PODS, cordoned node -> UNCORDON_NODE; replicas missing ->
    SCALE_UP_DEPLOYMENT. Otherwise, while pods are hurt: DESCRIBE_UNHEALTHY when no cause is
    known yet, then CHECK_LOGS, GET_EVENTS, GET_DEPLOYMENTS, GET_NODES for the causes still
    unknown. Nothing hurt, or only a revealed pending PVC (it binds by itself): WAIT."""
    obs = np.asarray(observations)
    flags = obs[:, kernel.OBS_FLAGS:kernel.OBS_FLAGS + kernel.NUM_FLAGS]
    known = flags > 0.5
    unknown = flags < -0.5
    accounted = (obs[:, kernel.OBS_RUNNING] + obs[:, kernel.OBS_PENDING] + obs[:, kernel.OBS_FAILED]
                 + obs[:, kernel.OBS_UNKNOWN])
    missing = accounted < 1.0 - EPSILON
    hurt = ((obs[:, kernel.OBS_PENDING] > EPSILON) | (obs[:, kernel.OBS_FAILED] > EPSILON)
            | (obs[:, kernel.OBS_UNKNOWN] > EPSILON) | missing
            | (obs[:, kernel.OBS_HEALTHY_DEPLOYMENTS] < 1.0 - EPSILON))
    actions = np.select(
        [obs[:, kernel.OBS_NOT_READY] > 0, known[:, kernel.FLAG_PRESSURE],
         known[:, kernel.FLAG_BAD_ROLLOUT],
         known[:, kernel.FLAG_CRASH_LOOP] | known[:, kernel.FLAG_NETWORK],
         known[:, kernel.FLAG_CORDONED], missing,
         hurt & unknown.all(axis=1),
         hurt & (unknown[:, kernel.FLAG_CRASH_LOOP] | unknown[:, kernel.FLAG_NETWORK]),
         hurt & (unknown[:, kernel.FLAG_PVC] | unknown[:, kernel.FLAG_PRESSURE]),
         hurt & unknown[:, kernel.FLAG_BAD_ROLLOUT],
         hurt & unknown[:, kernel.FLAG_CORDONED]],
        [kernel.DRAIN_NODE, kernel.DRAIN_NODE, kernel.SCALE_DOWN_DEPLOYMENT,
         kernel.RESTART_FAILED_PODS, kernel.UNCORDON_NODE, kernel.SCALE_UP_DEPLOYMENT,
         kernel.DESCRIBE_UNHEALTHY, kernel.CHECK_LOGS, kernel.GET_EVENTS, kernel.GET_DEPLOYMENTS,
         kernel.GET_NODES],
        kernel.WAIT).astype(np.int32)
    if out is None:
        return actions
    out[:] = actions
    return out


def format_table(rows: list[dict]) -> str:
    """The ClusterOps benchmark table, in the format of the gardener's (rows of
    `tables.statistics_row`)."""
    return results_table(
        "CLUSTEROPS RESULTS", rows,
        lambda row: f" | resolved mu={row['resolved_mean']:.2f}"
                    f" | wrong fixes mu={row['wrong_fixes_mean']:.2f}"
                    f" | healthy={row['healthy_fraction_mean']:.2f}"
                    f" | open={row['open_incidents_mean']:.2f}",
        BASELINES, width=78)
