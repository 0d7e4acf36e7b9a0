"""SimKube trace files: the v2 msgpack format, its JSON form, and Kubernetes quantities; and
sim-arena's trace edits and demo traces. The package re-exports what its modules' `__all__`
name, as asyncio does."""

from puffer_cluster.traces import quantity, simkube
from puffer_cluster.traces.quantity import *  # noqa: F403
from puffer_cluster.traces.simkube import *  # noqa: F403
from puffer_cluster.traces.ops import (
    AmbiguousDeploymentError, DeploymentNotFoundError, DeploymentResources, OpResult, Safeguards,
    SafeguardError, TraceOpError, apply_op, deployment_resources, mutate_trace,
)
from puffer_cluster.traces.generate import SCENARIOS, generate_trace, generate_traces, write_traces

__all__ = [
    *quantity.__all__,
    *simkube.__all__,
    "AmbiguousDeploymentError",
    "DeploymentNotFoundError",
    "DeploymentResources",
    "OpResult",
    "SCENARIOS",
    "Safeguards",
    "SafeguardError",
    "TraceOpError",
    "apply_op",
    "deployment_resources",
    "generate_trace",
    "generate_traces",
    "mutate_trace",
    "write_traces",
]
