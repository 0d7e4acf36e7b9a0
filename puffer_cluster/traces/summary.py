"""What `puffer-cluster traces inspect` reports about a trace: JSON-ready data and its
human-readable form."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

from puffer_cluster.traces.ops import deployment_resources, format_cpu, format_memory
from puffer_cluster.traces.simkube import Trace, TraceError

__all__ = ["format_summary", "summarize_trace"]

_LIFECYCLE_STATES = ("Empty", "Running", "Finished")


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
