"""The `[replay]` settings (`configs/gardener.ini` documents every key)."""
from __future__ import annotations

import math

from puffer_cluster.kernels import replay as kernel
from puffer_cluster.config import ConfigError, config_section, settings_from
from puffer_cluster.kernels.placement import MAX_POD_BYTES, MAX_POD_MILLICORES
from puffer_cluster.traces import TraceError

GIB = 2**30
SCHEDULERS = ("least-allocated", "first-fit")
CLUSTERS = ("trace", "fixed")
OVERSIZED = ("error", "pending")


class ReplayError(TraceError):
    """A trace that cannot be replayed (e.g. an object the API server would refuse, a pod larger
    than a node, more replicas than the replay allows)."""


@config_section("replay")
class ReplaySettings:
    """The `[replay]` config section (`configs/gardener.ini` documents every key and gives the
    defaults)."""
    cluster: str
    fill: float
    node_cpu: float
    node_memory_gib: float
    max_pods_per_node: int
    oversized_pods: str
    scheduler: str
    whole_trace: bool
    step_seconds: float
    speed: float
    duration: float
    skip_leading_empty: bool
    virtual_ns_prefix: str
    leak_overlay: bool
    overlay_init: bool
    overlay_scale: float
    usage_noise: float
    critical_classes: str
    critical_namespaces: str
    priority_annotation: str
    critical_prio: float
    pod_prio: float
    train_fraction: float
    train_traces: str
    train_count: int
    train_seed: int
    train_busy_fraction: float

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
            (0.0 <= self.train_fraction <= 1.0, "train_fraction must be in [0, 1]"),
            (self.train_count >= 1, "train_count must be at least 1"),
            (self.train_seed >= 0, "train_seed must be >= 0"),
            (0.0 <= self.train_busy_fraction <= 1.0, "train_busy_fraction must be in [0, 1]"),
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
        return kernel.ReplayParams(float(self.usage_noise))

    def overlay_world(self, params):
        """The gardener world the trace's load is added to (`kernels.replay.overlay_world`)."""
        scale = float(self.overlay_scale) if self.leak_overlay else 0.0
        return kernel.overlay_world(params, scale, bool(self.overlay_init))


def replay_settings(config: dict | ReplaySettings | None = None, **overrides) -> ReplaySettings:
    """Settings from a full config, a `[replay]` dict or settings, updated by `overrides`."""
    return settings_from(ReplaySettings, config, **overrides)
