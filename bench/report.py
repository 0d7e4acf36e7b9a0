"""The throughput report's pieces: sections of rows, their columns, the ratio of every row to the
Numba kernel row it names, and the markdown they print as."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

NUMBA = "numba"  # the backend name of the kernel rows every other row is compared with


@dataclass
class Section:
    """One table of the report: `columns` are (header, row -> cell text) pairs."""
    title: str
    columns: tuple
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def throughput_row(backend: str, grid: int, grids: int, threads: str, baseline: tuple | None,
                   result: dict | None, note: str = "", sizes: str | None = None) -> dict:
    """A row of a throughput table (logged to stderr as progress, its sizes as `sizes` says or as
    grids). `baseline` is the (grid, grids, threads) of the Numba kernel row it is compared with;
    `result` is None when the row was skipped, and `note` then says why."""
    measured = result or {"agent_steps_per_s": None, "window_speeds": [], "steps": None}
    row = {"backend": backend, "grid": grid, "grids": grids, "threads": threads, **measured,
           "baseline": baseline, "note": note}
    speed = note if result is None else f"{row['agent_steps_per_s']:,.0f} agent-steps/s"
    sizes = sizes or f"{grid:>3}x{grid:<3} {grids:>6} grids"
    print(f"  {backend:<27} {sizes}  {threads:>3} thr  {speed}", file=sys.stderr, flush=True)
    return row


def attach_ratios(sections: list[Section]) -> None:
    """Give every throughput row its ratio to the Numba kernel row named by its `baseline`."""
    kernel_speed = {(row["grid"], row["grids"], int(row["threads"])): row["agent_steps_per_s"]
                    for section in sections for row in section.rows
                    if row.get("backend") == NUMBA}
    for section in sections:
        for row in section.rows:
            if "baseline" not in row:
                continue
            baseline = row["baseline"]
            row["vs_numba"] = None
            row["compared_with"] = "—"
            if baseline is None:
                continue
            grid, grids, threads = baseline
            row["compared_with"] = f"numba {grid}x{grid}, {grids:,} grids, {threads} thr"
            speed = kernel_speed.get(tuple(baseline))
            if speed and row["agent_steps_per_s"]:
                row["vs_numba"] = row["agent_steps_per_s"] / speed


def optional_number(text_format: str, value) -> str:
    return "—" if value is None else format(value, text_format)


def ratio_text(ratio) -> str:
    return "—" if ratio is None else f"{ratio:.3g}x"


def spread_text(window_speeds: list[float]) -> str:
    """How much slower the worst timing window was than the best."""
    if not window_speeds:
        return "—"
    return f"{100 * (1 - min(window_speeds) / max(window_speeds)):.0f}%"


BACKEND = ("backend", lambda row: row["backend"])
THREADS = ("threads", lambda row: row["threads"])
SPEED = ("agent-steps/s", lambda row: optional_number(",.0f", row["agent_steps_per_s"]))
NOTE = ("note", lambda row: row["note"])
THROUGHPUT_COLUMNS = (
    BACKEND,
    ("grid", lambda row: f"{row['grid']}x{row['grid']}"),
    ("grids", lambda row: f"{row['grids']:,}"),
    THREADS, SPEED,
    ("vs numba", lambda row: ratio_text(row["vs_numba"])),
    ("compared with", lambda row: row["compared_with"]),
    ("timed steps", lambda row: optional_number(",", row["steps"])),
    ("spread", lambda row: spread_text(row["window_speeds"])),
    NOTE,
)
# The envs other than the gardener: `grid` is a cluster's node count, `grids` the envs stepped.
ENV_COLUMNS = (BACKEND, ("nodes", lambda row: f"{row['grid']}"),
               ("envs", lambda row: f"{row['grids']:,}"), THREADS, SPEED, NOTE)


def markdown(section: Section) -> str:
    headers = [header for header, _ in section.columns]
    cells = [[cell(row) for _, cell in section.columns] for row in section.rows]
    widths = [max(len(text) for text in column) for column in zip(headers, *cells)]

    def line(texts):
        return "| " + " | ".join(text.ljust(width) for text, width in zip(texts, widths)) + " |"

    lines = [f"### {section.title}", ""]
    if section.rows:
        lines += [line(headers), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
        lines += [line(texts) for texts in cells]
        lines.append("")
    lines += [f"- {note}" for note in section.notes]
    return "\n".join(lines)
