"""Replaying a trace in a SimKube cluster (`puffer-cluster simkube run --trace FILE`).

`simulation` builds the Simulation (pure), `client` talks to the cluster, `errors` is the
taxonomy below, `loop` is sim-arena's agent loop on top of them (`simkube loop`).

The command builds a `simkube.io/v1` `Simulation` (SimKube >= 2.7: cluster-scoped, with the
required `spec.driver` and `spec.lifecycleParams`), checks the cluster, submits it with the
`kubernetes` client, follows its `status.state` with a watch until it is Finished or Failed,
reads the pods of the virtual namespaces while it runs, and deletes the Simulation on the way
out: after success, after a failure, on a timeout and on Ctrl-C (or SIGTERM).

Modes (nothing but the Simulation named by the command is ever created or deleted):
  --dry-run     print the Simulation as YAML and stop: no API call at all. This is the default
                when no kubeconfig is found ($KUBECONFIG, else ~/.kube/config).
  --read-only   print the Simulation, run the preflight checks (GET/LIST only), stop.
  (neither)     preflight, create, watch, observe, delete.

Preflight, in order, each failing with its own error type and exit status:
  the API server answers GET /version                          ApiUnreachableError    4
  the CRD simulations.simkube.io serves v1, cluster-scoped    CrdMissingError        5
    and its schema accepts the Simulation (required fields)    CrdMismatchError       5
  the namespace 'monitoring' exists (SimKube's controller
    refuses a Simulation without it, even with metrics off)     MetricsNamespaceMissingError 8
  no Simulation exists (SimKube runs one at a time; a leftover
    one, or one with our name, would block or clash)           LeftoverSimulationError 6
  the virtual namespaces of the trace hold no pods             LeftoverPodsError      7

Other exit statuses: 0 done (Finished, or the dry run / read-only checks passed); 1 a file
(trace, hooks) cannot be read; 2 an unusable trace (version 1, malformed, JSON, empty,
cluster-scoped objects) or bad arguments/config; 3 an unusable kubeconfig; 9 the Simulation
Failed; 10 it did not finish within --timeout; 11 the API refused a request during the run
(or the Simulation was deleted by someone else, or could not be deleted); 12 the agent loop saw
no pod of its Deployment; 130 interrupted.

The trace: SimKube's driver reads the trace itself, from `spec.driver.tracePath`: a URL with a
scheme, `file:///path` for a file on the node that runs the driver (the controller mounts it
as a hostPath), or an object store (`s3://`, `gs://`, `azure://`...). The local FILE is only
read here, to refuse what the driver could not replay with the project's typed trace errors
(`TraceVersionError`, `TraceFormatError`, `TraceNotReplayableError`) and to name the virtual
namespaces. `--trace-path` defaults to `<[simkube] trace_dir>/<FILE's name>`, i.e.
`file:///data/<name>`: copy the file there on the node first (e.g. `docker cp FILE
<kind-node>:/data/`), or upload it and pass its URL. The Simulation carries the file's
SHA-256 as an annotation, so the copy can be checked.

`--duration` takes seconds or 90s / 5m / 1h30m / 2d (a leading '+' is allowed) and is written
in the form SimKube's duration parser reads everywhere ('+5 minutes'); SimKube replays the
events before first_ts + duration and keeps the simulation up until then.
"""
from puffer_cluster.simkube.client import (
    SimulationRun, api_client_from_kubeconfig, find_kubeconfig, format_observation, observe_pods,
    preflight, run_simulation,
)
from puffer_cluster.simkube.errors import (
    ApiUnreachableError, CrdMismatchError, CrdMissingError, KubeApiError, KubeconfigError,
    LeftoverPodsError, LeftoverSimulationError, MetricsNamespaceMissingError,
    NamespaceNotCleanError, PodsNotObservedError, PreflightError, SimkubeRunError,
    SimulationFailedError, SimulationTimeoutError, TraceNotReplayableError,
)
from puffer_cluster.simkube.simulation import (
    SIMKUBE_GROUP, SIMKUBE_VERSION, SIMULATION_CRD, SIMULATION_PLURAL, LocalTrace, SimkubeSettings,
    build_simulation, check_crd, default_simulation_name, default_timeout, default_trace_path,
    format_sim_duration, load_hooks, load_replayable_trace, parse_sim_duration, simkube_settings,
    simulation_yaml, trace_warnings, virtual_namespaces,
)

__all__ = [
    "SIMKUBE_GROUP", "SIMKUBE_VERSION", "SIMULATION_CRD", "SIMULATION_PLURAL",
    "ApiUnreachableError", "CrdMismatchError", "CrdMissingError", "KubeApiError",
    "KubeconfigError", "LeftoverPodsError", "LeftoverSimulationError", "LocalTrace",
    "MetricsNamespaceMissingError", "NamespaceNotCleanError", "PodsNotObservedError",
    "PreflightError", "SimkubeRunError",
    "SimkubeSettings", "SimulationFailedError", "SimulationRun", "SimulationTimeoutError",
    "TraceNotReplayableError", "api_client_from_kubeconfig", "build_simulation", "check_crd",
    "default_simulation_name", "default_timeout", "default_trace_path", "find_kubeconfig",
    "format_observation", "format_sim_duration", "load_hooks", "load_replayable_trace",
    "observe_pods", "parse_sim_duration", "preflight", "run_simulation", "simkube_settings",
    "simulation_yaml", "trace_warnings", "virtual_namespaces",
]
