"""SimKube trace files: byte-exact round trips on real traces, typed errors, the traces CLI."""

import copy
import json
import os
from collections import OrderedDict
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from puffer_cluster.traces import (
    PodLifecycle,
    Trace,
    TraceConfigError,
    TraceError,
    TraceEvent,
    TraceFormatError,
    TraceVersionError,
    detect_trace_format,
    dump_trace,
    load_json_trace,
    load_trace,
    loads_trace,
    save_json_trace,
    save_trace,
    trace_to_json,
)
from puffer_cluster.cli import main

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATA_MISSING = f"the shared SimKube/sim-arena data folder {DATA_DIR} is absent"


def _data_files(pattern: str) -> list:
    """One test parameter per matching data file, or a single skipped one without the folder."""
    files = sorted(DATA_DIR.glob(pattern)) if DATA_DIR.is_dir() else []
    if not files:
        return [
            pytest.param(None, id="no-data", marks=pytest.mark.skip(reason=f"no {pattern}: {DATA_MISSING}"))
        ]
    return [pytest.param(path, id=path.name) for path in files]


def _data_file(relative: str) -> Path:
    path = DATA_DIR / relative
    if not path.is_file():
        pytest.skip(f"{relative} not found: {DATA_MISSING}")
    return path


REAL_MSGPACK_TRACES = _data_files("simkube/*.sktrace") + _data_files("sim-arena/*.msgpack")
SIMKUBE_JSON_TRACES = _data_files("simkube/testutils_data_*trace.json")

CRONJOB_HASH = 10855072724872030168


def _lifecycle_keys(pairs):
    return {(tuple(key) if isinstance(key, list) else key): value for key, value in pairs}


def _minimal_document() -> dict:
    """A small valid trace, built here so that most tests do not need the shared data."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {"containers": [{"name": "web", "resources": {"requests": {"cpu": "500m"}}}]}
            },
        },
    }
    return {
        "version": 2,
        "config": {
            "trackedObjects": {
                "apps/v1.Deployment": {"podSpecTemplatePaths": ["/spec/template"], "trackLifecycle": True},
                "example.com/v1.Widget": {"podSpecTemplatePaths": ["/spec/pod"]},
            }
        },
        "events": [
            {"ts": 100, "applied_objs": [], "deleted_objs": []},
            {"ts": 100, "applied_objs": [deployment], "deleted_objs": []},
            {"ts": 160, "applied_objs": [], "deleted_objs": [copy.deepcopy(deployment)]},
        ],
        "index": {"apps/v1.Deployment": {"shop/web": 2**64 - 1}},
        "pod_lifecycles": {
            ("apps/v1.Deployment", "shop/web"): {7: ["Empty", {"Running": 101}, {"Finished": [102, 150]}]},
            ("example.com/v1.Widget", "shop/gadget"): {1: [{"Running": 120}], 2: [{"Finished": [121, 130]}]},
        },
    }


MINIMAL_BYTES = msgpack.packb(_minimal_document())


def _real_bytes(relative: str) -> bytes:
    return _data_file(relative).read_bytes()


# ---------------------------------------------------------------- real traces, byte exact


@pytest.mark.parametrize("path", REAL_MSGPACK_TRACES)
def test_real_trace_loads_and_dumps_to_the_same_bytes(path):
    data = path.read_bytes()
    assert dump_trace(load_trace(path)) == data


@pytest.mark.parametrize("path", REAL_MSGPACK_TRACES)
def test_real_trace_survives_json_and_back_byte_for_byte(path):
    data = path.read_bytes()
    json_text = trace_to_json(load_trace(data))
    assert detect_trace_format(json_text.encode()) == "json"
    assert dump_trace(loads_trace(json_text.encode())) == data


@pytest.mark.parametrize("path", REAL_MSGPACK_TRACES)
def test_save_trace_writes_the_same_bytes_and_leaves_no_temp_file(path, tmp_path):
    target = tmp_path / "copy.sktrace"
    save_trace(load_trace(path), target)
    assert target.read_bytes() == path.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["copy.sktrace"]


@pytest.mark.parametrize("path", SIMKUBE_JSON_TRACES)
def test_simkube_json_test_data_reads_into_the_same_model(path):
    trace = load_json_trace(path)
    assert trace == load_trace(path)  # detected as JSON by content
    assert trace.version == 2
    assert trace.tracked_kinds() == ["apps/v1.Deployment"]
    assert trace.index == {"apps/v1.Deployment": {"default/nginx-deployment": 2842228259284014139}}
    assert trace.pod_lifecycles == {}
    assert [event.ts for event in trace.events] == [1709241485]
    # and through msgpack and back without loss
    assert loads_trace(dump_trace(trace)) == trace


def test_simkube_json_trace_contents():
    trace = load_json_trace(_data_file("simkube/testutils_data_trace.json"))
    (event,) = trace.events
    assert [obj["metadata"]["name"] for obj in event.applied_objs] == ["nginx-deployment"]
    assert len(event.deleted_objs) == 1
    assert trace.objects_by_kind() == {"apps/v1.Deployment": event.applied_objs}
    assert trace.namespaces() == ["default"]


@pytest.mark.parametrize("name", ["demo_trace-cpu-slight", "demo_trace-scaling-v2"])
def test_sim_arena_json_and_msgpack_forms_encode_identically(name):
    from_json = load_json_trace(_data_file(f"sim-arena/{name}.json"))
    assert dump_trace(from_json) == _real_bytes(f"sim-arena/{name}.msgpack")


def test_sim_arena_trace_keeps_metadata_field_order_and_deprecated_path():
    trace = load_trace(_real_bytes("sim-arena/demo_trace-cpu-slight.msgpack"))
    assert trace.key_order == ("version", "config", "pod_lifecycles", "index", "metadata", "events")
    assert trace.events[0].key_order == ("ts", "deleted_objs", "applied_objs")
    assert trace.extra_fields["metadata"]["scenario"]["failure_mode"] == "cpu_only"
    # podSpecTemplatePath (singular) is SimKube's deprecated spelling; it still resolves.
    assert trace.config["trackedObjects"]["apps/v1.Deployment"] == {"podSpecTemplatePath": "/spec/template"}
    assert trace.pod_spec_template_paths("apps/v1.Deployment") == ["/spec/template"]


def test_cronjob_trace_contents():
    trace = load_trace(_data_file("simkube/examples_traces_cronjob.sktrace"))
    assert [event.ts for event in trace.events] == [1743286823, 1743286823, 1743287028]
    assert (trace.start_ts, trace.end_ts, trace.duration) == (1743286823, 1743287028, 205)
    assert {kind: len(objs) for kind, objs in trace.objects_by_kind().items()} == {"batch/v1.CronJob": 1}
    assert {kind: len(objs) for kind, objs in trace.objects_by_kind(deleted=True).items()} == {
        "batch/v1.CronJob": 1
    }
    assert trace.namespaces() == ["default"]
    assert trace.tracked_kinds() == ["apps/v1.Deployment", "batch/v1.CronJob", "apps/v1.StatefulSet"]
    assert trace.tracks_lifecycle("batch/v1.CronJob") and not trace.tracks_lifecycle("apps/v1.Deployment")
    # the file's config has no paths: SimKube's built-in ones apply
    assert trace.pod_spec_template_paths("batch/v1.CronJob") == ["/spec/jobTemplate/spec/template"]
    assert trace.pod_spec_template_paths("v1.Pod") is None
    owner = ("batch/v1.CronJob", "default/hello-simkube")
    assert list(trace.pod_lifecycles) == [owner]
    assert [lifecycle for _, _, lifecycle in trace.iter_pod_lifecycles()] == [
        PodLifecycle("Finished", 1743286861, 1743286891),
        PodLifecycle("Finished", 1743286921, 1743286951),
        PodLifecycle("Finished", 1743286981, 1743287011),
    ]
    # a built-in kind: the hash is ignored and the sequence wraps around
    assert trace.lookup_pod_lifecycle(*owner, pod_hash=0, seq=4) == PodLifecycle(
        "Finished", 1743286921, 1743286951
    )
    assert trace.lookup_pod_lifecycle("batch/v1.CronJob", "default/other", 0, 0) == PodLifecycle("Empty")


def test_sim_arena_demo_v2_trace_round_trips_and_contents():
    data = _real_bytes("sim-arena/demo_trace-v2.msgpack")
    trace = loads_trace(data)
    assert dump_trace(trace) == data
    assert [event.ts for event in trace.events] == [0, 1769672195]
    by_kind = {kind: len(objs) for kind, objs in trace.objects_by_kind().items()}
    assert by_kind == {"apps/v1.StatefulSet": 2, "apps/v1.Deployment": 12}
    assert trace.namespaces() == [
        "cert-manager",
        "kube-system",
        "local-path-storage",
        "monitoring",
        "simkube",
    ]
    assert trace.index["apps/v1.StatefulSet"]["monitoring/kube-state-metrics"] == 16009846197457143752
    assert trace.pod_lifecycles == {}


def test_bare_pods_trace_contents():
    trace = load_trace(_data_file("simkube/examples_traces_bare-pods.sktrace"))
    assert len(trace.events) == 4
    assert {kind: len(objs) for kind, objs in trace.objects_by_kind().items()} == {"v1.Pod": 4}
    assert trace.pod_spec_template_paths("v1.Pod") == [""]
    states = [lifecycle.state for _, _, lifecycle in trace.iter_pod_lifecycles()]
    assert sorted(states) == ["Finished", "Finished", "Finished", "Running"]
    assert sum(len(objects) for objects in trace.index.values()) == 16


def test_every_truncation_of_a_real_trace_is_a_format_error():
    data = _real_bytes("simkube/examples_traces_cronjob.sktrace")
    for length in range(len(data)):
        with pytest.raises(TraceFormatError):
            loads_trace(data[:length])


# ---------------------------------------------------------------- the model, without shared data


def test_minimal_trace_round_trips_and_exposes_helpers():
    trace = loads_trace(MINIMAL_BYTES)
    assert dump_trace(trace) == MINIMAL_BYTES
    assert (trace.start_ts, trace.end_ts, trace.duration) == (100, 160, 60)
    assert trace.namespaces() == ["shop"]
    assert trace.index["apps/v1.Deployment"]["shop/web"] == 2**64 - 1
    widget = ("example.com/v1.Widget", "shop/gadget")
    # custom kinds keep one pod template per hash, so the hash matters for them
    assert trace.lookup_pod_lifecycle(*widget, pod_hash=2, seq=0) == PodLifecycle("Finished", 121, 130)
    assert trace.lookup_pod_lifecycle(*widget, pod_hash=3, seq=0) == PodLifecycle("Empty")
    deployment = ("apps/v1.Deployment", "shop/web")
    assert [trace.lookup_pod_lifecycle(*deployment, 0, seq) for seq in range(4)] == [
        PodLifecycle("Empty"),
        PodLifecycle("Running", 101),
        PodLifecycle("Finished", 102, 150),
        PodLifecycle("Empty"),
    ]


def test_trace_built_in_code_round_trips():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}
    trace = Trace(
        config={"trackedObjects": {"v1.Pod": {}}},
        events=[TraceEvent(5, applied_objs=[pod]), TraceEvent(9, deleted_objs=[pod])],
        pod_lifecycles={("v1.Pod", "p"): {1: [{"Finished": [5, 9]}]}},
    )
    assert loads_trace(dump_trace(trace)) == trace
    assert loads_trace(trace_to_json(trace).encode()) == trace
    assert loads_trace(dump_trace(Trace())) == Trace()
    assert trace.namespaces() == []  # cluster-scoped


def test_fields_other_writers_add_are_kept_in_place():
    document = _minimal_document()
    document = {"note": "hand-made", **document, "tags": [1, 2.5, None]}
    document["events"][0] = {"deleted_objs": [], "source": 7, "ts": 100, "applied_objs": []}
    data = msgpack.packb(document)
    trace = loads_trace(data)
    assert trace.extra_fields == {"note": "hand-made", "tags": [1, 2.5, None]}
    assert trace.events[0].extra_fields == {"source": 7}
    assert trace.events[0].key_order == ("deleted_objs", "source", "ts", "applied_objs")
    assert dump_trace(trace) == data
    assert dump_trace(loads_trace(trace_to_json(trace).encode())) == data


def test_dump_trace_checks_objects_built_in_code_too():
    pod = OrderedDict(apiVersion="v1", kind="Pod", metadata={"name": "p"}, spec=OrderedDict(blob=b"\x00"))
    trace = Trace(config={"trackedObjects": {"v1.Pod": {}}}, events=[TraceEvent(1, applied_objs=[pod])])
    with pytest.raises(
        TraceFormatError, match=r"events\[0\]\.applied_objs\[0\]\.spec\.blob: b'\\x00' is not JSON"
    ):
        dump_trace(trace)


def test_json_form_writes_lifecycle_owners_as_pairs():
    document = json.loads(trace_to_json(loads_trace(MINIMAL_BYTES)))
    assert document["pod_lifecycles"][0] == [
        ["apps/v1.Deployment", "shop/web"],
        {"7": ["Empty", {"Running": 101}, {"Finished": [102, 150]}]},
    ]
    assert json.loads(trace_to_json(Trace()))["pod_lifecycles"] == {}  # as SimKube writes it


def test_dump_trace_refuses_an_invalid_trace():
    with pytest.raises(TraceFormatError, match=r"events\[0\]\.ts: expected an integer, got 'soon'"):
        dump_trace(Trace(events=[TraceEvent("soon")]))
    with pytest.raises(TraceFormatError, match="may not redefine"):
        dump_trace(Trace(extra_fields={"events": []}))


def test_save_trace_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "trace.sktrace"
    target.write_bytes(b"old contents")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_trace(loads_trace(MINIMAL_BYTES), target)
    assert target.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["trace.sktrace"]


def test_save_trace_writes_nothing_for_an_invalid_trace(tmp_path):
    with pytest.raises(TraceVersionError):
        save_trace(Trace(version=3), tmp_path / "bad.sktrace")
    with pytest.raises(TraceFormatError):
        save_json_trace(Trace(events=[TraceEvent(True)]), tmp_path / "bad.json")
    assert os.listdir(tmp_path) == []


def test_save_json_trace_round_trips(tmp_path):
    target = tmp_path / "trace.json"
    save_json_trace(loads_trace(MINIMAL_BYTES), target)
    assert dump_trace(load_json_trace(target)) == MINIMAL_BYTES


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (MINIMAL_BYTES, "msgpack"),
        (b'{"version": 2}', "json"),
        (b'\xef\xbb\xbf \n {"version": 2}', "json"),
        (b"[1, 2]", "json"),
        (b"\x93\x80\x90\x80", "msgpack"),
    ],
)
def test_format_is_detected_from_content(data, expected):
    assert detect_trace_format(data) == expected


# ---------------------------------------------------------------- typed errors


def _set(path, value):
    def mutate(document):
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path):
    def mutate(document):
        target = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


DEPLOYMENT_OWNER = ("apps/v1.Deployment", "shop/web")

MALFORMED = [
    (_set(["version"], 3), TraceVersionError, "unsupported trace version 3"),
    (_set(["version"], "2"), TraceFormatError, "version: expected an integer, got '2'"),
    (_delete(["version"]), TraceFormatError, "trace: missing field 'version'"),
    (_delete(["config"]), TraceFormatError, "trace: missing field 'config'"),
    (_delete(["events"]), TraceFormatError, "trace: missing field 'events'"),
    (_delete(["index"]), TraceFormatError, "trace: missing field 'index'"),
    (_delete(["pod_lifecycles"]), TraceFormatError, "trace: missing field 'pod_lifecycles'"),
    (_set([7], 1), TraceFormatError, "trace: field name 7 is not a string"),
    (_set(["events"], {}), TraceFormatError, "events: expected an array, got a map"),
    (_set(["events", 2, "ts"], "abc"), TraceFormatError, r"events\[2\]\.ts: expected an integer, got 'abc'"),
    (_set(["events", 1, "ts"], 100.5), TraceFormatError, r"events\[1\]\.ts: expected an integer, got 100.5"),
    (_set(["events", 1, "ts"], True), TraceFormatError, r"events\[1\]\.ts: expected an integer, got True"),
    (
        _set(["events", 1, "ts"], 2**63),
        TraceFormatError,
        r"events\[1\]\.ts: 9223372036854775808 does not fit",
    ),
    (
        _set(["events", 2, "ts"], 99),
        TraceFormatError,
        r"events\[2\]\.ts: 99 is earlier than the previous event's 100",
    ),
    (_delete(["events", 0, "deleted_objs"]), TraceFormatError, r"events\[0\]: missing field 'deleted_objs'"),
    (_set(["events", 0], []), TraceFormatError, r"events\[0\]: expected a map, got an array"),
    (_set(["events", 1, "applied_objs", 0], "web"), TraceFormatError, r"applied_objs\[0\]: expected a map"),
    (
        _delete(["events", 1, "applied_objs", 0, "kind"]),
        TraceFormatError,
        r"applied_objs\[0\]: missing field 'kind'",
    ),
    (_delete(["events", 1, "applied_objs", 0, "metadata"]), TraceFormatError, "missing field 'metadata'"),
    (
        _set(["events", 1, "applied_objs", 0, "metadata", "namespace"], 5),
        TraceFormatError,
        r"metadata\.namespace",
    ),
    (
        _set(["events", 1, "applied_objs", 0, "spec", "blob"], b"\x00\x01"),
        TraceFormatError,
        r"events\[1\]\.applied_objs\[0\]\.spec\.blob: b'\\x00\\x01' is not JSON data",
    ),
    (
        _set(["events", 2, "deleted_objs", 0, "spec", "template", 3], "x"),
        TraceFormatError,
        r"deleted_objs\[0\]\.spec\.template: map key 3 is not a string",
    ),
    (
        _set(["events", 1, "applied_objs", 0, "spec", "x"], float("inf")),
        TraceFormatError,
        "inf is not a JSON number",
    ),
    (_set(["config"], []), TraceFormatError, "config: expected a map, got an array"),
    (_delete(["config", "trackedObjects"]), TraceFormatError, "config: missing field 'trackedObjects'"),
    (
        _set(["config", "trackedObjects", "example.com/v1.Gadget"], {}),
        TraceConfigError,
        r"config\.trackedObjects\['example\.com/v1\.Gadget'\]: "
        "example.com/v1.Gadget is not a kind SimKube knows, so it needs podSpecTemplatePaths",
    ),
    (
        _set(["config", "trackedObjects", "example.com/v1.Gadget"], {"podSpecTemplatePaths": []}),
        TraceConfigError,
        "needs podSpecTemplatePaths",
    ),
    (
        _set(["config", "trackedObjects", "apps/v1.Deployment", "podSpecTemplatePaths"], ["/spec"]),
        TraceConfigError,
        r"pod spec path \['/spec'\] differs from \['/spec/template'\]",
    ),
    (
        _set(["config", "trackedObjects", "apps/v1.Deployment", "trackLifecycles"], True),
        TraceConfigError,
        "unknown field 'trackLifecycles'",
    ),
    (
        _set(["config", "trackedObjects", "apps/v1.Deployment", "trackLifecycle"], "yes"),
        TraceConfigError,
        r"trackLifecycle: expected true or false, got 'yes'",
    ),
    (
        _set(["config", "trackedObjects", "apps/v1.Deployment", "podSpecTemplatePaths"], "/spec/template"),
        TraceFormatError,
        r"podSpecTemplatePaths: expected an array",
    ),
    (_set(["config", "trackedObjects", "Deployment"], {}), TraceFormatError, "'Deployment' is not a GVK"),
    (_set(["config", "trackedObjects", "a/b/v1.Kind"], {}), TraceFormatError, "'a/b/v1.Kind' is not a GVK"),
    (
        _set(["index", "apps/v1.Deployment", "shop/web"], -1),
        TraceFormatError,
        "-1 does not fit in an unsigned",
    ),
    (
        _set(["index", "apps/v1.Deployment", "shop/web"], "h"),
        TraceFormatError,
        r"\['shop/web'\]: expected an integer",
    ),
    (
        _set(["index", "apps/v1.Deployment"], []),
        TraceFormatError,
        r"index\['apps/v1.Deployment'\]: expected a map",
    ),
    (
        _set(["pod_lifecycles", "apps/v1.Deployment"], {}),
        TraceFormatError,
        "key must be a \\[GVK, 'namespace/name'\\]",
    ),
    (_set(["pod_lifecycles", ("v1.Pod", "a", "b")], {}), TraceFormatError, "key must be a \\[GVK"),
    (
        _set(["pod_lifecycles", DEPLOYMENT_OWNER, "7"], []),
        TraceFormatError,
        "pod spec hash must be an unsigned",
    ),
    (
        _set(["pod_lifecycles", DEPLOYMENT_OWNER, 7, 0], "Gone"),
        TraceFormatError,
        r"\[7\]\[0\]: expected \"Empty\"",
    ),
    (
        _set(["pod_lifecycles", DEPLOYMENT_OWNER, 7, 1], {"Running": "x"}),
        TraceFormatError,
        r"\[7\]\[1\]\.Running: expected an integer, got 'x'",
    ),
    (
        _set(["pod_lifecycles", DEPLOYMENT_OWNER, 7, 2], {"Finished": [1]}),
        TraceFormatError,
        r"\[7\]\[2\]\.Finished: expected \[start, end\]",
    ),
    (
        _set(["pod_lifecycles", DEPLOYMENT_OWNER, 7, 2], {"Finished": [1, 2], "Running": 1}),
        TraceFormatError,
        'expected "Empty"',
    ),
    (_set(["metadata"], {"blob": b"\x00"}), TraceFormatError, r"metadata\.blob: b'\\x00' is not JSON data"),
]


@pytest.mark.parametrize(("mutate", "error", "message"), MALFORMED)
def test_malformed_traces_raise_typed_errors_naming_the_place(mutate, error, message):
    document = _minimal_document()
    mutate(document)
    with pytest.raises(error, match=message) as caught:
        loads_trace(msgpack.packb(document))
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty input"),
        (b"  \n", "empty input"),
        (MINIMAL_BYTES[:-1], "not a complete msgpack document"),
        (MINIMAL_BYTES + b"\x00", "unexpected bytes after the trace"),
        (b"\xc1", "not msgpack"),
        (b"\x91" * 5000, "nested too deeply"),
        (b"\xdd\xff\xff\xff\xff", "not a complete msgpack document"),
        (msgpack.packb(42), "trace: expected a map at the top level, got 42"),
        (msgpack.packb([1, 2]), "trace: expected a map at the top level, got an array"),
        (b"\x82\xa1a\x01\xa1a\x02", "a map has the key 'a' more than once"),
        (b"\x81\x81\x01\x02\x03", "a map key is itself a map"),
        (b"\x81\x91\x91\xa1x\x80", "a map key is an array holding arrays or maps"),
        (msgpack.packb({"version": msgpack.ExtType(5, b"x")}), "got a msgpack extension value"),
        (b"{not json", "not valid JSON"),
        (b'{"version": 2, "version": 2}', "a map has the key 'version' more than once"),
        (b'{"version": NaN}', "NaN is not a JSON number"),
        (b'{"version": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"version": \xff}', "not UTF-8 text"),
    ],
)
def test_malformed_bytes_raise_trace_format_error(data, message):
    with pytest.raises(TraceFormatError, match=message):
        loads_trace(data)


def test_deep_but_sane_objects_are_accepted_and_too_deep_ones_refused():
    def nested(depth):
        value: list = []
        for _ in range(depth):
            value = [value]
        return value

    document = _minimal_document()
    document["events"][1]["applied_objs"][0]["spec"]["deep"] = nested(100)
    assert dump_trace(loads_trace(msgpack.packb(document))) == msgpack.packb(document)
    document["events"][1]["applied_objs"][0]["spec"]["deep"] = nested(200)
    with pytest.raises(TraceFormatError, match=r"applied_objs\[0\]: nested more than 128 levels deep"):
        loads_trace(msgpack.packb(document))


def test_json_lifecycles_must_be_owner_pairs():
    document = json.loads(trace_to_json(loads_trace(MINIMAL_BYTES)))
    document["pod_lifecycles"] = {"apps/v1.Deployment shop/web": {}}
    with pytest.raises(TraceFormatError, match="as a list of"):
        loads_trace(json.dumps(document).encode())
    document["pod_lifecycles"] = [[["v1.Pod", "a/b"], {"0x1f": []}]]
    with pytest.raises(
        TraceFormatError, match=r"pod_lifecycles\[0\]\[1\]: key '0x1f' is not a pod spec hash"
    ):
        loads_trace(json.dumps(document).encode())
    document["pod_lifecycles"] = [[["v1.Pod", "a/b"], {}], [["v1.Pod", "a/b"], {}]]
    with pytest.raises(TraceFormatError, match="appears more than once"):
        loads_trace(json.dumps(document).encode())


def test_simkube_v1_trace_is_refused_with_advice():
    version_1 = msgpack.packb(
        [{"trackedObjects": {}}, [{"ts": 1, "applied_objs": [], "deleted_objs": []}], {}, {}]
    )
    with pytest.raises(
        TraceVersionError, match=r"version 1 SimKube trace .*SimKube <= 1\.1\.1.*skctl export"
    ):
        loads_trace(version_1)


def test_sim_arena_version_1_trace_is_refused_with_advice():
    early = {
        "version": 1,
        "metadata": {"description": "synthetic"},
        "events": [{"ts": 1, "applied_objs": []}],
    }
    for data in (json.dumps(early).encode(), msgpack.packb(early)):
        with pytest.raises(TraceVersionError, match=r"sim-arena version 1 trace .*set version to 2"):
            loads_trace(data)


def test_trace_errors_are_value_errors():
    assert issubclass(TraceError, ValueError)
    assert issubclass(TraceVersionError, TraceError) and issubclass(TraceFormatError, TraceError)
    assert issubclass(TraceConfigError, TraceFormatError)


# ---------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


def _loads_or_trace_error(data: bytes) -> Trace | None:
    try:
        return loads_trace(data)
    except TraceError:
        return None


def _seed_traces() -> list[bytes]:
    seeds = [MINIMAL_BYTES]
    for relative in ("simkube/examples_traces_cronjob.sktrace", "simkube/examples_traces_bare-pods.sktrace"):
        if (DATA_DIR / relative).is_file():
            seeds.append((DATA_DIR / relative).read_bytes())
    return seeds


SEED_TRACES = _seed_traces()


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data):
    _loads_or_trace_error(data)


@FUZZ
@given(
    st.sampled_from(SEED_TRACES),
    st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=8
    ),
    st.sampled_from(["overwrite", "insert", "delete", "truncate"]),
)
def test_fuzz_mutated_real_traces(seed, edits, how):
    data = bytearray(seed)
    for raw_position, byte in edits:
        position = raw_position % (len(data) + 1)
        if how == "overwrite" and position < len(data):
            data[position] = byte
        elif how == "insert":
            data.insert(position, byte)
        elif how == "delete" and position < len(data):
            del data[position]
        elif how == "truncate":
            del data[position:]
            break
    trace = _loads_or_trace_error(bytes(data))
    if trace is not None:
        assert loads_trace(dump_trace(trace)) == trace


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.binary(max_size=4)
)
_msgpack_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=6) | st.integers(min_value=0, max_value=2**64 - 1), children, max_size=4
        )
    ),
    max_leaves=20,
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def _paths(value, prefix=()):
    """Every place in a document that a fuzzed value can replace."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for position, child in enumerate(value):
            yield from _paths(child, (*prefix, position))


MINIMAL_PATHS = [path for path in _paths(_minimal_document()) if path]
JSON_MINIMAL = json.loads(trace_to_json(loads_trace(MINIMAL_BYTES)))
JSON_MINIMAL_PATHS = [path for path in _paths(JSON_MINIMAL) if path]


@FUZZ
@given(_msgpack_values)
def test_fuzz_random_msgpack_documents(value):
    data = msgpack.packb(value)
    trace = _loads_or_trace_error(data)
    if trace is not None:  # anything accepted is written back exactly
        assert dump_trace(trace) == data


@FUZZ
@given(st.sampled_from(MINIMAL_PATHS), _msgpack_values)
def test_fuzz_trace_with_one_field_replaced(path, value):
    document = _minimal_document()
    _set(list(path), value)(document)
    data = msgpack.packb(document)
    trace = _loads_or_trace_error(data)
    if trace is not None:
        assert dump_trace(trace) == data
        assert loads_trace(trace_to_json(trace).encode()) == trace


@FUZZ
@given(st.sampled_from(JSON_MINIMAL_PATHS), _json_values)
def test_fuzz_json_trace_with_one_field_replaced(path, value):
    document = copy.deepcopy(JSON_MINIMAL)
    _set(list(path), value)(document)
    trace = _loads_or_trace_error(json.dumps(document).encode())
    if trace is not None:
        assert loads_trace(dump_trace(trace)) == trace


# ---------------------------------------------------------------- the traces command


def _run(argv: list[str]) -> int:
    return main(["traces", *argv])


def test_inspect_summarises_the_cronjob_trace(capsys):
    path = _data_file("simkube/examples_traces_cronjob.sktrace")
    assert _run(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "format:           msgpack, SimKube trace version 2" in out
    assert (
        "time span:        1743286823 .. 1743287028 (205 s; 2025-03-29T22:20:23Z .. 2025-03-29T22:23:48Z)"
        in out
    )
    assert "events:           3" in out
    assert "applied objects:  1\n  batch/v1.CronJob               1" in out
    assert "deleted objects:  1\n  batch/v1.CronJob               1" in out
    assert "namespaces:       default" in out
    assert "pod lifecycles:   3 for 1 owner (Empty 0, Running 0, Finished 3)" in out
    assert (
        "batch/v1.CronJob               pod spec at '/spec/jobTemplate/spec/template', lifecycle tracked"
        in out
    )


def test_inspect_json_output(capsys):
    path = _data_file("simkube/examples_traces_cronjob.sktrace")
    assert _run(["inspect", "--json", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "msgpack" and summary["version"] == 2
    assert (summary["events"], summary["first_ts"], summary["last_ts"], summary["duration_s"]) == (
        3,
        1743286823,
        1743287028,
        205,
    )
    assert summary["applied_by_kind"] == {"batch/v1.CronJob": 1}
    assert summary["deleted_by_kind"] == {"batch/v1.CronJob": 1}
    assert summary["namespaces"] == ["default"]
    assert summary["pod_lifecycles"] == {"owners": 1, "Empty": 0, "Running": 0, "Finished": 3}
    assert list(summary["tracked_objects"]) == [
        "apps/v1.Deployment",
        "batch/v1.CronJob",
        "apps/v1.StatefulSet",
    ]
    assert summary["tracked_objects"]["batch/v1.CronJob"]["trackLifecycle"] is True


def test_inspect_reads_json_traces_and_empty_ones(tmp_path, capsys):
    path = tmp_path / "trace.sktrace"  # the extension does not decide the format
    path.write_text(trace_to_json(loads_trace(MINIMAL_BYTES)))
    assert _run(["inspect", "--json", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "json"
    assert summary["pod_lifecycles"] == {"owners": 2, "Empty": 1, "Running": 2, "Finished": 2}
    assert summary["tracked_objects"]["example.com/v1.Widget"]["podSpecTemplatePaths"] == ["/spec/pod"]

    save_trace(Trace(), tmp_path / "empty.sktrace")
    assert _run(["inspect", str(tmp_path / "empty.sktrace")]) == 0
    assert "time span:        (no events)" in capsys.readouterr().out


def test_inspect_reports_bad_and_missing_files(tmp_path, capsys):
    bad = tmp_path / "bad.sktrace"
    bad.write_bytes(MINIMAL_BYTES[:-3])
    assert _run(["inspect", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad}: not a complete msgpack document")
    assert _run(["inspect", str(tmp_path / "missing.sktrace")]) == 1
    assert "error: cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("path", REAL_MSGPACK_TRACES)
def test_convert_msgpack_to_json_and_back_gives_the_original_bytes(path, tmp_path, capsys):
    as_json = tmp_path / "trace.json"
    back = tmp_path / "trace.sktrace"
    assert _run(["convert", str(path), str(as_json)]) == 0
    assert detect_trace_format(as_json.read_bytes()) == "json"
    assert _run(["convert", str(as_json), str(back)]) == 0
    assert back.read_bytes() == path.read_bytes()
    assert "wrote" in capsys.readouterr().out


def test_convert_refuses_to_overwrite_without_force(tmp_path, capsys):
    source = tmp_path / "in.msgpack"
    source.write_bytes(MINIMAL_BYTES)
    target = tmp_path / "out.json"
    target.write_text("keep me")
    assert _run(["convert", str(source), str(target)]) == 2
    assert "already exists (use --force" in capsys.readouterr().err
    assert target.read_text() == "keep me"
    assert _run(["convert", str(source), str(target), "--force"]) == 0
    assert dump_trace(load_json_trace(target)) == MINIMAL_BYTES


def test_convert_never_overwrites_its_input(tmp_path, capsys):
    source = tmp_path / "in.json"
    source.write_text(trace_to_json(loads_trace(MINIMAL_BYTES)))
    original = source.read_bytes()
    os.link(source, tmp_path / "alias.json")
    (tmp_path / "sub").mkdir()
    for target in (source, tmp_path / "sub" / ".." / "in.json", tmp_path / "alias.json"):
        assert _run(["convert", str(source), str(target), "--force"]) == 2
        assert "refusing to overwrite the input" in capsys.readouterr().err
    assert source.read_bytes() == original


def test_convert_needs_a_known_output_extension(tmp_path, capsys):
    source = tmp_path / "in.msgpack"
    source.write_bytes(MINIMAL_BYTES)
    assert _run(["convert", str(source), str(tmp_path / "out.yaml")]) == 2
    assert "use a .json, .msgpack or .sktrace name" in capsys.readouterr().err
    assert _run(["convert", str(source), str(tmp_path / "OUT.JSON")]) == 0


def test_convert_of_a_bad_trace_writes_nothing(tmp_path, capsys):
    source = tmp_path / "in.json"
    source.write_text(json.dumps({"version": 1, "events": []}))
    assert _run(["convert", str(source), str(tmp_path / "out.sktrace")]) == 2
    assert "sim-arena version 1 trace" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["in.json"]
