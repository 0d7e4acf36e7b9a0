"""sim-arena's trace edits (`traces mutate`) and demo traces (`traces generate`)."""
import json
from pathlib import Path

import numpy as np
import pytest

from puffer_cluster.cli import main as cli_main
from puffer_cluster.replay import ReplaySettings, compile_timeline
from puffer_cluster.simarena import simarena_replay
from puffer_cluster.traces import (
    Trace,
    TraceError,
    TraceEvent,
    dump_trace,
    load_trace,
    save_json_trace,
    save_trace,
)
from puffer_cluster.traces.generate import (
    GENERATED_INDEX, SCENARIOS, generate_busy_trace, generate_trace, generate_traces, write_traces,
)
from puffer_cluster.traces.ops import (
    AmbiguousDeploymentError,
    DeploymentNotFoundError,
    Safeguards,
    SafeguardError,
    TraceOpError,
    apply_op,
    bump_cpu,
    bump_mem,
    deployment_resources,
    format_cpu,
    format_memory,
    mutate_trace,
    reduce_cpu,
    reduce_mem,
    scale_down,
    scale_up,
)
from puffer_cluster.traces.quantity import cpu_millicores, memory_bytes

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MIB, GIB = 2**20, 2**30


def deployment(name="web", namespace="default", replicas=3, requests=None, limits=None,
               extra_containers=()):
    resources = {}
    if requests is not None:
        resources["requests"] = dict(requests)
    if limits is not None:
        resources["limits"] = dict(limits)
    spec = {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": name, "image": "web:1", "resources": resources},
                                                 *extra_containers]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def trace_of(*objects, events=None):
    events = events or [TraceEvent(ts=1000, applied_objs=list(objects), deleted_objs=[])]
    return Trace(config={"trackedObjects": {"apps/v1.Deployment": {"podSpecTemplatePaths": ["/spec/template"]}}},
                 events=events)


def requests_of(trace, index=-1):
    objs = [obj for event in trace.events for obj in event.applied_objs if obj["metadata"]["name"] == "web"]
    return objs[index]["spec"]["template"]["spec"]["containers"][0]["resources"]


# ---------------------------------------------------------------- the six ops


def test_bump_and_reduce_cpu_exact_quantities_and_floor():
    trace = trace_of(deployment(requests={"cpu": "17000m", "memory": "2Gi"}))
    result = bump_cpu(trace, "web", safeguards=Safeguards(max_cpu_millicores=20_000))
    assert (result.before, result.after, result.changed, result.resource) == (17000, 17500, True, "cpu")
    assert requests_of(trace)["requests"]["cpu"] == "17500m"
    assert reduce_cpu(trace, "web").after == 17000
    assert requests_of(trace)["requests"]["cpu"] == "17000m"
    assert requests_of(trace)["requests"]["memory"] == "2Gi"  # untouched

    small = trace_of(deployment(requests={"cpu": "0.3"}))
    assert reduce_cpu(small, "web").after == 50  # 300m - 500m stops at the 50m floor
    assert requests_of(small)["requests"]["cpu"] == "50m"
    again = reduce_cpu(small, "web")
    assert (again.before, again.after, again.changed) == (50, 50, False)
    below = trace_of(deployment(requests={"cpu": "20m"}))
    assert not reduce_cpu(below, "web").changed  # under the floor: left alone, never raised
    assert requests_of(below)["requests"]["cpu"] == "20m"


def test_cpu_in_cores_stays_in_cores_when_whole():
    trace = trace_of(deployment(requests={"cpu": "2"}))
    bump_cpu(trace, "web")
    assert requests_of(trace)["requests"]["cpu"] == "2500m"
    bump_cpu(trace, "web")  # 2500m was written in millicores: stays so
    assert requests_of(trace)["requests"]["cpu"] == "3000m"
    cores = trace_of(deployment(requests={"cpu": 2}))
    bump_cpu(cores, "web", step="1")
    assert requests_of(cores)["requests"]["cpu"] == "3"
    assert format_cpu(1500) == "1500m" and format_cpu(2000, "1") == "2" and format_cpu(2500, 1) == "2500m"


def test_bump_and_reduce_memory_exact_quantities_and_floor():
    trace = trace_of(deployment(requests={"cpu": "500m", "memory": "2Gi"}))
    result = bump_mem(trace, "web")
    assert (result.before, result.after) == (2 * GIB, 2 * GIB + 256 * MIB)
    assert requests_of(trace)["requests"]["memory"] == "2304Mi"
    for _ in range(3):
        bump_mem(trace, "web")
    assert requests_of(trace)["requests"]["memory"] == "3Gi"
    assert reduce_mem(trace, "web").after == 3 * GIB - 256 * MIB
    assert requests_of(trace)["requests"]["memory"] == "2816Mi"

    small = trace_of(deployment(requests={"memory": "100Mi"}))
    assert reduce_mem(small, "web").after == 64 * MIB
    assert requests_of(small)["requests"]["memory"] == "64Mi"
    assert not reduce_mem(small, "web").changed
    decimal = trace_of(deployment(requests={"memory": "1G"}))
    assert bump_mem(decimal, "web").after == 10**9 + 256 * MIB
    assert requests_of(decimal)["requests"]["memory"] == str(10**9 + 256 * MIB)
    assert format_memory(33 * GIB - 256 * MIB) == "33536Mi" and format_memory(5) == "5"


def test_scale_up_and_down_with_floor_and_default_replicas():
    trace = trace_of(deployment(replicas=3, requests={"cpu": "500m"}))
    assert scale_up(trace, "web").after == 4
    assert scale_down(trace, "web", step=2).after == 2
    assert scale_down(trace, "web", step=5).after == 1
    assert not scale_down(trace, "web").changed
    assert deployment_resources(trace, "web").replicas == 1
    unset = trace_of(deployment(replicas=None, requests={"cpu": "500m"}))
    result = scale_up(unset, "web")
    assert (result.before, result.after) == (1, 2)  # Kubernetes' default of 1
    assert unset.events[0].applied_objs[0]["spec"]["replicas"] == 2


def test_ceilings_refuse_with_a_typed_error_and_change_nothing():
    cases = [
        ({"cpu": "15600m", "memory": "1Gi"}, 3, "bump_cpu", "cpu", 16_100, 16_000),
        ({"cpu": "500m", "memory": "32Gi"}, 3, "bump_mem", "memory", 32 * GIB + 256 * MIB, 32 * GIB),
        ({"cpu": "500m", "memory": "1Gi"}, 100, "scale_up", "replicas", 101, 100),
    ]
    for requests, replicas, op, resource, requested, limit in cases:
        trace = trace_of(deployment(replicas=replicas, requests=requests))
        before = dump_trace(trace)
        with pytest.raises(SafeguardError) as caught:
            apply_op(trace, op, "web")
        error = caught.value
        assert isinstance(error, TraceOpError) and isinstance(error, TraceError)
        assert (error.op, error.resource, error.requested, error.limit) == (op, resource, requested, limit)
        assert "refused" in str(error) and "unchanged" in str(error)
        assert dump_trace(trace) == before
    exact = trace_of(deployment(requests={"cpu": "15500m"}))
    assert bump_cpu(exact, "web").after == 16_000  # reaching the ceiling is allowed
    over = trace_of(deployment(requests={"cpu": "20000m"}))
    assert reduce_cpu(over, "web").after == 19_500  # reducing from above the ceiling is allowed
    custom = Safeguards(max_replicas=4)
    with pytest.raises(SafeguardError):
        scale_up(trace_of(deployment(replicas=4, requests={})), "web", safeguards=custom)
    with pytest.raises(TraceOpError, match="exceeds"):
        Safeguards(min_replicas=5, max_replicas=4)


def test_every_object_of_the_deployment_is_edited_and_checked_first():
    first = deployment(replicas=2, requests={"cpu": "1000m"})
    second = deployment(replicas=5, requests={"cpu": "15800m"})
    other = deployment(name="db", requests={"cpu": "1"})
    trace = trace_of(events=[TraceEvent(1000, [first, other], []), TraceEvent(1060, [second], [])])
    with pytest.raises(SafeguardError):  # the second object would pass 16 CPU: neither is edited
        bump_cpu(trace, "web")
    assert requests_of(trace, 0)["requests"]["cpu"] == "1000m"
    result = reduce_cpu(trace, "web")
    assert (result.objects, result.before, result.after) == (2, 15_800, 15_300)
    assert requests_of(trace, 0)["requests"]["cpu"] == "500m"
    assert requests_of(trace, 1)["requests"]["cpu"] == "15300m"
    assert other["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1"
    resources = deployment_resources(trace, "web")
    assert (resources.cpu_millicores, resources.replicas, resources.objects) == (15_300, 5, 2)


def test_limits_stand_in_for_requests_and_are_raised_with_them():
    trace = trace_of(deployment(requests={"cpu": "1"}, limits={"cpu": "1", "memory": "1Gi"}))
    bump_cpu(trace, "web")
    assert requests_of(trace) == {"requests": {"cpu": "1500m"}, "limits": {"cpu": "1500m", "memory": "1Gi"}}
    # No memory request: the limit is what the scheduler uses, so the edit starts from it.
    result = reduce_mem(trace, "web")
    assert (result.before, result.after) == (GIB, GIB - 256 * MIB)
    assert requests_of(trace)["requests"]["memory"] == "768Mi"
    assert requests_of(trace)["limits"]["memory"] == "1Gi"
    bare = trace_of(deployment(requests=None))
    assert bump_cpu(bare, "web").before == 0
    assert requests_of(bare) == {"requests": {"cpu": "500m"}}


def test_finding_the_deployment():
    trace = trace_of(deployment(namespace="a", requests={"cpu": "1"}),
                     deployment(namespace="b", requests={"cpu": "2"}))
    with pytest.raises(AmbiguousDeploymentError, match="a, b"):
        bump_cpu(trace, "web")
    assert bump_cpu(trace, "web", namespace="b").after == 2500
    assert trace.events[0].applied_objs[0]["spec"]["template"]["spec"]["containers"][0]["resources"] \
        == {"requests": {"cpu": "1"}}
    with pytest.raises(DeploymentNotFoundError, match="a/web, b/web"):
        scale_up(trace, "api")
    with pytest.raises(DeploymentNotFoundError):
        scale_up(trace, "web", namespace="c")
    empty = trace_of(deployment(requests={}))
    empty.events[0].applied_objs[0]["spec"]["template"]["spec"]["containers"] = []
    with pytest.raises(TraceOpError, match="no container"):
        bump_mem(empty, "web")


def test_op_names_and_steps():
    trace = trace_of(deployment(replicas=3, requests={"cpu": "1", "memory": "1Gi"}))
    assert apply_op(trace, "bump_cpu_small", "web").op == "bump_cpu"  # sim-arena's spelling
    assert apply_op(trace, "scale_up_replicas", "web", step="2").after == 5
    assert apply_op(trace, "bump_mem", "web", step="1Gi").after == 2 * GIB
    assert apply_op(trace, "reduce_cpu", "web", step=0.25).after == 1250
    for op, step in (("bump_cpu", "lots"), ("bump_cpu", "0"), ("scale_up", "1.5"), ("scale_up", 0),
                     ("bump_mem", "-1Gi")):
        with pytest.raises(TraceOpError):
            apply_op(trace, op, "web", step=step)
    with pytest.raises(TraceOpError, match="unknown op"):
        apply_op(trace, "delete", "web")


def test_mutate_trace_copies_and_the_output_is_a_valid_v2_trace():
    original = trace_of(deployment(requests={"cpu": "500m", "memory": "512Mi"}))
    before = dump_trace(original)
    edited, result = mutate_trace(original, "bump_mem", "web")
    assert result.changed and dump_trace(original) == before
    data = dump_trace(edited)
    assert dump_trace(load_trace(data)) == data
    assert requests_of(load_trace(data))["requests"]["memory"] == "768Mi"


@pytest.mark.parametrize("name", ["demo_trace-cpu-slight.msgpack", "demo_trace-v2.msgpack"])
def test_sim_arena_traces_are_edited_and_stay_readable(name):
    path = DATA_DIR / "sim-arena" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    trace = load_trace(path)
    if name == "demo_trace-cpu-slight.msgpack":
        assert reduce_cpu(trace, "web").after == 16_500
        assert "metadata" in trace.extra_fields  # sim-arena's extra field survives
    else:
        result = scale_up(trace, "coredns", namespace="kube-system")
        assert result.after == result.before + 1
    data = dump_trace(trace)
    assert dump_trace(load_trace(data)) == data


# ---------------------------------------------------------------- traces mutate


def run_cli(*args):
    return cli_main(["traces", *map(str, args)])


def test_mutate_cli_writes_out_and_refuses_to_overwrite(tmp_path, capsys):
    source = tmp_path / "in.msgpack"
    save_trace(trace_of(deployment(requests={"cpu": "17000m"})), source)
    original = source.read_bytes()
    out = tmp_path / "out.msgpack"
    assert run_cli("mutate", source, "--op", "reduce_cpu", "--deploy", "web", "--out", out) == 0
    assert "reduce_cpu web: cpu 17000m -> 16500m (1 object)" in capsys.readouterr().out
    assert requests_of(load_trace(out))["requests"]["cpu"] == "16500m"
    assert source.read_bytes() == original

    assert run_cli("mutate", source, "--op", "reduce_cpu", "--deploy", "web", "--out", source) == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert run_cli("mutate", source, "--op", "reduce_cpu", "--deploy", "web", "--out", out) == 2
    assert "already exists" in capsys.readouterr().err
    assert run_cli("mutate", source, "--op", "reduce_cpu", "--deploy", "web", "--out", out, "--force") == 0
    capsys.readouterr()
    assert source.read_bytes() == original

    # Ceilings: refused with a message, exit 2, nothing written.
    refused = tmp_path / "refused.msgpack"
    assert run_cli("mutate", source, "--op", "bump_cpu", "--deploy", "web", "--out", refused) == 2
    assert "past the ceiling 16000m" in capsys.readouterr().err
    assert not refused.exists()
    assert run_cli("mutate", source, "--op", "bump_cpu", "--deploy", "web", "--out", refused,
                   "--max-cpu", "18") == 0
    capsys.readouterr()
    assert requests_of(load_trace(refused))["requests"]["cpu"] == "17500m"
    assert run_cli("mutate", source, "--op", "scale_up", "--deploy", "nope", "--out", tmp_path / "x.json") == 2
    assert "no Deployment 'nope'" in capsys.readouterr().err
    assert list(tmp_path.glob(".*partial")) == []


def test_mutate_cli_in_place_keeps_the_format(tmp_path, capsys):
    source = tmp_path / "trace.json"
    save_json_trace(trace_of(deployment(replicas=3, requests={"cpu": "1"})), source)
    assert run_cli("mutate", source, "--op", "scale_down", "--deploy", "web", "--in-place", "--step", "2") == 0
    assert "replicas 3 -> 1" in capsys.readouterr().out
    assert source.read_text().startswith("{")
    assert load_trace(source).events[0].applied_objs[0]["spec"]["replicas"] == 1
    converted = tmp_path / "trace.msgpack"
    assert run_cli("mutate", source, "--op", "scale_up", "--deploy", "web", "--out", converted) == 0
    assert not converted.read_bytes().startswith(b"{")


# ---------------------------------------------------------------- generated traces


def test_generated_traces_are_proper_v2_traces_that_round_trip(tmp_path):
    generated = generate_traces(16, seed=3)
    paths = write_traces(generated, tmp_path)
    assert [p.name for p in paths][:2] == ["trace-0000-cpu-slight.msgpack", "trace-0001-cpu-heavy.msgpack"]
    for item, path in zip(generated, paths):
        data = path.read_bytes()
        trace = load_trace(data)
        assert dump_trace(trace) == data
        assert trace.version == 2
        assert trace.pod_spec_template_paths("apps/v1.Deployment") == ["/spec/template"]
        assert trace.tracks_lifecycle("apps/v1.Deployment")
        assert "default/web" in trace.index["apps/v1.Deployment"]
        lifecycles = trace.pod_lifecycles[("apps/v1.Deployment", "default/web")]
        assert [len(v) for v in lifecycles.values()] == [item.replicas]
        scenario = trace.extra_fields["metadata"]["scenario"]
        assert (scenario["name"], scenario["target"], scenario["deploy"]) == (item.scenario, item.target, "web")
        resources = deployment_resources(trace, "web")
        assert (resources.cpu_millicores, resources.memory_bytes, resources.replicas) == \
            (item.cpu_millicores, item.memory_bytes, item.replicas)
    listing = [json.loads(line) for line in (tmp_path / GENERATED_INDEX).read_text().splitlines()]
    assert [entry["trace"] for entry in listing] == [p.name for p in paths]
    json_dir = tmp_path / "json"
    write_traces(generated[:2], json_dir, fmt="json")
    assert load_trace(json_dir / "trace-0000-cpu-slight.json") == generated[0].trace


def test_generator_is_deterministic_and_covers_every_scenario(tmp_path):
    first = [dump_trace(item.trace) for item in generate_traces(24, seed=7)]
    assert first == [dump_trace(item.trace) for item in generate_traces(24, seed=7)]
    assert first[:5] == [dump_trace(item.trace) for item in generate_traces(5, seed=7)]
    assert first != [dump_trace(item.trace) for item in generate_traces(24, seed=8)]
    generated = generate_traces(len(SCENARIOS) * 3, seed=0)
    assert {item.scenario for item in generated} == set(SCENARIOS)
    assert {"cpu-slight", "cpu-heavy", "mem-slight", "mem-heavy", "cpu-mem", "replicas-over",
            "composite"} <= set(SCENARIOS)
    assert any(item.background_pods for item in generated)
    assert any(not item.background_pods for item in generated)
    assert generate_traces(3, scenarios=["mem-heavy"])[2].scenario == "mem-heavy"
    with pytest.raises(ValueError, match="unknown scenario"):
        generate_traces(1, scenarios=["cpu-gigantic"])


def test_busy_traces_are_deterministic_v2_traces_within_their_node_count():
    first = [dump_trace(generate_busy_trace(7, i)) for i in range(6)]
    assert first == [dump_trace(generate_busy_trace(7, i)) for i in range(6)]
    assert first != [dump_trace(generate_busy_trace(8, i)) for i in range(6)]
    for data in first:
        trace = load_trace(data)
        assert dump_trace(trace) == data and trace.version == 2
        pods = []
        for obj in trace.events[0].applied_objs:
            requests = obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
            lifecycles = trace.pod_lifecycles[("apps/v1.Deployment", f"{obj['metadata']['namespace']}/"
                                               f"{obj['metadata']['name']}")]
            assert [len(v) for v in lifecycles.values()] == [obj["spec"]["replicas"]]
            pods += [(cpu_millicores(requests["cpu"]) / 16_000, memory_bytes(requests["memory"]) / (32 * GIB))
                     ] * obj["spec"]["replicas"]
        demand, largest = np.sum(pods, axis=0), np.max(pods, axis=0)
        assert len(pods) >= 4 and demand.max() <= 16 * largest.max()
    with pytest.raises(ValueError, match="seed and index"):
        generate_busy_trace(-1)


def test_scenarios_start_broken_as_described():
    node_cpu, node_mem = 16_000, 32 * GIB
    for index, scenario in enumerate(SCENARIOS * 3):
        item = generate_trace(scenario, seed=1, index=index)
        cpu, mem, replicas, target = item.cpu_millicores, item.memory_bytes, item.replicas, item.target
        if scenario in ("cpu-slight", "cpu-mem"):
            assert node_cpu < cpu <= node_cpu + 1500
        if scenario == "cpu-heavy":
            assert cpu >= node_cpu + 3000
        if scenario in ("mem-slight", "cpu-mem", "composite"):
            assert node_mem < mem <= node_mem + GIB
        if scenario == "mem-heavy":
            assert mem >= node_mem + 4 * GIB
        if scenario in ("replicas-over", "composite"):
            assert replicas > target
        if scenario == "replicas-under":
            assert replicas < target
        if scenario not in ("replicas-over", "replicas-under", "composite"):
            assert replicas == target
        # The replay as sim-arena runs it agrees: a pod over a node's capacity stays pending.
        timeline = compile_timeline(item.trace, height=1, width=4, max_steps=5,
                                    settings=simarena_replay(ReplaySettings()))
        web = [pod for pod in timeline.pods if pod.owner.endswith("default/web")]
        assert len(web) == replicas
        pending = sum(pod.started is None for pod in web)
        assert (pending == replicas) == (cpu > node_cpu or mem > node_mem)


def test_generate_cli(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli("generate", "--out", out, "--count", "10", "--seed", "0") == 0
    assert "wrote 10 traces" in capsys.readouterr().out
    files = sorted(out.glob("*.msgpack"))
    assert len(files) == 10 and (out / GENERATED_INDEX).is_file()
    again = tmp_path / "again"
    assert run_cli("generate", "--out", again, "--count", "10", "--seed", "0") == 0
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in sorted(again.glob("*.msgpack"))]
    assert run_cli("generate", "--out", out, "--count", "10") == 2
    assert "already exists" in capsys.readouterr().err
    assert run_cli("generate", "--out", out, "--count", "2", "--force", "--format", "json",
                   "--scenarios", "composite") == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["trace-0000-composite.json", "trace-0001-composite.json"]
    assert (out / "trace-0000-composite.json").read_text().startswith("{")
    assert load_trace(out / "trace-0000-composite.json").extra_fields["metadata"]["scenario"]["name"] == "composite"
    assert run_cli("generate", "--out", out, "--scenarios", "nope") == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err
