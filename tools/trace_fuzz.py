"""Malformed SimKube traces, and the pipeline they must pass without an untyped exception.

`malformed_traces(seed, count)` derives `count` inputs (bytes) from small valid v2 traces
(Deployment, Job, CronJob, DaemonSet, bare Pod, with an index and pod lifecycles): truncated or
byte-flipped encodings, wrong types and hostile values deep inside pod specs (strings where maps
go, maps where numbers go, huge and negative numbers, 1e308 quantities, lone surrogates), deep
nesting, deleted fields. The same seed gives the same inputs.

`run_pipeline(data)` does what the CLI does with a file: load (`traces inspect` reads and
summarises), convert both ways (`traces convert`), replay (`compile_timeline`). Every refusal
must be a `TraceError` (a `ReplayError` is one): it returns the stage and the error class, and
lets anything else propagate.

`python tools/trace_fuzz.py [--count 20000] [--seed 0]` runs the pipeline over the inputs and
reports the refusals per stage, any untyped exception, and the slowest inputs.
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from puffer_cluster.replay import ReplaySettings, compile_timeline  # noqa: E402
from puffer_cluster.traces import (  # noqa: E402
    TraceError, detect_trace_format, dump_trace, loads_trace, trace_to_json,
)
from puffer_cluster.traces.summary import format_summary, summarize_trace  # noqa: E402

REPLAY = ReplaySettings()


def _pod_template(cpu="500m", memory="256Mi"):
    return {"metadata": {"labels": {"app": "x"}, "annotations": {"puffer-cluster.io/priority": "0.7"}},
            "spec": {"priorityClassName": "system-node-critical",
                     "containers": [{"name": "c", "image": "i",
                                     "resources": {"requests": {"cpu": cpu, "memory": memory},
                                                   "limits": {"cpu": "1", "memory": "512Mi"}}}],
                     "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "1"}}},
                                        {"name": "side", "restartPolicy": "Always",
                                         "resources": {"limits": {"memory": "64Mi"}}}],
                     "overhead": {"cpu": "10m"}}}


def _object(api, kind, name, spec, namespace="default"):
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def base_documents() -> list[dict]:
    """Small valid v2 trace documents (the JSON form) that exercise every controller."""
    deployment = _object("apps/v1", "Deployment", "web", {"replicas": 3, "template": _pod_template()})
    job = _object("batch/v1", "Job", "batch", {"parallelism": 2, "completions": 4,
                                               "template": _pod_template("250m")})
    cron = _object("batch/v1", "CronJob", "tick", {"schedule": "*/1 * * * *", "concurrencyPolicy": "Forbid",
                                                   "jobTemplate": {"spec": {"template": _pod_template()}}})
    daemon = _object("apps/v1", "DaemonSet", "agent", {"template": _pod_template("50m", "32Mi")},
                     namespace="kube-system")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "namespace": "default"},
           "spec": _pod_template()["spec"]}
    tracked = {"apps/v1.Deployment": {"podSpecTemplatePaths": ["/spec/template"], "trackLifecycle": True},
               "batch/v1.Job": {}, "batch/v1.CronJob": {}, "apps/v1.DaemonSet": {}, "v1.Pod": {}}
    config = {"trackedObjects": tracked}
    lifecycles = [[["batch/v1.Job", "default/batch"], {"7": [{"Finished": [0, 20]}, {"Running": 5}]}],
                  [["apps/v1.Deployment", "default/web"], {"9": [{"Finished": [0, 30]}]}]]
    index = {"batch/v1.Job": {"default/batch": 7}, "apps/v1.Deployment": {"default/web": 9}}
    return [
        {"version": 2, "config": config, "index": index, "pod_lifecycles": lifecycles,
         "events": [{"ts": 1000, "applied_objs": [deployment, job], "deleted_objs": []},
                    {"ts": 1060, "applied_objs": [cron, daemon, pod], "deleted_objs": []},
                    {"ts": 1300, "applied_objs": [], "deleted_objs": [copy.deepcopy(job)]}]},
        {"version": 2, "config": config, "index": {}, "pod_lifecycles": [],
         "events": [{"ts": 0, "applied_objs": [], "deleted_objs": []},
                    {"ts": 5, "applied_objs": [deployment], "deleted_objs": []},
                    {"ts": 900, "applied_objs": [copy.deepcopy(deployment)], "deleted_objs": []}]},
    ]


HOSTILE = [None, True, 0, -1, 7, 2**31, 2**63 - 1, -2**63, 2**64 - 1, 1e308, -0.0, 0.5, "",
           "2", "abc", "-5", "1e308", "1Ei", "999999999999999999999Gi", "0.0000001", "NaN",
           "\ud800", "a\udfffb", [], [1, 2], ["x"], {}, {"cpu": "2"}, {"a": {"b": None}},
           "*/0 * * * *", "61 * * * *", "@every 5m"]
# Where hostile values go: pod spec internals first (the replay's inputs), then the rest.
DEEP_KEYS = ("replicas", "parallelism", "completions", "containers", "initContainers", "resources",
             "requests", "limits", "cpu", "memory", "overhead", "restartPolicy", "template",
             "spec", "schedule", "suspend", "concurrencyPolicy", "priorityClassName", "annotations",
             "metadata", "namespace", "name", "ts", "applied_objs", "deleted_objs", "Finished",
             "Running", "podSpecTemplatePaths", "trackedObjects", "version", "index", "events")


def _containers(node, path=()):
    """(container, key, path) of every map and list slot in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield node, key, path + (key,)
            yield from _containers(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield node, index, path + (index,)
            yield from _containers(value, path + (index,))


def _deep(depth: int, rng: random.Random):
    value = rng.choice([0, "x", None])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def _mutate_document(document: dict, rng: random.Random) -> dict:
    document = copy.deepcopy(document)
    slots = list(_containers(document))
    for _ in range(rng.choice([1, 1, 2, 3])):
        preferred = [slot for slot in slots if slot[1] in DEEP_KEYS]
        parent, key, _ = rng.choice(preferred if preferred and rng.random() < 0.8 else slots)
        roll = rng.random()
        if roll < 0.6:
            value = rng.choice(HOSTILE)
        elif roll < 0.7:
            value = _deep(rng.choice([10, 100, 200, 800]), rng)
        elif roll < 0.8 and isinstance(parent, dict):
            parent.pop(key, None)
            continue
        else:  # a plausible number in the wrong place, or a huge count where counts go
            value = rng.choice([10**6, 10**9, 2**40, 3, 10000, 10001])
        try:
            parent[key] = value
        except (IndexError, KeyError):
            pass
    return document


def _encode(document: dict, rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        try:
            return msgpack.packb(_as_msgpack(document))
        except (ValueError, TypeError, OverflowError, UnicodeEncodeError):
            pass
    return json.dumps(document).encode()


def _as_msgpack(document: dict) -> dict:
    """The msgpack form keys pod_lifecycles by [gvk, ns/name] pairs and hashes by integers."""
    document = dict(document)
    lifecycles = document.get("pod_lifecycles")
    if isinstance(lifecycles, list):
        try:
            document["pod_lifecycles"] = {tuple(owner): {int(h): v for h, v in by_hash.items()}
                                          for owner, by_hash in lifecycles}
        except (TypeError, ValueError, AttributeError):
            pass
    return document


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    roll = rng.random()
    if roll < 0.4:
        return bytes(data[:rng.randrange(len(data))])
    if roll < 0.8:
        for _ in range(rng.choice([1, 1, 2, 4, 8])):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    position = rng.randrange(len(data))
    return bytes(data[:position]) + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9))) \
        + bytes(data[position:])


def _nested_bytes(rng: random.Random) -> bytes:
    """Nesting deeper than any encoder writes: JSON arrays, or msgpack one-element arrays, in
    the first event's applied objects."""
    depth = rng.choice([1000, 10**4, 10**5])
    if rng.random() < 0.5:
        return (b'{"version": 2, "config": {"trackedObjects": {}}, "index": {}, "pod_lifecycles": [], '
                b'"events": [{"ts": 0, "deleted_objs": [], "applied_objs": [' + b"[" * depth
                + b"]" * depth + b"]}]}")
    head = msgpack.packb({"version": 2, "config": {"trackedObjects": {}}, "index": {},
                          "pod_lifecycles": {}})
    # Replace the map header (4 entries) by one of 5 entries, the last the deep "events".
    return bytes([0x85]) + head[1:] + msgpack.packb("events") + b"\x91" * depth + b"\xc0"


def malformed_traces(seed: int, count: int):
    """`count` malformed inputs, reproducibly."""
    rng = random.Random(seed)
    bases = base_documents()
    for _ in range(count):
        document = rng.choice(bases)
        roll = rng.random()
        if roll < 0.63:
            yield _encode(_mutate_document(document, rng), rng)
        elif roll < 0.93:
            yield _mutate_bytes(_encode(document, rng), rng)
        elif roll < 0.96:
            yield _nested_bytes(rng)
        else:
            yield _mutate_bytes(_encode(_mutate_document(document, rng), rng), rng)


def run_pipeline(data: bytes, height: int = 4, width: int = 4, max_steps: int = 16):
    """Load, inspect, convert (both ways), replay. Returns (stage, error class) of the typed
    refusal, ("replayed", None) when everything passed; anything untyped propagates."""
    try:
        trace = loads_trace(data)
    except TraceError as error:
        return "load", type(error).__name__
    format_summary({"file": "input", **summarize_trace(trace, detect_trace_format(data))})
    loads_trace(dump_trace(trace))
    loads_trace(trace_to_json(trace).encode("utf-8"))
    try:
        compile_timeline(trace, height=height, width=width, max_steps=max_steps, settings=REPLAY)
    except TraceError as error:
        return "replay", type(error).__name__
    return "replayed", None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=512, help="episode length of the replay")
    parser.add_argument("--slowest", type=int, default=5)
    args = parser.parse_args(argv)
    outcomes, untyped, times = {}, [], []
    start = time.perf_counter()
    for n, data in enumerate(malformed_traces(args.seed, args.count)):
        began = time.perf_counter()
        try:
            outcome = run_pipeline(data, height=16, width=16, max_steps=args.max_steps)
        except Exception as error:  # noqa: BLE001 - what this tool is looking for
            untyped.append((n, f"{type(error).__name__}: {error}"))
            outcome = ("untyped", type(error).__name__)
        times.append((time.perf_counter() - began, n, outcome))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    total = time.perf_counter() - start
    print(f"{args.count} inputs (seed {args.seed}, replay on 16x16 nodes, {args.max_steps} steps) "
          f"in {total:.1f} s")
    for (stage, error), number in sorted(outcomes.items(), key=lambda item: -item[1]):
        print(f"  {number:6d}  {stage}{': ' + error if error else ''}")
    print(f"untyped exceptions: {len(untyped)}")
    for n, message in untyped[:10]:
        print(f"  input {n}: {message[:200]}")
    print("slowest inputs:")
    for seconds, n, (stage, error) in sorted(times, reverse=True)[:args.slowest]:
        print(f"  input {n}: {seconds * 1000:.1f} ms ({stage}{': ' + error if error else ''})")
    return 1 if untyped else 0


if __name__ == "__main__":
    sys.exit(main())
