"""Counter-based randomness: every random number is a pure function of
(seed, step, node, stream), so results never depend on thread count, batch split or backend.

The functions are plain uint64 arithmetic written once: NumPy evaluates them on uint64 arrays
(the reference) and Numba compiles the very same source (the fast kernel).
"""
import numpy as np
from numba import njit
from numba.extending import register_jitable

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_2 = np.uint64(0x94D049BB133111EB)
SHIFT_30 = np.uint64(30)
SHIFT_27 = np.uint64(27)
SHIFT_31 = np.uint64(31)
SHIFT_11 = np.uint64(11)
ONE = np.uint64(1)
UNIT = 2.0 ** -53  # 53 random bits -> a float64 in [0, 1), exactly representable

# Streams: one per kind of random draw, so no two draws share a counter.
STREAM_GRID = np.uint64(1)
STREAM_EPISODE = np.uint64(2)
STREAM_BASE_LOAD = np.uint64(3)
STREAM_MEM_INIT = np.uint64(4)
STREAM_LEAK = np.uint64(5)
STREAM_CRITICAL = np.uint64(6)
STREAM_PRIO = np.uint64(7)
STREAM_AGENT_Y = np.uint64(8)
STREAM_AGENT_X = np.uint64(9)
STREAM_SPIKE_COUNT = np.uint64(10)
STREAM_SPIKE_NODE = np.uint64(11)
STREAM_SPIKE_SIZE = np.uint64(12)


@register_jitable
def fold(z, counter):
    """One counter folded into the hash state, then SplitMix64's finaliser (a bijection with
    full avalanche) scrambles it."""
    z = z + (counter + ONE) * GOLDEN
    z = (z ^ (z >> SHIFT_30)) * MIX_1
    z = (z ^ (z >> SHIFT_27)) * MIX_2
    return z ^ (z >> SHIFT_31)


@register_jitable
def stream_state(seed, step, stream):
    """The hash state after folding in the stream and the step: what every draw of one stream
    at one step shares, so a loop over nodes (a step's spikes, a reset's nodes) folds it once."""
    return fold(fold(seed, stream), step)


def counter_hash(seed, step, node, stream):
    """uint64 hash of four uint64 counters (NumPy scalars or same-shape arrays): the stream,
    the step and the node folded in turn into the seed."""
    return fold(stream_state(seed, step, stream), node)


def unit_float(hashed):
    """The top 53 bits of a uint64 hash as a float64 in [0, 1)."""
    return (hashed >> SHIFT_11) * UNIT


counter_hash_nb = njit(inline="always")(counter_hash)
unit_float_nb = njit(inline="always")(unit_float)
