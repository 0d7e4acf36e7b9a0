"""The gardener world's vocabulary: actions, channels, parameters, state layout and statistics.

Shared by the NumPy reference (`kernels.reference`) and the Numba kernel (`kernels.fast`).
State is struct-of-arrays: one array per quantity, first axis the grid, so that thousands of
grids step in one call and any slice of grids is itself a valid batch.
"""
from typing import NamedTuple

import numpy as np

from kernels.rng import STREAM_GRID, counter_hash

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
    """Every constant of the world; built from the `[env]` section of the config."""
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
    spike_decay: float
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


class WorldState(NamedTuple):
    """All mutable state of `num_grids` grids. Node arrays are (grids, height * width), row-major."""
    # Per node. Loads are absolute (in units of one base capacity); ratios divide by `cap`.
    cpu_base: np.ndarray     # float32, steady CPU load
    spike: np.ndarray        # float32, CPU load of decaying spikes
    mem: np.ndarray          # float32, memory load, rises by the leak every step
    leak: np.ndarray         # float32, leak rate (per step, at E(t) = 1)
    prio: np.ndarray         # float32, importance in [0, 1]
    cap: np.ndarray          # float32, capacity multiplier >= 1
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
    "base_load_min", "mem_init_min", "leak_min", "spike_rate", "spike_min", "overload_mem_jump",
    "clean_cost", "scale_cost", "budget_regen", "health_bonus", "oom_penalty", "crit_weight",
    "overload_penalty", "clean_waste_penalty", "invalid_penalty", "collapse_penalty",
)
UNIT_INTERVAL = ("spike_decay", "crit_fraction", "crit_threshold", "clean_fraction",
                 "clean_useful_mem", "budget_init", "restart_mem", "mem_init_max")
ORDERED_PAIRS = (("base_load_min", "base_load_max"), ("mem_init_min", "mem_init_max"),
                 ("leak_min", "leak_max"), ("spike_min", "spike_max"))


def make_params(env_config: dict) -> WorldParams:
    """WorldParams from the `[env]` config section (extra keys such as `num_envs` are ignored).

    Raises ValueError naming the first constant outside its valid range.
    """
    values = {}
    for name, kind in WorldParams.__annotations__.items():
        if name == "oom_collapse_count":
            continue
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
    if values["red_queen_horizon"] <= 0:
        problems.append("red_queen_horizon must be > 0")
    if values["cap_max"] < 1:
        problems.append("cap_max must be >= 1 (capacity starts at 1)")
    oom_fraction = float(env_config["oom_limit"])
    if not 0.0 < oom_fraction <= 1.0:
        problems.append(f"oom_limit = {oom_fraction} must be a fraction of the nodes in (0, 1]")
    if problems:
        raise ValueError("invalid world parameters: " + "; ".join(problems))
    oom_collapse_count = max(1, int(round(oom_fraction * height * width)))
    return WorldParams(**values, oom_collapse_count=oom_collapse_count)


def allocate_state(num_grids: int, params: WorldParams) -> WorldState:
    """Zeroed state for `num_grids` grids; call a backend's `reset_grids` before stepping."""
    nodes = params.height * params.width
    agents = params.agents_per_grid

    def node_array():
        return np.zeros((num_grids, nodes), dtype=np.float32)

    return WorldState(
        cpu_base=node_array(), spike=node_array(), mem=node_array(), leak=node_array(),
        prio=node_array(), cap=node_array(),
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


def state_bytes_per_grid(params: WorldParams) -> int:
    """Bytes of state one grid occupies."""
    return sum(a.nbytes for a in allocate_state(1, params))


def grid_seeds(seed: int, first_grid: int, num_grids: int) -> np.ndarray:
    """The fixed per-grid seeds of grids `first_grid ..` of an environment seeded with `seed`."""
    grids = np.arange(first_grid, first_grid + num_grids, dtype=np.uint64)
    seeds = np.full(num_grids, np.uint64(seed % 2**64), dtype=np.uint64)
    zero = np.zeros(num_grids, dtype=np.uint64)
    return counter_hash(seeds, grids, zero, np.full(num_grids, STREAM_GRID))
