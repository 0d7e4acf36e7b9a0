"""The cluster side of `simkube run`, through the `kubernetes` client: the kubeconfig, the
read-only preflight checks, and a run (create the Simulation, watch its state, observe the pods
of the virtual namespaces, delete it whatever happens)."""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from puffer_cluster.simkube.errors import (
    ApiUnreachableError, CrdMissingError, KubeApiError, KubeconfigError, LeftoverPodsError,
    LeftoverSimulationError, MetricsNamespaceMissingError, SimulationFailedError,
    SimulationTimeoutError,
)
from puffer_cluster.simkube.simulation import (
    METRICS_NAMESPACE, SIMKUBE_GROUP, SIMKUBE_VERSION, SIMULATION_CRD, SIMULATION_PLURAL,
    TERMINAL_STATES, SimkubeSettings, check_crd,
)


def find_kubeconfig(explicit: str | os.PathLike[str] | None = None) -> str | None:
    """The kubeconfig to use: `explicit` (KubeconfigError if it is not a file), else the
    existing files of $KUBECONFIG (joined with ':' as the client merges them), else
    ~/.kube/config; None when there is none."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise KubeconfigError(f"--kubeconfig {explicit}: no such file")
        return str(path)
    listed = os.environ.get("KUBECONFIG")
    if listed:
        found = [str(Path(p).expanduser()) for p in listed.split(os.pathsep)
                 if p and Path(p).expanduser().is_file()]
        return os.pathsep.join(found) or None
    default = Path("~/.kube/config").expanduser()
    return str(default) if default.is_file() else None


def api_client_from_kubeconfig(kubeconfig: str, context: str | None = None):
    """A `kubernetes.client.ApiClient` for a kubeconfig (the global client config is left
    alone, and refreshed credentials are not written back to the file)."""
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException
    try:
        return kube_config.new_client_from_config(config_file=kubeconfig, context=context,
                                                  persist_config=False)
    except (ConfigException, OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        where = f" (context {context!r})" if context else ""
        raise KubeconfigError(f"kubeconfig {kubeconfig}{where} is not usable: {exc}") from None


def _server(api) -> str:
    return getattr(api.configuration, "host", "?")


def _connection_errors() -> tuple[type[BaseException], ...]:
    import urllib3.exceptions
    return (urllib3.exceptions.HTTPError, OSError)


def _api_reason(exc) -> str:
    """'404 Not Found: <the Status message>' from an ApiException."""
    message = ""
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        pass
    text = f"{exc.status} {exc.reason}".strip()
    return f"{text}: {message}" if message else text


def _request(server: str, what: str, call: Callable[[], Any],
             missing: Exception | None = None) -> Any:
    """`call()`, one API request: a 404 raises `missing` (when given), another refusal
    KubeApiError('cannot <what>: <reason>'), a dropped connection ApiUnreachableError."""
    from kubernetes.client.exceptions import ApiException
    try:
        return call()
    except ApiException as exc:
        if missing is not None and exc.status == 404:
            raise missing from None
        raise KubeApiError(f"cannot {what}: {_api_reason(exc)}") from None
    except _connection_errors() as exc:
        raise ApiUnreachableError(f"the API server {server} stopped answering: {exc}") from None


def preflight(api, simulation: dict[str, Any], namespaces: list[str],
              settings: SimkubeSettings | None = None, echo: Callable[[str], None] = print) -> list[str]:
    """The read-only checks before a run (GET and LIST only); each failure raises its own
    PreflightError. Prints ('ok ...') and returns what passed, and warnings."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    settings = settings or SimkubeSettings()
    timeout = settings.request_timeout
    report: list[str] = []

    def ok(line: str) -> None:
        report.append(line)
        echo(line)

    server = _server(api)
    try:  # the first request tells an unreachable server from wrong credentials
        version = _json(client.VersionApi(api).get_code(_request_timeout=timeout, _preload_content=False))
    except ApiException as exc:
        raise ApiUnreachableError(f"the API server {server} answered GET /version with "
                                  f"{_api_reason(exc)}: check the kubeconfig's credentials") from None
    except _connection_errors() as exc:
        raise ApiUnreachableError(f"the API server {server} is unreachable: {exc}") from None
    ok(f"ok   API server {server} answers (Kubernetes {version.get('gitVersion', '?')})")

    crd = _json(_request(
        server, f"read CRD {SIMULATION_CRD}",
        lambda: client.ApiextensionsV1Api(api).read_custom_resource_definition(
            SIMULATION_CRD, _request_timeout=timeout, _preload_content=False),
        missing=CrdMissingError(f"SimKube is not installed: no CRD {SIMULATION_CRD} "
                                "(install SimKube's CRDs and controller first)")))
    for warning in check_crd(crd, simulation):
        ok(f"warn {warning}")
    ok(f"ok   CRD {SIMULATION_CRD} serves {SIMKUBE_VERSION} (cluster-scoped)")

    core = client.CoreV1Api(api)
    _request(server, f"read namespace {METRICS_NAMESPACE}",
             lambda: core.read_namespace(METRICS_NAMESPACE, _request_timeout=timeout),
             missing=MetricsNamespaceMissingError(
                 f"namespace {METRICS_NAMESPACE!r} does not exist: SimKube's controller fails a "
                 f"Simulation without it (create it: kubectl create namespace {METRICS_NAMESPACE})"))
    ok(f"ok   namespace {METRICS_NAMESPACE} exists")

    custom = client.CustomObjectsApi(api)
    existing = _request(server, "list Simulations", lambda: custom.list_cluster_custom_object(
        SIMKUBE_GROUP, SIMKUBE_VERSION, SIMULATION_PLURAL, _request_timeout=timeout))
    _refuse_leftovers(simulation["metadata"]["name"], existing.get("items", []))
    ok("ok   no Simulation exists")

    for namespace in namespaces:
        pods = _json(_request(server, f"list pods in {namespace}", lambda: core.list_namespaced_pod(
            namespace, _request_timeout=timeout, _preload_content=False))).get("items") or []
        if pods:
            raise LeftoverPodsError(
                f"virtual namespace {namespace} still holds {len(pods)} pods "
                f"({', '.join(pod['metadata']['name'] for pod in pods[:5])}"
                f"{', ...' if len(pods) > 5 else ''}) from an earlier simulation; wait for "
                "SimKube's cleanup or delete them")
    ok(f"ok   virtual namespaces clean: {', '.join(namespaces) or '(none)'}")
    return report


def _refuse_leftovers(name: str, simulations: list[dict]) -> None:
    leftovers = [(item["metadata"]["name"], _state_of(item)) for item in simulations]
    if not leftovers:
        return
    listed = ", ".join(f"{n} ({state or 'no state'})" for n, state in leftovers)
    clash = any(n == name for n, _ in leftovers)
    reason = (f"a Simulation named {name} exists already" if clash else
              "SimKube runs one Simulation at a time, so a new one would wait (Blocked)")
    raise LeftoverSimulationError(
        f"Simulations exist: {listed}; {reason}. Delete them first: kubectl delete "
        f"simulations.{SIMKUBE_GROUP} {' '.join(n for n, _ in leftovers)}")


def _json(response) -> dict[str, Any]:
    """The JSON body of a `_preload_content=False` response (no client-side model checks)."""
    try:
        document = json.loads(response.data)
    except ValueError as exc:
        raise KubeApiError(f"the API server answered with something that is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise KubeApiError("the API server answered with JSON that is not an object")
    return document


def _state_of(obj: dict[str, Any]) -> str | None:
    return ((obj or {}).get("status") or {}).get("state")


def observe_pods(api, namespaces: list[str], request_timeout: float = 30.0) -> dict[str, dict]:
    """Pods of each namespace (read-only LIST): total, ready (condition Ready) and by phase."""
    from kubernetes import client
    core = client.CoreV1Api(api)
    observed = {}
    for namespace in namespaces:
        pods = _json(core.list_namespaced_pod(namespace, _request_timeout=request_timeout,
                                              _preload_content=False)).get("items") or []
        phases: dict[str, int] = {}
        ready = 0
        for pod in pods:
            status = pod.get("status") or {}
            phase = status.get("phase") or "Unknown"
            phases[phase] = phases.get(phase, 0) + 1
            conditions = status.get("conditions") or []
            ready += any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        observed[namespace] = {"total": len(pods), "ready": ready, "phases": dict(sorted(phases.items()))}
    return observed


def format_observation(observed: dict[str, dict]) -> str:
    parts = []
    for namespace, counts in observed.items():
        phases = ", ".join(f"{n} {phase}" for phase, n in counts["phases"].items())
        parts.append(f"{namespace}: {counts['total']} pods, {counts['ready']} ready"
                     + (f" ({phases})" if phases else ""))
    return "; ".join(parts) or "(no virtual namespaces)"


@dataclass
class SimulationRun:
    """What `run_simulation` saw: state changes and pod observations, seconds since submission."""

    name: str
    state: str | None = None
    states: list[tuple[float, str | None]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    deleted: bool = False


def run_simulation(api, simulation: dict[str, Any], namespaces: list[str], *, timeout_s: float,
                   settings: SimkubeSettings | None = None, echo: Callable[[str], None] = print,
                   clock: Callable[[], float] = time.monotonic,
                   observe: Callable[..., dict[str, dict]] = observe_pods) -> SimulationRun:
    """Create the Simulation, watch its state until Finished (returns) or Failed
    (SimulationFailedError), observing the pods of `namespaces` while it runs (at most every
    observe_interval seconds, and once at the end), then delete it. It is deleted whatever
    happens once it may exist: on errors, on a timeout, on KeyboardInterrupt. `observe(api,
    namespaces, request_timeout)` reads the pods (the agent loop counts one Deployment's)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    settings = settings or SimkubeSettings()
    custom = client.CustomObjectsApi(api)
    name = simulation["metadata"]["name"]
    run = SimulationRun(name)
    start = clock()
    submitted = False
    try:
        submitted = True  # from here on it may exist, even if the request is interrupted
        try:
            created = custom.create_cluster_custom_object(
                SIMKUBE_GROUP, SIMKUBE_VERSION, SIMULATION_PLURAL, simulation,
                _request_timeout=settings.request_timeout)
        except ApiException as exc:
            submitted = False  # refused: nothing of ours exists (a 409 names someone else's)
            raise KubeApiError(f"the API refused Simulation {name}: {_api_reason(exc)}") from None
        echo(f"created Simulation {name}")
        _Follower(api, custom, run, namespaces, settings, echo, clock, start,
                  observe).follow(created, timeout_s)
    except BaseException:
        if submitted:
            _delete(custom, name, run, settings, echo, strict=False)
        run.elapsed_s = clock() - start
        raise
    _delete(custom, name, run, settings, echo, strict=True)
    run.elapsed_s = clock() - start
    return run


class _Follower:
    """Follows one created Simulation: watches its state in windows of at most observe_interval
    seconds (resuming from the last resource version seen), and reads the pods of the virtual
    namespaces at most every observe_interval seconds while it is Running."""

    def __init__(self, api, custom, run: SimulationRun, namespaces: list[str],
                 settings: SimkubeSettings, echo, clock, start: float,
                 observe_pods_fn: Callable[..., dict[str, dict]] = observe_pods):
        self.api, self.custom, self.run, self.namespaces = api, custom, run, namespaces
        self.observe_pods_fn = observe_pods_fn
        self.settings, self.echo, self.clock, self.start = settings, echo, clock, start
        self.server = _server(api)
        self.resource_version: str | None = None
        self.last_observed: float | None = None

    def follow(self, created: dict, timeout_s: float) -> None:
        """Returns when the Simulation is Finished; raises SimulationFailedError,
        SimulationTimeoutError or KubeApiError."""
        name = self.run.name
        self.resource_version = created["metadata"].get("resourceVersion")
        self.record(_state_of(created))
        deadline = self.start + timeout_s
        while self.run.state not in TERMINAL_STATES:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise SimulationTimeoutError(
                    f"Simulation {name} is still {self.run.state or 'without a state'} after "
                    f"{timeout_s:g} s (raise --timeout, or see kubectl describe simulation "
                    f"{name} and the sk-ctrl logs)")
            self.watch(max(1, math.ceil(min(self.settings.observe_interval, remaining))))
            self.observe(final=self.run.state in TERMINAL_STATES)
        if self.run.state == "Failed":
            raise SimulationFailedError(
                f"Simulation {name} Failed (see kubectl describe simulation {name}, the driver "
                f"job sk-{name}-driver in namespace {created['spec']['driver']['namespace']} "
                "and the sk-ctrl logs)")

    def watch(self, seconds: int) -> None:
        """One watch window: until it ends or the state is terminal."""
        import urllib3.exceptions
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        name, timeout = self.run.name, self.settings.request_timeout
        stream = watch.Watch().stream(
            self.custom.list_cluster_custom_object, SIMKUBE_GROUP, SIMKUBE_VERSION,
            SIMULATION_PLURAL, field_selector=f"metadata.name={name}",
            resource_version=self.resource_version, timeout_seconds=seconds,
            _request_timeout=(timeout, seconds + timeout))
        try:
            for event in stream:
                obj = event.get("raw_object") or {}
                self.resource_version = ((obj.get("metadata") or {}).get("resourceVersion")
                                         or self.resource_version)
                if event["type"] == "DELETED":
                    raise KubeApiError(f"Simulation {name} was deleted by someone else")
                if event["type"] in ("ADDED", "MODIFIED"):
                    self.record(_state_of(obj))
                    if self.run.state in TERMINAL_STATES:
                        return
                    self.observe()
        except ApiException as exc:
            if exc.status != 410:
                raise KubeApiError(f"watching Simulation {name} failed: {_api_reason(exc)}") from None
            self.reread()  # the resource version expired
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
            pass  # a watch that went quiet or was cut: the next window resumes it
        except _connection_errors() as exc:
            raise KubeApiError(f"lost the API server while watching Simulation {name}: {exc}") from None
        finally:
            stream.close()

    def reread(self) -> None:
        """Read the Simulation again, to watch from its current version."""
        name = self.run.name
        current = _request(self.server, f"read Simulation {name}",
                           lambda: self.custom.get_cluster_custom_object(
                               SIMKUBE_GROUP, SIMKUBE_VERSION, SIMULATION_PLURAL, name,
                               _request_timeout=self.settings.request_timeout),
                           missing=KubeApiError(f"Simulation {name} was deleted by someone else"))
        self.resource_version = current["metadata"].get("resourceVersion")
        self.record(_state_of(current))

    def record(self, state: str | None) -> None:
        if state is None or state == self.run.state:
            return
        elapsed = self.clock() - self.start
        self.run.state = state
        self.run.states.append((round(elapsed, 3), state))
        self.echo(f"[{elapsed:7.1f}s] state {state}")

    def observe(self, final: bool = False) -> None:
        """Read the pods (`final`: now; else only while Running, every observe_interval)."""
        from kubernetes.client.exceptions import ApiException
        now = self.clock()
        if not final and (self.run.state != "Running" or (
                self.last_observed is not None
                and now - self.last_observed < self.settings.observe_interval)):
            return
        self.last_observed = now
        try:
            observed = self.observe_pods_fn(self.api, self.namespaces, self.settings.request_timeout)
        except ApiException as exc:
            raise KubeApiError(f"cannot list the pods of the virtual namespaces: "
                               f"{_api_reason(exc)}") from None
        self.run.observations.append({"t": round(now - self.start, 3), "state": self.run.state,
                                      "pods": observed})
        self.echo(f"[{now - self.start:7.1f}s] pods {format_observation(observed)}")


def _delete(custom, name: str, run: SimulationRun, settings: SimkubeSettings, echo,
            strict: bool) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    try:
        custom.delete_cluster_custom_object(
            SIMKUBE_GROUP, SIMKUBE_VERSION, SIMULATION_PLURAL, name,
            body=client.V1DeleteOptions(propagation_policy="Background"),
            _request_timeout=settings.request_timeout)
    except ApiException as exc:
        if exc.status == 404:
            echo(f"Simulation {name} is already gone")
            run.deleted = True
            return
        problem = _api_reason(exc)
    except _connection_errors() as exc:
        problem = str(exc)
    else:
        run.deleted = True
        echo(f"deleted Simulation {name} (SimKube's objects go with it, in the background)")
        return
    message = (f"could not delete Simulation {name}: {problem}; delete it with: kubectl delete "
               f"simulations.{SIMKUBE_GROUP} {name}")
    if strict:
        raise KubeApiError(message)
    echo(f"error: {message}")


