"""The gardener world's vocabulary: actions, channels, parameters, state layout and statistics.

Shared by the three implementations of World v2 (docs/WORLD_V2.md): the NumPy reference
(`kernels.reference`), the dense Numba kernel (`kernels.dense`) and the event-driven one
(`kernels.event`). The fixed-point format and the closed forms live in `kernels.fixed`.
"""
import mmap
from typing import NamedTuple

import numpy as np

from puffer_cluster.kernels import fixed
from puffer_cluster.kernels.fixed import (
    CAP_ONE, EVENT_NODE_FIELDS, FRACTION_ONE, G_BITS, G_ONE, NEVER, NODE_FIELDS, ONE, PRIO_ONE,
    PRIO_UNIT, WHEEL_FIELDS, WHEEL_OOM, cpu_at, entropy_integral, mem_at, ratio_float,
)
from puffer_cluster.kernels.rng import STREAM_GRID, counter_hash

# Actions: Discrete(8).
NOOP, UP, DOWN, LEFT, RIGHT, CLEAN, SCALE_HALF, SCALE_FULL = range(8)
NUM_ACTIONS = 8
ACTION_NAMES = ("NOOP", "UP", "DOWN", "LEFT", "RIGHT", "CLEAN", "SCALE_HALF", "SCALE_FULL")
# (dy, dx) of each move action, indexed by action id; non-moves are (0, 0).
MOVE_DY = np.array([0, -1, 1, 0, 0, 0, 0, 0], dtype=np.int64)
MOVE_DX = np.array([0, 0, 0, -1, 1, 0, 0, 0], dtype=np.int64)

# Observation: the 3x3 window (row-major, 3 channels per node), then y, x, budget.
CPU, MEM, PRIO = 0, 1, 2
NUM_CHANNELS = 3
WINDOW = 3
# Named offsets of the values after the window: position (scaled to [0, 1]) and budget.
OBS_Y = WINDOW * WINDOW * NUM_CHANNELS
OBS_X = OBS_Y + 1
OBS_BUDGET = OBS_Y + 2
OBS_SIZE = OBS_BUDGET + 1
OUTSIDE = -1.0  # what a neighbour outside the grid reads on every channel

# Episode statistics, in the order of the rows of `WorldState.last_stats` and `finished_sum`.
EPISODE_STATS = (
    "episode_return", "episode_length", "oom_count", "crit_count", "overload_count",
    "oom_rate", "crit_rate", "avg_load", "budget_spent", "collapsed", "invalid_actions",
)
NUM_STATS = len(EPISODE_STATS)
(STAT_RETURN, STAT_LENGTH, STAT_OOM, STAT_CRIT, STAT_OVERLOAD, STAT_OOM_RATE, STAT_CRIT_RATE,
 STAT_AVG_LOAD, STAT_BUDGET_SPENT, STAT_COLLAPSED, STAT_INVALID) = range(NUM_STATS)


class WorldParams(NamedTuple):
    """Every constant of the world: the `[env]` section of the config, then the fixed-point
    values derived from it once (kernels.fixed's units)."""
    height: int
    width: int
    agents_per_grid: int
    max_steps: int
    base_load_min: float
    base_load_max: float
    mem_init_min: float
    mem_init_max: float
    leak_min: float
    leak_max: float
    red_queen_horizon: float
    spike_rate: float
    spike_min: float
    spike_max: float
    spike_fade: float
    overload_mem_jump: float
    restart_mem: float
    crit_fraction: float
    crit_threshold: float
    cap_max: float
    clean_fraction: float
    clean_useful_mem: float
    clean_cost: float
    scale_cost: float
    budget_init: float
    budget_regen: float
    health_bonus: float
    oom_penalty: float
    crit_weight: float
    overload_penalty: float
    clean_waste_penalty: float
    invalid_penalty: float
    collapse_penalty: float
    crit_limit: int
    oom_collapse_count: int  # total OOMs that collapse the cluster (config: oom_limit, a node fraction)
    # Derived, in fixed point.
    entropy_integral: np.ndarray  # int64 (max_steps + 1,): G[t] = sum_{s<=t} E(s), G_ONE units
    entropy_inverse: np.ndarray   # int64: [k] = the first t with G[t] >= k << entropy_inverse_bits
    entropy_inverse_bits: int     # G_BITS, or more where G outgrows a table of a few max_steps
    fade_fx: int         # spike load lost per step at cap 1 (ratio units)
    fade_inverse: float  # 1 / fade_fx (0 when there is no fade): the event kernel's phase ends
    fade_steps_min: int  # the fewest steps a spike landing on a flat node takes to fade
    fade_steps_max: int  # the most
    jump_fx: int         # overload memory jump (ratio units)
    restart_fx: int      # memory pressure after an OOM restart
    useful_fx: int       # clean_useful_mem
    keep_fx: int         # 1 - clean_fraction, FRACTION_ONE units
    cap_max_fx: int      # cap_max, CAP_ONE units
    crit_fx: int         # crit_threshold, PRIO_ONE units


CONFIG_FIELDS = WorldParams._fields[:WorldParams._fields.index("oom_collapse_count")]


class WorldState(NamedTuple):
    """All mutable state of `num_grids` grids (first axis the grid; any slice of grids is a batch).

    `nodes` holds one int64 record per node (kernels.fixed: MEM, MEM_T, LEAK, CPU_BASE, SPIKE,
    SPIKE_T, FADE, CAP, PRIO, then the event kernel's queue fields); ratios are stored, so the
    observation reads them without a division.
    """
    nodes: np.ndarray        # int64 (grids, height * width, NODE_FIELDS or EVENT_NODE_FIELDS)
    # Event kernel only (no rows for the dense kernels): exact integer sums over the grid's nodes
    # (kernels.event: MEM_SUM, MEM_RATE, CPU_SUM, CPU_SLOPE) and its timing wheel, one row per
    # step of the episode (kernels.fixed: WHEEL_CPU, WHEEL_SLOPE, WHEEL_OOM).
    sums: np.ndarray         # int64 (grids, 4)
    wheel: np.ndarray        # int64 (grids, max_steps + 1, WHEEL_FIELDS)
    # Per agent: (grids, agents_per_grid).
    agent_y: np.ndarray      # int64
    agent_x: np.ndarray      # int64
    # Per grid.
    budget: np.ndarray       # float64, shared by the grid's agents
    step: np.ndarray         # int64, steps taken in this episode
    grid_seed: np.ndarray    # uint64, fixed per grid; episode seeds derive from it
    episode: np.ndarray      # uint64, episodes started on this grid (0 for the first)
    episode_seed: np.ndarray # uint64, the seed of the running episode
    ep_return: np.ndarray    # float64
    ep_oom: np.ndarray       # int64
    ep_crit: np.ndarray      # int64
    ep_overload: np.ndarray  # int64
    ep_invalid: np.ndarray   # int64
    ep_load_sum: np.ndarray  # float64, sum over steps of the mean node load
    ep_spent: np.ndarray     # float64, budget spent
    # Finished episodes: the last one per grid, and running sums for aggregated logging.
    last_stats: np.ndarray   # float64 (grids, NUM_STATS)
    finished_sum: np.ndarray # float64 (grids, NUM_STATS)
    finished_count: np.ndarray  # int64 (grids,)


# Constraints that keep every observation finite and within [-1, 1] (checked by make_params).
NON_NEGATIVE = (
    "base_load_min", "mem_init_min", "leak_min", "spike_rate", "spike_min", "spike_fade",
    "overload_mem_jump", "clean_cost", "scale_cost", "budget_regen", "health_bonus",
    "oom_penalty", "crit_weight", "overload_penalty", "clean_waste_penalty", "invalid_penalty",
    "collapse_penalty",
)
UNIT_INTERVAL = ("crit_fraction", "crit_threshold", "clean_fraction",
                 "clean_useful_mem", "budget_init", "restart_mem", "mem_init_max")
ORDERED_PAIRS = (("base_load_min", "base_load_max"), ("mem_init_min", "mem_init_max"),
                 ("leak_min", "leak_max"), ("spike_min", "spike_max"))
# Bounds that keep every fixed-point product inside int64 (docs/WORLD_V2.md, "Overflow").
MAX_CAP = 64.0
MAX_LOAD = 16.0  # base_load_max, spike_max, spike_fade, overload_mem_jump
MAX_STEPS = 1 << 20
MAX_LEAK_GROWTH = 2.0 ** 20  # leak_max * G(max_steps): the most a node can leak in an episode


def entropy_table(max_steps: int, horizon: float) -> np.ndarray:
    """G[t] = sum over s = 1..t of E(s), E(s) = 1 + s / horizon, rounded once to G_ONE units."""
    t = np.arange(max_steps + 1, dtype=np.float64)
    return np.floor((t + t * (t + 1.0) / (2.0 * horizon)) * G_ONE + 0.5).astype(np.int64)


def entropy_inverse_bits(table: np.ndarray) -> int:
    """The bucket width (in bits of G units) of the inverse of G: one G_ONE, where G rises by at
    least one bucket a step and the event kernel's OOM step is the bucket's first step or the
    next; wider where that table would exceed 4 entries a step (a short horizon makes G grow
    quadratically), the kernel then searching on from the bucket's first step."""
    bits = G_BITS
    while table[-1] >> bits > 4 * table.shape[0]:
        bits += 1
    return bits


def make_params(env_config: dict) -> WorldParams:
    """WorldParams from the `[env]` config section (extra keys such as `num_envs` are ignored).

    Raises ValueError naming the first constant outside its valid range.
    """
    values = {}
    for name in CONFIG_FIELDS:
        kind = WorldParams.__annotations__[name]
        values[name] = int(env_config[name]) if kind is int else float(env_config[name])
    problems = [f"{name} = {value} is not finite" for name, value in values.items()
                if not np.isfinite(value)]
    problems += [f"{name} = {values[name]} must be >= 0" for name in NON_NEGATIVE if values[name] < 0]
    problems += [f"{name} = {values[name]} must be within [0, 1]" for name in UNIT_INTERVAL
                 if not 0.0 <= values[name] <= 1.0]
    problems += [f"{low} = {values[low]} must not exceed {high} = {values[high]}"
                 for low, high in ORDERED_PAIRS if values[low] > values[high]]
    height, width = values["height"], values["width"]
    if not (4 <= height <= 256 and 4 <= width <= 256):
        problems.append(f"grid size {height}x{width} is outside 4x4 .. 256x256")
    for name in ("agents_per_grid", "max_steps", "crit_limit"):
        if values[name] < 1:
            problems.append(f"{name} = {values[name]} must be at least 1")
    if values["max_steps"] > MAX_STEPS:
        problems.append(f"max_steps = {values['max_steps']} must be at most {MAX_STEPS}")
    if values["red_queen_horizon"] <= 0:
        problems.append("red_queen_horizon must be > 0")
    if not 1 <= values["cap_max"] <= MAX_CAP:
        problems.append(f"cap_max must be within [1, {MAX_CAP:g}] (capacity starts at 1)")
    for name in ("base_load_max", "spike_max", "spike_fade", "overload_mem_jump"):
        if values[name] > MAX_LOAD:
            problems.append(f"{name} = {values[name]} must be at most {MAX_LOAD:g}")
    oom_fraction = float(env_config["oom_limit"])
    if not 0.0 < oom_fraction <= 1.0:
        problems.append(f"oom_limit = {oom_fraction} must be a fraction of the nodes in (0, 1]")
    if not problems:
        table = entropy_table(values["max_steps"], values["red_queen_horizon"])
        if values["leak_max"] * table[-1] / G_ONE > MAX_LEAK_GROWTH:
            problems.append(f"leak_max = {values['leak_max']} leaks more than "
                            f"{MAX_LEAK_GROWTH:g} in max_steps (int64 overflow)")
    if problems:
        raise ValueError("invalid world parameters: " + "; ".join(problems))
    fade_fx = int(values["spike_fade"] * ONE)
    inverse_bits = entropy_inverse_bits(table)
    return WorldParams(
        **values, oom_collapse_count=max(1, int(round(oom_fraction * height * width))),
        entropy_integral=table,
        entropy_inverse=np.searchsorted(table, np.arange((table[-1] >> inverse_bits) + 2)
                                        << inverse_bits),
        entropy_inverse_bits=inverse_bits,
        fade_fx=fade_fx,
        fade_inverse=1.0 / fade_fx if fade_fx > 0 else 0.0,
        fade_steps_min=-(-int(values["spike_min"] * ONE) // fade_fx) if fade_fx > 0 else 0,
        fade_steps_max=-(-int(values["spike_max"] * ONE) // fade_fx) if fade_fx > 0 else 0,
        jump_fx=int(values["overload_mem_jump"] * ONE),
        restart_fx=int(values["restart_mem"] * ONE),
        useful_fx=int(values["clean_useful_mem"] * ONE),
        keep_fx=FRACTION_ONE - int(round(values["clean_fraction"] * FRACTION_ONE)),
        cap_max_fx=int(values["cap_max"] * CAP_ONE),
        crit_fx=int(values["crit_threshold"] * PRIO_ONE),
    )


HUGE_PAGE = 1 << 21


def cache_aligned_zeros(shape: tuple, dtype=np.int64) -> np.ndarray:
    """Zeros whose first element starts a 64-byte cache line, so that a node record of a
    multiple of 64 bytes never straddles one more line than it fills. An array of 2 MiB or more
    gets a mapping of its own, page-aligned, with a request for 2 MiB pages where Linux has them
    (madvise): a spike reads one record at random among hundreds of megabytes, and with 4 KiB
    pages each read also walks the page tables (the 2 MiB pages take 10-33% off the event
    kernel's step here: README, "Throughput")."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size >= HUGE_PAGE and hasattr(mmap, "MAP_ANONYMOUS"):
        pages = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            pages.madvise(mmap.MADV_HUGEPAGE)
        return np.frombuffer(pages, dtype=dtype).reshape(shape)
    buffer = np.zeros(size + 64, dtype=np.uint8)
    start = -buffer.ctypes.data % 64
    return buffer[start:start + size].view(dtype).reshape(shape)


def allocate_state(num_grids: int, params: WorldParams, event: bool = False) -> WorldState:
    """Zeroed state for `num_grids` grids, laid out for the event kernel (`event=True`) or the
    dense ones; call a kernel's `reset_grids` before stepping."""
    nodes = params.height * params.width
    agents = params.agents_per_grid
    per_grid = num_grids if event else 0
    wheel = cache_aligned_zeros((per_grid, params.max_steps + 1 if event else 0, WHEEL_FIELDS))
    wheel[..., WHEEL_OOM] = NEVER
    return WorldState(
        nodes=cache_aligned_zeros((num_grids, nodes, EVENT_NODE_FIELDS if event else NODE_FIELDS)),
        sums=np.zeros((per_grid, 4), dtype=np.int64),
        wheel=wheel,
        agent_y=np.zeros((num_grids, agents), dtype=np.int64),
        agent_x=np.zeros((num_grids, agents), dtype=np.int64),
        budget=np.zeros(num_grids), step=np.zeros(num_grids, dtype=np.int64),
        grid_seed=np.zeros(num_grids, dtype=np.uint64),
        episode=np.zeros(num_grids, dtype=np.uint64),
        episode_seed=np.zeros(num_grids, dtype=np.uint64),
        ep_return=np.zeros(num_grids), ep_oom=np.zeros(num_grids, dtype=np.int64),
        ep_crit=np.zeros(num_grids, dtype=np.int64),
        ep_overload=np.zeros(num_grids, dtype=np.int64),
        ep_invalid=np.zeros(num_grids, dtype=np.int64),
        ep_load_sum=np.zeros(num_grids), ep_spent=np.zeros(num_grids),
        last_stats=np.zeros((num_grids, NUM_STATS)),
        finished_sum=np.zeros((num_grids, NUM_STATS)),
        finished_count=np.zeros(num_grids, dtype=np.int64),
    )


def state_bytes_per_grid(params: WorldParams, event: bool = False) -> int:
    """Bytes of state one grid occupies (the event kernel's queue included)."""
    return sum(a.nbytes for a in allocate_state(1, params, event))


def node_ratios(state: WorldState, params: WorldParams, grid: int):
    """The cpu, mem and prio channels of every node of `grid` now, as float64 (H*W,) arrays."""
    record = state.nodes[grid].T  # fields first
    t = state.step[grid]
    cpu = cpu_at(record[fixed.CPU_BASE], record[fixed.SPIKE], record[fixed.FADE],
                 t - record[fixed.SPIKE_T])
    table = params.entropy_integral
    mem = np.minimum(ONE, mem_at(record[fixed.MEM], record[fixed.LEAK], entropy_integral(table, t),
                                 entropy_integral(table, record[fixed.MEM_T])))
    return ratio_float(cpu), ratio_float(mem), record[fixed.PRIO] * PRIO_UNIT


def grid_seeds(seed: int, first_grid: int, num_grids: int) -> np.ndarray:
    """The fixed per-grid seeds of grids `first_grid ..` of an environment seeded with `seed`."""
    grids = np.arange(first_grid, first_grid + num_grids, dtype=np.uint64)
    seeds = np.full(num_grids, np.uint64(seed % 2**64), dtype=np.uint64)
    zero = np.zeros(num_grids, dtype=np.uint64)
    return counter_hash(seeds, grids, zero, np.full(num_grids, STREAM_GRID))
