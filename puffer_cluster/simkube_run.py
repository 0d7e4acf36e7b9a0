"""`puffer-cluster simkube run --trace FILE`: replay a trace in a SimKube cluster.

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
(or the Simulation was deleted by someone else, or could not be deleted); 130 interrupted.

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
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import yaml

from puffer_cluster.config import ConfigError, load_config, parse_duration
from puffer_cluster.traces import Trace, TraceError, detect_trace_format, loads_trace

__all__ = [
    "DEFAULT_DRIVER_IMAGE",
    "SIMKUBE_GROUP",
    "SIMKUBE_VERSION",
    "SIMULATION_CRD",
    "SIMULATION_PLURAL",
    "ApiUnreachableError",
    "CrdMismatchError",
    "CrdMissingError",
    "KubeApiError",
    "KubeconfigError",
    "LeftoverPodsError",
    "LeftoverSimulationError",
    "LocalTrace",
    "MetricsNamespaceMissingError",
    "NamespaceNotCleanError",
    "PreflightError",
    "SimkubeRunError",
    "SimkubeSettings",
    "SimulationFailedError",
    "SimulationRun",
    "SimulationTimeoutError",
    "TraceNotReplayableError",
    "add_simkube_parser",
    "api_client_from_kubeconfig",
    "build_simulation",
    "check_crd",
    "cmd_simkube_run",
    "default_simulation_name",
    "default_timeout",
    "default_trace_path",
    "find_kubeconfig",
    "format_sim_duration",
    "load_hooks",
    "load_replayable_trace",
    "observe_pods",
    "parse_sim_duration",
    "preflight",
    "run_simulation",
    "simkube_settings",
    "simulation_yaml",
    "trace_warnings",
    "virtual_namespaces",
]

SIMKUBE_GROUP = "simkube.io"
SIMKUBE_VERSION = "v1"
SIMULATION_PLURAL = "simulations"
SIMULATION_CRD = f"{SIMULATION_PLURAL}.{SIMKUBE_GROUP}"
# The driver of the SimKube release whose CRD this module is written against (v2.7.0).
DEFAULT_DRIVER_IMAGE = "quay.io/appliedcomputing/sk-driver:v2.7.0"
# Without spec.metrics, SimKube's controller still requires this namespace (its default
# metrics namespace) and fails the Simulation when it is missing.
METRICS_NAMESPACE = "monitoring"
TERMINAL_STATES = ("Finished", "Failed")
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
TRACE_FILE_ANNOTATION = "puffer-cluster.io/trace-file"
TRACE_SHA256_ANNOTATION = "puffer-cluster.io/trace-sha256"
HOOK_LISTS = ("preStartHooks", "preRunHooks", "postRunHooks", "postStopHooks")
_HOOK_FIELDS = {"cmd": str, "args": list, "sendSim": bool, "ignoreFailure": bool}
# The controller names objects sk-<name>-driver-svc (a Service: a DNS-1035 label of at most
# 63 characters), so a Simulation name may have at most 63 - len("sk--driver-svc") characters.
MAX_NAME_LENGTH = 49
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# What SimKube's object store accepts as tracePath (object_store's ObjectStoreScheme).
TRACE_URL_SCHEMES = ("file", "s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss", "http", "https")
_U32_MAX = 2**32 - 1
EXIT_INTERRUPTED = 130


# ------------------------------------------------------------------------------------- errors

class SimkubeRunError(Exception):
    """A `simkube run` that cannot go on; `exit_code` is the command's exit status."""

    exit_code = 11


class KubeconfigError(SimkubeRunError):
    """No usable kubeconfig: an explicit file that is missing, malformed, an unknown context."""

    exit_code = 3


class PreflightError(SimkubeRunError):
    """A preflight check failed; nothing was written to the cluster."""


class ApiUnreachableError(PreflightError):
    """The API server does not answer (or refuses the credentials)."""

    exit_code = 4


class CrdMissingError(PreflightError):
    """SimKube's Simulation CRD is not installed (or does not serve simkube.io/v1)."""

    exit_code = 5


class CrdMismatchError(CrdMissingError):
    """The installed CRD is not the one this command writes for (scope, required fields)."""


class NamespaceNotCleanError(PreflightError):
    """Something of an earlier simulation is still there."""

    exit_code = 6


class LeftoverSimulationError(NamespaceNotCleanError):
    """A Simulation object exists already."""

    exit_code = 6


class LeftoverPodsError(NamespaceNotCleanError):
    """A virtual namespace of the trace still holds pods."""

    exit_code = 7


class MetricsNamespaceMissingError(PreflightError):
    """The 'monitoring' namespace SimKube's controller requires does not exist."""

    exit_code = 8


class SimulationFailedError(SimkubeRunError):
    """The Simulation reached the state Failed."""

    exit_code = 9


class SimulationTimeoutError(SimkubeRunError):
    """The Simulation did not reach Finished or Failed in time."""

    exit_code = 10


class KubeApiError(SimkubeRunError):
    """The API refused or dropped a request during the run."""

    exit_code = 11


class TraceNotReplayableError(TraceError):
    """A well-formed trace that SimKube's driver cannot replay (JSON, no events, ...)."""


# ----------------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class SimkubeSettings:
    """The [simkube] section of the config (see configs/gardener.ini); defaults if absent."""

    driver_image: str = DEFAULT_DRIVER_IMAGE
    driver_namespace: str = "simkube"
    driver_port: int = 8888
    virtual_ns_prefix: str = "virtual"
    trace_dir: str = "file:///data"
    image_pull_delay: int = 0
    image_pull_jitter: int = 0
    pod_startup_delay: int = 0
    pod_startup_jitter: int = 0
    observe_interval: float = 10.0
    timeout_grace: float = 600.0
    request_timeout: float = 30.0


def simkube_settings(config: dict | None = None) -> SimkubeSettings:
    """Settings from a loaded config's [simkube] section, checked; ConfigError if unusable."""
    section = dict((config or {}).get("simkube", {}))
    known = SimkubeSettings.__dataclass_fields__
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ConfigError(f"[simkube]: unknown keys {', '.join(unknown)}")
    defaults = SimkubeSettings()
    values = {}
    for name in known:
        default = getattr(defaults, name)
        value = section.get(name, default)
        if isinstance(default, str):
            value = str(value).strip()
        elif isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"simkube.{name}: expected an integer, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"simkube.{name}: expected a number, got {value!r}")
            value = float(value)
        values[name] = value
    settings = SimkubeSettings(**values)
    if not settings.driver_image:
        raise ConfigError("simkube.driver_image: empty")
    if not _DNS_1123.fullmatch(settings.driver_namespace) or len(settings.driver_namespace) > 63:
        raise ConfigError(f"simkube.driver_namespace: {settings.driver_namespace!r} is not a "
                          "namespace name (lowercase letters, digits and '-', at most 63)")
    if not 1 <= settings.driver_port <= 65535:
        raise ConfigError(f"simkube.driver_port: {settings.driver_port} is not a port (1-65535)")
    if not _DNS_1123.fullmatch(settings.virtual_ns_prefix) or len(settings.virtual_ns_prefix) > 62:
        raise ConfigError(f"simkube.virtual_ns_prefix: {settings.virtual_ns_prefix!r} cannot "
                          "start a namespace name")
    try:
        _check_trace_url(settings.trace_dir.rstrip("/") + "/trace", "simkube.trace_dir")
    except ConfigError:
        raise ConfigError(f"simkube.trace_dir {settings.trace_dir!r}: a directory URL for the driver, "
                          "file:///dir on the node or an object store (s3://bucket/dir, ...)") from None
    for name in ("image_pull_delay", "image_pull_jitter", "pod_startup_delay", "pod_startup_jitter"):
        if not 0 <= getattr(settings, name) <= _U32_MAX:
            raise ConfigError(f"simkube.{name}: milliseconds in 0 .. {_U32_MAX}")
    for name in ("observe_interval", "request_timeout"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"simkube.{name}: at least 1 second")
    if settings.timeout_grace < 0:
        raise ConfigError("simkube.timeout_grace: seconds >= 0")
    return settings


# ------------------------------------------------------------------------- the local trace

@dataclass(frozen=True)
class LocalTrace:
    """A trace file checked for replay: its model and the SHA-256 of its bytes."""

    path: Path
    trace: Trace
    sha256: str


def load_replayable_trace(path: str | os.PathLike[str]) -> LocalTrace:
    """Read and check a trace SimKube's driver can replay. Raises OSError if unreadable, the
    reader's TraceVersionError/TraceFormatError, or TraceNotReplayableError."""
    path = Path(path)
    data = path.read_bytes()
    trace = loads_trace(data)
    if detect_trace_format(data) == "json":
        raise TraceNotReplayableError(
            "a JSON trace: SimKube's driver reads msgpack only; convert it with "
            f"`puffer-cluster traces convert {path} {path.with_suffix('.sktrace')}`")
    if not trace.events:
        raise TraceNotReplayableError("the trace has no events: SimKube's driver refuses it")
    for i, event in enumerate(trace.events):
        for kind, objects in (("applied_objs", event.applied_objs), ("deleted_objs", event.deleted_objs)):
            for j, obj in enumerate(objects):
                if not obj["metadata"].get("namespace"):
                    raise TraceNotReplayableError(
                        f"events[{i}].{kind}[{j}] ({obj.get('kind')} "
                        f"{obj['metadata'].get('name')!r}) has no namespace: SimKube's driver "
                        "replays namespaced objects only")
    return LocalTrace(path, trace, hashlib.sha256(data).hexdigest())


def virtual_namespaces(trace: Trace, prefix: str) -> list[str]:
    """The namespaces the driver replays the trace's objects in: <prefix>-<namespace>."""
    return [f"{prefix}-{namespace}" for namespace in trace.namespaces()]


def trace_warnings(trace: Trace, duration_s: int | None) -> list[str]:
    """What would make the replay surprising: a zero-length trace without --duration, a
    window that applies nothing, a leading empty event far before the others."""
    warnings = []
    events = trace.events
    if len(events) > 1 and not events[0].applied_objs and not events[0].deleted_objs:
        gap = events[1].ts - events[0].ts
        if gap > 86400:
            warnings.append(f"the first event (ts {events[0].ts}) is empty and {gap} s before the "
                            "next one: SimKube's driver waits that long (at speed 1) before applying "
                            "anything")
    if duration_s is None:
        if trace.duration == 0:
            warnings.append("the trace spans 0 s: the driver applies it and cleans up at once; "
                            "pass --duration to keep the simulation up")
    else:
        end = events[0].ts + duration_s
        kept = [event for event in events if event.ts < end]
        if not any(event.applied_objs for event in kept):
            warnings.append(f"--duration {duration_s}s keeps {len(kept)} of {len(events)} events and "
                            "none of them applies an object")
    return warnings


# ------------------------------------------------------------------ names, paths, durations

def default_simulation_name(trace_file: str | os.PathLike[str]) -> str:
    """The file's name without its extension as a Simulation name: lowercase, '-' for anything
    else, 'sim-' in front of a name that does not start with a letter, at most 49 characters."""
    stem = Path(trace_file).name.lstrip(".").split(".")[0]
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"sim-{name}".rstrip("-")
    return name[:MAX_NAME_LENGTH].rstrip("-")


def check_simulation_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or not _DNS_1035.fullmatch(name):
        raise ConfigError(
            f"--name {name!r}: a Simulation name must be lowercase letters, digits and '-', start "
            f"with a letter, end with a letter or digit and have at most {MAX_NAME_LENGTH} "
            "characters (SimKube's controller derives Service names from it)")
    return name


def default_trace_path(trace_file: str | os.PathLike[str], trace_dir: str = "file:///data") -> str:
    """Where the driver reads the trace: <trace_dir>/<the file's name>."""
    return f"{trace_dir.rstrip('/')}/{Path(trace_file).name}"


def _check_trace_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in TRACE_URL_SCHEMES:
        raise ConfigError(f"{what} {url!r}: a URL SimKube's driver can read, with a scheme among "
                          f"{', '.join(s + '://' for s in TRACE_URL_SCHEMES)} "
                          "(e.g. file:///data/trace.sktrace for a file on the node)")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/") or parts.path == "/":
            raise ConfigError(f"{what} {url!r}: a file URL names an absolute path on the node, "
                              "file:///dir/file")
    elif not parts.netloc:
        raise ConfigError(f"{what} {url!r}: no bucket or host")
    return url


def parse_sim_duration(text: str | int) -> int:
    """Whole seconds > 0 from '300', '300s', '5m', '1h30m', '2d' or those with a leading '+'."""
    seconds = parse_duration(text)
    if seconds != int(seconds) or seconds < 1:
        raise ConfigError(f"duration {text!r}: a whole number of seconds, at least 1 "
                          "(SimKube's trace timestamps are in seconds)")
    return int(seconds)


def format_sim_duration(seconds: int) -> str:
    """'+N hours', '+N minutes' or '+N seconds' (the largest exact unit): relative dates that
    both the regex and the grammar versions of SimKube's parse_datetime read, unlike '5m'."""
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return f"+{count} {unit}{'' if count == 1 else 's'}"
    raise AssertionError("unreachable")


def default_timeout(trace: Trace, duration_s: int | None, speed: float, repetitions: int,
                    grace: float) -> int:
    """Seconds to wait for Finished: the replayed span / speed per run, plus `grace` for the
    setup (certificates, image pulls) and the driver's cleanup."""
    span = duration_s if duration_s is not None else trace.duration
    return math.ceil(span / speed * repetitions + grace)


# ---------------------------------------------------------------------------------- hooks

def load_hooks(paths: list[str | os.PathLike[str]] | None) -> dict[str, list[dict]] | None:
    """SimKube hook files (as config/hooks/*.yml) merged in order, each list appended to the
    lists before it, as skctl does. OSError if a file is unreadable, ConfigError if a file is
    not a hooks config (unknown list names or hook fields are refused rather than ignored)."""
    merged: dict[str, list[dict]] = {}
    for path in paths or []:
        text = Path(path).read_text()
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"hooks file {path}: not YAML: {exc}") from None
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ConfigError(f"hooks file {path}: expected a map of hook lists ({', '.join(HOOK_LISTS)})")
        for kind, hooks in document.items():
            if kind not in HOOK_LISTS:
                raise ConfigError(f"hooks file {path}: unknown hook list {kind!r}; expected one of "
                                  f"{', '.join(HOOK_LISTS)}")
            if hooks is None:
                continue
            if not isinstance(hooks, list):
                raise ConfigError(f"hooks file {path}: {kind} must be a list of hooks")
            merged.setdefault(kind, []).extend(
                _check_hook(hook, f"hooks file {path}: {kind}[{i}]") for i, hook in enumerate(hooks))
    return merged or None


def _check_hook(hook: Any, where: str) -> dict:
    if not isinstance(hook, dict):
        raise ConfigError(f"{where}: expected a map with 'cmd'")
    for key, value in hook.items():
        if key not in _HOOK_FIELDS:
            raise ConfigError(f"{where}: unknown field {key!r}; hooks have {', '.join(_HOOK_FIELDS)}")
        if not isinstance(value, _HOOK_FIELDS[key]):
            raise ConfigError(f"{where}.{key}: expected {_HOOK_FIELDS[key].__name__}, got {value!r}")
    if not hook.get("cmd"):
        raise ConfigError(f"{where}: missing 'cmd'")
    for j, arg in enumerate(hook.get("args", [])):
        if not isinstance(arg, str):
            raise ConfigError(f"{where}.args[{j}]: {arg!r} is not a string (quote it in the YAML)")
    return {key: list(value) if key == "args" else value for key, value in hook.items()}


# ------------------------------------------------------------------------------ Simulation

def build_simulation(name: str, trace_path: str, settings: SimkubeSettings | None = None, *,
                     duration_s: int | None = None, speed: float = 1.0, repetitions: int = 1,
                     hooks: dict[str, list[dict]] | None = None,
                     trace: LocalTrace | None = None) -> dict[str, Any]:
    """The Simulation object, as the JSON-like dict the API takes. No nulls: optional fields
    are left out (duration without a --duration, hooks without hook files); no metrics."""
    settings = settings or SimkubeSettings()
    check_simulation_name(name)
    _check_trace_url(trace_path, "--trace-path")
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not math.isfinite(speed) \
            or speed <= 0:
        raise ConfigError(f"--speed {speed!r}: a number > 0")
    if isinstance(repetitions, bool) or not isinstance(repetitions, int) or not 1 <= repetitions < 2**31:
        raise ConfigError(f"--repetitions {repetitions!r}: an integer >= 1")
    metadata: dict[str, Any] = {"name": name, "labels": {MANAGED_BY_LABEL: "puffer-cluster"}}
    if trace is not None:
        metadata["annotations"] = {TRACE_FILE_ANNOTATION: trace.path.name,
                                   TRACE_SHA256_ANNOTATION: trace.sha256}
    spec: dict[str, Any] = {
        "driver": {
            "image": settings.driver_image,
            "namespace": settings.driver_namespace,
            "port": settings.driver_port,
            "tracePath": trace_path,
            "virtualNsPrefix": settings.virtual_ns_prefix,
        },
    }
    if duration_s is not None:
        spec["duration"] = format_sim_duration(duration_s)
    spec["speed"] = float(speed)
    spec["repetitions"] = repetitions
    if hooks:
        spec["hooks"] = {kind: hooks[kind] for kind in HOOK_LISTS if hooks.get(kind)}
    spec["lifecycleParams"] = {
        "imagePullDelay": settings.image_pull_delay,
        "imagePullJitter": settings.image_pull_jitter,
        "podStartupDelay": settings.pod_startup_delay,
        "podStartupJitter": settings.pod_startup_jitter,
    }
    return {"apiVersion": f"{SIMKUBE_GROUP}/{SIMKUBE_VERSION}", "kind": "Simulation",
            "metadata": metadata, "spec": spec}


def simulation_yaml(simulation: dict[str, Any]) -> str:
    """The Simulation as a YAML document (`kubectl apply -f -` takes it as is)."""
    return "---\n" + yaml.safe_dump(simulation, sort_keys=False, default_flow_style=False)


def check_crd(crd: dict[str, Any], simulation: dict[str, Any]) -> list[str]:
    """Check the installed CRD against the Simulation: group, plural, cluster scope, v1 served,
    the schema's required fields present. Raises CrdMismatchError; returns warnings for the
    fields the installed schema does not know (the API server would drop them)."""
    spec = crd.get("spec") or {}
    if spec.get("group") != SIMKUBE_GROUP or (spec.get("names") or {}).get("plural") != SIMULATION_PLURAL:
        raise CrdMismatchError(f"CRD {SIMULATION_CRD} does not define {SIMKUBE_GROUP} {SIMULATION_PLURAL}")
    if spec.get("scope") != "Cluster":
        raise CrdMismatchError(f"CRD {SIMULATION_CRD} is {spec.get('scope')}-scoped; this command writes "
                               "the cluster-scoped Simulation of SimKube >= 2")
    version = next((v for v in spec.get("versions") or [] if v.get("name") == SIMKUBE_VERSION), None)
    if version is None or not version.get("served"):
        served = [v.get("name") for v in spec.get("versions") or [] if v.get("served")]
        raise CrdMismatchError(f"CRD {SIMULATION_CRD} does not serve {SIMKUBE_VERSION} "
                               f"(served: {', '.join(served) or 'none'})")
    schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or {}
    missing: list[str] = []
    unknown: list[str] = []
    _compare_with_schema({"spec": simulation["spec"]}, schema, "", missing, unknown)
    if missing:
        raise CrdMismatchError(f"the installed CRD {SIMULATION_CRD} requires {', '.join(missing)}, "
                               "which this command does not write (a newer SimKube?)")
    return [f"the installed CRD does not know {path}: the API server will drop it (an older SimKube?)"
            for path in unknown]


def _compare_with_schema(value: Any, schema: dict, where: str, missing: list[str],
                         unknown: list[str]) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties")
        for key in schema.get("required") or []:
            if key not in value:
                missing.append(f"{where}.{key}".lstrip("."))
        if properties is None or schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        for key, item in value.items():
            path = f"{where}.{key}".lstrip(".")
            if key in properties:
                _compare_with_schema(item, properties[key], path, missing, unknown)
            elif "additionalProperties" in schema:
                _compare_with_schema(item, schema["additionalProperties"] or {}, path, missing, unknown)
            else:
                unknown.append(path)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _compare_with_schema(item, schema["items"], f"{where}[{i}]", missing, unknown)


# ---------------------------------------------------------------------------------- cluster

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
    try:
        version = _json(client.VersionApi(api).get_code(_request_timeout=timeout, _preload_content=False))
    except ApiException as exc:
        raise ApiUnreachableError(f"the API server {server} answered GET /version with "
                                  f"{_api_reason(exc)}: check the kubeconfig's credentials") from None
    except _connection_errors() as exc:
        raise ApiUnreachableError(f"the API server {server} is unreachable: {exc}") from None
    ok(f"ok   API server {server} answers (Kubernetes {version.get('gitVersion', '?')})")

    try:
        crd = _json(client.ApiextensionsV1Api(api).read_custom_resource_definition(
            SIMULATION_CRD, _request_timeout=timeout, _preload_content=False))
    except ApiException as exc:
        if exc.status == 404:
            raise CrdMissingError(f"SimKube is not installed: no CRD {SIMULATION_CRD} "
                                  "(install SimKube's CRDs and controller first)") from None
        raise KubeApiError(f"cannot read CRD {SIMULATION_CRD}: {_api_reason(exc)}") from None
    except _connection_errors() as exc:
        raise ApiUnreachableError(f"the API server {server} stopped answering: {exc}") from None
    for warning in check_crd(crd, simulation):
        ok(f"warn {warning}")
    ok(f"ok   CRD {SIMULATION_CRD} serves {SIMKUBE_VERSION} (cluster-scoped)")

    core = client.CoreV1Api(api)
    try:
        core.read_namespace(METRICS_NAMESPACE, _request_timeout=timeout)
    except ApiException as exc:
        if exc.status == 404:
            raise MetricsNamespaceMissingError(
                f"namespace {METRICS_NAMESPACE!r} does not exist: SimKube's controller fails a "
                "Simulation without it (create it: kubectl create namespace "
                f"{METRICS_NAMESPACE})") from None
        raise KubeApiError(f"cannot read namespace {METRICS_NAMESPACE}: {_api_reason(exc)}") from None
    except _connection_errors() as exc:
        raise ApiUnreachableError(f"the API server {server} stopped answering: {exc}") from None
    ok(f"ok   namespace {METRICS_NAMESPACE} exists")

    custom = client.CustomObjectsApi(api)
    name = simulation["metadata"]["name"]
    try:
        existing = custom.list_cluster_custom_object(SIMKUBE_GROUP, SIMKUBE_VERSION, SIMULATION_PLURAL,
                                                     _request_timeout=timeout)
    except ApiException as exc:
        raise KubeApiError(f"cannot list Simulations: {_api_reason(exc)}") from None
    except _connection_errors() as exc:
        raise ApiUnreachableError(f"the API server {server} stopped answering: {exc}") from None
    leftovers = [(item["metadata"]["name"], _state_of(item)) for item in existing.get("items", [])]
    if leftovers:
        listed = ", ".join(f"{n} ({state or 'no state'})" for n, state in leftovers)
        clash = any(n == name for n, _ in leftovers)
        reason = (f"a Simulation named {name} exists already" if clash else
                  "SimKube runs one Simulation at a time, so a new one would wait (Blocked)")
        raise LeftoverSimulationError(
            f"Simulations exist: {listed}; {reason}. Delete them first: kubectl delete "
            f"simulations.{SIMKUBE_GROUP} {' '.join(n for n, _ in leftovers)}")
    ok("ok   no Simulation exists")

    for namespace in namespaces:
        try:
            pods = _json(core.list_namespaced_pod(namespace, _request_timeout=timeout,
                                                  _preload_content=False)).get("items") or []
        except ApiException as exc:
            raise KubeApiError(f"cannot list pods in {namespace}: {_api_reason(exc)}") from None
        except _connection_errors() as exc:
            raise ApiUnreachableError(f"the API server {server} stopped answering: {exc}") from None
        if pods:
            raise LeftoverPodsError(
                f"virtual namespace {namespace} still holds {len(pods)} pods "
                f"({', '.join(pod['metadata']['name'] for pod in pods[:5])}"
                f"{', ...' if len(pods) > 5 else ''}) from an earlier simulation; wait for "
                "SimKube's cleanup or delete them")
    ok(f"ok   virtual namespaces clean: {', '.join(namespaces) or '(none)'}")
    return report


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


def _format_observation(observed: dict[str, dict]) -> str:
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
                   clock: Callable[[], float] = time.monotonic) -> SimulationRun:
    """Create the Simulation, watch its state until Finished (returns) or Failed
    (SimulationFailedError), observing the pods of `namespaces` while it runs (at most every
    observe_interval seconds, and once at the end), then delete it. It is deleted whatever
    happens once it may exist: on errors, on a timeout, on KeyboardInterrupt."""
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
        _follow(api, custom, created, namespaces, run, start, timeout_s, settings, echo, clock)
    except BaseException:
        if submitted:
            _delete(custom, name, run, settings, echo, strict=False)
        run.elapsed_s = clock() - start
        raise
    _delete(custom, name, run, settings, echo, strict=True)
    run.elapsed_s = clock() - start
    return run


def _follow(api, custom, created: dict, namespaces: list[str], run: SimulationRun, start: float,
            timeout_s: float, settings: SimkubeSettings, echo, clock) -> None:
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException
    name = run.name
    resource_version = created["metadata"].get("resourceVersion")
    deadline = start + timeout_s
    last_observed: float | None = None

    def record(state: str | None) -> None:
        if state is None or state == run.state:
            return
        run.state = state
        run.states.append((round(clock() - start, 3), state))
        echo(f"[{clock() - start:7.1f}s] state {state}")

    def observe(final: bool = False) -> None:
        nonlocal last_observed
        now = clock()
        if not final and (run.state != "Running" or (
                last_observed is not None and now - last_observed < settings.observe_interval)):
            return
        last_observed = now
        try:
            observed = observe_pods(api, namespaces, settings.request_timeout)
        except ApiException as exc:
            raise KubeApiError(f"cannot list the pods of the virtual namespaces: {_api_reason(exc)}") \
                from None
        run.observations.append({"t": round(now - start, 3), "state": run.state, "pods": observed})
        echo(f"[{now - start:7.1f}s] pods {_format_observation(observed)}")

    record(_state_of(created))
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            raise SimulationTimeoutError(
                f"Simulation {name} is still {run.state or 'without a state'} after {timeout_s:g} s "
                "(raise --timeout, or see kubectl describe simulation "
                f"{name} and the sk-ctrl logs)")
        chunk = max(1, math.ceil(min(settings.observe_interval, remaining)))
        stream = watch.Watch().stream(
            custom.list_cluster_custom_object, SIMKUBE_GROUP, SIMKUBE_VERSION, SIMULATION_PLURAL,
            field_selector=f"metadata.name={name}", resource_version=resource_version,
            timeout_seconds=chunk,
            _request_timeout=(settings.request_timeout, chunk + settings.request_timeout))
        try:
            for event in stream:
                obj = event.get("raw_object") or {}
                resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                if event["type"] == "DELETED":
                    raise KubeApiError(f"Simulation {name} was deleted by someone else")
                if event["type"] not in ("ADDED", "MODIFIED"):
                    continue
                record(_state_of(obj))
                if run.state in TERMINAL_STATES:
                    break
                observe()
        except ApiException as exc:
            if exc.status != 410:
                raise KubeApiError(f"watching Simulation {name} failed: {_api_reason(exc)}") from None
            # The resource version expired: read the object again and watch from there.
            try:
                current = custom.get_cluster_custom_object(
                    SIMKUBE_GROUP, SIMKUBE_VERSION, SIMULATION_PLURAL, name,
                    _request_timeout=settings.request_timeout)
            except ApiException as exc2:
                if exc2.status == 404:
                    raise KubeApiError(f"Simulation {name} was deleted by someone else") from None
                raise KubeApiError(f"cannot read Simulation {name}: {_api_reason(exc2)}") from None
            resource_version = current["metadata"].get("resourceVersion")
            record(_state_of(current))
        except _connection_errors() as exc:
            import urllib3.exceptions
            if not isinstance(exc, (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError)):
                raise KubeApiError(f"lost the API server while watching Simulation {name}: {exc}") from None
            # a watch that went quiet or was cut: watch again from the last version seen
        finally:
            stream.close()
        if run.state in TERMINAL_STATES:
            observe(final=True)
            if run.state == "Failed":
                raise SimulationFailedError(
                    f"Simulation {name} Failed (see kubectl describe simulation {name}, the driver "
                    f"job sk-{name}-driver in namespace {created['spec']['driver']['namespace']} "
                    "and the sk-ctrl logs)")
            return
        observe()


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


# --------------------------------------------------------------------------------------- CLI

def add_simkube_parser(subparsers) -> argparse.ArgumentParser:
    simkube = subparsers.add_parser(
        "simkube", help="run traces in a SimKube cluster",
        description="Run traces in a real SimKube cluster (the simkube.io/v1 Simulation CRD).")
    commands = simkube.add_subparsers(dest="simkube_command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run", help="replay a trace as a SimKube Simulation",
        description="Build a simkube.io/v1 Simulation for a trace, check the cluster, submit it, "
                    "watch its state until Finished or Failed, read the pods of its virtual "
                    "namespaces, and delete it on exit (also on errors and Ctrl-C). Without a "
                    "kubeconfig (or with --dry-run) it only prints the Simulation.",
        epilog="Exit status: 0 done, 1 unreadable file, 2 unusable trace or arguments, 3 bad "
               "kubeconfig, 4 API unreachable, 5 SimKube CRD missing or incompatible, 6 a Simulation "
               "exists, 7 pods left in a virtual namespace, 8 namespace 'monitoring' missing, "
               "9 Simulation Failed, 10 timeout, 11 API error during the run, 130 interrupted. "
               "[simkube] config keys (driver image, namespace, port, trace_dir, lifecycle delays, "
               "observe_interval, timeout_grace) follow as --simkube.key value.")
    run.add_argument("--trace", required=True, type=Path, metavar="FILE",
                     help="the trace (SimKube v2 msgpack), checked here before anything else")
    run.add_argument("--trace-path", metavar="URL",
                     help="where the driver reads the trace in the cluster: file:///path on the "
                          "node, s3://, gs://, azure://... (default: <[simkube] trace_dir>/<FILE's "
                          "name>, i.e. file:///data/<name>)")
    run.add_argument("--name", help="Simulation name (default: FILE's name without extension)")
    run.add_argument("--duration", help="replay only this long: seconds or 90s, 5m, 1h30m "
                                        "(default: the whole trace)")
    run.add_argument("--speed", type=float, default=1.0, help="SimKube's time multiplier (default 1)")
    run.add_argument("--repetitions", type=int, default=1, help="runs of the trace (default 1)")
    run.add_argument("--hooks", action="append", metavar="FILE",
                     help="a SimKube hooks file (preStartHooks, ...); repeat to merge in order")
    run.add_argument("--timeout", help="give up waiting after this long (default: the replayed "
                                       "span / speed * repetitions + [simkube] timeout_grace)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="print the Simulation as YAML, call no API (the default without a kubeconfig)")
    mode.add_argument("--read-only", action="store_true",
                      help="print the Simulation and run the preflight checks only (reads, no writes)")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    run.add_argument("--context", help="kubeconfig context (default: its current context)")
    run.add_argument("--config", help="a config file overriding configs/gardener.ini")
    run.set_defaults(handler=cmd_simkube_run)
    return simkube


def cmd_simkube_run(args: argparse.Namespace, overrides: list[str]) -> int:
    """The `simkube run` handler: returns the exit status (ConfigError propagates: status 2)."""
    config = load_config(args.config, overrides)
    settings = simkube_settings(config)
    try:
        local = load_replayable_trace(args.trace)
    except OSError as exc:
        return _fail(f"cannot read {args.trace}: {exc.strerror or exc}", 1)
    except TraceError as exc:
        return _fail(f"{args.trace}: {exc}", 2)
    duration_s = parse_sim_duration(args.duration) if args.duration is not None else None
    try:
        hooks = load_hooks(args.hooks)
    except OSError as exc:
        return _fail(f"cannot read hooks file {exc.filename}: {exc.strerror or exc}", 1)
    name = args.name if args.name is not None else default_simulation_name(local.path)
    trace_path = args.trace_path or default_trace_path(local.path, settings.trace_dir)
    simulation = build_simulation(name, trace_path, settings, duration_s=duration_s,
                                  speed=args.speed, repetitions=args.repetitions, hooks=hooks,
                                  trace=local)
    timeout_s = (parse_sim_duration(args.timeout) if args.timeout is not None else
                 default_timeout(local.trace, duration_s, args.speed, args.repetitions,
                                 settings.timeout_grace))
    for warning in trace_warnings(local.trace, duration_s):
        print(f"warning: {warning}", file=sys.stderr)
    namespaces = virtual_namespaces(local.trace, settings.virtual_ns_prefix)

    if args.dry_run:
        print(simulation_yaml(simulation), end="")
        return 0
    try:
        kubeconfig = find_kubeconfig(args.kubeconfig)
    except KubeconfigError as exc:
        return _fail(str(exc), exc.exit_code)
    if kubeconfig is None:
        if args.read_only:
            return _fail("--read-only checks a cluster, but no kubeconfig was found ($KUBECONFIG, "
                         "~/.kube/config); pass --kubeconfig", KubeconfigError.exit_code)
        print("note: no kubeconfig found ($KUBECONFIG, ~/.kube/config): dry run, nothing was "
              "submitted", file=sys.stderr)
        print(simulation_yaml(simulation), end="")
        return 0

    print(simulation_yaml(simulation), end="")
    try:
        api = api_client_from_kubeconfig(kubeconfig, args.context)
    except KubeconfigError as exc:
        return _fail(str(exc), exc.exit_code)
    previous_sigterm = _raise_on_sigterm()
    try:
        print(f"cluster {_server(api)} (kubeconfig {kubeconfig}"
              + (f", context {args.context})" if args.context else ")"))
        preflight(api, simulation, namespaces, settings)
        if args.read_only:
            print("read-only: preflight passed, nothing was submitted")
            return 0
        print(f"submitting Simulation {name}: trace {trace_path}, timeout {timeout_s} s")
        run = run_simulation(api, simulation, namespaces, timeout_s=timeout_s, settings=settings)
        history = " -> ".join(state or "(none)" for _, state in run.states)
        print(f"Simulation {name} {run.state} after {run.elapsed_s:.1f} s ({history})")
        running = [o for o in run.observations if o["state"] == "Running"]
        if running:
            print(f"last pods while running: {_format_observation(running[-1]['pods'])}")
        return 0
    except SimkubeRunError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        _restore_sigterm(previous_sigterm)
        api.close()


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt


def _raise_on_sigterm():
    """Turn SIGTERM into KeyboardInterrupt during a run, so that the Simulation is deleted."""
    try:
        return signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    except ValueError:  # not the main thread
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
