"""Trace discovery: the trace files under a folder, and the timelines of a list of traces."""
from __future__ import annotations

import warnings
from pathlib import Path

from puffer_cluster.config import ConfigError
from puffer_cluster.replay.settings import ReplayError, ReplaySettings
from puffer_cluster.replay.timeline import Timeline, compile_timeline
from puffer_cluster.traces import Trace, TraceError

TRACE_SUFFIXES = (".msgpack", ".sktrace", ".json")


def find_trace_files(root: str | Path) -> list[Path]:
    """Trace candidates under `root` (recursively, sorted): .msgpack, .sktrace and .json files;
    `root` itself when it is a file."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(path for path in root.rglob("*")
                  if path.is_file() and path.suffix.lower() in TRACE_SUFFIXES)


def compile_folder(root: str | Path, compile_one, refused: tuple, what: str) -> list:
    """`compile_one(path, name)` of every trace file under the folder `root` (name: the path
    relative to it). The files it refuses with one of the `refused` errors are skipped with a
    warning, as `puffer-cluster validate` does; none left is a ConfigError."""
    compiled = []
    for path in find_trace_files(root):
        try:
            compiled.append(compile_one(path, str(path.relative_to(root))))
        except refused as error:
            warnings.warn(f"skipped {path}: {error}", stacklevel=3)
    if not compiled:
        raise ConfigError(f"no {what} (.msgpack, .sktrace, .json) under {root}")
    return compiled


def load_timelines(traces, params, settings: ReplaySettings) -> list[Timeline]:
    """Timelines from paths (files or directories), Traces or Timelines, all on one grid: the
    `[env]` grid of `params` with fixed nodes; with nodes sized to the traces, the largest grid
    one of them asks for (at most the `[env]` grid), the others sized again on it. Timelines
    given compiled keep their grid, and the others join it."""
    if isinstance(traces, (str, Path, Trace, Timeline)):
        traces = [traces]

    def compile_on(source, name=None, grid=(params.height, params.width), fit_grid=True):
        return compile_timeline(source, height=grid[0], width=grid[1], max_steps=params.max_steps,
                                settings=settings, name=name, fit_grid=fit_grid)

    entries = []  # (source, name, timeline); source None for a given Timeline
    for item in traces:
        if isinstance(item, Timeline):
            entries.append((None, item.name, item))
        elif isinstance(item, (str, Path)) and Path(item).is_dir():
            entries += compile_folder(item, lambda path, name: (path, name, compile_on(path, name)),
                                      (TraceError, ReplayError), "replayable trace file")
        else:
            entries.append((item, None, compile_on(item)))
    if not entries:
        raise ConfigError("no trace to replay")
    grids = {(t.height, t.width) for source, _, t in entries if source is None} \
        or {(t.height, t.width) for _, _, t in entries}
    grid = (max(h for h, _ in grids), max(w for _, w in grids))
    return [t if source is None or (t.height, t.width) == grid
            else compile_on(source, name, grid, fit_grid=False) for source, name, t in entries]
