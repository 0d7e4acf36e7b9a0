"""Baseline policies as batched Numba functions over observations (no access to hidden state).

- `random_actions`: uniform over the 8 actions, counter-based so evaluation is reproducible.
- `heuristic_actions`: the documented hand-written gardener (see `heuristic_actions`).
Both write one action per agent into `actions`; the heuristic keeps a little memory per agent
(its sweep plan), reset whenever the agent's episode restarts.
"""
import numpy as np
from numba import njit, prange

from kernels.rng import counter_hash_nb, unit_float_nb
from kernels.world import CLEAN, DOWN, LEFT, NOOP, NUM_ACTIONS, RIGHT, SCALE_HALF, UP

STREAM_POLICY = np.uint64(100)
WINDOW_CENTER = 4
# Heuristic memory columns: the row it sweeps along, its horizontal and vertical directions.
SWEEP_ROW, SWEEP_DX, SWEEP_DY = range(3)
HEURISTIC_MEMORY = 3


@njit(parallel=True, nogil=True, cache=True)
def random_actions(seed, step, actions):
    """Uniform actions drawn from (seed, step, agent): the same for any batch split."""
    for agent in prange(actions.shape[0]):
        h = counter_hash_nb(np.uint64(seed), np.uint64(step), np.uint64(agent), STREAM_POLICY)
        actions[agent] = int(unit_float_nb(h) * NUM_ACTIONS)


@njit(nogil=True, cache=True)
def _sweep_move(y, x, height, width, memory):
    """Boustrophedon walk along rows 1, 4, 7, ... and height - 2 (so the 3x3 windows cover every
    row), down the grid then back up, forever."""
    if y != memory[SWEEP_ROW]:
        return DOWN if memory[SWEEP_ROW] > y else UP
    nx = x + memory[SWEEP_DX]
    if 0 <= nx < width:
        return RIGHT if memory[SWEEP_DX] > 0 else LEFT
    memory[SWEEP_DX] = -memory[SWEEP_DX]
    next_row = memory[SWEEP_ROW] + 3 * memory[SWEEP_DY]
    if next_row > height - 2 and memory[SWEEP_ROW] < height - 2:
        next_row = height - 2
    if next_row < 1 or next_row > height - 2:
        memory[SWEEP_DY] = -memory[SWEEP_DY]
        next_row = memory[SWEEP_ROW] + 3 * memory[SWEEP_DY]
        next_row = min(max(next_row, 1), height - 2)
    memory[SWEEP_ROW] = next_row
    return DOWN if next_row > y else UP


@njit(parallel=True, nogil=True, cache=True)
def heuristic_actions(observations, episode_start, memory, height, width, clean_cost, scale_cost,
                      crit_threshold, clean_trigger, crit_clean_trigger, scale_trigger, actions):
    """The hand-written gardener, from its 30-value observation alone:

    1. Some node in the 3x3 window is hot (memory >= clean_trigger, or >= crit_clean_trigger on a
       critical node): CLEAN if the budget pays, otherwise stay put and let the budget recover.
    2. The gardener stands on a critical node whose cpu or memory >= scale_trigger and the budget
       covers SCALE_HALF plus a CLEAN in reserve: SCALE_HALF.
    3. Otherwise sweep the grid row by row (rows 1, 4, 7, ...), so every node is seen in turn.
    `episode_start[i]` (bool) resets agent i's sweep plan to start from where it stands.
    """
    for agent in prange(observations.shape[0]):
        obs = observations[agent]
        y = int(round(obs[27] * (height - 1)))
        x = int(round(obs[28] * (width - 1)))
        budget = obs[29]
        plan = memory[agent]
        if episode_start[agent]:
            plan[SWEEP_ROW] = min(1 + 3 * (y // 3), height - 2)
            plan[SWEEP_DX] = 1 if x < width // 2 else -1
            plan[SWEEP_DY] = 1 if plan[SWEEP_ROW] < height // 2 else -1
        hot = False
        for k in range(9):
            mem, prio = obs[3 * k + 1], obs[3 * k + 2]
            if mem >= clean_trigger or (prio >= crit_threshold and mem >= crit_clean_trigger):
                hot = True
        center_cpu, center_mem, center_prio = obs[3 * WINDOW_CENTER], obs[3 * WINDOW_CENTER + 1], \
            obs[3 * WINDOW_CENTER + 2]
        if hot:
            actions[agent] = CLEAN if budget >= clean_cost else NOOP
        elif center_prio >= crit_threshold and max(center_cpu, center_mem) >= scale_trigger \
                and budget >= scale_cost / 2 + clean_cost:
            actions[agent] = SCALE_HALF
        else:
            actions[agent] = _sweep_move(y, x, height, width, plan)
