"""SimKube trace replay: a trace compiled into a timeline of node loads, behind the gardener's
contract (the same 30-value observation, 8 actions, reward and episode statistics).

Compilation (`compile_timeline`, once per trace, NumPy) replays the whole trace as SimKube's
driver does (sk-driver's runner) on a grid of identical nodes sized to it (or fixed). The
modules, in reading order:

- `settings`: the `[replay]` config section (`ReplaySettings`) and SimKube's durations;
- `requests`: a pod's effective request (Kubernetes' arithmetic) and its priority;
- `cron`: CronJob schedules;
- `scheduler`: `NodeAllocations`, the deterministic least-allocated / first-fit scheduler
  (shared with SimArena's compile step; `kernels.simarena.place_nb` is its Numba twin);
- `controllers`: one controller per workload kind (Deployment, DaemonSet, Job, CronJob, Pod...);
- `simulator`: the driver's events, the controllers and the scheduler as discrete events;
- `sizing`: the cluster a trace is replayed on, sized to the trace or fixed;
- `timeline`: `compile_timeline` and the `Timeline` it returns, the kernel's stacked view;
- `discovery`: trace files under a folder, timelines of a list of traces;
- `envs`: `TraceReplayEnv` and `TraceReplayGymEnv`;
- `mixed`: training on replays, `MixedVectorEnv` (replayed traces and gardener worlds in one
  batch) and the `replay` registry entry's factories.

Units: the timeline holds requested CPU and memory per node in units of one node's capacity.
The dynamics (the trace's load added to a World v2 gardener world: usage noise, the leak
overlay, spikes, CLEAN, SCALE, OOMs, reward) are in `kernels.replay`.
"""
from puffer_cluster import REPLAY_GYM_ID as GYM_ID  # registered by the package
from puffer_cluster.replay.cron import CronSchedule
from puffer_cluster.replay.discovery import TRACE_SUFFIXES, find_trace_files, load_timelines
from puffer_cluster.replay.envs import TraceReplayEnv, TraceReplayGymEnv
from puffer_cluster.replay.mixed import MixedVectorEnv
from puffer_cluster.replay.requests import pod_requests
from puffer_cluster.kernels.placement import NONZERO_CPU_MILLICORES, NONZERO_MEMORY_BYTES, NodeAllocations
from puffer_cluster.replay.settings import ReplayError, ReplaySettings, replay_settings
from puffer_cluster.replay.simulator import ReplayPod
from puffer_cluster.replay.timeline import Timeline, compile_timeline, stack_timelines

_CronSchedule = CronSchedule  # the name the tests import

__all__ = [
    "GYM_ID", "NONZERO_CPU_MILLICORES", "NONZERO_MEMORY_BYTES", "TRACE_SUFFIXES", "CronSchedule",
    "MixedVectorEnv", "NodeAllocations", "ReplayError", "ReplayPod", "ReplaySettings", "Timeline",
    "TraceReplayEnv", "TraceReplayGymEnv", "compile_timeline", "find_trace_files", "load_timelines",
    "pod_requests", "replay_settings", "stack_timelines",
]
