"""SimKube trace replay: the trace-to-timeline compiler (driver semantics, scheduler, requests,
priorities), the replay dynamics (NumPy reference vs Numba kernel, bit for bit), and the two
front doors (`TraceReplayEnv`, `TraceReplayGymEnv`) under the gardener's contract."""
from __future__ import annotations

import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import gymnasium
import numpy as np
import pufferlib.vector
import pytest
from gymnasium.utils.env_checker import check_env

from puffer_cluster.kernels import reference
from puffer_cluster.kernels import replay as kernel
from puffer_cluster.kernels.fixed import CAP, CAP_ONE, FRACTION_ONE, MEM, ONE, RATIO_UNIT, mul_div, to_fixed
from puffer_cluster.kernels.world import (
    CLEAN, EPISODE_STATS, NOOP, OBS_BUDGET, OBS_SIZE, OBS_X, OBS_Y, SCALE_FULL, grid_seeds,
    node_ratios,
)
from puffer_cluster.config import ConfigError, load_config, parse_duration
from puffer_cluster.env import InvalidActionError, world_params
from puffer_cluster.registry import policy_factory
from puffer_cluster.replay import (
    GYM_ID, ReplayError, ReplaySettings, TraceReplayEnv, TraceReplayGymEnv, _CronSchedule,
    compile_timeline, find_trace_files, pod_requests, replay_settings, stack_timelines,
)
from puffer_cluster.traces import Trace, TraceEvent

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CRONJOB = DATA / "simkube" / "examples_traces_cronjob.sktrace"
BARE_PODS = DATA / "simkube" / "examples_traces_bare-pods.sktrace"
DEMO = DATA / "sim-arena" / "demo_trace-0001.json"
DEMO_V2 = DATA / "sim-arena" / "demo_trace-v2.msgpack"
CPU_SLIGHT = DATA / "sim-arena" / "demo_trace-cpu-slight.msgpack"
GIB = 2**30
# SimKube's KWOK nodes of sim-arena, on the [env] grid: the compiler's semantics by hand.
FIXED = ReplaySettings(cluster="fixed")


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared test data not found: {path} (the traces live in ../shared/data, "
                    "next to the project; see shared/data/README.md)")
    return path


# A world where nothing happens by itself (as the gardener tests' QUIET): no leak, no regen,
# no health bonus, no collapse, so that the effect of one action can be computed by hand.
QUIET = dict(
    height=4, width=4, max_steps=1000, mem_init_min=0.1, mem_init_max=0.2,
    leak_min=0.0, leak_max=0.0, red_queen_horizon=100.0, overload_mem_jump=0.25,
    crit_threshold=0.75, cap_max=3.0, clean_useful_mem=0.5, clean_cost=0.125, scale_cost=0.5,
    budget_init=1.0, budget_regen=0.0, health_bonus=0.0, oom_penalty=1.0, crit_weight=2.0,
    overload_penalty=0.25, clean_waste_penalty=0.5, invalid_penalty=0.0625,
    collapse_penalty=10.0, crit_limit=1000, oom_limit=1.0, spike_rate=0.0,
)
QUIET_RESTART_MEM = 0.30  # [env] restart_mem, the overlay's restart level at overlay_scale 1
# Fast leaks, short episodes: OOMs, collapses, truncations and auto-resets within 200 steps.
HARSH = dict(
    height=4, width=5, max_steps=60, mem_init_min=0.1, mem_init_max=0.6, leak_min=0.004,
    leak_max=0.02, red_queen_horizon=50.0, overload_mem_jump=0.1, crit_threshold=0.8,
    cap_max=4.0, clean_useful_mem=0.3, clean_cost=0.1, scale_cost=0.5, budget_init=1.0,
    budget_regen=0.02, health_bonus=0.1, oom_penalty=1.0, crit_weight=2.0,
    overload_penalty=0.2, clean_waste_penalty=0.5, invalid_penalty=0.05, collapse_penalty=10.0,
    crit_limit=3, oom_limit=0.5,
)


# --- synthetic traces ---------------------------------------------------------------------------

def template(cpu="500m", memory="1Gi", annotations=None, **spec):
    resources = {"requests": {"cpu": cpu, "memory": memory}}
    return {"metadata": {"labels": {"app": "x"}, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}], **spec}}


def workload(kind, name, namespace="default", api="apps/v1", **spec):
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def deployment(name, replicas=1, namespace="default", **template_args):
    return workload("Deployment", name, namespace, replicas=replicas,
                    template=template(**template_args))


def make_trace(*events, index=None, lifecycles=None) -> Trace:
    """events: (ts, applied, deleted) triples."""
    tracked = {"apps/v1.Deployment": {}, "apps/v1.DaemonSet": {}, "batch/v1.Job": {},
               "batch/v1.CronJob": {}, "v1.Pod": {}}
    return Trace(config={"trackedObjects": tracked},
                 events=[TraceEvent(ts, list(applied), list(deleted)) for ts, applied, deleted in events],
                 index=index or {}, pod_lifecycles=lifecycles or {})


def running(timeline, step):
    return int(timeline.pods_at(step).sum())


# --- settings -----------------------------------------------------------------------------------

def test_shipped_replay_section_is_the_settings_defaults():
    config = load_config()
    assert replay_settings(config) == ReplaySettings()
    assert set(config["replay"]) == set(ReplaySettings.__dataclass_fields__)
    assert load_config(overrides=["--replay.node-cpu", "8"])["replay"]["node_cpu"] == 8.0


@pytest.mark.parametrize("overrides", [dict(speed=0.0), dict(node_cpu=-1.0), dict(step_seconds=0.0),
                                       dict(scheduler="random"), dict(usage_noise=2.0)])
def test_bad_settings_are_refused(overrides):
    with pytest.raises(ConfigError):
        replay_settings(**overrides)


def test_unknown_setting_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="node_cpu"):
        replay_settings(nodes=3)


@pytest.mark.parametrize("text, seconds", [("90", 90.0), ("90s", 90.0), ("5m", 300.0),
                                           ("1h30m", 5400.0), ("2d", 172800.0), (12, 12.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "-3", "1h30"])
def test_parse_duration_refuses(text):
    with pytest.raises(ConfigError):
        parse_duration(text)


# --- requests and priorities --------------------------------------------------------------------

def test_pod_requests_parse_every_quantity_format_and_fall_back_to_limits():
    spec = {
        "containers": [
            {"resources": {"requests": {"cpu": "1.5", "memory": "1G"}}},
            {"resources": {"limits": {"cpu": "250m", "memory": "128Mi"}}},   # limits as requests
            {"resources": {"requests": {"memory": "2e3"}, "limits": {"cpu": 1}}},
            {"resources": {}},
        ],
        "initContainers": [
            {"resources": {"requests": {"cpu": "100m", "memory": "10Mi"}}, "restartPolicy": "Always"},
            {"resources": {"requests": {"cpu": "3", "memory": "1Ki"}}},  # the largest init: a floor
        ],
        "overhead": {"cpu": "0.1", "memory": "1Mi"},
    }
    cpu, memory = pod_requests(spec)
    assert cpu == max(1500 + 250 + 1000 + 100, 100 + 3000) + 100
    assert memory == 10**9 + 128 * 2**20 + 2000 + 10 * 2**20 + 2**20


def test_a_bad_quantity_makes_the_trace_unreplayable():
    trace = make_trace((0, [deployment("web", cpu="lots")], []))
    with pytest.raises(ReplayError, match="lots"):
        compile_timeline(trace, height=2, width=2, max_steps=10)


def test_priorities_from_class_namespace_and_annotation():
    trace = make_trace((0, [
        deployment("plain", cpu="1"),
        deployment("dns", namespace="kube-system", cpu="1"),
        deployment("classy", cpu="1", priorityClassName="system-node-critical"),
        deployment("tagged", cpu="1", annotations={"puffer-cluster.io/priority": "0.9"}),
        deployment("other-class", cpu="1", priorityClassName="high"),
    ], []))
    timeline = compile_timeline(trace, height=2, width=3, max_steps=10)
    by_name = {pod.name.rsplit("-", 1)[0]: pod for pod in timeline.pods}
    assert by_name["plain"].prio == 0.5 and by_name["other-class"].prio == 0.5
    assert by_name["dns"].prio == 1.0 and by_name["classy"].prio == 1.0
    assert by_name["tagged"].prio == pytest.approx(0.9)
    for pod in timeline.pods:
        assert timeline.prio[pod.node] == pytest.approx(pod.prio)
    assert timeline.prio[5] == 0.0  # a node without pods


# --- timelines of the real traces ---------------------------------------------------------------

def test_cronjob_trace_runs_a_job_per_minute_until_the_cronjob_is_deleted():
    timeline = compile_timeline(need(CRONJOB))
    # Applied at ts 1743286823 (the empty event before it is skipped), deleted 205 s later;
    # "* * * * *" ticks at 1743286860, 920 and 980; each pod runs its recorded 30 s.
    assert [p.started for p in timeline.pods] == [37.0, 97.0, 157.0]
    assert [p.ended for p in timeline.pods] == [67.0, 127.0, 187.0]
    assert [p.seq for p in timeline.pods] == [0, 1, 2]
    assert {p.owner for p in timeline.pods} == {"batch/v1.CronJob default/hello-simkube"}
    assert {p.namespace for p in timeline.pods} == {"virtual-default"}
    assert timeline.namespaces == ["virtual-default"]
    assert [running(timeline, s) for s in (0, 36, 37, 66, 67, 97, 186, 187, 300, 512)] \
        == [0, 0, 1, 1, 0, 1, 1, 0, 0, 0]
    assert timeline.horizon == 512 and timeline.objects_deleted == 1
    assert timeline.trace_times[37] == timeline.start_ts + 37 == 1743286860


def test_bare_pods_trace_lifecycles_end_pods_and_the_last_runs_on():
    timeline = compile_timeline(need(BARE_PODS))
    names = [p.name for p in timeline.pods]
    assert names == ["bare-pod-1781282449", "bare-pod-1781282509", "bare-pod-1781282570",
                     "bare-pod-1781282630"]
    assert [p.started for p in timeline.pods] == [0.0, 42.0, 102.0, 162.0]
    # Finished lifecycles: 12 s, 30 s, 30 s; the last one is recorded Running: it never ends.
    assert [p.ended for p in timeline.pods] == [12.0, 72.0, 132.0, None]
    assert [running(timeline, s) for s in (0, 11, 12, 41, 42, 71, 72, 162, 511)] \
        == [1, 1, 0, 0, 1, 1, 0, 1, 1]
    assert timeline.namespaces == ["virtual-testing"]
    assert all(p.namespace == "virtual-testing" for p in timeline.pods)


def test_speed_compresses_the_driver_sleeps_and_the_lifecycles():
    timeline = compile_timeline(need(BARE_PODS), settings=ReplaySettings(speed=2.0))
    assert [p.started for p in timeline.pods] == [0.0, 21.0, 51.0, 81.0]
    assert [p.run_seconds for p in timeline.pods] == [6.0, 15.0, 15.0, None]
    timeline = compile_timeline(need(BARE_PODS), settings=ReplaySettings(step_seconds=3.0))
    assert timeline.segment_at(14) == timeline.segment_at(13) + 1  # 42 s = step 14
    assert running(timeline, 13) == 0 and running(timeline, 14) == 1


def test_duration_truncates_the_trace_and_the_episode():
    timeline = compile_timeline(need(BARE_PODS), settings=ReplaySettings(duration=100.0))
    assert timeline.events_replayed == 2 and len(timeline.pods) == 2 and timeline.horizon == 100
    assert timeline.events_total == 4 and "2 of 4 trace events are not replayed" in timeline.warnings[-1]
    timeline = compile_timeline(need(BARE_PODS), settings=ReplaySettings(duration=100.0, speed=2.0))
    assert timeline.events_replayed == 2 and timeline.horizon == 50
    # 100 s in 30 steps: the whole duration in steps of 100/30 s, or only the first 30 s.
    timeline = compile_timeline(need(BARE_PODS), max_steps=30, settings=ReplaySettings(duration=100.0))
    assert timeline.horizon == 30 and len(timeline.pods) == 2
    assert timeline.step_seconds == pytest.approx(100 / 30)
    first = compile_timeline(need(BARE_PODS), max_steps=30,
                             settings=ReplaySettings(duration=100.0, whole_trace=False))
    assert first.horizon == 30 and len(first.pods) == 1 and first.events_replayed == 1
    assert "past the episode's end (30 steps of 1 s)" in first.warnings[-1]


def test_requests_sum_to_the_pods_requests():
    timeline = compile_timeline(need(DEMO), settings=FIXED)  # a Deployment: 2 replicas of 500m / 512Mi
    assert len(timeline.pods) == 2 and timeline.pending_at(0) == 0
    assert timeline.cpu_at(0).sum() == pytest.approx(2 * 0.5 / 16)
    assert timeline.mem_at(0).sum() == pytest.approx(2 * 0.5 / 32)
    assert (timeline.pods_at(0)[:2] == 1).all()  # least-allocated spreads them

    v2 = compile_timeline(need(DEMO_V2), settings=FIXED)
    assert len(v2.pods) == 26 and v2.pending_at(0) == 0 and v2.events_replayed == 2
    total_cpu = sum(p.cpu for p in v2.pods) / 16000
    total_mem = sum(p.memory for p in v2.pods) / (32 * GIB)
    assert v2.cpu_at(0).sum() == pytest.approx(total_cpu, rel=1e-6)
    assert v2.mem_at(0).sum() == pytest.approx(total_mem, rel=1e-6)
    ksm = [p for p in v2.pods if p.name.startswith("kube-state-metrics")]
    assert len(ksm) == 10 and {(p.cpu, p.memory) for p in ksm} == {(40, 230 * 2**20)}
    # coredns (system-cluster-critical, kube-system) x2 and kwok-controller (kube-system).
    assert (v2.prio >= 0.8).sum() == 3
    assert "virtual-kube-system" in v2.namespaces


def test_leading_empty_events_are_skipped_unless_asked():
    # The first event is at ts 0, the next 56 years later: in steps of 1 s, nothing happens
    # within the episode, and a warning says so.
    exact = ReplaySettings(skip_leading_empty=False, whole_trace=False)
    v2 = compile_timeline(need(DEMO_V2), settings=exact)
    assert v2.pods == [] and running(v2, 512) == 0
    assert v2.events_replayed == 1 and v2.events_total == 2
    assert "1 of 2 trace events are not replayed" in v2.warnings[-1]
    # The whole trace: 56 years in 512 steps, the pods arrive at the last one.
    whole = compile_timeline(need(DEMO_V2), settings=replace(exact, whole_trace=True))
    assert whole.events_replayed == 2 and whole.warnings == []
    assert running(whole, 511) == 0 and running(whole, 512) == 26
    assert whole.step_seconds * 512 >= 1769672195


def test_pods_larger_than_a_node_are_an_error_and_full_nodes_leave_pods_pending():
    with pytest.raises(ReplayError, match=r"a pod requests 17 CPU / 2 GiB, more than a node "
                                          r"\(16 CPU / 32 GiB\)"):
        compile_timeline(need(CPU_SLIGHT), settings=FIXED)  # 3 replicas of 17 CPUs
    with pytest.raises(ReplayError, match="more than a node"):
        compile_timeline(need(DEMO), settings=replace(FIXED, node_cpu=0.25))
    fits_one = compile_timeline(need(DEMO), height=1, width=1, settings=replace(FIXED, node_cpu=0.75))
    assert fits_one.pending_at(0) == 1 and running(fits_one, 0) == 1


@pytest.mark.parametrize("scheduler", ["least-allocated", "first-fit"])
def test_scheduler_is_deterministic_and_respects_capacity(scheduler):
    settings = ReplaySettings(cluster="fixed", node_memory_gib=0.75, node_cpu=0.5, scheduler=scheduler,
                              max_pods_per_node=4)
    first = compile_timeline(need(DEMO_V2), height=2, width=3, settings=settings)
    again = compile_timeline(need(DEMO_V2), height=2, width=3, settings=settings)
    for name in ("segment_step", "cpu", "mem", "pod_count", "pending", "prio"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert [p.node for p in first.pods] == [p.node for p in again.pods]
    assert (first.cpu <= 1.0).all() and (first.mem <= 1.0).all()
    assert (first.pod_count <= 4).all()
    assert first.pending_at(0) > 0
    assert first.pending_at(0) + running(first, 0) == 26


def test_first_fit_packs_and_least_allocated_spreads():
    packed = compile_timeline(need(DEMO), settings=replace(FIXED, scheduler="first-fit"))
    spread = compile_timeline(need(DEMO), settings=FIXED)
    assert [p.node for p in packed.pods] == [0, 0]
    assert [p.node for p in spread.pods] == [0, 1]


def test_job_parallelism_completions_and_lifecycles_cycle():
    job = workload("Job", "j", api="batch/v1", parallelism=2, completions=3, template=template())
    trace = make_trace((100, [job], []), index={"batch/v1.Job": {"default/j": 1}},
                       lifecycles={("batch/v1.Job", "default/j"):
                                   {7: [{"Finished": [0, 10]}, {"Finished": [5, 25]}]}})
    timeline = compile_timeline(trace, height=2, width=2, max_steps=40)
    # Pod i uses lifecycle i % 2: 10 s, 20 s, 10 s; two at a time, three completions.
    assert [(p.seq, p.started, p.ended) for p in timeline.pods] \
        == [(0, 0.0, 10.0), (1, 0.0, 20.0), (2, 10.0, 20.0)]
    assert running(timeline, 19) == 2 and running(timeline, 20) == 0


def test_daemonset_replicas_scaling_and_cascading_delete():
    daemon = workload("DaemonSet", "agent", template=template("100m", "64Mi"))
    trace = make_trace((0, [daemon, deployment("web", replicas=2)], []),
                       (10, [deployment("web", replicas=5)], []),
                       (20, [deployment("web", replicas=1)], []),
                       (30, [], [deployment("web")]),
                       (40, [deployment("web", replicas=1, cpu="2")], []))
    timeline = compile_timeline(trace, height=2, width=3, max_steps=50, settings=FIXED)
    assert (timeline.pods_at(0) >= 1).all()  # a DaemonSet pod on every node
    assert [running(timeline, s) - 6 for s in (0, 10, 20, 30, 40)] == [2, 5, 1, 0, 1]
    # A new template replaces the pods (their requests change).
    assert timeline.cpu_at(40).sum() == pytest.approx((6 * 100 + 2000) / 16000)


def test_unknown_kinds_without_pods_and_cluster_scoped_objects_are_harmless():
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x"}}
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}
    timeline = compile_timeline(make_trace((0, [config_map, node], [deployment("absent")])),
                                height=2, width=2, max_steps=5)
    assert timeline.pods == [] and any("cluster-scoped" in w for w in timeline.warnings)


def test_cron_schedules():
    every_two = _CronSchedule("*/2 * * * *")
    assert every_two.next_after(0, 10**6) == 120.0
    assert every_two.next_after(120, 10**6) == 240.0
    assert _CronSchedule("@hourly").next_after(61, 10**6) == 3600.0
    # 1970-01-01 was a Thursday: the first Monday 09:30 is 1970-01-05.
    assert _CronSchedule("30 9 * * mon").next_after(0, 10**7) == 4 * 86400 + 9 * 3600 + 1800
    assert _CronSchedule("0 0 1 * *").next_after(0, 10**5) is None
    with pytest.raises(ValueError):
        _CronSchedule("61 * * * *")


def test_find_trace_files(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.msgpack", "y.JSON", "z.sktrace", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in find_trace_files(tmp_path)] \
        == ["a/x.msgpack", "y.JSON", "z.sktrace"]


# --- dynamics: reference vs Numba ---------------------------------------------------------------

def loaded_trace():
    """Busy nodes that change over time: CPU close to capacity (overloads with usage noise),
    a critical namespace, pods arriving and leaving."""
    return make_trace(
        (0, [deployment("web", replicas=8, cpu="900m", memory="500Mi"),
             deployment("dns", replicas=2, namespace="kube-system", cpu="300m", memory="300Mi")], []),
        (7, [deployment("web", replicas=14, cpu="900m", memory="500Mi")], []),
        (20, [], [deployment("dns", namespace="kube-system")]),
    )


class Replay:
    """Grids of one backend of `kernels.replay` with their own buffers."""

    def __init__(self, backend, params, settings, timelines, num_grids, seed=0):
        self.backend, self.params, self.timelines = backend, params, timelines
        self.rparams = settings.kernel_params()
        self.num_agents = num_grids * params.agents_per_grid
        self.state = kernel.allocate_replay_state(num_grids, params)
        self.state.grid_seed[:] = grid_seeds(seed, 0, num_grids)
        self.state.trace[:] = np.arange(num_grids) % timelines.horizon.shape[0]
        self.obs = np.zeros((self.num_agents, OBS_SIZE), dtype=np.float32)
        self.rewards = np.zeros(self.num_agents, dtype=np.float32)
        self.terminals = np.zeros(self.num_agents, dtype=bool)
        self.truncations = np.zeros(self.num_agents, dtype=bool)
        reset = {"reference": kernel.reset_grids_reference, "numba": kernel.reset_grids,
                 "serial": kernel.reset_grids_serial}[backend]
        reset(self.state, params, self.rparams, timelines, self.obs)

    def step(self, actions):
        step = {"reference": kernel.step_reference, "numba": kernel.step,
                "serial": kernel.step_serial}[self.backend]
        actions = np.array(np.broadcast_to(np.asarray(actions, dtype=np.int32), (self.num_agents,)))
        step(self.state, self.params, self.rparams, self.timelines, actions, self.obs,
             self.rewards, self.terminals, self.truncations, True)
        return self.obs.copy(), self.rewards.copy(), self.terminals.copy(), self.truncations.copy()


def world(**overrides):
    return world_params(overrides)


def test_reference_numba_and_serial_kernels_are_bit_identical():
    params = world(**HARSH, agents_per_grid=2)
    settings = ReplaySettings(cluster="fixed", node_cpu=1.0, node_memory_gib=1.0, usage_noise=0.3,
                              overlay_scale=0.75)
    timelines = [compile_timeline(loaded_trace(), height=4, width=5, max_steps=60, settings=settings),
                 compile_timeline(need(BARE_PODS), height=4, width=5, max_steps=60,
                                  settings=replace(settings, duration=45.0))]
    stacked = stack_timelines(timelines)
    grids = 12
    runs = [Replay(name, params, settings, stacked, grids, seed=9)
            for name in ("reference", "serial", "numba")]
    rng = np.random.default_rng(3)
    ends = np.zeros(2, dtype=np.int64)
    for t in range(200):
        actions = rng.integers(-2, 10, size=grids * 2).astype(np.int32)  # includes invalid ones
        results = [run.step(actions) for run in runs]
        for other in results[1:]:
            for name, x, y in zip(("obs", "rewards", "terminals", "truncations"), results[0], other):
                np.testing.assert_array_equal(x, y, err_msg=f"{name} differ at step {t}")
        ends += [results[0][2].sum(), results[0][3].sum()]
    for run in runs[1:]:
        for name in runs[0].state._fields:
            np.testing.assert_array_equal(getattr(runs[0].state, name), getattr(run.state, name),
                                          err_msg=f"state.{name}")
    s = runs[0].state
    assert ends[0] > 0 and ends[1] > 0  # collapses and truncations (and auto-resets) happened
    assert s.finished_sum[:, EPISODE_STATS.index("overload_count")].sum() > 0
    assert s.finished_sum[:, EPISODE_STATS.index("crit_count")].sum() > 0
    assert s.finished_sum[:, EPISODE_STATS.index("invalid_actions")].sum() > 0
    # Truncation happens at each trace's own horizon (60 steps, 45 under the duration).
    lengths = s.last_stats[:, EPISODE_STATS.index("episode_length")]
    collapsed = s.last_stats[:, EPISODE_STATS.index("collapsed")] == 1
    assert set(lengths[~collapsed & (s.trace == 1)]) == {45.0}
    assert set(lengths[~collapsed & (s.trace == 0)]) <= {60.0}


# --- dynamics: the rules, by hand ---------------------------------------------------------------

def quiet_env(trace=None, settings=None, **overrides):
    trace = trace if trace is not None else make_trace(
        (0, [deployment("web", replicas=16, cpu="500m", memory="400Mi")], []))
    settings = settings or ReplaySettings(cluster="fixed", node_cpu=1.0, node_memory_gib=1.0,
                                          usage_noise=0.0, overlay_scale=1.0)
    env = TraceReplayEnv(trace, num_envs=1, seed=4, replay=settings, **{**QUIET, **overrides})
    env.reset()
    return env


def place(env, y, x):
    env.state.agent_y[0, 0], env.state.agent_x[0, 0] = y, x


def overlay(env):
    """The overlay of grid 0's nodes now (fixed-point ratios): their memory less the requests."""
    record = env.state.nodes[0]
    return reference.mem_now(env.params, record, env.state.step[0]) - record[:, kernel.REQUEST]


def test_observation_layout_and_bounds():
    env = quiet_env()
    place(env, 0, 1)
    obs, *_ = env.step([NOOP])
    obs = obs[0]
    width = env.params.width
    cpu, mem, prio = node_ratios(env.state, env.params, 0)
    assert obs.shape == (OBS_SIZE,) and obs.dtype == np.float32
    assert (obs >= -1).all() and (obs <= 1).all() and np.isfinite(obs).all()
    assert (obs[:9] == -1).all()  # the row above the grid
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]):
        i = dy * width + dx
        base = (3 + k) * 3
        assert obs[base] == np.float32(cpu[i]) and obs[base + 1] == np.float32(mem[i])
        assert obs[base + 2] == np.float32(prio[i]) == env.kernel_timelines.prio[0, i]
    assert obs[base] == np.float32(0.5)  # 500m on a 1-CPU node, no usage noise, no spikes
    assert obs[OBS_Y] == 0.0 and obs[OBS_X] == np.float32(1 / 3) and obs[OBS_BUDGET] == 1.0


def test_clean_restarts_the_pods_of_the_3x3_nodes_and_keeps_their_requests():
    env = quiet_env()
    place(env, 1, 1)
    before = overlay(env)
    assert (before > 0).all()
    obs, rewards, *_ = env.step([CLEAN])
    after, before = overlay(env).reshape(4, 4), before.reshape(4, 4)
    # The gardener's CLEAN on the overlay: it keeps 1 - clean_fraction of it.
    np.testing.assert_array_equal(after[:3, :3],
                                  mul_div(before[:3, :3], env.params.keep_fx, FRACTION_ONE))
    np.testing.assert_array_equal(after[3, :], before[3, :])
    # The memory seen is the requests (400Mi of 1 GiB) plus what is left of the overlay.
    assert obs[0, 3 * 4 + 1] == np.float32(400 / 1024 + after[1, 1] * RATIO_UNIT)
    assert env.state.budget[0] == 1.0 - QUIET["clean_cost"]
    # Cleaning nodes whose overlay was below clean_useful_mem is waste, penalised.
    waste = np.maximum(0, env.params.useful_fx - before[:3, :3]).sum()
    assert rewards[0] == np.float32(-0.5 * (waste * RATIO_UNIT))


def test_scale_lowers_the_ratios_of_the_node():
    env = quiet_env()
    place(env, 2, 2)
    center = 4 * 3
    obs, *_ = env.step([NOOP])
    cpu, mem = obs[0, center], obs[0, center + 1]
    obs, *_ = env.step([SCALE_FULL])
    assert env.state.nodes[0, 2 * 4 + 2, CAP] == 2 * CAP_ONE
    assert obs[0, center] == np.float32(cpu / 2)
    assert obs[0, center + 1] == pytest.approx(mem / 2, rel=1e-6)
    assert env.state.budget[0] == 1.0 - QUIET["scale_cost"]


def test_oom_restarts_the_pods_and_is_counted_by_priority():
    trace = make_trace((0, [deployment("dns", namespace="kube-system", cpu="500m", memory="400Mi"),
                            deployment("web", cpu="500m", memory="400Mi")], []))
    env = quiet_env(trace, leak_min=0.01, leak_max=0.01)
    prio = env.kernel_timelines.prio[0]
    assert prio[0] == 1.0 and prio[1] == 0.5
    record = env.state.nodes[0]
    record[:, MEM] = record[:, kernel.REQUEST]  # no overlay, then 400Mi + 0.6 + the leak >= 1
    record[0, MEM] += to_fixed(0.6, ONE)
    record[1, MEM] += to_fixed(0.605, ONE)
    _, rewards, terminals, _, _ = env.step([NOOP])
    s = env.state
    assert s.ep_oom[0] == 2 and s.ep_crit[0] == 1
    # The pods restart: the overlay at the gardener's restart level, the requests stay.
    assert env.params.restart_fx == to_fixed(QUIET_RESTART_MEM, ONE)
    np.testing.assert_array_equal(overlay(env)[:2], env.params.restart_fx)
    assert rewards[0] == np.float32(-(1.0 * (1 + 2.0 * 1.0) + 1.0 * (1 + 2.0 * 0.5)))
    assert not terminals[0]


def test_a_spike_on_the_traces_cpu_load_is_an_overload():
    # Node 0 runs 900m of a 1-CPU node; one spike of 0.2 lands per step and is gone the next.
    trace = make_trace((0, [deployment("hot", cpu="900m", memory="100Mi")], []))
    env = quiet_env(trace, spike_rate=1 / 16, spike_min=0.2, spike_max=0.2, spike_fade=0.2,
                    overload_mem_jump=0.02)
    jumps = 0
    for _ in range(64):
        before = overlay(env)[0]
        env.step([NOOP])
        cpu, _, _ = node_ratios(env.state, env.params, 0)
        if cpu[0] == 1.0:  # a spike landed on node 0: 0.9 + 0.2
            jumps += 1
            assert overlay(env)[0] == before + env.params.jump_fx
        assert (cpu[1:] <= 0.2).all()
    assert 0 < jumps == env.state.ep_overload[0]


def test_episode_ends_at_the_horizon_with_statistics():
    settings = ReplaySettings(cluster="fixed", node_cpu=1.0, node_memory_gib=1.0, duration=20.0)
    env = quiet_env(settings=settings)
    for t in range(20):
        _, _, terminals, truncations, _ = env.step([NOOP])
        assert truncations[0] == (t == 19) and not terminals[0]
    assert env.state.last_stats[0, EPISODE_STATS.index("episode_length")] == 20
    assert env.state.step[0] == 0 and env.state.episode[0] == 1  # auto-reset


def test_usage_noise_stays_around_the_request_and_is_seeded():
    settings = ReplaySettings(cluster="fixed", node_cpu=1.0, node_memory_gib=1.0, usage_noise=0.2)
    cpus = []
    for _ in range(2):
        env = quiet_env(settings=settings)
        env.step([NOOP])
        cpus.append(node_ratios(env.state, env.params, 0)[0])
    np.testing.assert_array_equal(cpus[0], cpus[1])
    assert ((cpus[0] >= 0.4) & (cpus[0] <= 0.6)).all() and len(set(cpus[0].tolist())) > 1


def test_without_the_leak_overlay_memory_is_the_requests_which_never_run_out():
    trace = make_trace((0, [deployment("web", replicas=15, cpu="500m", memory="400Mi"),
                            deployment("full", cpu="100m", memory="1Gi")], []))
    settings = ReplaySettings(cluster="fixed", node_cpu=1.0, node_memory_gib=1.0, leak_overlay=False)
    env = quiet_env(trace, settings=settings, leak_min=0.01, leak_max=0.02)
    for _ in range(50):
        env.step([NOOP])
    _, mem, _ = node_ratios(env.state, env.params, 0)
    assert sorted(set(mem.tolist())) == [400 / 1024, 1.0]  # a node full of requests
    assert (overlay(env) == 0).all() and env.state.ep_oom[0] == 0


# --- front doors --------------------------------------------------------------------------------

def test_batched_env_counts_invalid_actions_and_reports_infos():
    env = TraceReplayEnv([need(BARE_PODS), need(CRONJOB)], num_envs=4, seed=1, log_interval=30,
                         replay={"duration": 30.0}, **HARSH)
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step(np.zeros(4, dtype=np.int32))
    obs, _ = env.reset()
    assert obs.shape == (4, OBS_SIZE) and list(env.state.trace) == [0, 1, 0, 1]
    infos = []
    for _ in range(30):
        _, rewards, _, _, new = env.step(np.array([-1, 9, 3, NOOP]))
        infos += new
        assert np.isfinite(rewards).all()
    assert len(infos) == 1 and infos[0]["n"] >= 4
    assert set(infos[0]) == set(EPISODE_STATS) | {"n"}
    with pytest.raises(InvalidActionError):
        env.step(np.array([0.5, 0, 0, 0]))
    assert isinstance(env.render(), str)


@pytest.mark.parametrize("backend", ["PufferEnv", "Serial"])
def test_pufferlib_vector_make(backend):
    copies = 1 if backend == "PufferEnv" else 2
    vecenv = pufferlib.vector.make(
        TraceReplayEnv, backend=getattr(pufferlib.vector, backend), num_envs=copies,
        env_kwargs=dict(traces=[str(need(CRONJOB)), str(need(DEMO))], num_envs=6, log_interval=8,
                        max_steps=8))
    try:
        obs, _ = vecenv.reset(seed=3)
        assert obs.shape == (6 * copies, OBS_SIZE)
        for t in range(8):
            obs, rewards, terminals, truncations, infos = vecenv.step(
                np.full(vecenv.num_agents, NOOP, dtype=np.int32))
            assert np.isfinite(obs).all() and (np.abs(obs) <= 1).all()
        assert (terminals | truncations).all()
        assert len(infos) == copies and all(info["episode_length"] <= 8 for info in infos)
    finally:
        vecenv.close()


def test_gardener_policies_play_unchanged():
    config = load_config()
    env = TraceReplayEnv(need(DEMO_V2), num_envs=3, seed=0, max_steps=40)
    for spec in ("random", "heuristic"):
        policy = policy_factory(spec, config, 0)(env.num_agents, env.params)
        obs, _ = env.reset()
        start = np.ones(env.num_agents, dtype=bool)
        for _ in range(45):
            obs, _, terminals, truncations, _ = env.step(policy(obs, start))
            start = terminals | truncations
        assert env.state.finished_count.sum() >= 3


def test_gym_env_passes_the_checker_and_matches_the_batched_env():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(TraceReplayGymEnv(trace=need(BARE_PODS), max_steps=30), skip_render_check=True)
    gym_env = TraceReplayGymEnv(trace=need(BARE_PODS), render_mode="ansi", **HARSH)
    batched = TraceReplayEnv(need(BARE_PODS), num_envs=1, seed=11, **HARSH)
    obs, _ = gym_env.reset(seed=11)
    batch_obs, _ = batched.reset()
    np.testing.assert_array_equal(obs, batch_obs[0])
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(150):
        action = int(rng.integers(0, 8))
        obs, reward, terminated, truncated, info = gym_env.step(action)
        batch_obs, rewards, *_ = batched.step(np.array([action]))
        assert reward == rewards[0]
        if terminated or truncated:
            episodes += 1
            assert set(info) == set(EPISODE_STATS)
            obs, _ = gym_env.reset()
        np.testing.assert_array_equal(obs, batch_obs[0])
    assert episodes >= 2
    assert "budget" in gym_env.render()
    for bad in (8, -1, 1.5, True):
        with pytest.raises(InvalidActionError):
            gym_env.step(bad)


def test_a_directory_of_traces_skips_what_is_not_one(tmp_path):
    shutil.copy(need(CRONJOB), tmp_path)
    (tmp_path / "index.json").write_text('{"scenarios": []}')
    with pytest.warns(UserWarning, match="index.json"):
        env = TraceReplayEnv(tmp_path, max_steps=20)
    assert [t.name for t in env.timelines] == [CRONJOB.name] and env.num_grids == 1
    (tmp_path / CRONJOB.name).unlink()
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="no replayable trace"):
        TraceReplayEnv(tmp_path)


def test_gym_registration_and_missing_trace():
    assert GYM_ID in gymnasium.registry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gymnasium.make(GYM_ID, trace=str(need(CRONJOB)), max_steps=10)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (OBS_SIZE,)
    with pytest.raises(ConfigError, match="trace"):
        TraceReplayGymEnv()
