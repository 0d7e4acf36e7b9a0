"""SimKube trace files: the v2 msgpack format, its JSON form, and Kubernetes quantities."""

from puffer_cluster.traces.quantity import (
    QuantityError, cpu_millicores, memory_bytes, parse_cpu_cores, parse_memory_bytes, parse_quantity,
)
from puffer_cluster.traces.simkube import (
    BUILTIN_POD_SPEC_TEMPLATE_PATHS,
    TRACE_FORMAT_VERSION,
    PodLifecycle,
    Trace,
    TraceConfigError,
    TraceError,
    TraceEvent,
    TraceFormatError,
    TraceVersionError,
    detect_trace_format,
    dump_trace,
    load_json_trace,
    load_trace,
    loads_trace,
    object_gvk,
    object_ns_name,
    parse_gvk,
    save_json_trace,
    save_trace,
    trace_to_json,
)

__all__ = [
    "BUILTIN_POD_SPEC_TEMPLATE_PATHS",
    "TRACE_FORMAT_VERSION",
    "PodLifecycle",
    "QuantityError",
    "Trace",
    "TraceConfigError",
    "TraceError",
    "TraceEvent",
    "TraceFormatError",
    "TraceVersionError",
    "cpu_millicores",
    "detect_trace_format",
    "dump_trace",
    "load_json_trace",
    "load_trace",
    "loads_trace",
    "memory_bytes",
    "object_gvk",
    "object_ns_name",
    "parse_cpu_cores",
    "parse_gvk",
    "parse_memory_bytes",
    "parse_quantity",
    "save_json_trace",
    "save_trace",
    "trace_to_json",
]

# sim-arena's trace edits and demo traces.
from puffer_cluster.traces.ops import (  # noqa: E402
    AmbiguousDeploymentError,
    DeploymentNotFoundError,
    DeploymentResources,
    OpResult,
    Safeguards,
    SafeguardError,
    TraceOpError,
    apply_op,
    deployment_resources,
    mutate_trace,
)
from puffer_cluster.traces.generate import SCENARIOS, generate_trace, generate_traces, write_traces  # noqa: E402

__all__ += [
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
