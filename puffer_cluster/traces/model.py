"""The SimKube trace model (format version 2) and the rules a decoded document must follow:
`trace_from_document` checks a decoded msgpack or JSON document and wraps it in a `Trace`,
sharing its objects (`puffer_cluster.traces.simkube` reads and writes the bytes)."""

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

TRACE_FORMAT_VERSION = 2

# Pod spec locations SimKube knows for built-in kinds (sk-core constants.rs,
# KNOWN_GVKS_METADATA). Any other tracked kind must name its own.
BUILTIN_POD_SPEC_TEMPLATE_PATHS: dict[tuple[str, str, str], list[str]] = {
    ("batch", "v1", "CronJob"): ["/spec/jobTemplate/spec/template"],
    ("apps", "v1", "DaemonSet"): ["/spec/template"],
    ("apps", "v1", "Deployment"): ["/spec/template"],
    ("batch", "v1", "Job"): ["/spec/template"],
    ("apps", "v1", "ReplicaSet"): ["/spec"],
    ("apps", "v1", "StatefulSet"): ["/spec/template"],
    ("", "v1", "Pod"): [""],
}

TraceFormat = Literal["msgpack", "json"]

_TRACE_KEYS = ("version", "config", "events", "index", "pod_lifecycles")
_EVENT_KEYS = ("ts", "applied_objs", "deleted_objs")
# SimKube's tracked-object config denies unknown fields; podSpecTemplatePath is its
# deprecated single-path spelling, still written by sim-arena.
_TRACKED_OBJECT_FIELDS = ("podSpecTemplatePath", "podSpecTemplatePaths", "trackLifecycle", "skipOwned")
_I64 = (-(2**63), 2**63 - 1)
_U64 = (0, 2**64 - 1)
# serde_json, which SimKube reads objects with, refuses documents nested deeper than 128.
_MAX_OBJECT_NESTING = 128


class TraceError(ValueError):
    """A trace file that cannot be used; the message says what is wrong and where."""


class TraceVersionError(TraceError):
    """A trace in a format version other than 2."""


class TraceFormatError(TraceError):
    """A trace that is not well-formed: bad bytes, missing fields, wrong types."""


class TraceConfigError(TraceFormatError):
    """A tracer config SimKube would refuse, e.g. a tracked kind without a pod spec path."""


@dataclass
class TraceEvent:
    """Objects applied and deleted at one instant (`ts`, seconds since the epoch)."""

    ts: int
    applied_objs: list[dict[str, Any]] = field(default_factory=list)
    deleted_objs: list[dict[str, Any]] = field(default_factory=list)
    # Fields other writers add, kept so that saving loses nothing.
    extra_fields: dict[str, Any] = field(default_factory=dict)
    # The order the fields had in the file (sim-arena writes deleted_objs first).
    key_order: tuple[str, ...] = field(default=_EVENT_KEYS, compare=False, repr=False)


@dataclass(frozen=True)
class PodLifecycle:
    """When a pod ran: state "Empty" (never started), "Running" (start only) or "Finished"."""

    state: Literal["Empty", "Running", "Finished"]
    start_ts: int | None = None
    end_ts: int | None = None


@dataclass
class Trace:
    """A SimKube v2 trace. `Trace()` is an empty trace that tracks nothing."""

    version: int = TRACE_FORMAT_VERSION
    config: dict[str, Any] = field(default_factory=lambda: {"trackedObjects": {}})
    events: list[TraceEvent] = field(default_factory=list)
    index: dict[str, dict[str, int]] = field(default_factory=dict)
    # (owner GVK, "namespace/name") -> pod spec hash -> lifecycles in pod launch order,
    # each in its raw form ("Empty", {"Running": t} or {"Finished": [t0, t1]}).
    pod_lifecycles: dict[tuple[str, str], dict[int, list[Any]]] = field(default_factory=dict)
    extra_fields: dict[str, Any] = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=_TRACE_KEYS, compare=False, repr=False)

    @property
    def start_ts(self) -> int | None:
        return self.events[0].ts if self.events else None

    @property
    def end_ts(self) -> int | None:
        return self.events[-1].ts if self.events else None

    @property
    def duration(self) -> int:
        """Seconds from the first event to the last; 0 for an empty trace."""
        return self.events[-1].ts - self.events[0].ts if self.events else 0

    def objects_by_kind(self, *, deleted: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Applied (or deleted) objects grouped by GVK string, in trace order."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for event in self.events:
            for obj in event.deleted_objs if deleted else event.applied_objs:
                grouped.setdefault(object_gvk(obj), []).append(obj)
        return grouped

    def namespaces(self) -> list[str]:
        """Sorted namespaces of all applied and deleted objects."""
        found = {
            obj["metadata"].get("namespace")
            for event in self.events
            for obj in (*event.applied_objs, *event.deleted_objs)
        }
        return sorted(namespace for namespace in found if namespace)

    def tracked_kinds(self) -> list[str]:
        return list(self.config["trackedObjects"])

    def pod_spec_template_paths(self, gvk: str) -> list[str] | None:
        """Where a tracked kind keeps its pod template (JSON pointers); None if not tracked."""
        entry = self._tracked_object(gvk)
        if entry is None:
            return None
        return _resolve_pod_spec_paths(entry[0], entry[1], _child("config.trackedObjects", entry[0]))

    def tracks_lifecycle(self, gvk: str) -> bool:
        entry = self._tracked_object(gvk)
        return entry is not None and entry[1].get("trackLifecycle", False) is True

    def iter_pod_lifecycles(self) -> Iterator[tuple[tuple[str, str], int, PodLifecycle]]:
        """(owner, pod spec hash, lifecycle) for every recorded pod, in file order."""
        for owner, by_hash in self.pod_lifecycles.items():
            for pod_hash, lifecycles in by_hash.items():
                for raw in lifecycles:
                    yield owner, pod_hash, _lifecycle_from_raw(raw)

    def lookup_pod_lifecycle(
        self, owner_gvk: str, owner_ns_name: str, pod_hash: int, seq: int
    ) -> PodLifecycle:
        """The lifecycle of the `seq`-th pod launched for an owner, as SimKube's driver picks it.

        Built-in kinds have one pod template, so the hash is ignored for them; the sequence
        wraps around the recorded pods. Unknown owners or hashes give an Empty lifecycle.
        """
        by_hash = self.pod_lifecycles.get((owner_gvk, owner_ns_name))
        if by_hash is None:
            by_hash = self.pod_lifecycles.get((_canonical_gvk(owner_gvk), owner_ns_name), {})
        if parse_gvk(owner_gvk) in BUILTIN_POD_SPEC_TEMPLATE_PATHS:
            lifecycles = next(iter(by_hash.values()), None)
        else:
            lifecycles = by_hash.get(pod_hash)
        if not lifecycles:
            return PodLifecycle("Empty")
        return _lifecycle_from_raw(lifecycles[seq % len(lifecycles)])

    def _tracked_object(self, gvk: str) -> tuple[str, dict[str, Any]] | None:
        wanted = parse_gvk(gvk)
        for tracked_gvk, tracked in self.config["trackedObjects"].items():
            if parse_gvk(tracked_gvk) == wanted:
                return tracked_gvk, tracked
        return None


def parse_gvk(gvk: str) -> tuple[str, str, str]:
    """("apps", "v1", "Deployment") from "apps/v1.Deployment"; "v1.Pod" and "/v1.Pod" are core."""
    group, _, version_kind = gvk.rpartition("/") if "/" in gvk else ("", "", gvk)
    version, dot, kind = version_kind.partition(".")
    if "/" in group or not dot or "." in kind or not version or not kind:
        raise TraceFormatError(f"{gvk!r} is not a GVK of the form 'group/version.Kind' or 'version.Kind'")
    return group, version, kind


def object_gvk(obj: dict[str, Any]) -> str:
    """The object's GVK string, e.g. "apps/v1.Deployment": SimKube's spelling in configs and indexes."""
    return f"{obj['apiVersion']}.{obj['kind']}"


def object_ns_name(obj: dict[str, Any]) -> str:
    """The object's "namespace/name" (just "name" when cluster-scoped), as keys in the index."""
    metadata = obj["metadata"]
    name = metadata.get("name") or ""
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace else name


# ---------------------------------------------------------------- validation


def trace_from_document(document: Any, source_format: TraceFormat) -> Trace:
    """Check a decoded document against the v2 format and wrap it, sharing its objects."""
    _check_version(document)
    for key in document:
        if not isinstance(key, str):
            raise TraceFormatError(f"trace: field name {_describe(key)} is not a string")
    config, events, index, lifecycles = (_required(document, key, "trace") for key in _TRACE_KEYS[1:])
    if source_format == "json":
        lifecycles = _lifecycles_from_json(lifecycles)
    extra_fields = {key: value for key, value in document.items() if key not in _TRACE_KEYS}
    for key, value in extra_fields.items():
        _check_json_like(value, _child("", key))
    _check_config(config)
    _check_index(index)
    _check_pod_lifecycles(lifecycles)
    return Trace(
        version=document["version"],
        config=config,
        events=_events_from_document(events),
        index=index,
        pod_lifecycles=lifecycles,
        extra_fields=extra_fields,
        key_order=tuple(document),
    )


def _check_version(document: Any) -> None:
    if _looks_like_version_1(document):
        raise TraceVersionError(
            "this is a version 1 SimKube trace (a top-level array, written by SimKube <= 1.1.1); "
            "only version 2 traces (SimKube >= 2.0) can be read, and SimKube itself no longer reads "
            "version 1: record or export the trace again with SimKube >= 2.0 (skctl export)"
        )
    if not isinstance(document, dict):
        raise TraceFormatError(f"trace: expected a map at the top level, got {_describe(document)}")
    if "version" not in document:
        raise TraceFormatError("trace: missing field 'version'")
    version = document["version"]
    if type(version) is not int:
        raise TraceFormatError(f"version: expected an integer, got {_describe(version)}")
    if version == 1 and "config" not in document:
        raise TraceVersionError(
            "this is a sim-arena version 1 trace (only 'events': no 'config', 'index' or "
            "'pod_lifecycles'), which SimKube cannot replay; regenerate it as a version 2 trace, or add "
            "config.trackedObjects, index and pod_lifecycles and set version to 2"
        )
    if version != TRACE_FORMAT_VERSION:
        raise TraceVersionError(
            f"unsupported trace version {version}: only version {TRACE_FORMAT_VERSION} "
            "(SimKube >= 2.0) can be read"
        )


def _looks_like_version_1(document: Any) -> bool:
    """SimKube <= 1.1.1 wrote a bare tuple: (config, events, index[, pod lifecycles])."""
    return (
        isinstance(document, list)
        and len(document) in (3, 4)
        and isinstance(document[0], dict)
        and isinstance(document[1], list)
    )


def _check_config(config: Any) -> None:
    _expect_map(config, "config")
    tracked_objects = _expect_map(_required(config, "trackedObjects", "config"), "config.trackedObjects")
    for gvk, tracked in tracked_objects.items():
        where = _child("config.trackedObjects", gvk)
        _check_gvk(gvk, where)
        _expect_map(tracked, where)
        for name, value in tracked.items():
            if name not in _TRACKED_OBJECT_FIELDS:
                accepted = ", ".join(_TRACKED_OBJECT_FIELDS)
                raise TraceConfigError(
                    f"{where}: unknown field {_describe(name)} (SimKube accepts {accepted})"
                )
            if name in ("trackLifecycle", "skipOwned") and type(value) is not bool:
                raise TraceConfigError(
                    f"{_child(where, name)}: expected true or false, got {_describe(value)}"
                )
        path = tracked.get("podSpecTemplatePath")
        if path is not None and not isinstance(path, str):
            raise TraceConfigError(f"{where}.podSpecTemplatePath: expected a string, got {_describe(path)}")
        paths = tracked.get("podSpecTemplatePaths")
        if paths is not None:
            _expect_list(paths, f"{where}.podSpecTemplatePaths")
            for position, item in enumerate(paths):
                if not isinstance(item, str):
                    raise TraceConfigError(
                        f"{where}.podSpecTemplatePaths[{position}]: expected a string, got {_describe(item)}"
                    )
        _resolve_pod_spec_paths(gvk, tracked, where)


def _resolve_pod_spec_paths(gvk: str, tracked: dict[str, Any], where: str) -> list[str]:
    """The pod template paths SimKube would use for a tracked kind (its config normalisation)."""
    builtin = BUILTIN_POD_SPEC_TEMPLATE_PATHS.get(parse_gvk(gvk))
    paths = tracked.get("podSpecTemplatePaths")
    if not paths and tracked.get("podSpecTemplatePath") is not None:
        paths = [tracked["podSpecTemplatePath"]]
    if paths:
        if builtin is not None and paths != builtin:
            raise TraceConfigError(
                f"{where}: pod spec path {paths} differs from {builtin}, the one SimKube uses for "
                f"{gvk}; SimKube refuses such a config"
            )
        return list(paths)
    if builtin is None:
        raise TraceConfigError(
            f"{where}: {gvk} is not a kind SimKube knows, so it needs podSpecTemplatePaths "
            "(where its objects keep their pod template)"
        )
    return list(builtin)


def _check_index(index: Any) -> None:
    _expect_map(index, "index")
    for gvk, objects in index.items():
        where = _child("index", gvk)
        _check_gvk(gvk, where)
        _expect_map(objects, where)
        for ns_name, object_hash in objects.items():
            if not isinstance(ns_name, str):
                raise TraceFormatError(f"{where}: key {_describe(ns_name)} is not a 'namespace/name' string")
            _check_int(object_hash, _child(where, ns_name), _U64)


def _lifecycles_from_json(lifecycles: Any) -> Any:
    """The msgpack shape of pod_lifecycles from its JSON form (see the module docstring)."""
    if isinstance(lifecycles, dict):
        if lifecycles:
            raise TraceFormatError(
                "pod_lifecycles: in JSON, owners must be written as a list of "
                '[["<GVK>", "<namespace>/<name>"], {"<pod spec hash>": [lifecycle, ...]}] pairs, '
                "since JSON object keys can only be strings"
            )
        return lifecycles
    _expect_list(lifecycles, "pod_lifecycles")
    converted: dict[Any, Any] = {}
    for position, pair in enumerate(lifecycles):
        where = f"pod_lifecycles[{position}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise TraceFormatError(
                f"{where}: expected an [owner, lifecycles by hash] pair, got {_describe(pair)}"
            )
        owner, by_hash = pair
        if not (isinstance(owner, list) and len(owner) == 2 and all(isinstance(part, str) for part in owner)):
            raise TraceFormatError(f"{where}[0]: expected a [GVK, 'namespace/name'] pair of strings")
        _expect_map(by_hash, f"{where}[1]")
        key = tuple(owner)
        if key in converted:
            raise TraceFormatError(f"{where}: owner {_describe(key)} appears more than once")
        converted[key] = {
            _hash_from_json_key(pod_hash, f"{where}[1]"): value for pod_hash, value in by_hash.items()
        }
    return converted


def _hash_from_json_key(key: str, where: str) -> int:
    if not (key.isascii() and key.isdigit() and len(key) <= 20):
        raise TraceFormatError(f"{where}: key {_describe(key)} is not a pod spec hash (a decimal integer)")
    return int(key)


def _check_pod_lifecycles(lifecycles: Any) -> None:
    _expect_map(lifecycles, "pod_lifecycles")
    for owner, by_hash in lifecycles.items():
        where = f"pod_lifecycles[{_describe(owner)}]"
        if not (
            isinstance(owner, tuple) and len(owner) == 2 and all(isinstance(part, str) for part in owner)
        ):
            raise TraceFormatError(f"{where}: key must be a [GVK, 'namespace/name'] pair of strings")
        _check_gvk(owner[0], where)
        _expect_map(by_hash, where)
        for pod_hash, raw_lifecycles in by_hash.items():
            hash_where = f"{where}[{_describe(pod_hash)}]"
            if type(pod_hash) is not int or not _U64[0] <= pod_hash <= _U64[1]:
                raise TraceFormatError(f"{hash_where}: pod spec hash must be an unsigned 64-bit integer")
            _expect_list(raw_lifecycles, hash_where)
            for position, raw in enumerate(raw_lifecycles):
                _check_lifecycle(raw, f"{hash_where}[{position}]")


def _check_lifecycle(raw: Any, where: str) -> None:
    if raw == "Empty":
        return
    if isinstance(raw, dict) and len(raw) == 1:
        ((state, value),) = raw.items()
        if state == "Running":
            _check_int(value, f"{where}.Running", _I64)
            return
        if state == "Finished":
            if not (isinstance(value, list) and len(value) == 2):
                raise TraceFormatError(f"{where}.Finished: expected [start, end], got {_describe(value)}")
            _check_int(value[0], f"{where}.Finished[0]", _I64)
            _check_int(value[1], f"{where}.Finished[1]", _I64)
            return
    expected = '"Empty", {"Running": start} or {"Finished": [start, end]}'
    raise TraceFormatError(f"{where}: expected {expected}, got {_describe(raw)}")


def _lifecycle_from_raw(raw: Any) -> PodLifecycle:
    if raw == "Empty":
        return PodLifecycle("Empty")
    if "Running" in raw:
        return PodLifecycle("Running", start_ts=raw["Running"])
    start, end = raw["Finished"]
    return PodLifecycle("Finished", start_ts=start, end_ts=end)


def _events_from_document(events: Any) -> list[TraceEvent]:
    _expect_list(events, "events")
    result = []
    previous_ts = None
    for position, event in enumerate(events):
        where = f"events[{position}]"
        _expect_map(event, where)
        for key in event:
            if not isinstance(key, str):
                raise TraceFormatError(f"{where}: field name {_describe(key)} is not a string")
        ts, applied, deleted = (_required(event, key, where) for key in _EVENT_KEYS)
        _check_int(ts, f"{where}.ts", _I64)
        if previous_ts is not None and ts < previous_ts:
            raise TraceFormatError(
                f"{where}.ts: {ts} is earlier than the previous event's {previous_ts}; "
                "events must be in time order"
            )
        previous_ts = ts
        for list_name, objects in (("applied_objs", applied), ("deleted_objs", deleted)):
            _expect_list(objects, f"{where}.{list_name}")
            for obj_position, obj in enumerate(objects):
                _check_object(obj, f"{where}.{list_name}[{obj_position}]")
        extra_fields = {key: value for key, value in event.items() if key not in _EVENT_KEYS}
        for key, value in extra_fields.items():
            _check_json_like(value, _child(where, key))
        result.append(TraceEvent(ts, applied, deleted, extra_fields, key_order=tuple(event)))
    return result


def _check_object(obj: Any, where: str) -> None:
    """A Kubernetes object as SimKube stores it: JSON-like, with type and metadata."""
    _expect_map(obj, where)
    for name in ("apiVersion", "kind"):
        value = _required(obj, name, where)
        if not isinstance(value, str) or not value:
            raise TraceFormatError(f"{where}.{name}: expected a non-empty string, got {_describe(value)}")
    metadata = _expect_map(_required(obj, "metadata", where), f"{where}.metadata")
    for name in ("name", "namespace"):
        value = metadata.get(name)
        if value is not None and not isinstance(value, str):
            raise TraceFormatError(f"{where}.metadata.{name}: expected a string, got {_describe(value)}")
    _check_json_like(obj, where)


def _check_json_like(root: Any, where: str) -> None:
    """Only what a JSON document can hold: SimKube keeps objects as serde_json values."""
    # Iterative, so that deep nesting is reported rather than overflowing the stack. Paths
    # are linked (parent, key) pairs, rendered only when something is wrong.
    if not isinstance(root, (dict, list)):
        problem = _json_scalar_problem(root)
        if problem is not None:
            raise TraceFormatError(f"{where}: {problem}")
        return
    pending: list[tuple[Any, Any, int]] = [(root, None, 0)]
    while pending:
        value, path, depth = pending.pop()
        if depth >= _MAX_OBJECT_NESTING:
            raise TraceFormatError(f"{where}: nested more than {_MAX_OBJECT_NESTING} levels deep")
        if isinstance(value, dict):
            for key in value:
                if type(key) is not str:
                    raise TraceFormatError(
                        f"{_render_path(where, path)}: map key {_describe(key)} is not a string"
                    )
            children: Any = value.items()
        else:
            children = enumerate(value)
        for key, child in children:
            # Every value of every object passes here: the common scalars go first, cheaply.
            if type(child) in _JSON_PLAIN_SCALARS:
                continue
            if isinstance(child, (dict, list)):
                pending.append((child, (path, key), depth + 1))
                continue
            problem = _json_scalar_problem(child)
            if problem is not None:
                raise TraceFormatError(f"{_render_path(where, (path, key))}: {problem}")


_JSON_PLAIN_SCALARS = frozenset({str, bool, type(None)})


def _json_scalar_problem(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, str)):
        return None
    if type(value) is int:
        return None if _I64[0] <= value <= _U64[1] else f"integer {_describe(value)} does not fit in 64 bits"
    if type(value) is float:
        return None if math.isfinite(value) else f"{value} is not a JSON number"
    return f"{_describe(value)} is not JSON data (SimKube keeps objects as JSON values)"


def _render_path(where: str, path: Any) -> str:
    keys = []
    while path is not None:
        path, key = path
        keys.append(key)
    rendered = where
    for key in reversed(keys):
        rendered = _child(rendered, key)
    return rendered


def _child(where: str, key: Any) -> str:
    """`where.key` for plain names, `where['app.kubernetes.io/name']` or `where[3]` otherwise."""
    if isinstance(key, str) and key.isidentifier():
        return f"{where}.{key}" if where else key
    return f"{where}[{_describe(key)}]"


def _required(container: dict[str, Any], key: str, where: str) -> Any:
    if key not in container:
        raise TraceFormatError(f"{where}: missing field {key!r}")
    return container[key]


def _expect_map(value: Any, where: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise TraceFormatError(f"{where}: expected a map, got {_describe(value)}")
    return value


def _expect_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise TraceFormatError(f"{where}: expected an array, got {_describe(value)}")
    return value


def _check_int(value: Any, where: str, bounds: tuple[int, int]) -> None:
    if type(value) is not int:  # not bool, which is an int subclass
        raise TraceFormatError(f"{where}: expected an integer, got {_describe(value)}")
    if not bounds[0] <= value <= bounds[1]:
        kind = "a signed" if bounds == _I64 else "an unsigned"
        raise TraceFormatError(f"{where}: {_describe(value)} does not fit in {kind} 64-bit integer")


def _check_gvk(gvk: Any, where: str) -> None:
    if not isinstance(gvk, str):
        raise TraceFormatError(f"{where}: expected a GVK string, got {_describe(gvk)}")
    try:
        parse_gvk(gvk)
    except TraceFormatError as exc:
        raise TraceFormatError(f"{where}: {exc}") from None


def _canonical_gvk(gvk: str) -> str:
    group, version, kind = parse_gvk(gvk)
    return f"{group}/{version}.{kind}" if group else f"{version}.{kind}"


def _describe(value: Any) -> str:
    """A short rendering of an offending value for error messages."""
    if isinstance(value, (str, bytes)) or value is None or type(value) in (bool, float):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    if type(value) is int:
        return str(value) if abs(value) < 10**30 else "a very large integer"
    if isinstance(value, msgpack.ExtType):
        return f"a msgpack extension value (type {value.code})"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, tuple):  # an array decoded as a map key
        flat = all(isinstance(item, (str, int)) for item in value)
        return "[" + ", ".join(_describe(item) for item in value) + "]" if flat else "an array"
    return f"a {type(value).__name__} value"
