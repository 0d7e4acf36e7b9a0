"""Pictures of one grid: text for the terminal, a titled heat-map frame for videos."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from puffer_cluster.kernels.fixed import PRIO_UNIT
from puffer_cluster.kernels.world import ACTION_NAMES, node_ratios

MEM_LEVELS = "0123456789"
PANEL_TITLES = ("cpu load", "memory pressure", "priority")
PANEL_SIDE = 200     # about a panel's longer side in pixels: three panels make >= 600
PANEL_GAP = 12       # pixels between panels
HEADER = 46          # two lines of status above the panels
TITLE = 20           # a panel's title
LEGEND = 58          # colour bar and markers below the panels
MARGIN = 8
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
GARDENER = (0, 255, 255)   # cyan: absent from the heat map's black-red-yellow-white
CRITICAL = (40, 120, 255)  # blue, likewise


def _ratios(state, params, grid: int):
    """The cpu, mem and prio channels of `grid` as (height, width) maps, from its node records."""
    shape = (params.height, params.width)
    return tuple(channel.reshape(shape) for channel in node_ratios(state, params, grid))


def _critical(prio, params):
    """Where prio reaches crit_threshold, compared in the kernels' fixed point."""
    return prio >= params.crit_fx * PRIO_UNIT


def _status(state, params, grid: int) -> tuple[str, str]:
    """(progress, incidents) of the running episode."""
    return (f"step {state.step[grid]}/{params.max_steps}  budget {state.budget[grid]:.2f}  "
            f"return {state.ep_return[grid]:+.2f}",
            f"OOM {state.ep_oom[grid]} (critical {state.ep_crit[grid]})  "
            f"overloads {state.ep_overload[grid]}")


def render_ansi(state, params, grid: int = 0) -> str:
    """The grid as text: each node's memory pressure in tenths, `!` on critical nodes,
    `<>` around the gardener."""
    _, mem, prio = _ratios(state, params, grid)
    agents = set(zip(state.agent_y[grid].tolist(), state.agent_x[grid].tolist()))
    lines = ["  ".join(_status(state, params, grid))]
    for y in range(params.height):
        cells = []
        for x in range(params.width):
            level = MEM_LEVELS[min(9, int(mem[y, x] * 10))]
            mark = "!" if _critical(prio[y, x], params) else " "
            cells.append(f"<{level}>" if (y, x) in agents else f" {level}{mark}")
        lines.append("".join(cells))
    lines.append("memory pressure in tenths; ! critical node; <> gardener")
    return "\n".join(lines) + "\n"


def heat(values: np.ndarray) -> np.ndarray:
    """Black -> red -> yellow -> white for values in [0, 1]."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    rgb = np.clip(np.concatenate([3 * v, 3 * v - 1, 3 * v - 2], axis=-1), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)


class FrameLayout(NamedTuple):
    """Where things are in a frame of a `height x width` grid."""
    cell: int          # pixels per node
    top: int           # first pixel row of the panels
    lefts: tuple       # first pixel column of each panel (cpu, mem, prio)
    size: tuple        # (frame height, frame width)

    def node_origin(self, panel: int, y: int, x: int) -> tuple[int, int]:
        return self.top + y * self.cell, self.lefts[panel] + x * self.cell


def frame_layout(height: int, width: int) -> FrameLayout:
    cell = max(2, -(-PANEL_SIDE // max(height, width)))
    panel_w = width * cell
    lefts = tuple(MARGIN + i * (panel_w + PANEL_GAP) for i in range(3))
    top = HEADER + TITLE
    return FrameLayout(cell, top, lefts,
                       (top + height * cell + LEGEND, 2 * MARGIN + 3 * panel_w + 2 * PANEL_GAP))


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # a Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _outline(image: np.ndarray, y0: int, x0: int, y1: int, x1: int, colour, thickness: int):
    """A rectangle's border of `thickness` pixels inside [y0, y1) x [x0, x1), clipped."""
    y0, x0 = max(y0, 0), max(x0, 0)
    y1, x1 = min(y1, image.shape[0]), min(x1, image.shape[1])
    image[y0:y0 + thickness, x0:x1] = colour
    image[y1 - thickness:y1, x0:x1] = colour
    image[y0:y1, x0:x0 + thickness] = colour
    image[y0:y1, x1 - thickness:x1] = colour


def _panel(values: np.ndarray, critical: np.ndarray, agents, cell: int) -> np.ndarray:
    """One channel's heat map: critical nodes get a blue corner, the gardener a cyan box and a
    thinner one around its 3x3 view."""
    image = np.kron(heat(values), np.ones((cell, cell, 1), dtype=np.uint8))
    mark = max(1, cell // 3)
    for y, x in zip(*np.nonzero(critical)):
        image[y * cell:y * cell + mark, x * cell:x * cell + mark] = CRITICAL
    thick = max(1, cell // 4)
    for y, x in agents:
        _outline(image, (y - 1) * cell, (x - 1) * cell, (y + 2) * cell, (x + 2) * cell,
                 GARDENER, (thick + 1) // 2)
        _outline(image, y * cell, x * cell, (y + 1) * cell, (x + 1) * cell, GARDENER, thick)
    return image


def render_rgb(state, params, grid: int = 0, last_action: int | None = None) -> np.ndarray:
    """A frame a person can read: the status (step, budget, OOMs, return, last action), then
    the cpu, memory and priority heat maps side by side, titled, with critical nodes marked and
    the gardener boxed, then a colour legend. At least 600 pixels wide."""
    from PIL import Image, ImageDraw
    layout = frame_layout(params.height, params.width)
    cell, top = layout.cell, layout.top
    channels = _ratios(state, params, grid)
    critical = _critical(channels[2], params)
    agents = list(zip(state.agent_y[grid].tolist(), state.agent_x[grid].tolist()))
    frame = np.empty((*layout.size, 3), dtype=np.uint8)
    frame[:] = BACKGROUND
    panel_h = params.height * cell
    for left, channel in zip(layout.lefts, channels):
        frame[top:top + panel_h, left:left + params.width * cell] = _panel(channel, critical,
                                                                           agents, cell)
    bar_top, bar_left = top + panel_h + 8, MARGIN
    bar_w = min(240, layout.size[1] // 3)
    frame[bar_top:bar_top + 12, bar_left:bar_left + bar_w] = heat(np.linspace(0, 1, bar_w))[None]

    picture = Image.fromarray(frame)
    draw = ImageDraw.Draw(picture)
    font, small = _font(15), _font(13)
    action = "-" if last_action is None else ACTION_NAMES[last_action]
    progress, incidents = _status(state, params, grid)
    draw.text((MARGIN, 6), f"{progress}  last action {action}".replace("  ", "    "), TEXT,
              font=font)
    draw.text((MARGIN, 26), incidents.replace("  ", "    "), TEXT, font=small)
    for left, title in zip(layout.lefts, PANEL_TITLES):
        draw.text((left, HEADER + 2), title, TEXT, font=font)
    draw.text((bar_left, bar_top + 14), "0", TEXT, font=small)
    draw.text((bar_left + bar_w - 8, bar_top + 14), "1", TEXT, font=small)
    draw.text((bar_left + 22, bar_top + 14), "share of capacity / priority", TEXT, font=small)
    key = bar_left + bar_w + 24
    draw.rectangle((key, bar_top, key + 11, bar_top + 11), outline=GARDENER, width=2)
    draw.text((key + 18, bar_top - 2), "gardener (thin: its 3x3 view)", TEXT, font=small)
    draw.rectangle((key, bar_top + 20, key + 7, bar_top + 27), fill=CRITICAL)
    draw.text((key + 18, bar_top + 17), f"critical node (prio >= {params.crit_threshold:g})",
              TEXT, font=small)
    return np.asarray(picture)
