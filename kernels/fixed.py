"""World v2's fixed-point format and closed forms, written once for every kernel.

Every evolving quantity of a node is an int64 in a fixed-point unit, stored at the time of the
node's last event, and its value at any later step is a closed form of the time since. The
functions below are plain integer arithmetic: NumPy evaluates them on int64 arrays (the
reference) and Numba compiles the very same source (the dense and event kernels), as
`kernels.rng` does for the hash (hence no function here calls another). Floats appear only at the output, through `ratio_float`,
`mean_load`, `oom_cost` and `clean_waste` (docs/WORLD_V2.md has the reasoning).
"""
import numpy as np
from numba import njit

# Units. A ratio (cpu / cap, mem / cap) of 1 is ONE; capacities count CAP_ONE per unit of base
# capacity; priorities PRIO_ONE per 1 (24 bits: exact in the float32 observation); the entropy
# integral G counts G_ONE per step at E = 1; a leak rate is ratio units per G unit, so that
# leak * (G[t] - G[t0]) is a ratio with no rounding.
ONE = 1 << 40
CAP_ONE = 1 << 16
PRIO_ONE = 1 << 24
G_BITS = 12
G_ONE = 1 << G_BITS
LEAK_ONE = ONE // G_ONE
FRACTION_ONE = 1 << 16  # the clean's kept fraction
RATIO_UNIT = 2.0 ** -40
PRIO_UNIT = 2.0 ** -24
NEVER = -1  # no event scheduled

# The node record: one row of int64 per node, (grids, nodes, fields). The dense kernels use the
# first NODE_FIELDS columns; the event kernel adds its queue bookkeeping after them.
MEM, MEM_T, LEAK, CPU_BASE, SPIKE, SPIKE_T, FADE, CAP, PRIO = range(9)
NODE_FIELDS = 9
# Event kernel only: the step the node's OOM falls due (NEVER: none) and its links in the OOM
# wheel's list of that step; the record is padded to two 64-byte cache lines, so that what a
# spike reads and writes (CPU_BASE .. CAP) lies in the first.
OOM_DUE, OOM_NEXT, OOM_PREV = range(9, 12)
EVENT_NODE_FIELDS = 16
# The event kernel's wheel, one row per step of the episode: the changes of the grid's cpu sum
# and of its per-step fall that fall due then (the cpu phase changes), and the first node whose
# OOM is due then (NEVER: none).
WHEEL_CPU, WHEEL_SLOPE, WHEEL_OOM = range(3)
WHEEL_FIELDS = 3


def to_fixed(value, unit):
    """A non-negative float (or array) in fixed point: floor(value * unit)."""
    return np.int64(value * unit)


def mul_div(x, num, den):
    """floor(x * num / den) for non-negative x, without the overflow of x * num."""
    return (x // den) * num + (x % den) * num // den


def entropy_integral(table, t):
    """G[t] from the table `WorldParams.entropy_integral`, in G_ONE units; constant after
    max_steps (grids are reset there)."""
    return table[np.minimum(t, table.shape[0] - 1)]


def mem_at(mem, leak, g_now, g_then):
    """Memory pressure now from its value at the last memory event (G then) and the leak."""
    return mem + leak * (g_now - g_then)


def spike_at(spike, fade, age):
    """Spike load `age` steps after it was last set: a linear fade to 0."""
    return spike - np.minimum(spike, fade * age)


def cpu_at(base, spike, fade, age):
    """CPU ratio as the observation and the load see it, clipped at ONE."""
    return np.minimum(ONE, base + spike - np.minimum(spike, fade * age))


def ratio_float(x):
    return x * RATIO_UNIT


def mean_load(load_sum, nodes):
    """The mean over nodes of (cpu + mem) / 2, from the integer sum of both ratios."""
    return load_sum * RATIO_UNIT * 0.5 / nodes


def oom_cost(params, ooms, prio_sum):
    """Sum over the step's OOMs of oom_penalty * (1 + crit_weight * prio), from integer sums."""
    return params.oom_penalty * (ooms + params.crit_weight * (prio_sum * PRIO_UNIT))


def clean_waste(waste_sum):
    return waste_sum * RATIO_UNIT


def initial_node(params, u_base, u_mem, u_leak, u_prio, u_critical):
    """A node's start-of-episode values (cpu base, memory, leak, priority) in fixed point, from
    uniform draws (scalars or arrays)."""
    base = params.base_load_min + (params.base_load_max - params.base_load_min) * u_base
    mem = params.mem_init_min + (params.mem_init_max - params.mem_init_min) * u_mem
    leak = params.leak_min + (params.leak_max - params.leak_min) * (u_leak * u_leak)
    critical = u_critical < params.crit_fraction
    prio = critical * (params.crit_threshold + (1.0 - params.crit_threshold) * u_prio) \
        + (1 - critical) * ((params.crit_threshold - 0.01) * u_prio)
    return (np.int64(base * ONE), np.int64(mem * ONE), np.int64(leak * LEAK_ONE),
            np.int64(prio * PRIO_ONE))


to_fixed_nb = njit(inline="always")(to_fixed)
mul_div_nb = njit(inline="always")(mul_div)
entropy_integral_nb = njit(inline="always")(entropy_integral)
mem_at_nb = njit(inline="always")(mem_at)
spike_at_nb = njit(inline="always")(spike_at)
cpu_at_nb = njit(inline="always")(cpu_at)
ratio_float_nb = njit(inline="always")(ratio_float)
mean_load_nb = njit(inline="always")(mean_load)
oom_cost_nb = njit(inline="always")(oom_cost)
clean_waste_nb = njit(inline="always")(clean_waste)
initial_node_nb = njit(inline="always")(initial_node)
