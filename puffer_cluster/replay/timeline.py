"""A trace compiled into a timeline: per segment of steps and per node, the CPU and memory the
placed pods request (in units of one node's capacity), and per node a fixed priority.

Time: the driver sleeps `int((next_ts - ts) / speed)` seconds between events; an env step is
`step_seconds` of that (simulated wall-clock) time, so `step_seconds * speed` seconds of trace
time. An episode has `max_steps` steps and covers the whole trace (`whole_trace`, the default):
a step lasts `max(step_seconds, span / max_steps)` seconds, the span being the time from the
first replayed event to the last, so the last event lands at or before the last step and a
short trace keeps `step_seconds` (the cluster then persists after its last event). Without
`whole_trace` a step lasts `step_seconds` and the events after `max_steps * step_seconds` are
not replayed. `duration > 0` truncates like `skctl run --duration`: events at or after
`start + duration` are dropped and the episode ends after `int(duration / speed)` seconds (at
most `max_steps` steps). Events not replayed are listed in the timeline's warnings. Leading
events that apply and delete nothing (sim-arena's placeholder at ts 0) are skipped when
`skip_leading_empty` is on, so the replay starts at the first real event.

A node's priority is the highest of the pods that ran on it during the episode's horizon, 0 for
a node that ran none. The scheduler does not see SCALE (placements are compiled once, at the
base capacity).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from puffer_cluster.kernels import replay as kernel
from puffer_cluster.config import ConfigError
from puffer_cluster.replay.settings import GIB, ReplaySettings, replay_settings
from puffer_cluster.replay.simulator import ReplayPod, Simulator
from puffer_cluster.replay.sizing import demand_of, fixed_cluster, sized_cluster, unlimited_node
from puffer_cluster.traces import Trace, load_trace


@dataclass
class Timeline:
    """A trace compiled for one grid size: node loads per segment of steps, node priorities.

    Step k of an episode shows the cluster at simulated wall time `k * step_seconds` (trace time
    `start_ts + k * step_seconds * speed`); segment s covers steps `segment_step[s]` up to the
    next segment's first step."""
    name: str
    height: int
    width: int
    node_cpu: float                # one node's capacity: cores
    node_memory_gib: float         # and GiB
    step_seconds: float
    speed: float
    horizon: int                   # steps in an episode on this trace
    start_ts: int                  # the trace time of step 0
    segment_step: np.ndarray       # int64 (S,), first step of each segment, segment_step[0] = 0
    cpu: np.ndarray                # float32 (S, nodes): requested CPU / node capacity
    mem: np.ndarray                # float32 (S, nodes): requested memory / node capacity
    pod_count: np.ndarray          # int32 (S, nodes): running pods
    pending: np.ndarray            # int32 (S,): pods waiting for a node
    prio: np.ndarray               # float32 (nodes,)
    pods: list[ReplayPod]
    namespaces: list[str]          # virtual namespaces, in creation order
    events_total: int              # events in the trace
    events_replayed: int           # events within the episode (leading empty ones included)
    objects_total: int             # objects the trace applies
    objects_applied: int           # of them, within the episode (namespaced ones)
    objects_deleted: int
    warnings: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> int:
        return self.height * self.width

    @property
    def step_times(self) -> np.ndarray:
        """Simulated wall-clock seconds since the replay started, per step 0 .. horizon."""
        return np.arange(self.horizon + 1) * self.step_seconds

    @property
    def trace_times(self) -> np.ndarray:
        """The trace timestamp shown at each step 0 .. horizon."""
        return self.start_ts + self.step_times * self.speed

    def segment_at(self, step: int) -> int:
        step = min(max(int(step), 0), self.horizon)
        return int(np.searchsorted(self.segment_step, step, side="right") - 1)

    def step_segments(self, length: int | None = None) -> np.ndarray:
        """The segment of each step 0 .. length (default the horizon), the last one repeated."""
        length = self.horizon if length is None else length
        steps = np.minimum(np.arange(length + 1), self.horizon)
        return np.searchsorted(self.segment_step, steps, side="right").astype(np.int64) - 1

    def cpu_at(self, step: int) -> np.ndarray:
        return self.cpu[self.segment_at(step)]

    def mem_at(self, step: int) -> np.ndarray:
        return self.mem[self.segment_at(step)]

    def pods_at(self, step: int) -> np.ndarray:
        return self.pod_count[self.segment_at(step)]

    def pending_at(self, step: int) -> int:
        return int(self.pending[self.segment_at(step)])

    def _peak(self, load: np.ndarray) -> float:
        return float(load.sum(axis=1, dtype=np.float64).max(initial=0.0)) / self.nodes

    def summary(self, crit_threshold: float = 0.8) -> dict:
        """What was replayed, on which cluster, and how much of it the trace's own pods fill
        (`peak_trace_cpu`, `peak_trace_mem`: the requests of the running pods over the whole
        cluster's capacity, each at its peak)."""
        return {
            "name": self.name, "events_total": self.events_total,
            "events_replayed": self.events_replayed, "objects_total": self.objects_total,
            "objects_applied": self.objects_applied, "objects_deleted": self.objects_deleted,
            "pods": len(self.pods), "pods_scheduled": sum(pod.started is not None for pod in self.pods),
            "max_running": int(self.pod_count.sum(axis=1).max(initial=0)),
            "max_pending": int(self.pending.max(initial=0)),
            "nodes": self.nodes, "grid": f"{self.height}x{self.width}",
            "node_cpu": self.node_cpu, "node_memory_gib": self.node_memory_gib,
            "peak_trace_cpu": self._peak(self.cpu), "peak_trace_mem": self._peak(self.mem),
            "nodes_used": int((self.pod_count.max(axis=0, initial=0) > 0).sum()),
            "critical_nodes": int((self.prio >= crit_threshold).sum()),
            "max_cpu": float(self.cpu.max(initial=0.0)), "max_mem": float(self.mem.max(initial=0.0)),
            "segments": int(len(self.segment_step)), "horizon": self.horizon,
            "step_seconds": self.step_seconds,
            "namespaces": list(self.namespaces), "warnings": list(self.warnings),
        }


class _Timing(NamedTuple):
    step_seconds: float
    horizon: int
    end_wall: float        # simulated seconds replayed
    offsets: list[float]   # simulated second of each event (the driver's sleeps)


def _timing(events: list, settings: ReplaySettings, max_steps: int) -> _Timing:
    """When each event happens, how long a step lasts, how many steps an episode has."""
    offsets, offset, current = [], 0, events[0].ts if events else 0
    for event in events:
        # The driver sleeps int((next - current) / speed) seconds between two events.
        offset += int(max(0, event.ts - current) / settings.speed)
        current = event.ts
        offsets.append(float(offset))
    dt = settings.step_seconds
    if settings.duration > 0:
        span = float(int(settings.duration / settings.speed))  # skctl run --duration
    else:
        span = offsets[-1] if offsets else 0.0
    if settings.whole_trace and span > max_steps * dt:
        dt = span / max_steps
        while max_steps * dt < span:  # the last event must not round past the last step
            dt = math.nextafter(dt, math.inf)
    if settings.duration > 0:
        horizon = min(max_steps, max(1, math.ceil(span / dt - 1e-9)))
        return _Timing(dt, horizon, min(horizon * dt, span), offsets)
    return _Timing(dt, max_steps, max_steps * dt, offsets)


def _replay(trace: Trace, settings: ReplaySettings, allocations, start_ts: int, timing: _Timing,
            events: list) -> Simulator:
    replay = Simulator(trace, settings, allocations, start_ts, timing.end_wall)
    for offset, event in zip(timing.offsets, events):
        replay.at_trace_event(offset, event)
    replay.snapshot(0.0)
    replay.run()
    return replay


def compile_timeline(trace: Trace | str | Path, *, height: int = 16, width: int = 16,
                     max_steps: int = 512, settings: ReplaySettings | dict | None = None,
                     name: str | None = None, fit_grid: bool = True) -> Timeline:
    """Replay `trace` on at most `height x width` nodes (exactly, with fixed nodes or
    `fit_grid=False`; see `puffer_cluster.replay.sizing`) into a Timeline."""
    settings = settings if isinstance(settings, ReplaySettings) else replay_settings(settings)
    if name is None:
        name = Path(trace).name if isinstance(trace, (str, Path)) else "trace"
    if isinstance(trace, (str, Path)):
        trace = load_trace(trace)
    if height < 1 or width < 1 or max_steps < 1:
        raise ConfigError("height, width and max_steps must be at least 1")
    events, skipped = list(trace.events), 0
    if settings.skip_leading_empty:
        while events[skipped:] and not events[skipped].applied_objs \
                and not events[skipped].deleted_objs:
            skipped += 1
        events = events[skipped:]
    start_ts = events[0].ts if events else 0
    if settings.duration > 0:
        events = [event for event in events if event.ts < start_ts + settings.duration]
    timing = _timing(events, settings, max_steps)
    dt, horizon = timing.step_seconds, timing.horizon

    if settings.cluster == "trace":
        needs = _replay(trace, settings, unlimited_node(), start_ts, timing, events)
        cluster = sized_cluster(settings, demand_of(needs.snapshots, needs.pods), height, width,
                                fit_grid)
    else:
        cluster = fixed_cluster(settings, height, width)
    replay = _replay(trace, settings, cluster.allocations(settings), start_ts, timing, events)
    events_total = len(trace.events)
    warnings = list(replay.warnings)
    after_duration = events_total - skipped - len(events)
    if after_duration:
        warnings.append(f"{after_duration} of {events_total} trace events are not replayed: they "
                        f"come at or after the replay's duration ({settings.duration:g} s of trace "
                        "time)")
    after_end = len(events) - replay.events_replayed
    if after_end:
        first = next(o for o in timing.offsets if o > timing.end_wall)
        warnings.append(f"{after_end} of {events_total} trace events are not replayed: they come "
                        f"{first:g} s or more after the first event, past the episode's end "
                        f"({horizon} steps of {dt:g} s); whole_trace = True stretches the steps "
                        "to cover them")

    # Step k shows the last snapshot at or before k * dt.
    by_step: dict[int, tuple] = {}
    for snapshot in replay.snapshots:
        by_step[max(0, math.ceil(snapshot[0] / dt - 1e-9))] = snapshot
    steps, rows = [], []
    for step in sorted(by_step):
        if step > horizon:
            break
        snapshot = by_step[step]
        if rows and all(np.array_equal(a, b) for a, b in zip(rows[-1][1:4], snapshot[1:4])) \
                and rows[-1][4] == snapshot[4]:
            continue
        steps.append(step)
        rows.append(snapshot)
    cpu = np.stack([row[1] for row in rows]) / cluster.cap_cpu
    mem = np.stack([row[2] for row in rows]) / cluster.cap_mem
    return Timeline(
        name=name, height=cluster.height, width=cluster.width, node_cpu=cluster.cap_cpu / 1000,
        node_memory_gib=cluster.cap_mem / GIB, step_seconds=dt, speed=settings.speed,
        horizon=horizon, start_ts=start_ts, segment_step=np.asarray(steps, dtype=np.int64),
        cpu=cpu.astype(np.float32), mem=mem.astype(np.float32),
        pod_count=np.stack([row[3] for row in rows]).astype(np.int32),
        pending=np.asarray([row[4] for row in rows], dtype=np.int32),
        prio=replay.prio.astype(np.float32), pods=replay.pods, namespaces=replay.namespaces,
        events_total=events_total, events_replayed=skipped + replay.events_replayed,
        objects_total=sum(len(event.applied_objs) for event in trace.events),
        objects_applied=replay.objects_applied, objects_deleted=replay.objects_deleted,
        warnings=warnings,
    )


def stack_timelines(timelines: list[Timeline]) -> kernel.Timelines:
    """The kernel's view of several compiled traces (same grid size)."""
    if not timelines:
        raise ConfigError("no trace to replay")
    grid = (timelines[0].height, timelines[0].width)
    if any((t.height, t.width) != grid for t in timelines):
        raise ConfigError("all timelines of one env must be compiled for the same grid size")
    length = max(t.horizon for t in timelines)
    offsets = np.cumsum([0] + [len(t.segment_step) for t in timelines])
    return kernel.Timelines(
        cpu=np.ascontiguousarray(np.concatenate([t.cpu for t in timelines]), dtype=np.float32),
        mem=np.ascontiguousarray(np.concatenate([t.mem for t in timelines]), dtype=np.float32),
        prio=np.ascontiguousarray(np.stack([t.prio for t in timelines]), dtype=np.float32),
        step_segment=np.stack([t.step_segments(length) + offsets[n]
                               for n, t in enumerate(timelines)]).astype(np.int64),
        horizon=np.asarray([t.horizon for t in timelines], dtype=np.int64),
    )
