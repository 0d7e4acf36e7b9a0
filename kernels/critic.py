"""Grid-wide features for a privileged critic: what the value network may see in training and the
gardener never does (the episode clock, the whole grid's pressure, the OOM counts towards collapse).

They are appended after the 30 observation values when `GardenerEnv(critic_features=True)`; the
actor reads only the first 30. Every feature lies in [0, 1]. They are computed densely from the
node records' closed forms (either kernel's layout): they exist only in training.
"""
from numba import njit, prange

from kernels.fixed import ONE, PRIO, ratio_float_nb
from kernels.rules import cpu_now, mem_now
from kernels.world import OBS_SIZE

CRITIC_FEATURES = (
    "clock",          # step / max_steps
    "mean_cpu",       # mean over nodes of min(1, cpu / cap)
    "mean_mem",       # mean over nodes of min(1, mem / cap)
    "max_mem",        # the most pressured node
    "hot_fraction",   # nodes with memory pressure >= HOT_MEM
    "crit_mem",       # mean memory pressure of the critical nodes (0 without any)
    "oom_progress",   # OOMs so far / oom_limit
    "crit_progress",  # critical OOMs so far / crit_limit
)
NUM_CRITIC_FEATURES = len(CRITIC_FEATURES)
HOT_MEM = 0.6


@njit(nogil=True, cache=True)
def _grid_features(state, params, g, out):
    nodes = params.height * params.width
    records = state.nodes[g]
    table = params.entropy_integral
    t = state.step[g]
    hot_fx = int(HOT_MEM * ONE)
    cpu_sum = mem_sum = max_mem = crit_sum = 0
    hot = crit = 0
    for i in range(nodes):
        mem = min(ONE, mem_now(table, records, i, t))
        cpu_sum += cpu_now(records, i, t)
        mem_sum += mem
        max_mem = max(max_mem, mem)
        hot += mem >= hot_fx
        if records[i, PRIO] >= params.crit_fx:
            crit += 1
            crit_sum += mem
    out[0] = min(1.0, state.step[g] / params.max_steps)
    out[1] = ratio_float_nb(cpu_sum) / nodes
    out[2] = ratio_float_nb(mem_sum) / nodes
    out[3] = ratio_float_nb(max_mem)
    out[4] = hot / nodes
    out[5] = ratio_float_nb(crit_sum) / crit if crit > 0 else 0.0
    out[6] = min(1.0, state.ep_oom[g] / params.oom_limit)
    out[7] = min(1.0, state.ep_crit[g] / params.crit_limit)


@njit(parallel=True, nogil=True, cache=True)
def write_critic_features(state, params, observations):
    """Fill columns OBS_SIZE.. of every agent's row with its grid's features."""
    agents = params.agents_per_grid
    for g in prange(state.step.shape[0]):
        row = g * agents
        _grid_features(state, params, g, observations[row, OBS_SIZE:])
        for a in range(1, agents):
            observations[row + a, OBS_SIZE:] = observations[row, OBS_SIZE:]
