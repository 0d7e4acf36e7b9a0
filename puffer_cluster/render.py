"""Pictures of one grid: text for the terminal, a heat-map image for videos."""
from __future__ import annotations

import numpy as np

MEM_LEVELS = "0123456789"
PANEL_GAP = 2  # pixels between the cpu, mem and prio panels


def _ratios(state, params, grid: int):
    shape = (params.height, params.width)
    cap = state.cap[grid].astype(np.float64)
    cpu = np.minimum(1.0, (state.cpu_base[grid] + state.spike[grid].astype(np.float64)) / cap)
    mem = np.minimum(1.0, state.mem[grid] / cap)
    return cpu.reshape(shape), mem.reshape(shape), state.prio[grid].reshape(shape)


def render_ansi(state, params, grid: int = 0) -> str:
    """The grid as text: each node's memory pressure in tenths, `!` on critical nodes,
    `<>` around the gardener."""
    _, mem, prio = _ratios(state, params, grid)
    agents = set(zip(state.agent_y[grid].tolist(), state.agent_x[grid].tolist()))
    lines = [f"step {state.step[grid]}/{params.max_steps}  budget {state.budget[grid]:.2f}  "
             f"OOM {state.ep_oom[grid]} (critical {state.ep_crit[grid]})  "
             f"overloads {state.ep_overload[grid]}  return {state.ep_return[grid]:+.2f}"]
    for y in range(params.height):
        cells = []
        for x in range(params.width):
            level = MEM_LEVELS[min(9, int(mem[y, x] * 10))]
            mark = "!" if prio[y, x] >= params.crit_threshold else " "
            cells.append(f"<{level}>" if (y, x) in agents else f" {level}{mark}")
        lines.append("".join(cells))
    lines.append("memory pressure in tenths; ! critical node; <> gardener")
    return "\n".join(lines) + "\n"


def _heat(values: np.ndarray) -> np.ndarray:
    """Black -> red -> yellow -> white for values in [0, 1]."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    rgb = np.clip(np.concatenate([3 * v, 3 * v - 1, 3 * v - 2], axis=-1), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)


def render_rgb(state, params, grid: int = 0) -> np.ndarray:
    """Three heat maps side by side (cpu, mem, prio), the gardener outlined in cyan."""
    cell = max(2, 128 // max(params.height, params.width))
    panels = []
    for channel in _ratios(state, params, grid):
        image = np.kron(_heat(channel), np.ones((cell, cell, 1), dtype=np.uint8))
        for y, x in zip(state.agent_y[grid].tolist(), state.agent_x[grid].tolist()):
            box = image[y * cell:(y + 1) * cell, x * cell:(x + 1) * cell]
            box[[0, -1], :] = (0, 255, 255)
            box[:, [0, -1]] = (0, 255, 255)
        panels.append(image)
    gap = np.full((panels[0].shape[0], PANEL_GAP, 3), 128, dtype=np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
