"""The pure side of `simkube run`: the [simkube] settings, the local trace and its checks,
names, paths and durations, hook files, and the `simkube.io/v1` Simulation built from them (and
checked against an installed CRD). No API call here: `puffer_cluster.simkube.client` talks to
the cluster."""
from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from puffer_cluster.config import ConfigError, config_section, parse_duration, settings_from
from puffer_cluster.simkube.errors import CrdMismatchError, TraceNotReplayableError
from puffer_cluster.traces import Trace, detect_trace_format, loads_trace

SIMKUBE_GROUP = "simkube.io"
SIMKUBE_VERSION = "v1"
SIMULATION_PLURAL = "simulations"
SIMULATION_CRD = f"{SIMULATION_PLURAL}.{SIMKUBE_GROUP}"
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


# ----------------------------------------------------------------------------------- settings

@config_section("simkube", shared={"virtual_ns_prefix": "replay"})
class SimkubeSettings:
    """The [simkube] section of the config (see configs/gardener.ini, which gives the defaults)
    and the [replay] virtual_ns_prefix, the driver's too."""
    driver_image: str
    driver_namespace: str
    driver_port: int
    virtual_ns_prefix: str
    trace_dir: str
    image_pull_delay: int
    image_pull_jitter: int
    pod_startup_delay: int
    pod_startup_jitter: int
    observe_interval: float
    timeout_grace: float
    request_timeout: float

    def __post_init__(self):
        if not self.driver_image:
            raise ConfigError("simkube.driver_image: empty")
        if not _DNS_1123.fullmatch(self.driver_namespace) or len(self.driver_namespace) > 63:
            raise ConfigError(f"simkube.driver_namespace: {self.driver_namespace!r} is not a "
                              "namespace name (lowercase letters, digits and '-', at most 63)")
        if not 1 <= self.driver_port <= 65535:
            raise ConfigError(f"simkube.driver_port: {self.driver_port} is not a port (1-65535)")
        if not _DNS_1123.fullmatch(self.virtual_ns_prefix) or len(self.virtual_ns_prefix) > 62:
            raise ConfigError(f"replay.virtual_ns_prefix: {self.virtual_ns_prefix!r} cannot "
                              "start a namespace name")
        try:
            _check_trace_url(self.trace_dir.rstrip("/") + "/trace", "simkube.trace_dir")
        except ConfigError:
            raise ConfigError(f"simkube.trace_dir {self.trace_dir!r}: a directory URL for the driver, "
                              "file:///dir on the node or an object store (s3://bucket/dir, ...)") from None
        for name in ("image_pull_delay", "image_pull_jitter", "pod_startup_delay", "pod_startup_jitter"):
            if not 0 <= getattr(self, name) <= _U32_MAX:
                raise ConfigError(f"simkube.{name}: milliseconds in 0 .. {_U32_MAX}")
        for name in ("observe_interval", "request_timeout"):
            if not 1 <= getattr(self, name) < math.inf:
                raise ConfigError(f"simkube.{name}: at least 1 second")
        if not 0 <= self.timeout_grace < math.inf:
            raise ConfigError("simkube.timeout_grace: seconds >= 0")


def simkube_settings(config: dict | None = None) -> SimkubeSettings:
    """Settings from a loaded config, checked; ConfigError if unusable."""
    return settings_from(SimkubeSettings, config)


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


