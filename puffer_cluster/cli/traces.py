"""`puffer-cluster traces`: `inspect FILE [--json]`, `convert IN OUT [--force]`, and
sim-arena's `mutate` and `generate`. A file that cannot be read or written exits 1, an
unusable trace or a refused request 2."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from puffer_cluster.cli.common import CLIError
from puffer_cluster.traces.generate import SCENARIOS, generate_traces, write_traces
from puffer_cluster.traces.ops import OP_ALIASES, OPS, Safeguards, apply_op
from puffer_cluster.traces.quantity import QuantityError, parse_cpu_cores, parse_memory_bytes
from puffer_cluster.traces.simkube import (
    Trace, TraceError, detect_trace_format, loads_trace, save_json_trace, save_trace,
)
from puffer_cluster.traces.summary import format_summary, summarize_trace

_FORMAT_BY_EXTENSION = {".json": "json", ".msgpack": "msgpack", ".sktrace": "msgpack"}


def add_parser(commands):
    traces = commands.add_parser(
        "traces",
        help="inspect, convert, edit and generate SimKube trace files",
        description="Inspect, convert, edit and generate SimKube trace files (format version 2, "
        "msgpack or JSON).",
    )
    traces.set_defaults(takes_overrides=False)
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


def run(args, overrides: list[str]) -> int:
    return args.func(args)


def run_inspect(args) -> int:
    trace, source_format = _load(args.file)
    summary = {"file": str(args.file), **summarize_trace(trace, source_format)}
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def run_convert(args) -> int:
    print(_convert(args.source, args.target, overwrite=args.force))
    return 0


def _convert(source: Path, target: Path, *, overwrite: bool) -> str:
    target_format = _output_format(target)
    if _same_file(source, target):
        raise CLIError(f"refusing to overwrite the input {source}: choose another output")
    if target.exists() and not overwrite:
        raise CLIError(f"{target} already exists (use --force to overwrite it)")
    trace, source_format = _load(source)
    try:
        if target_format == "json":
            save_json_trace(trace, target)
        else:
            save_trace(trace, target)
    except OSError as exc:
        raise CLIError(f"cannot write {target}: {exc.strerror or exc}", 1) from None
    return f"wrote {target} ({source_format} -> {target_format}, {len(trace.events)} events)"


def _output_format(target: Path) -> str:
    fmt = _FORMAT_BY_EXTENSION.get(target.suffix.lower())
    if fmt is None:
        raise CLIError(f"cannot tell the output format from {target.name!r}: use a .json, "
                       ".msgpack or .sktrace name")
    return fmt


def _load(path: Path) -> tuple[Trace, str]:
    """The trace in a file and the format it was in."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}", 1) from None
    try:
        return loads_trace(data), detect_trace_format(data)
    except TraceError as exc:
        raise CLIError(f"{path}: {exc}") from None


def _same_file(source: Path, target: Path) -> bool:
    if source.resolve() == target.resolve():
        return True
    try:
        return target.samefile(source)  # hard links, or paths resolve() cannot equate
    except OSError:
        return False


# ---------------------------------------------------------------- mutate and generate
# sim-arena's trace edits (`puffer_cluster.traces.ops`) and demo traces
# (`puffer_cluster.traces.generate`).


def add_edit_parsers(commands) -> None:
    """Register `traces mutate` and `traces generate`."""
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


def run_mutate(args) -> int:
    if args.in_place:
        target, fmt = args.file, None
    else:
        target = args.out
        fmt = _output_format(target)
        if _same_file(args.file, target):
            raise CLIError(f"refusing to overwrite the input {args.file} "
                           "(use --in-place to edit it in place)")
        if target.exists() and not args.force:
            raise CLIError(f"{target} already exists (use --force to overwrite it)")
    try:
        safeguards = Safeguards(
            max_cpu_millicores=int(round(parse_cpu_cores(args.max_cpu) * 1000)),
            max_memory_bytes=int(parse_memory_bytes(args.max_memory)),
            max_replicas=args.max_replicas)
    except (QuantityError, TraceError) as exc:
        raise CLIError(f"bad ceiling: {exc}") from None
    trace, source_format = _load(args.file)
    try:
        result = apply_op(trace, args.op, args.deploy, namespace=args.namespace,
                          step=args.step, safeguards=safeguards)
    except TraceError as exc:
        raise CLIError(str(exc)) from None
    fmt = fmt or source_format
    try:
        (save_json_trace if fmt == "json" else save_trace)(trace, target)
    except OSError as exc:
        raise CLIError(f"cannot write {target}: {exc.strerror or exc}", 1) from None
    print(f"{result.describe()}; wrote {target}")
    return 0


def run_generate(args) -> int:
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    try:
        node_cpu = int(round(parse_cpu_cores(args.node_cpu) * 1000))
        node_memory = int(parse_memory_bytes(args.node_memory))
        generated = generate_traces(args.count, args.seed, scenarios,
                                    node_cpu_millicores=node_cpu, node_memory_bytes=node_memory)
    except (QuantityError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    try:
        write_traces(generated, args.out, fmt=args.format, overwrite=args.force)
    except FileExistsError as exc:
        raise CLIError(f"{exc} (use --force to overwrite)") from None
    except OSError as exc:
        raise CLIError(f"cannot write to {args.out}: {exc.strerror or exc}", 1) from None
    counts = Counter(item.scenario for item in generated)
    detail = ", ".join(f"{name} {count}" for name, count in counts.items())
    print(f"wrote {len(generated)} traces to {args.out} ({detail or 'none'})")
    return 0
