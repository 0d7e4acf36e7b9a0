"""`puffer-cluster simkube loop` against the loopback Kubernetes API (tests/fake_kube_api.py):
the pods of each Simulation come from a scenario table written here by hand (what kube-scheduler
does with 3 pods on 2 nodes of 16 CPU), and the loop must see and reward them exactly as
`SimArenaEnv` does offline; plus the records, the dry run, and the cleanup when a Simulation
never finishes, its pods never appear, or the run is interrupted (Ctrl-C, SIGTERM)."""
from __future__ import annotations

import json
import signal
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from puffer_cluster import cli
from puffer_cluster.run_records import STEPS_FILE, SUMMARY_FILE
from puffer_cluster.simarena import SimArenaEnv
from puffer_cluster.simkube.loop import deployment_pods, scheduler_shortages
from puffer_cluster.traces import Trace, TraceEvent, load_trace, save_trace
from puffer_cluster.traces.ops import deployment_resources
from fake_kube_api import SIM_PREFIX, FakeKubeAPI, make_pod

NAMESPACE = "virtual-shop"
LABELS = {"app": "web"}
NO_CPU = ("0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
          "2 No preemption victims found for incoming pod.")
# (first-container cpu in millicores, replicas) -> (ready, pending, the scheduler's message):
# 2 nodes of 16 CPU hold one pod of 8500m to 9500m each, two 8000m pods each.
SCENARIO_TABLE = {
    (9500, 3): (2, 1, NO_CPU),
    (9000, 2): (2, 0, None),
    (9000, 3): (2, 1, NO_CPU),
    (9000, 4): (2, 2, NO_CPU),
    (8500, 3): (2, 1, NO_CPU),
    (8000, 3): (3, 0, None),
}
ARENA = ["--simarena.nodes", "2"]  # the offline env's cluster: the table's


def web_trace(path: Path, cpu: str = "9000m") -> Path:
    web = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"replicas": 3, "selector": {"matchLabels": LABELS},
                    "template": {"metadata": {"labels": LABELS}, "spec": {"containers": [
                        {"name": "app", "image": "nginx",
                         "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]}}}}
    save_trace(Trace(config={"trackedObjects": {"apps/v1.Deployment": {}}},
                     events=[TraceEvent(1000, applied_objs=[web])]), path)
    return path


def play_table(server: FakeKubeAPI, simulation: dict) -> None:
    """The cluster's pods for a created Simulation: read its trace, look the table up."""
    trace = load_trace(urlsplit(simulation["spec"]["driver"]["tracePath"]).path)
    web = deployment_resources(trace, "web")
    ready, pending, message = SCENARIO_TABLE[(web.cpu_millicores, web.replicas)]
    pods = [make_pod(f"web-7d4f-{i}", labels=LABELS) for i in range(ready)]
    pods += [make_pod(f"web-7d4f-{ready + i}", phase="Pending", ready=False, labels=LABELS,
                      unschedulable=message) for i in range(pending)]
    pods.append(make_pod("db-0", labels={"app": "db"}))  # another workload: not counted
    server.pods[NAMESPACE] = pods


def clear_pods(server: FakeKubeAPI, simulation: dict) -> None:
    server.pods.pop(NAMESPACE, None)  # SimKube empties the virtual namespace


@pytest.fixture(autouse=True)
def no_real_kubeconfig(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def fake():
    with FakeKubeAPI() as server:
        server.on_create, server.on_delete = play_table, clear_pods
        yield server


@pytest.fixture
def kubeconfig(fake, tmp_path) -> Path:
    return fake.write_kubeconfig(tmp_path / "kubeconfig.yaml")


def runs(simulations: int) -> list[tuple]:
    """The watch script of Simulations that run, then finish (a watch each)."""
    return [("state", "Running"), ("state", "Finished"), ("close",)] * simulations


def loop(capsys, tmp_path, *args) -> tuple[int, str, str]:
    code = cli.main(["simkube", "loop", "--trace", str(tmp_path / "web.sktrace"), "--deploy", "web",
                     "--target", "3", "--records", str(tmp_path / "runs"), "--duration", "60s",
                     "--timeout", "20",
                     *map(str, args), *ARENA])
    out, err = capsys.readouterr()
    return code, out, err


def records(tmp_path) -> tuple[list[dict], dict]:
    (run_dir,) = (tmp_path / "runs").iterdir()
    steps = [json.loads(line) for line in (run_dir / STEPS_FILE).read_text().splitlines()]
    return steps, json.loads((run_dir / SUMMARY_FILE).read_text())


# ----------------------------------------------------------------------- sim-to-real

def test_the_loop_sees_and_rewards_what_simarena_env_does(capsys, tmp_path, fake, kubeconfig):
    trace_file = web_trace(tmp_path / "web.sktrace")
    fake.watch_script = runs(3)
    code, out, err = loop(capsys, tmp_path, "--policy", "heuristic", "--steps", "5",
                          "--kubeconfig", kubeconfig)
    assert code == 0, err
    steps, summary = records(tmp_path)
    # heuristic: 1 of 3 pods pending for want of CPU -> reduce_cpu, twice, then healthy
    assert [s["action_name"] for s in steps] == ["reduce_cpu", "reduce_cpu"]
    assert [s["trace_out"]["cpu"] for s in steps] == ["8500m", "8000m"]
    assert [(s["terminated"], s["truncated"]) for s in steps] == [(False, False), (True, False)]
    assert steps[0]["observation"]["short"] == [2, 0, 0] and steps[0]["observation"]["total"] == 3
    assert summary["status"] == "done" and summary["episodes"][0]["solved"] is True

    env = SimArenaEnv(num_envs=1, traces=[trace_file], log_interval=2**62,
                      simarena={"nodes": 2, "namespace": "", "target": 3, "max_steps": 5})
    observation, _ = env.reset()
    for step in steps:
        assert step["observation"]["vector"] == [round(float(v), 6) for v in observation[0]]
        observation, reward, terminal, truncated, _ = env.step(np.array([step["action"]]))
        assert step["reward"] == float(reward[0])
        assert step["next_observation"]["vector"] == [round(float(v), 6) for v in observation[0]] \
            or terminal[0]  # the env auto-resets after the last step
        assert step["terminated"] == bool(terminal[0])

    # one Simulation per observation, each created and deleted, and nothing else written
    creates = [r for r in fake.requests if r.method == "POST"]
    deletes = [r for r in fake.requests if r.method == "DELETE"]
    assert len(creates) == len(deletes) == 3 and not fake.simulations
    assert {r.path for r in fake.writes()} <= {SIM_PREFIX} | {f"{SIM_PREFIX}/{r.body['metadata']['name']}"
                                                             for r in creates}
    assert all(r.query.get("labelSelector") == "app=web"
               for r in fake.requests if r.path.endswith(f"{NAMESPACE}/pods") and r.query.get("labelSelector"))


def test_episodes_chain_the_edited_trace(capsys, tmp_path, fake, kubeconfig):
    web_trace(tmp_path / "web.sktrace")
    fake.watch_script = runs(3)
    code, _, err = loop(capsys, tmp_path, "--policy", "reduce_cpu", "--steps", "1", "--episodes",
                        "2", "--kubeconfig", kubeconfig)
    assert code == 0, err
    steps, summary = records(tmp_path)
    assert [s["episode"] for s in steps] == [0, 1]
    assert steps[1]["trace_in"] == steps[0]["trace_out"]
    assert steps[1]["observation"]["ready"] == steps[0]["next_observation"]["ready"]
    assert [e["solved"] for e in summary["episodes"]] == [False, True]
    assert steps[0]["truncated"] and fake.count("POST", SIM_PREFIX) == 3


# ----------------------------------------------------------------------- dry run and failures

def test_without_a_kubeconfig_it_prints_the_plan_and_touches_nothing(capsys, tmp_path, fake):
    web_trace(tmp_path / "web.sktrace")
    code, out, err = loop(capsys, tmp_path, "--policy", "heuristic")
    assert code == 0 and "dry run" in err
    assert "policy heuristic fixes Deployment web" in out and "kind: Simulation" in out
    assert fake.requests == [] and not (tmp_path / "runs").exists()
    # without --duration a Simulation runs until the offline env would count the pods
    assert cli.main(["simkube", "loop", "--trace", str(tmp_path / "web.sktrace"), "--policy", "noop",
                     "--simarena.observe_seconds", "90"]) == 0
    assert "replaying it for 90 s" in capsys.readouterr().out


def test_bad_input_is_one_error_before_any_api_call(capsys, tmp_path, fake, kubeconfig):
    web_trace(tmp_path / "web.sktrace")
    code, _, err = loop(capsys, tmp_path, "--policy", "sideways", "--kubeconfig", kubeconfig)
    assert code == 2 and err.count("error:") == 1 and "sideways" in err
    code, _, err = loop(capsys, tmp_path, "--policy", "noop", "--deploy", "api", "--kubeconfig", kubeconfig)
    assert code == 2 and "api" in err
    assert fake.requests == []


def test_a_simulation_that_never_finishes_times_out_and_is_deleted(capsys, tmp_path, fake, kubeconfig):
    web_trace(tmp_path / "web.sktrace")
    fake.watch_script = [("state", "Running")]  # then silence
    code, _, err = loop(capsys, tmp_path, "--policy", "noop", "--kubeconfig", kubeconfig, "--timeout", "1")
    assert code == 10 and "still Running" in err
    assert fake.count("DELETE", f"{SIM_PREFIX}/web-000") == 1 and not fake.simulations
    _, summary = records(tmp_path)
    assert summary["status"].startswith("error:") and summary["steps"] == 0


def test_pods_that_never_appear_stop_the_loop(capsys, tmp_path, fake, kubeconfig):
    web_trace(tmp_path / "web.sktrace")
    fake.on_create = None  # the driver replays nothing
    fake.watch_script = runs(1)
    code, _, err = loop(capsys, tmp_path, "--policy", "noop", "--kubeconfig", kubeconfig)
    assert code == 12 and "no pod of Deployment web" in err
    assert not fake.simulations and fake.count("DELETE", f"{SIM_PREFIX}/web-000") == 1
    assert records(tmp_path)[1]["status"].startswith("error:")


@pytest.mark.parametrize("step", [("interrupt",), ("signal", signal.SIGTERM)])
def test_ctrl_c_and_sigterm_delete_the_simulation_and_keep_the_records(capsys, tmp_path, fake,
                                                                        kubeconfig, step):
    web_trace(tmp_path / "web.sktrace")
    fake.watch_script = runs(1) + [("state", "Running"), step, ("state", "Finished")]
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = loop(capsys, tmp_path, "--policy", "noop", "--kubeconfig", kubeconfig)
    assert code == 130 and "interrupted" in err
    assert not fake.simulations and fake.count("DELETE", f"{SIM_PREFIX}/web-001") == 1
    assert records(tmp_path)[1]["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) == before  # the handler before the run is back


# ----------------------------------------------------------------------- pod counting

def test_scheduler_messages_give_the_nodes_short_of_each_resource():
    assert scheduler_shortages(NO_CPU) == [2, 0, 0]
    assert scheduler_shortages("0/5 nodes are available: 1 Insufficient memory, 3 Insufficient "
                               "cpu, 1 Too many pods. preemption: 0/5 nodes: 5 Insufficient cpu") \
        == [3, 1, 1]
    assert scheduler_shortages("0/1 nodes are available: 1 node(s) had untolerated taint") == [0, 0, 0]


def test_deployment_pods_counts_only_the_deployment():
    pods = [make_pod("web-a-1", labels=LABELS), make_pod("web-a-2", phase="Pending", ready=False,
                                                         labels=LABELS, unschedulable=NO_CPU),
            make_pod("web-a-0", phase="Running", ready=False, labels=LABELS),
            make_pod("webby-0", labels={"app": "webby"})]
    counts = deployment_pods(pods, "web", LABELS)
    assert (counts["total"], counts["ready"], counts["pending"], counts["short"]) == (3, 1, 1, [2, 0, 0])
    assert deployment_pods(pods, "web", None)["total"] == 3  # by name prefix 'web-'


def test_unwritable_records_are_one_error(capsys, tmp_path, fake, kubeconfig):
    web_trace(tmp_path / "web.sktrace")
    (tmp_path / "runs").write_text("a file, not a directory")
    code, _, err = loop(capsys, tmp_path, "--policy", "noop", "--kubeconfig", kubeconfig)
    assert code == 1 and err.count("error:") == 1 and "records" in err
    assert fake.writes() == []


def test_a_checkpoint_acts_in_the_loop_as_on_the_offline_observation(capsys, tmp_path, fake, kubeconfig):
    import torch

    from puffer_cluster.kernels.simarena import NUM_ACTIONS, OBS_SIZE
    from puffer_cluster.config import load_config
    from puffer_cluster.registry import policy_factory
    from puffer_cluster.trainers.checkpoint import save_atomic
    from puffer_cluster.trainers.models import make_policy
    trace_file = web_trace(tmp_path / "web.sktrace")
    config = load_config("simarena", ARENA)
    torch.manual_seed(3)
    model = make_policy(config["policy"], OBS_SIZE, NUM_ACTIONS)
    checkpoint = save_atomic({"format": "puffer-cluster", "config": config,
                              "model": model.state_dict()}, tmp_path / "policy.pt")
    fake.watch_script = runs(2)
    code, _, err = loop(capsys, tmp_path, "--policy", checkpoint, "--steps", "1", "--kubeconfig", kubeconfig)
    assert code == 0, err
    (step,), _ = records(tmp_path)
    env = SimArenaEnv(num_envs=1, traces=[trace_file], log_interval=2**62,
                      simarena={"nodes": 2, "namespace": "", "target": 3, "max_steps": 1})
    observation, _ = env.reset()
    offline = policy_factory(str(checkpoint), config)(1, None)(observation, np.ones(1, dtype=bool))
    assert step["action"] == int(offline[0])
