"""The `[replay]` settings (`configs/gardener.ini` documents every key) and SimKube's durations."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from kernels import replay as kernel
from puffer_cluster.config import ConfigError
from puffer_cluster.replay.scheduler import MAX_POD_BYTES, MAX_POD_MILLICORES
from puffer_cluster.traces import TraceError

GIB = 2**30
SCHEDULERS = ("least-allocated", "first-fit")
CLUSTERS = ("trace", "fixed")
OVERSIZED = ("error", "pending")


class ReplayError(TraceError):
    """A trace that cannot be replayed (e.g. an object the API server would refuse, a pod larger
    than a node, more replicas than the replay allows)."""


@dataclass(frozen=True)
class ReplaySettings:
    """The `[replay]` config section (`configs/gardener.ini` documents every key)."""
    cluster: str = "trace"
    fill: float = 0.7
    node_cpu: float = 16.0
    node_memory_gib: float = 32.0
    max_pods_per_node: int = 110
    oversized_pods: str = "error"
    scheduler: str = "least-allocated"
    whole_trace: bool = True
    step_seconds: float = 1.0
    speed: float = 1.0
    duration: float = 0.0
    skip_leading_empty: bool = True
    virtual_ns_prefix: str = "virtual"
    leak_overlay: bool = True
    overlay_init: bool = True
    overlay_scale: float = 0.25
    usage_noise: float = 0.2
    critical_classes: str = "system-*"
    critical_namespaces: str = "kube-system"
    priority_annotation: str = "puffer-cluster.io/priority"
    critical_prio: float = 1.0
    pod_prio: float = 0.5

    def __post_init__(self):
        checks = (
            (math.isfinite(self.node_cpu) and 0 < self.node_cpu_millicores <= MAX_POD_MILLICORES,
             f"node_cpu must be at least 0.001 and at most {MAX_POD_MILLICORES / 1000:g} cores"),
            (math.isfinite(self.node_memory_gib) and 0 < self.node_memory_bytes <= MAX_POD_BYTES,
             f"node_memory_gib must be > 0 and at most {MAX_POD_BYTES // GIB}"),
            (self.cluster in CLUSTERS, f"cluster must be one of {', '.join(CLUSTERS)}"),
            (0.0 < self.fill <= 1.0, "fill must be in (0, 1]"),
            (self.max_pods_per_node >= 1, "max_pods_per_node must be at least 1"),
            (self.oversized_pods in OVERSIZED, f"oversized_pods must be one of {', '.join(OVERSIZED)}"),
            (self.scheduler in SCHEDULERS, f"scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.step_seconds > 0 and math.isfinite(self.step_seconds), "step_seconds must be > 0"),
            (self.speed > 0 and math.isfinite(self.speed), "speed must be > 0"),
            (self.duration >= 0 and math.isfinite(self.duration), "duration must be >= 0"),
            (0.0 <= self.usage_noise <= 1.0, "usage_noise must be in [0, 1]"),
            (0.0 <= self.overlay_scale <= 1.0, "overlay_scale must be in [0, 1]"),
            (0.0 <= self.critical_prio <= 1.0, "critical_prio must be in [0, 1]"),
            (0.0 <= self.pod_prio <= 1.0, "pod_prio must be in [0, 1]"),
            (bool(self.virtual_ns_prefix), "virtual_ns_prefix must not be empty"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"[replay] {message}")

    @property
    def node_cpu_millicores(self) -> int:
        return int(round(self.node_cpu * 1000))

    @property
    def node_memory_bytes(self) -> int:
        return int(round(self.node_memory_gib * GIB))

    def kernel_params(self) -> kernel.ReplayParams:
        return kernel.ReplayParams(float(self.usage_noise), bool(self.leak_overlay),
                                   bool(self.overlay_init), float(self.overlay_scale))


def replay_settings(config: dict | ReplaySettings | None = None, **overrides) -> ReplaySettings:
    """Settings from a `[replay]` dict (or a full config holding one), updated by `overrides`.

    Missing keys keep the defaults (a checkpoint's config may predate the section)."""
    if isinstance(config, ReplaySettings):
        base, values = config, {}
    else:
        base, config = ReplaySettings(), dict(config or {})
        section = config.get("replay")
        values = dict(section) if isinstance(section, dict) else config
    values.update(overrides)
    known = {f.name: f for f in fields(ReplaySettings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown replay keys {unknown}; valid keys: {', '.join(known)}")
    typed = {}
    for name, value in values.items():
        default = getattr(ReplaySettings(), name)
        try:
            if isinstance(default, bool):
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError
                typed[name] = bool(value)
            elif isinstance(default, int):
                if isinstance(value, bool) or int(value) != value:
                    raise ValueError
                typed[name] = int(value)
            elif isinstance(default, float):
                if isinstance(value, bool):
                    raise ValueError
                typed[name] = float(value)
            else:
                typed[name] = str(value)
        except (TypeError, ValueError):
            raise ConfigError(f"[replay] {name}: expected {type(default).__name__}, "
                              f"got {value!r}") from None
    return replace(base, **typed)


def parse_duration(text: str | float | int) -> float:
    """Seconds from '300', '300s', '5m', '1h30m', '2d' (skctl's --duration, relative form)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        rest = str(text).strip().lower().replace(" ", "")
        if not rest:
            raise ConfigError("empty duration")
        try:
            seconds = float(rest)
        except ValueError:
            seconds = 0.0
            number = ""
            for char in rest:
                if char.isdigit() or char == ".":
                    number += char
                elif char in units and number:
                    seconds += float(number) * units[char]
                    number = ""
                else:
                    raise ConfigError(f"duration {text!r}: use seconds or e.g. 90s, 5m, 1h30m") \
                        from None
            if number:
                raise ConfigError(f"duration {text!r}: a number without a unit at the end")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"duration {text!r} must be a finite number of seconds >= 0")
    return seconds
