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
    """Timelines for the grid of `params` from paths (files or directories), Traces or Timelines."""
    if isinstance(traces, (str, Path, Trace, Timeline)):
        traces = [traces]
    timelines = []
    for item in traces:
        if isinstance(item, Timeline):
            if (item.height, item.width) != (params.height, params.width):
                raise ConfigError(f"timeline {item.name} was compiled for {item.height}x{item.width}, "
                                  f"the env is {params.height}x{params.width}")
            timelines.append(item)
            continue
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            timelines += compile_folder(item, lambda path, name: compile_timeline(
                path, height=params.height, width=params.width, max_steps=params.max_steps,
                settings=settings, name=name), (TraceError, ReplayError), "replayable trace file")
            continue
        timelines.append(compile_timeline(item, height=params.height, width=params.width,
                                          max_steps=params.max_steps, settings=settings))
    if not timelines:
        raise ConfigError("no trace to replay")
    return timelines
