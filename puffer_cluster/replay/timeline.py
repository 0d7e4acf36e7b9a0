"""A trace compiled into a timeline: per segment of steps and per node, the CPU and memory the
placed pods request (in units of one node's capacity), and per node a fixed priority.

Time: the driver sleeps `int((next_ts - ts) / speed)` seconds between events; an env step is
`step_seconds` of that (simulated wall-clock) time, so `step_seconds * speed` seconds of trace
time. `duration > 0` truncates like `skctl run --duration`: events at or after
`start + duration` are dropped and the episode ends after `int(duration / speed)` seconds.
Otherwise the cluster persists after the last event until the episode's `max_steps`. Leading
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

import numpy as np

from kernels import replay as kernel
from puffer_cluster.config import ConfigError
from puffer_cluster.replay.settings import ReplaySettings, replay_settings
from puffer_cluster.replay.simulator import ReplayPod, Simulator
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
    events: int                    # trace events replayed (after truncation)
    objects_applied: int
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

    def summary(self, crit_threshold: float = 0.8) -> dict:
        return {
            "name": self.name, "events": self.events, "objects_applied": self.objects_applied,
            "objects_deleted": self.objects_deleted, "pods": len(self.pods),
            "pods_scheduled": sum(pod.started is not None for pod in self.pods),
            "max_running": int(self.pod_count.sum(axis=1).max(initial=0)),
            "max_pending": int(self.pending.max(initial=0)),
            "nodes_used": int((self.pod_count.max(axis=0, initial=0) > 0).sum()),
            "critical_nodes": int((self.prio >= crit_threshold).sum()),
            "max_cpu": float(self.cpu.max(initial=0.0)), "max_mem": float(self.mem.max(initial=0.0)),
            "segments": int(len(self.segment_step)), "horizon": self.horizon,
            "namespaces": list(self.namespaces), "warnings": list(self.warnings),
        }


def compile_timeline(trace: Trace | str | Path, *, height: int = 16, width: int = 16,
                     max_steps: int = 512, settings: ReplaySettings | dict | None = None,
                     name: str | None = None) -> Timeline:
    """Replay `trace` on an `height x width` grid (see the module docstring) into a Timeline."""
    settings = settings if isinstance(settings, ReplaySettings) else replay_settings(settings)
    if name is None:
        name = Path(trace).name if isinstance(trace, (str, Path)) else "trace"
    if isinstance(trace, (str, Path)):
        trace = load_trace(trace)
    if height < 1 or width < 1 or max_steps < 1:
        raise ConfigError("height, width and max_steps must be at least 1")
    events = list(trace.events)
    if settings.skip_leading_empty:
        while events and not events[0].applied_objs and not events[0].deleted_objs:
            events.pop(0)
    start_ts = events[0].ts if events else 0
    speed, dt = settings.speed, settings.step_seconds
    horizon = max_steps
    if settings.duration > 0:
        # skctl run --duration: keep the events before start + duration, end the run there.
        events = [event for event in events if event.ts < start_ts + settings.duration]
        run_seconds = int(settings.duration / speed)
        horizon = min(max_steps, max(1, math.ceil(run_seconds / dt - 1e-9)))
        end_wall = min(horizon * dt, float(run_seconds))
    else:
        end_wall = horizon * dt

    replay = Simulator(trace, settings, height * width, start_ts, end_wall)
    offset, current = 0, start_ts
    for event in events:
        # The driver sleeps int((next - current) / speed) seconds between two events.
        offset += int(max(0, event.ts - current) / speed)
        current = event.ts
        replay.at_trace_event(float(offset), event)
    replay.snapshot(0.0)
    replay.run()

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
    cpu = np.stack([row[1] for row in rows]) / replay.allocations.cap_cpu
    mem = np.stack([row[2] for row in rows]) / replay.allocations.cap_mem
    return Timeline(
        name=name, height=height, width=width, step_seconds=dt, speed=speed, horizon=horizon,
        start_ts=start_ts, segment_step=np.asarray(steps, dtype=np.int64),
        cpu=cpu.astype(np.float32), mem=mem.astype(np.float32),
        pod_count=np.stack([row[3] for row in rows]).astype(np.int32),
        pending=np.asarray([row[4] for row in rows], dtype=np.int32),
        prio=replay.prio.astype(np.float32), pods=replay.pods, namespaces=replay.namespaces,
        events=len(events), objects_applied=replay.objects_applied,
        objects_deleted=replay.objects_deleted, warnings=replay.warnings,
    )


def stack_timelines(timelines: list[Timeline]) -> kernel.Timelines:
    """The kernel's view of several compiled traces (same grid size)."""
    if not timelines:
        raise ConfigError("no trace to replay")
    nodes = timelines[0].nodes
    if any(t.nodes != nodes for t in timelines):
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
