"""The batched drivers of the gardener kernels (`kernels.dense`, `kernels.event`), written once
and compiled for each by `grid_drivers`: `reset_grids` and `step` run the per-grid loops
(`_reset_range` below, the kernel's `_step_range`) in threads over chunks of CHUNK grids;
`reset_grids_serial` and `step_serial` once over every grid (the Gymnasium env's one grid: no
thread start-up). `_start_grid`, `_step_range` and `CHUNK` are the kernel's (`grid_drivers`).

Numba's on-disk cache keys a build by its bytecode and closure, never its globals, and files it
under its source file and name. A closure over the kernel's functions would never be found again
(a dispatcher pickles with a per-process id), so `grid_drivers` gives each driver the kernel's
functions as globals and the kernel's module and file as its own: the two kernels' builds keep
apart, the next process loads them, and an edit of the kernel module recompiles them.
Separate functions, not one compiled twice: a parallel and a serial build of one function would
load each other's code.
"""
from types import FunctionType

from numba import njit, prange

from puffer_cluster.kernels.rules import observe_grid


def _reset_range(state, params, first, last, observations):
    for g in range(first, last):
        _start_grid(state, params, g, ())
        observe_grid(state, params, g, observations)


def _reset_grids(state, params, observations):
    grids = state.step.shape[0]
    for chunk in prange((grids + CHUNK - 1) // CHUNK):
        _reset_range(state, params, chunk * CHUNK, min(grids, (chunk + 1) * CHUNK), observations)


def _step(state, params, actions, observations, rewards, terminals, truncations, auto_reset):
    grids = state.step.shape[0]
    for chunk in prange((grids + CHUNK - 1) // CHUNK):
        _step_range(state, params, chunk * CHUNK, min(grids, (chunk + 1) * CHUNK), actions,
                    observations, rewards, terminals, truncations, auto_reset)


def _reset_grids_one_thread(state, params, observations):
    _reset_range(state, params, 0, state.step.shape[0], observations)


def _step_one_thread(state, params, actions, observations, rewards, terminals, truncations,
                     auto_reset):
    _step_range(state, params, 0, state.step.shape[0], actions, observations, rewards, terminals,
                truncations, auto_reset)


def grid_drivers(start_grid, step_range, chunk: int):
    """(reset_grids, step, reset_grids_serial, step_serial) of the kernel module defining the
    Numba functions `start_grid(state, params, g, context)` (a new episode on grid g; no
    context) and `step_range(state, params, first, last, actions, ...)`, in threads over chunks
    of `chunk` grids."""
    kernel = start_grid.py_func
    namespace = {"__name__": kernel.__module__, "prange": prange, "CHUNK": chunk,
                 "_start_grid": start_grid, "observe_grid": observe_grid,
                 "_step_range": step_range}

    def compiled(driver, **options):
        code = driver.__code__.replace(co_filename=kernel.__code__.co_filename)
        return njit(nogil=True, cache=True, **options)(FunctionType(code, namespace))

    # No reference counting in the per-grid loop, as in the kernel's `_step_range`.
    namespace["_reset_range"] = compiled(_reset_range, _nrt=False)
    return (compiled(_reset_grids, parallel=True), compiled(_step, parallel=True),
            compiled(_reset_grids_one_thread), compiled(_step_one_thread))
