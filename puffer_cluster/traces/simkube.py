"""SimKube trace files, format version 2 (SimKube >= 2.0): read, validate, write.

A trace is one msgpack map, written by SimKube's tracer with rmp-serde:

    version         2
    config          {"trackedObjects": {GVK: {"podSpecTemplatePaths": [...], "trackLifecycle": bool, ...}}}
    events          [{"ts": int, "applied_objs": [object, ...], "deleted_objs": [object, ...]}, ...]
    index           {GVK: {"namespace/name": object hash (u64)}}
    pod_lifecycles  {[owner GVK, "namespace/name"]: {pod spec hash (u64): [lifecycle, ...]}}

where GVK is "group/version.Kind" ("v1.Pod" for the core group), an object is a Kubernetes
object as JSON-like data, and a lifecycle is "Empty", {"Running": start} or
{"Finished": [start, end]}.

Byte exactness: `dump_trace(load_trace(data)) == data` for every trace written by SimKube.
That holds because the model keeps what the encoding depends on:
  * objects and maps stay the decoded dicts, so key order (Rust HashMap order, random
    per file) survives; so do the order of each map's fields and any fields this reader
    does not know (sim-arena adds a top-level "metadata"), in `key_order`/`extra_fields`;
  * rmp-serde and the msgpack package both write the smallest int, string and container
    headers, strings as str (never bin) and floats as float64 (serde_json numbers are f64).
A hand-made file with non-minimal headers or float32 values would load fine but be
written back in the canonical form.

The JSON form is what SimKube's test data uses (serde_json of the same structure). JSON
object keys can only be strings, so non-empty pod_lifecycles are written as a list of
[[owner GVK, "namespace/name"], {"pod spec hash": [lifecycle, ...]}] pairs; `{}` is written
when there are none, which keeps such files readable by SimKube.

Refused, with a TraceVersionError saying what the file is: SimKube <= 1.1.1 traces (a
top-level array) and sim-arena's early "version 1" files (only "events", no config, index
or lifecycles), since SimKube cannot replay either.
"""

import json
import os
import re
import secrets
from contextlib import suppress
from pathlib import Path
from typing import Any

import msgpack

from puffer_cluster.traces.model import (
    BUILTIN_POD_SPEC_TEMPLATE_PATHS, TRACE_FORMAT_VERSION, PodLifecycle, Trace, TraceConfigError,
    TraceError, TraceEvent, TraceFormat, TraceFormatError, TraceVersionError, _describe,
    _render_path, object_gvk, object_ns_name, parse_gvk, trace_from_document,
)

__all__ = [
    "BUILTIN_POD_SPEC_TEMPLATE_PATHS",
    "TRACE_FORMAT_VERSION",
    "PodLifecycle",
    "Trace",
    "TraceConfigError",
    "TraceError",
    "TraceEvent",
    "TraceFormatError",
    "TraceVersionError",
    "detect_trace_format",
    "dump_trace",
    "load_json_trace",
    "load_trace",
    "loads_trace",
    "object_gvk",
    "object_ns_name",
    "parse_gvk",
    "save_json_trace",
    "save_trace",
    "trace_to_json",
]


# ---------------------------------------------------------------- reading


def detect_trace_format(data: bytes) -> TraceFormat:
    """JSON if the content starts like JSON text, else msgpack (a trace is a map, never '{')."""
    head = data.lstrip(b" \t\r\n")
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    return "json" if head[:1] in (b"{", b"[") else "msgpack"


def loads_trace(data: bytes | bytearray | memoryview) -> Trace:
    """A trace from msgpack or JSON bytes, the format told from the content."""
    data = bytes(data)
    if not data.strip():
        raise TraceFormatError("empty input: there is no trace in it")
    if detect_trace_format(data) == "json":
        return trace_from_document(_decode_json(data), "json")
    return trace_from_document(_decode_msgpack(data), "msgpack")


def load_trace(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> Trace:
    """A trace from a file path or from bytes, msgpack or JSON by content (not extension)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return loads_trace(source)
    return loads_trace(Path(source).read_bytes())


def load_json_trace(path: str | os.PathLike[str]) -> Trace:
    """A trace from a file in the JSON form (as in SimKube's testutils/data)."""
    return trace_from_document(_decode_json(Path(path).read_bytes()), "json")


def _decode_msgpack(data: bytes) -> Any:
    try:
        # strict_map_key=False: pod_lifecycles is keyed by arrays and by ints.
        return msgpack.unpackb(data, raw=False, strict_map_key=False, object_pairs_hook=_map_from_pairs)
    except TraceError:
        raise
    except msgpack.ExtraData as exc:
        raise TraceFormatError(
            f"unexpected bytes after the trace (at byte {len(data) - len(exc.extra)} of {len(data)})"
        ) from exc
    except (msgpack.StackError, RecursionError) as exc:
        raise TraceFormatError("msgpack nested too deeply") from exc
    except msgpack.FormatError as exc:
        raise TraceFormatError("not msgpack: it holds a byte that no msgpack document can contain") from exc
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise TraceFormatError(
            f"not a complete msgpack document (truncated, or not a trace file): {exc}"
        ) from exc


def _map_from_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    try:
        result = dict(pairs)
    except TypeError:  # array keys decode as lists, which cannot be dict keys
        result = {_hashable_key(key): value for key, value in pairs}
    if len(result) != len(pairs):
        _raise_duplicate_key(pairs)
    return result


def _hashable_key(key: Any) -> Any:
    # Only pod_lifecycles has array keys, and they hold two strings: nothing nested.
    if isinstance(key, list):
        if any(isinstance(item, (list, dict)) for item in key):
            raise TraceFormatError("a map key is an array holding arrays or maps")
        return tuple(key)
    if isinstance(key, dict):
        raise TraceFormatError("a map key is itself a map")
    return key


def _raise_duplicate_key(pairs: list[tuple[Any, Any]]) -> None:
    seen: set[Any] = set()
    for raw_key, _ in pairs:
        key = _hashable_key(raw_key)
        if key in seen:
            raise TraceFormatError(f"a map has the key {_describe(key)} more than once")
        seen.add(key)


def _decode_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(f"not UTF-8 text, so not a JSON trace: {exc}") from exc
    try:
        document = json.loads(text, object_pairs_hook=_map_from_pairs, parse_constant=_refuse_json_constant)
    except TraceError:
        raise
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise TraceFormatError(f"not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise TraceFormatError("JSON nested too deeply") from exc
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(document)
    return document


# A \uD800-\uDFFF escape: JSON's only way to a string that is not Unicode text (a lone surrogate).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogates(root: Any) -> None:
    """Refuse a string that UTF-8 cannot encode (msgpack, SimKube and any writer would fail)."""
    pending: list[tuple[Any, Any]] = [(root, None)]
    while pending:
        value, path = pending.pop()
        children = value.items() if isinstance(value, dict) else enumerate(value) \
            if isinstance(value, list) else ()
        for key, child in children:
            for text in (key, child):
                if isinstance(text, str) and not _is_utf8(text):
                    raise TraceFormatError(f"{_render_path('', (path, key)) or 'trace'}: "
                                           f"{_describe(text)} is not Unicode text (a lone "
                                           "surrogate escape)")
            if isinstance(child, (dict, list)):
                pending.append((child, (path, key)))


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_json_constant(name: str) -> None:
    raise TraceFormatError(f"not valid JSON: {name} is not a JSON number")


# ---------------------------------------------------------------- writing


def dump_trace(trace: Trace) -> bytes:
    """The msgpack bytes of a trace; the trace is validated first, as when reading."""
    document = _document_from_trace(trace)
    trace_from_document(document, "msgpack")
    packed: bytes = msgpack.packb(document, use_bin_type=True)
    return packed


def trace_to_json(trace: Trace) -> str:
    """The JSON form of a trace (pod_lifecycles as pairs, see the module docstring)."""
    document = _document_from_trace(trace)
    trace_from_document(document, "msgpack")
    lifecycles = document["pod_lifecycles"]
    if lifecycles:
        document["pod_lifecycles"] = [
            [list(owner), {str(pod_hash): raws for pod_hash, raws in by_hash.items()}]
            for owner, by_hash in lifecycles.items()
        ]
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def save_trace(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write a trace as msgpack, atomically: readers see the old file or the whole new one."""
    _write_atomically(Path(path), dump_trace(trace))


def save_json_trace(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write a trace in the JSON form, atomically."""
    _write_atomically(Path(path), trace_to_json(trace).encode("utf-8"))


def _document_from_trace(trace: Trace) -> dict[Any, Any]:
    events = [
        _ordered(
            {"ts": event.ts, "applied_objs": event.applied_objs, "deleted_objs": event.deleted_objs},
            event.extra_fields,
            event.key_order,
        )
        for event in trace.events
    ]
    fields = {
        "version": trace.version,
        "config": trace.config,
        "events": events,
        "index": trace.index,
        "pod_lifecycles": trace.pod_lifecycles,
    }
    return _ordered(fields, trace.extra_fields, trace.key_order)


def _ordered(
    fields: dict[str, Any], extra_fields: dict[str, Any], key_order: tuple[str, ...]
) -> dict[str, Any]:
    """Fields in their original order; new ones (not in key_order) go last."""
    clashes = fields.keys() & extra_fields.keys()
    if clashes:
        raise TraceFormatError(f"extra_fields may not redefine {sorted(clashes)}")
    merged = {**fields, **extra_fields}
    ordered = {key: merged[key] for key in key_order if key in merged}
    ordered.update(merged)
    return ordered


def _write_atomically(path: Path, data: bytes) -> None:
    # O_EXCL with 0o666 rather than mkstemp: the new file gets the usual umask-based mode
    # instead of mkstemp's 0o600. The temp file lives in the target's directory so that
    # os.replace is a rename within one file system.
    temp_path = path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial")
    fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as temp_file:
            temp_file.write(data)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_path, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; not possible on every platform, hence best effort."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
