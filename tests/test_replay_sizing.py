"""The replay's cluster sized to the trace, whole traces, bounded and typed errors, and the
replay as a PPO training env over several traces."""
from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import pytest

from puffer_cluster.cli import main
from puffer_cluster.config import load_config
from puffer_cluster.replay import (
    NodeAllocations, ReplayError, ReplaySettings, TraceReplayEnv, compile_timeline, pod_requests,
)
from puffer_cluster.traces import TraceError, TraceFormatError, loads_trace
from test_replay import deployment, make_trace, template, workload

GIB = 2**30


def test_the_binding_resource_fills_the_configured_fraction():
    # Pods of 1 CPU / 1 GiB ask relatively more CPU than the 16 CPU : 32 GiB node shape: CPU binds.
    # 16 pods on 4x4 nodes: each pod may take `fill` of a node, so the cluster reaches `fill`.
    trace = make_trace((0, [deployment("web", replicas=16, cpu="1", memory="1Gi")], []))
    timeline = compile_timeline(trace, settings=ReplaySettings(fill=0.5))
    summary = timeline.summary()
    assert (timeline.height, timeline.width) == (4, 4)  # ceil(sqrt(16)) = 4
    assert summary["peak_trace_cpu"] == pytest.approx(0.5, abs=1e-3)
    assert summary["peak_trace_mem"] == pytest.approx(0.25, abs=1e-3)
    assert timeline.node_memory_gib / timeline.node_cpu == pytest.approx(2.0, rel=1e-3)  # 16:32
    # Memory-heavy pods: memory binds.
    heavy = make_trace((0, [deployment("db", replicas=16, cpu="100m", memory="4Gi")], []))
    summary = compile_timeline(heavy, settings=ReplaySettings(fill=0.5)).summary()
    assert summary["peak_trace_mem"] == pytest.approx(0.5, abs=1e-3)
    assert summary["peak_trace_cpu"] < 0.1


def test_a_cluster_sized_to_the_trace_collapses_at_its_own_share_of_nodes():
    # oom_limit is a fraction of the nodes: on the 4x4 cluster of a 16x16 [env] it counts 16 nodes.
    few = make_trace((0, [deployment("web", replicas=2, cpu="100m", memory="100Mi")], []))
    env = TraceReplayEnv(few, num_envs=1, height=16, width=16, oom_limit=0.25)
    assert (env.params.height, env.params.width) == (4, 4)
    assert env.params.oom_collapse_count == 4


def test_many_pods_grow_the_grid_and_one_big_pod_gets_a_bigger_node():
    # 40 equal pods: a node each (6 x 7), the peak fills `fill` of the binding resource (CPU).
    many = make_trace((0, [deployment("web", replicas=40, cpu="100m", memory="100Mi")], []))
    timeline = compile_timeline(many, height=16, width=16)
    assert (timeline.height, timeline.width) == (6, 7) and timeline.pending.max() == 0
    assert timeline.summary()["peak_trace_cpu"] == pytest.approx(0.7 * 40 / 42, abs=1e-3)
    capped = compile_timeline(many, height=5, width=4)
    assert (capped.height, capped.width) == (5, 4)      # at most the [env] grid: 2 pods a node
    assert capped.pending.max() == 0 and capped.summary()["peak_trace_cpu"] == pytest.approx(0.7, abs=1e-3)
    few = make_trace((0, [deployment("web", replicas=2, cpu="100m", memory="100Mi")], []))
    assert compile_timeline(few).nodes == 16             # at least 4x4
    # One pod of 8 CPU among small ones: no node is filled above `fill` by it.
    mixed = make_trace((0, [deployment("big", cpu="8", memory="1Gi"),
                            deployment("small", replicas=3, cpu="100m", memory="100Mi")], []))
    timeline = compile_timeline(mixed)
    assert timeline.cpu.max() == pytest.approx(0.7, abs=1e-3)
    assert timeline.summary()["peak_trace_cpu"] < 0.7


def test_different_loads_give_different_clusters_and_fixed_nodes_stay_fixed():
    light = make_trace((0, [deployment("web", replicas=4, cpu="100m", memory="128Mi")], []))
    heavy = make_trace((0, [deployment("web", replicas=4, cpu="3", memory="6Gi")], []))
    a, b = compile_timeline(light), compile_timeline(heavy)
    assert a.node_cpu != b.node_cpu
    np.testing.assert_allclose(a.cpu, b.cpu, atol=1e-3)  # the same shape, scaled: same fractions
    fixed = ReplaySettings(cluster="fixed")
    a, b = compile_timeline(light, settings=fixed), compile_timeline(heavy, settings=fixed)
    assert (a.node_cpu, a.height) == (b.node_cpu, b.height) == (16.0, 16)
    assert b.cpu.max() == pytest.approx(3 / 16)


def test_a_long_trace_is_replayed_whole_with_counts_in_the_summary():
    # 18 events over 1,134 s: a Deployment scaled up and down.
    events = [(63 * k, [deployment("web", replicas=1 + k % 5)], []) for k in range(18)]
    timeline = compile_timeline(make_trace(*events), max_steps=512)
    summary = timeline.summary()
    assert timeline.horizon == 512 and timeline.step_seconds == pytest.approx(1071 / 512)
    assert summary["events_total"] == summary["events_replayed"] == 18
    assert summary["objects_total"] == summary["objects_applied"] == 18
    assert summary["warnings"] == []
    assert timeline.pods_at(512).sum() == 1 + 17 % 5  # the last event's replicas
    exact = compile_timeline(make_trace(*events), settings=ReplaySettings(whole_trace=False))
    assert exact.events_replayed == 9 and exact.objects_applied == 9
    assert exact.warnings == ["9 of 18 trace events are not replayed: they come 567 s or more "
                              "after the first event, past the episode's end (512 steps of 1 s); "
                              "whole_trace = True stretches the steps to cover them"]


@pytest.mark.parametrize("containers, field", [
    ([{"name": "c", "resources": {"limits": "2"}}], "containers[0].resources.limits: expected a map"),
    (5, "containers: expected an array, got int 5"),
    (["nginx"], "containers[0]: expected a container (a map), got str"),
    ([{"name": "c", "resources": {"requests": {"cpu": "2 cores"}}}],
     "containers[0].cpu: '2 cores' is not a Kubernetes quantity"),
])
def test_malformed_pod_specs_are_replay_errors_naming_the_field(containers, field):
    with pytest.raises(ReplayError) as error:
        pod_requests({"containers": containers}, "web")
    assert f"web.{field}" in str(error.value)
    pods = {"spec": {"containers": containers}}
    trace = make_trace((0, [workload("Deployment", "web", template=pods)], []))
    with pytest.raises(TraceError, match="web"):  # ReplayError is a TraceError
        compile_timeline(trace)


@pytest.mark.parametrize("spec", [dict(replicas=1_000_000_000), dict(replicas=2**64 - 1)])
def test_huge_replica_counts_are_refused_before_anything_is_allocated(spec):
    trace = make_trace((0, [workload("Deployment", "web", template=template(), **spec)], []))
    start = time.perf_counter()
    with pytest.raises(ReplayError, match=r"spec.replicas = \d+ is more than the replay allows"):
        compile_timeline(trace)
    assert time.perf_counter() - start < 1.0  # no pod was created
    job = workload("Job", "j", api="batch/v1", parallelism=10**6, template=template())
    with pytest.raises(ReplayError, match="spec.parallelism"):
        compile_timeline(make_trace((0, [job], [])))


def test_pods_that_churn_too_fast_are_refused():
    # 200 pods replaced every second for 512 s would be 102,400 pods.
    trace = make_trace((0, [deployment("web", replicas=200)], []),
                       index={"apps/v1.Deployment": {"default/web": 1}},
                       lifecycles={("apps/v1.Deployment", "default/web"): {1: [{"Finished": [0, 1]}]}})
    with pytest.raises(ReplayError, match="more than 50000 pods within the horizon"):
        compile_timeline(trace)


def test_pods_beyond_the_replays_limits_are_refused():
    trace = make_trace((0, [deployment("web", cpu="1e308")], []))
    with pytest.raises(ReplayError, match="more than the replay takes"):
        compile_timeline(trace)


def test_lone_surrogates_are_refused_at_load_with_their_path(tmp_path, capsys):
    text = ('{"version": 2, "config": {"trackedObjects": {}}, "events": [{"ts": 0, '
            '"applied_objs": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a\\ud800", '
            '"namespace": "x"}}], "deleted_objs": []}], "index": {}, "pod_lifecycles": {}}')
    with pytest.raises(TraceFormatError, match=r"events\[0\]\.applied_objs\[0\]\.metadata\.name: "
                                               r"'a\\ud800' is not Unicode text"):
        loads_trace(text.encode())
    # inspect and convert refuse it with one line, exit code 2, and write nothing.
    source = tmp_path / "bad.json"
    source.write_text(text)
    for command in (["inspect", str(source)], ["convert", str(source), str(tmp_path / "out.msgpack")]):
        assert main(["traces", *command]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and "is not Unicode text" in error
    assert not (tmp_path / "out.msgpack").exists()
    # A proper pair is text, and an escaped backslash is not an escape.
    assert loads_trace(text.replace("\\ud800", "\\ud83d\\ude00").encode())
    assert loads_trace(text.replace("\\ud800", "\\\\ud800").encode())


def test_scheduler_places_and_reports_shortages():
    nodes = NodeAllocations(3, cap_cpu=1000, cap_mem=1000, max_pods=2)
    blocked = np.zeros(3, dtype=np.int64)
    assert nodes.place(100, 100, 10, blocked) == 6  # two per node, then no slot
    assert list(blocked) == [0, 0, 3] and list(nodes.pods) == [2, 2, 2]
    nodes.unbind(1, 100, 100)
    assert nodes.choose(100, 100) == 1 and nodes.choose(950, 100) == -1
    assert nodes.place(950, 100, 1, blocked) == 0 and list(blocked) == [3, 0, 2]


def test_ppo_trains_on_several_traces_sized_to_different_grids(tmp_path, monkeypatch):
    import puffer_cluster.trainers.ppo as ppo
    from puffer_cluster import registry

    small = make_trace((0, [deployment("web", replicas=3, cpu="1", memory="1Gi")], []))
    large = make_trace((0, [deployment("web", replicas=30, cpu="200m", memory="512Mi")], []),
                       (40, [deployment("web", replicas=5, cpu="200m", memory="512Mi")], []))
    config = load_config(None, [
        "--env.num-envs", "8", "--env.log-interval", "8", "--env.max-steps", "24",
        "--train.num-steps", "8", "--train.total-timesteps", str(8 * 8 * 3),
        "--train.checkpoint-interval", "2", "--train.data-dir", str(tmp_path), "--train.teacher",
        "none", "--train.eval-interval", "0", "--train.torch-threads", "1", "--train.device", "cpu"])
    envs = []

    def replay_vecenv(config, rank=0, world_size=1):  # the registry's make_vecenv protocol
        env = TraceReplayEnv([small, large], num_envs=8, log_interval=8, seed=1, max_steps=24)
        envs.append(env)
        return env

    gardener = registry.ENV_SPECS["gardener"]
    monkeypatch.setitem(registry.ENV_SPECS, "gardener", replace(gardener, make_vecenv=replay_vecenv))
    run_dir = ppo.train(config, quiet=True)
    env = envs[0]
    # Both traces share the larger one's grid (30 pods: 5 x 6), each with its own nodes.
    assert [(t.height, t.width) for t in env.timelines] == [(5, 6), (5, 6)]
    assert env.timelines[0].node_cpu != env.timelines[1].node_cpu
    assert list(env.state.trace) == [0, 1] * 4
    assert (env.state.episode > 0).all() and (run_dir / "final.pt").is_file()
    assert math.isfinite(float(env.state.ep_return.sum()))
