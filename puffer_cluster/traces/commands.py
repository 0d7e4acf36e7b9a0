"""The `traces` command: `traces inspect FILE [--json]`, `traces convert IN OUT [--force]`, and
sim-arena's `traces mutate` and `traces generate`.

The main CLI calls `add_traces_parser(subparsers)` and then `args.func(args)`; each handler
returns the exit code: 0 on success, 1 when a file cannot be read or written, 2 for an
unusable trace or a refused request (printed as `error: ...` on stderr).
"""

import argparse
import json
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from puffer_cluster.traces.simkube import (
    Trace,
    TraceError,
    detect_trace_format,
    loads_trace,
    save_json_trace,
    save_trace,
)

__all__ = ["add_edit_parsers", "add_traces_parser", "format_summary", "run_convert", "run_generate",
           "run_inspect", "run_mutate", "summarize_trace"]

_FORMAT_BY_EXTENSION = {".json": "json", ".msgpack": "msgpack", ".sktrace": "msgpack"}
_LIFECYCLE_STATES = ("Empty", "Running", "Finished")


def add_traces_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    traces = subparsers.add_parser(
        "traces",
        help="inspect, convert, edit and generate SimKube trace files",
        description="Inspect, convert, edit and generate SimKube trace files (format version 2, "
        "msgpack or JSON).",
    )
    commands = traces.add_subparsers(dest="traces_command", metavar="COMMAND", required=True)

    inspect = commands.add_parser(
        "inspect",
        help="summarise a trace",
        description="Summarise a trace: time span, events, objects by kind, namespaces, pod "
        "lifecycles, tracked objects and Deployments (with replicas and requests). The format is "
        "told from the content.",
    )
    inspect.add_argument("file", type=Path, metavar="FILE", help="a .sktrace/.msgpack or .json trace")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.set_defaults(func=run_inspect)

    convert = commands.add_parser(
        "convert",
        help="convert a trace between msgpack and JSON",
        description="Convert a trace between msgpack and JSON. The input format is told from its "
        "content, the output format from OUT's extension: .json for JSON, .msgpack or .sktrace "
        "for msgpack. Converting msgpack to JSON and back gives the original bytes.",
    )
    convert.add_argument("source", type=Path, metavar="IN", help="the trace to read")
    convert.add_argument("target", type=Path, metavar="OUT", help="where to write (never IN itself)")
    convert.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    convert.set_defaults(func=run_convert)
    add_edit_parsers(commands)  # `traces mutate` and `traces generate` (sim-arena's), below
    return traces


class _CommandFailed(Exception):
    """Ends a handler with `error: <message>` on stderr and the given exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def run_inspect(args: argparse.Namespace) -> int:
    try:
        trace, source_format = _load(args.file)
    except _CommandFailed as failure:
        return _report(failure)
    summary = {"file": str(args.file), **summarize_trace(trace, source_format)}
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    try:
        message = _convert(args.source, args.target, overwrite=args.force)
    except _CommandFailed as failure:
        return _report(failure)
    print(message)
    return 0


def _convert(source: Path, target: Path, *, overwrite: bool) -> str:
    target_format = _FORMAT_BY_EXTENSION.get(target.suffix.lower())
    if target_format is None:
        raise _CommandFailed(
            f"cannot tell the output format from {target.name!r}: use a .json, .msgpack or .sktrace name", 2
        )
    if _same_file(source, target):
        raise _CommandFailed(f"refusing to overwrite the input {source}: choose another output", 2)
    if target.exists() and not overwrite:
        raise _CommandFailed(f"{target} already exists (use --force to overwrite it)", 2)
    trace, source_format = _load(source)
    try:
        if target_format == "json":
            save_json_trace(trace, target)
        else:
            save_trace(trace, target)
    except OSError as exc:
        raise _CommandFailed(f"cannot write {target}: {exc.strerror or exc}", 1) from exc
    return f"wrote {target} ({source_format} -> {target_format}, {len(trace.events)} events)"


def summarize_trace(trace: Trace, source_format: str) -> dict[str, Any]:
    """What `inspect` reports, as JSON-ready data."""
    lifecycle_states: Counter[str] = Counter(
        lifecycle.state for _, _, lifecycle in trace.iter_pod_lifecycles()
    )
    return {
        "format": source_format,
        "version": trace.version,
        "events": len(trace.events),
        "first_ts": trace.start_ts,
        "last_ts": trace.end_ts,
        "duration_s": trace.duration,
        "applied_by_kind": _count_by_kind(trace.objects_by_kind()),
        "deleted_by_kind": _count_by_kind(trace.objects_by_kind(deleted=True)),
        "namespaces": trace.namespaces(),
        "pod_lifecycles": {
            "owners": len(trace.pod_lifecycles),
            **{state: lifecycle_states[state] for state in _LIFECYCLE_STATES},
        },
        "tracked_objects": {
            gvk: {
                "podSpecTemplatePaths": trace.pod_spec_template_paths(gvk),
                "trackLifecycle": trace.tracks_lifecycle(gvk),
            }
            for gvk in trace.tracked_kinds()
        },
        "indexed_objects": sum(len(objects) for objects in trace.index.values()),
        "deployments": _deployments(trace),
    }


def _deployments(trace: Trace) -> list[dict[str, Any]]:
    """The applied Deployments (the names `traces mutate --deploy` takes), each with its replica
    count and first container's requests as the last applied object has them."""
    from puffer_cluster.traces.ops import deployment_resources, format_cpu, format_memory
    metadata = [obj.get("metadata") or {} for event in trace.events for obj in event.applied_objs
                if obj.get("kind") == "Deployment"]
    keys = dict.fromkeys((meta.get("namespace"), meta.get("name")) for meta in metadata)
    deployments = []
    for namespace, name in keys:
        entry: dict[str, Any] = {"namespace": namespace, "name": name}
        try:
            found = deployment_resources(trace, name, namespace)
            entry.update(replicas=found.replicas, cpu=format_cpu(found.cpu_millicores),
                         memory=format_memory(found.memory_bytes))
        except TraceError as exc:  # no container, an unreadable quantity...
            entry["problem"] = str(exc)
        deployments.append(entry)
    return deployments


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable form of `summarize_trace`'s output."""
    lines = [
        f"file:             {summary['file']}",
        f"format:           {summary['format']}, SimKube trace version {summary['version']}",
        f"time span:        {_format_span(summary)}",
        f"events:           {summary['events']}",
    ]
    for label, key in (("applied objects:", "applied_by_kind"), ("deleted objects:", "deleted_by_kind")):
        by_kind = summary[key]
        lines.append(f"{label:<18}{sum(by_kind.values())}")
        lines.extend(f"  {gvk:<30} {count}" for gvk, count in by_kind.items())
    lines.append(f"namespaces:       {', '.join(summary['namespaces']) or '(none)'}")
    lifecycles = summary["pod_lifecycles"]
    total = sum(lifecycles[state] for state in _LIFECYCLE_STATES)
    states = ", ".join(f"{state} {lifecycles[state]}" for state in _LIFECYCLE_STATES)
    owners = f"{lifecycles['owners']} owner" + ("" if lifecycles["owners"] == 1 else "s")
    lines.append(f"pod lifecycles:   {total} for {owners} ({states})")
    lines.append(f"tracked objects:  {len(summary['tracked_objects'])}")
    for gvk, tracked in summary["tracked_objects"].items():
        paths = ", ".join(repr(path) for path in tracked["podSpecTemplatePaths"])
        lifecycle = ", lifecycle tracked" if tracked["trackLifecycle"] else ""
        lines.append(f"  {gvk:<30} pod spec at {paths}{lifecycle}")
    lines.append(f"indexed objects:  {summary['indexed_objects']}")
    deployments = summary["deployments"]
    hint = " (traces mutate --deploy NAME [--namespace NAMESPACE])" if deployments else ""
    lines.append(f"deployments:      {len(deployments)}{hint}")
    for deployment in deployments:
        label = "/".join(part for part in (deployment["namespace"], deployment["name"]) if part)
        if "problem" in deployment:
            lines.append(f"  {label:<30} {deployment['problem']}")
        else:
            lines.append(f"  {label:<30} replicas {deployment['replicas']}, requests cpu "
                         f"{deployment['cpu']}, memory {deployment['memory']}")
    return "\n".join(lines)


def _load(path: Path) -> tuple[Trace, str]:
    """The trace in a file and the format it was in."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _CommandFailed(f"cannot read {path}: {exc.strerror or exc}", 1) from exc
    try:
        return loads_trace(data), detect_trace_format(data)
    except TraceError as exc:
        raise _CommandFailed(f"{path}: {exc}", 2) from exc


def _same_file(source: Path, target: Path) -> bool:
    if source.resolve() == target.resolve():
        return True
    try:
        return target.samefile(source)  # hard links, or paths resolve() cannot equate
    except OSError:
        return False


def _count_by_kind(objects_by_kind: dict[str, list[Any]]) -> dict[str, int]:
    return {gvk: len(objects) for gvk, objects in sorted(objects_by_kind.items())}


def _format_span(summary: dict[str, Any]) -> str:
    if summary["events"] == 0:
        return "(no events)"
    first, last = summary["first_ts"], summary["last_ts"]
    return f"{first} .. {last} ({summary['duration_s']} s; {_utc(first)} .. {_utc(last)})"


def _utc(ts: int) -> str:
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # beyond what datetime can show
        return "?"


def _report(failure: _CommandFailed) -> int:
    print(f"error: {failure}", file=sys.stderr)
    return failure.exit_code


# ---------------------------------------------------------------- mutate and generate
# sim-arena's trace edits (`puffer_cluster.traces.ops`) and demo traces
# (`puffer_cluster.traces.generate`).


def add_edit_parsers(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `traces mutate` and `traces generate`."""
    from puffer_cluster.traces.generate import SCENARIOS
    from puffer_cluster.traces.ops import OP_ALIASES, OPS

    mutate = commands.add_parser(
        "mutate",
        help="apply one of sim-arena's edits to a Deployment",
        description="Apply one of sim-arena's edits to the first container (or the replica count) "
        "of every applied Deployment named --deploy: bump/reduce CPU (500m steps, floor 50m), "
        "bump/reduce memory (256Mi steps, floor 64Mi), scale up/down (floor 1). A bump past a "
        "ceiling is refused and nothing is written. The result is a valid v2 trace, written "
        "atomically to --out (format from its extension) or over FILE with --in-place.",
    )
    mutate.add_argument("file", type=Path, metavar="FILE", help="the trace to edit")
    mutate.add_argument("--op", required=True, choices=[*OPS, *OP_ALIASES], metavar="OP",
                        help=f"one of {', '.join(OPS)} (sim-arena's names are accepted too)")
    mutate.add_argument("--deploy", required=True,
                        help="the Deployment's name (traces inspect FILE lists them)")
    mutate.add_argument("--namespace", help="its namespace (needed only when the name is in several)")
    mutate.add_argument("--step", help="edit size: a quantity for CPU/memory (default 500m / 256Mi), "
                        "an integer for replicas (default 1)")
    target = mutate.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="where to write the edited trace (.json for JSON, "
                        ".msgpack/.sktrace for msgpack)")
    target.add_argument("--in-place", action="store_true", help="overwrite FILE (in its own format)")
    mutate.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    mutate.add_argument("--max-cpu", default="16", help="CPU ceiling per container (default 16)")
    mutate.add_argument("--max-memory", default="32Gi", help="memory ceiling (default 32Gi)")
    mutate.add_argument("--max-replicas", type=int, default=100, help="replica ceiling (default 100)")
    mutate.set_defaults(func=run_mutate)

    generate = commands.add_parser(
        "generate",
        help="write demo traces for sim-arena's scenarios",
        description="Write COUNT demo traces (proper v2 traces: tracker config, index, pod "
        "lifecycles) for sim-arena's scenarios, trace i of scenario i mod the number of scenarios, "
        "plus a scenarios.jsonl listing. The same --seed gives the same bytes.",
    )
    generate.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    generate.add_argument("--count", type=int, default=100, help="traces to write")
    generate.add_argument("--seed", type=int, default=0,
                          help="seed of the scenarios' sizes (same seed, same bytes)")
    generate.add_argument("--scenarios", default=",".join(SCENARIOS),
                          help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)")
    generate.add_argument("--format", choices=("msgpack", "json"), default="msgpack",
                          help="file format of the traces")
    generate.add_argument("--node-cpu", default="16", help="node CPU the sizes refer to (default 16)")
    generate.add_argument("--node-memory", default="32Gi", help="node memory (default 32Gi)")
    generate.add_argument("--force", action="store_true", help="overwrite existing files")
    generate.set_defaults(func=run_generate)


def run_mutate(args: argparse.Namespace) -> int:
    from puffer_cluster.traces.ops import Safeguards, apply_op
    from puffer_cluster.traces.quantity import QuantityError, parse_cpu_cores, parse_memory_bytes
    try:
        if args.in_place:
            target, fmt = args.file, None
        else:
            target = args.out
            fmt = _FORMAT_BY_EXTENSION.get(target.suffix.lower())
            if fmt is None:
                raise _CommandFailed(f"cannot tell the output format from {target.name!r}: use a "
                                     ".json, .msgpack or .sktrace name", 2)
            if _same_file(args.file, target):
                raise _CommandFailed(f"refusing to overwrite the input {args.file} "
                                     "(use --in-place to edit it in place)", 2)
            if target.exists() and not args.force:
                raise _CommandFailed(f"{target} already exists (use --force to overwrite it)", 2)
        try:
            safeguards = Safeguards(
                max_cpu_millicores=int(round(parse_cpu_cores(args.max_cpu) * 1000)),
                max_memory_bytes=int(parse_memory_bytes(args.max_memory)),
                max_replicas=args.max_replicas)
        except (QuantityError, TraceError) as exc:
            raise _CommandFailed(f"bad ceiling: {exc}", 2) from exc
        trace, source_format = _load(args.file)
        try:
            result = apply_op(trace, args.op, args.deploy, namespace=args.namespace,
                              step=args.step, safeguards=safeguards)
        except TraceError as exc:
            raise _CommandFailed(str(exc), 2) from exc
        fmt = fmt or source_format
        try:
            (save_json_trace if fmt == "json" else save_trace)(trace, target)
        except OSError as exc:
            raise _CommandFailed(f"cannot write {target}: {exc.strerror or exc}", 1) from exc
    except _CommandFailed as failure:
        return _report(failure)
    print(f"{result.describe()}; wrote {target}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from puffer_cluster.traces.generate import generate_traces, write_traces
    from puffer_cluster.traces.quantity import QuantityError, parse_cpu_cores, parse_memory_bytes
    try:
        scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
        try:
            node_cpu = int(round(parse_cpu_cores(args.node_cpu) * 1000))
            node_memory = int(parse_memory_bytes(args.node_memory))
            generated = generate_traces(args.count, args.seed, scenarios,
                                        node_cpu_millicores=node_cpu, node_memory_bytes=node_memory)
        except (QuantityError, ValueError) as exc:
            raise _CommandFailed(str(exc), 2) from exc
        try:
            write_traces(generated, args.out, fmt=args.format, overwrite=args.force)
        except FileExistsError as exc:
            raise _CommandFailed(f"{exc} (use --force to overwrite)", 2) from exc
        except OSError as exc:
            raise _CommandFailed(f"cannot write to {args.out}: {exc.strerror or exc}", 1) from exc
    except _CommandFailed as failure:
        return _report(failure)
    counts = Counter(item.scenario for item in generated)
    detail = ", ".join(f"{name} {count}" for name, count in counts.items())
    print(f"wrote {len(generated)} traces to {args.out} ({detail or 'none'})")
    return 0
