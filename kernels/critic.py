"""Grid-wide features for a privileged critic: what the value network may see in training and the
gardener never does (the episode clock, the whole grid's pressure, the OOM counts towards collapse).

They are appended after the 30 observation values when `GardenerEnv(critic_features=True)`; the
actor reads only the first 30. Every feature lies in [0, 1]. They are computed densely from the
node records' closed forms (either kernel's layout): they exist only in training.
"""
import numpy as np
from numba import njit, prange

from puffer_cluster.kernels.fixed import ONE, PRIO, ratio_float_nb
from puffer_cluster.kernels.rules import cpu_now, mem_now
from puffer_cluster.kernels.world import OBS_SIZE

CRITIC_FEATURES = (
    "clock",          # step / max_steps
    "mean_cpu",       # mean over nodes of min(1, cpu / cap)
    "mean_mem",       # mean over nodes of min(1, mem / cap)
    "max_mem",        # the most pressured node
    "hot_fraction",   # nodes with memory pressure >= HOT_MEM
    "crit_mem",       # mean memory pressure of the critical nodes (0 without any)
    "oom_progress",   # OOMs so far / oom_collapse_count
    "crit_progress",  # critical OOMs so far / crit_limit
) + tuple(f"block_mem_{by}_{bx}" for by in range(4) for bx in range(4))
# The block_mem_* features are a coarse map: the mean memory pressure of each of 4 x 4 blocks of
# the grid (row-major), so the critic can value moving towards the pressure the gardener cannot see.
MAP_BLOCKS = 4
NUM_SUMMARY_FEATURES = 8
NUM_CRITIC_FEATURES = len(CRITIC_FEATURES)
HOT_MEM = 0.6


@njit(nogil=True, cache=True)
def _grid_features(state, params, g, out):
    height, width = params.height, params.width
    nodes = height * width
    records = state.nodes[g]
    table = params.entropy_integral
    t = state.step[g]
    hot_fx = int(HOT_MEM * ONE)
    cpu_sum = mem_sum = max_mem = crit_sum = 0
    hot = crit = 0
    block_sum = np.zeros(MAP_BLOCKS * MAP_BLOCKS, dtype=np.int64)
    block_count = np.zeros(MAP_BLOCKS * MAP_BLOCKS, dtype=np.int64)
    for i in range(nodes):
        mem = min(ONE, mem_now(table, records, i, t))
        cpu_sum += cpu_now(records, i, t)
        mem_sum += mem
        max_mem = max(max_mem, mem)
        hot += mem >= hot_fx
        if records[i, PRIO] >= params.crit_fx:
            crit += 1
            crit_sum += mem
        block = (i // width) * MAP_BLOCKS // height * MAP_BLOCKS + (i % width) * MAP_BLOCKS // width
        block_sum[block] += mem
        block_count[block] += 1
    out[0] = min(1.0, state.step[g] / params.max_steps)
    out[1] = ratio_float_nb(cpu_sum) / nodes
    out[2] = ratio_float_nb(mem_sum) / nodes
    out[3] = ratio_float_nb(max_mem)
    out[4] = hot / nodes
    out[5] = ratio_float_nb(crit_sum) / crit if crit > 0 else 0.0
    out[6] = min(1.0, state.ep_oom[g] / params.oom_collapse_count)
    out[7] = min(1.0, state.ep_crit[g] / params.crit_limit)
    for b in range(MAP_BLOCKS * MAP_BLOCKS):
        out[NUM_SUMMARY_FEATURES + b] = ratio_float_nb(block_sum[b]) / block_count[b]


@njit(parallel=True, nogil=True, cache=True)
def write_critic_features(state, params, observations):
    """Fill columns OBS_SIZE.. of every agent's row with its grid's features."""
    agents = params.agents_per_grid
    for g in prange(state.step.shape[0]):
        row = g * agents
        _grid_features(state, params, g, observations[row, OBS_SIZE:])
        for a in range(1, agents):
            observations[row + a, OBS_SIZE:] = observations[row, OBS_SIZE:]
