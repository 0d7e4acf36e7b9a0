"""Baseline policies as batched Numba functions over observations (no access to hidden state).

- `random_actions`: uniform over the 8 actions, counter-based so evaluation is reproducible.
- `heuristic_actions`: the documented hand-written gardener (see `heuristic_actions`). It is
  memoryless: its action is a function of the 30-value observation alone, so the same function
  serves the batched env, the Gymnasium env and a network learning to imitate it.
"""
import numpy as np
from numba import njit, prange

from puffer_cluster.kernels.rng import counter_hash_nb, unit_float_nb
from puffer_cluster.kernels.world import (
    CLEAN, DOWN, LEFT, NOOP, NUM_ACTIONS, OBS_BUDGET, OBS_X, OBS_Y, RIGHT, SCALE_HALF, UP,
)

STREAM_POLICY = np.uint64(100)
WINDOW_CENTER = 4


@njit(parallel=True, nogil=True, cache=True)
def random_actions(seed, step, actions):
    """Uniform actions drawn from (seed, step, agent): the same for any batch split."""
    for agent in prange(actions.shape[0]):
        h = counter_hash_nb(np.uint64(seed), np.uint64(step), np.uint64(agent), STREAM_POLICY)
        actions[agent] = int(unit_float_nb(h) * NUM_ACTIONS)


@njit(inline="always")
def _sweep_row_count(height):
    """An even number of rows (so the tour closes) spaced at most 3 apart from 1 to height - 2."""
    count = (height + 2) // 3
    return max(2, count + count % 2)


@njit(inline="always")
def _sweep_row(k, count, height):
    """Row of sweep line k: evenly spread from 1 to height - 2."""
    return 1 + (2 * k * (height - 3) + count - 1) // (2 * (count - 1))


@njit(nogil=True, cache=True)
def sweep_action(y, x, height, width):
    """The move of a closed tour covering the grid with 3x3 windows, as a function of position.

    Sweep lines 0, 1, ... run right, left, right, ... between columns 1 and width - 1; the agent
    steps down at the end of each line; the last line (odd, going left) runs on into column 0,
    the return lane, which leads up to line 0.
    """
    count = _sweep_row_count(height)
    first = _sweep_row(0, count, height)
    if x == 0:
        return RIGHT if y == first else (DOWN if y < first else UP)
    for k in range(count):
        row = _sweep_row(k, count, height)
        if y == row:
            if k % 2 == 0:
                return RIGHT if x < width - 1 else DOWN
            if k == count - 1 or x > 1:
                return LEFT
            return DOWN
        if y < row:  # between line k-1 and line k (or above line 0)
            if k == 0:
                return DOWN
            previous = _sweep_row(k - 1, count, height)
            transit_column = width - 1 if (k - 1) % 2 == 0 else 1
            if x == transit_column or y - previous >= row - y:
                return DOWN
            return UP
    return UP  # below the last line


@njit(parallel=True, nogil=True, cache=True)
def heuristic_actions(observations, height, width, clean_cost, scale_cost, crit_threshold,
                      clean_trigger, crit_clean_trigger, scale_trigger, actions):
    """The hand-written gardener, from its 30-value observation alone:

    1. Some node in the 3x3 window is hot (memory >= clean_trigger, or >= crit_clean_trigger on a
       critical node): CLEAN if the budget pays, otherwise stay put and let the budget recover.
    2. The gardener stands on a critical node whose cpu or memory >= scale_trigger and the budget
       covers SCALE_HALF plus a CLEAN in reserve: SCALE_HALF.
    3. Otherwise follow `sweep_action`, a tour that brings every node into view in turn.
    """
    for agent in prange(observations.shape[0]):
        obs = observations[agent]
        y = int(round(obs[OBS_Y] * (height - 1)))
        x = int(round(obs[OBS_X] * (width - 1)))
        budget = obs[OBS_BUDGET]
        hot = False
        for k in range(9):
            mem, prio = obs[3 * k + 1], obs[3 * k + 2]
            if mem >= clean_trigger or (prio >= crit_threshold and mem >= crit_clean_trigger):
                hot = True
        center = 3 * WINDOW_CENTER
        if hot:
            actions[agent] = CLEAN if budget >= clean_cost else NOOP
        elif obs[center + 2] >= crit_threshold and max(obs[center], obs[center + 1]) >= scale_trigger \
                and budget >= scale_cost / 2 + clean_cost:
            actions[agent] = SCALE_HALF
        else:
            actions[agent] = sweep_action(y, x, height, width)
