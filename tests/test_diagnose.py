"""`puffer-cluster diagnose` and `status` against a Kubernetes API faked on loopback
(tests/fake_kube_api.py): the report and the plan on a broken cluster, no request but GET without
--apply, confirmed writes with it, 403s per resource, and the exit statuses."""
from __future__ import annotations

import json
import socket

import pytest

from fake_kube_api import FakeKubeAPI
from puffer_cluster.kernels import cluster_ops as kernel
from puffer_cluster.cli import main
from puffer_cluster.cluster_ops.live import Snapshot, gardener_grid

READ_METHODS = {"GET"}  # the client lists and watches with GET


@pytest.fixture(autouse=True)
def no_real_kubeconfig(tmp_path, monkeypatch):
    """Never let a developer's ~/.kube/config or $KUBECONFIG reach a test."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def node(name, ready="True", pressure=False, cordoned=False, reason="KubeletReady"):
    conditions = [{"type": "Ready", "status": ready, "reason": reason}]
    if pressure:
        conditions.append({"type": "MemoryPressure", "status": "True"})
    return {"metadata": {"name": name}, "spec": {"unschedulable": cordoned},
            "status": {"conditions": conditions, "allocatable": {"cpu": "4", "memory": "8Gi"}}}


def pod(name, node_name, phase="Running", ready=True, waiting=None, restarts=0, owner=None,
        claim=None, priority=None, cpu="500m", memory="1Gi"):
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
              "containerStatuses": [{"name": "main", "restartCount": restarts,
                                     "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}]}
    spec = {"nodeName": node_name, "containers": [
        {"name": "main", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
    if claim:
        spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    if priority:
        spec["priorityClassName"] = priority
    metadata = {"name": name, "namespace": "shop"}
    if owner:
        metadata["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner}]
    return {"metadata": metadata, "spec": spec, "status": status}


def deployment(name, replicas, available):
    return {"metadata": {"name": name, "namespace": "shop"}, "spec": {"replicas": replicas},
            "status": {"availableReplicas": available}}


def broken_cluster(api: FakeKubeAPI) -> None:
    """worker-2 NotReady, worker-3 under memory pressure, web crash-looping, db waiting for a PVC."""
    api.resources.update({
        "/api/v1/nodes": [node("worker-1"), node("worker-2", "Unknown", reason="NodeStatusUnknown"),
                          node("worker-3", pressure=True)],
        "/api/v1/pods": [
            pod("web-7d9f-abcde", "worker-1", ready=False, waiting="CrashLoopBackOff", restarts=7,
                owner="web-7d9f", priority="high"),
            pod("web-7d9f-fghij", "worker-3", owner="web-7d9f", priority="high"),
            pod("api-5c6b-kkkkk", "worker-2", owner="api-5c6b"),
            pod("db-0", None, phase="Pending", ready=False, claim="data-db-0"),
        ],
        "/apis/apps/v1/deployments": [deployment("web", 2, 1), deployment("api", 1, 0)],
        "/api/v1/events": [
            {"type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container",
             "involvedObject": {"kind": "Pod", "name": "web-7d9f-abcde"}},
            {"type": "Normal", "reason": "Scheduled", "message": "assigned", "involvedObject": {"name": "db-0"}},
        ],
        "/api/v1/persistentvolumeclaims": [{"metadata": {"name": "data-db-0", "namespace": "shop"},
                                            "status": {"phase": "Pending"}}],
        "/apis/scheduling.k8s.io/v1/priorityclasses": [{"metadata": {"name": "high"}, "value": 1000}],
    })


@pytest.fixture
def fake():
    with FakeKubeAPI() as server:
        broken_cluster(server)
        yield server


@pytest.fixture
def kubeconfig(fake, tmp_path):
    return fake.write_kubeconfig(tmp_path / "kubeconfig.yaml", context="shop-admin")


def diagnose(capsys, *args):
    code = main(["diagnose", "--model", "heuristic", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_simulated_diagnosis_tells_what_it_found_and_did(capsys, tmp_path, monkeypatch, kubeconfig, fake):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # a cluster is at hand, and left alone
    code, out, _ = diagnose(capsys, "--steps", "12", "--seed", "3", "--json", tmp_path / "r.json")
    assert fake.requests == []
    assert code == 0 and "simulated cluster at the start" in out and "did:" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mode"] == "simulated" and len(report["steps"]) == 12
    assert report["resolved"] >= 1 and report["wrong_fixes"] == 0


def test_live_read_only_reports_and_plans_without_a_single_write(capsys, fake, kubeconfig, tmp_path):
    out_json = tmp_path / "report.json"
    code, out, err = diagnose(capsys, "--live", "--kubeconfig", kubeconfig, "--steps", "20",
                              "--json", out_json)
    assert code == 0, err
    assert fake.requests and {r.method for r in fake.requests} <= READ_METHODS
    assert fake.writes() == []
    # The plan: the exact kubectl commands on the objects' real names.
    assert "plan: kubectl drain worker-2 --ignore-daemonsets --delete-emptydir-data" in out
    assert "kubectl drain worker-3" in out
    assert "kubectl delete pod -n shop web-7d9f-abcde" in out
    # The report names the unhealthy objects with their evidence.
    assert "node worker-2: Ready=Unknown (NodeStatusUnknown)" in out
    assert "pod shop/web-7d9f-abcde [crash_loop]" in out and "7 restarts" in out
    assert "event BackOff" in out and "waiting for PVC shop/data-db-0" in out
    assert "deployment shop/web: 1/2 replicas available" in out
    report = json.loads(out_json.read_text())
    assert report["mode"] == "live" and report["forbidden"] == {}
    assert all(not p["applied"] for p in report["plan"])
    # The gardener's grid: 3 nodes on the smallest grid, 4 x 4.
    assert report["gardener"]["grid"]["height"] == 4 and report["gardener"]["grid"]["cells"][0][:3] == \
        ["worker-1", "worker-2", "worker-3"]


def test_live_apply_confirms_each_write(capsys, fake, kubeconfig, monkeypatch):
    fake.accept_writes = True
    answers = iter(["n", "y"] + ["n"] * 50)
    prompts = []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or next(answers))
    code, out, _ = diagnose(capsys, "--live", "--kubeconfig", kubeconfig, "--apply", "--steps", "20")
    assert code == 0 and prompts[0].startswith("run `kubectl drain worker-2")
    writes = [(r.method, r.path) for r in fake.writes()]
    # Only the second plan was confirmed: draining worker-3 (cordon, then its pod deleted).
    assert writes == [("PATCH", "/api/v1/nodes/worker-3"),
                      ("DELETE", "/api/v1/namespaces/shop/pods/web-7d9f-fghij")]
    assert fake.writes()[0].body == {"spec": {"unschedulable": True}}


def test_live_apply_yes_runs_every_planned_write(capsys, fake, kubeconfig):
    fake.accept_writes = True
    code, out, _ = diagnose(capsys, "--live", "--kubeconfig", kubeconfig, "--apply", "--yes",
                            "--steps", "20")
    assert code == 0
    paths = [r.path for r in fake.writes()]
    assert "/api/v1/nodes/worker-2" in paths and "/api/v1/namespaces/shop/pods/web-7d9f-abcde" in paths
    assert "applied kubectl drain worker-2" in out


def test_a_refused_write_exits_6(capsys, fake, kubeconfig):
    code, _, err = diagnose(capsys, "--live", "--kubeconfig", kubeconfig, "--apply", "--yes")
    assert code == 6 and "refused" in err  # accept_writes off: the fake answers 404


def test_forbidden_reads_are_reported_per_resource_and_the_diagnosis_goes_on(capsys, fake, kubeconfig):
    fake.failures[("GET", "/api/v1/pods")] = (403, "Forbidden")
    fake.failures[("GET", "/api/v1/events")] = (403, "Forbidden")
    code, out, err = diagnose(capsys, "--live", "--kubeconfig", kubeconfig, "--steps", "6")
    assert code == 5
    assert "could not read pods: 403" in err and "could not read events: 403" in err
    assert "node worker-2: Ready=Unknown" in out and "kubectl drain worker-2" in out
    assert fake.writes() == []


def test_unreachable_api_and_bad_kubeconfigs_have_their_exit_status(capsys, tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = FakeKubeAPI()
    api._server = type("Closed", (), {"server_address": ("127.0.0.1", port)})()
    dead = api.write_kubeconfig(tmp_path / "dead.yaml")
    code, _, err = diagnose(capsys, "--live", "--kubeconfig", dead, "--steps", "1")
    assert code == 4 and "unreachable" in err
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("clusters: [this is not: a kubeconfig\n")
    assert diagnose(capsys, "--live", "--kubeconfig", garbage)[0] == 3
    assert diagnose(capsys, "--live", "--kubeconfig", tmp_path / "missing.yaml")[0] == 3
    assert diagnose(capsys, "--live")[0] == 3  # no kubeconfig at all
    code, _, err = diagnose(capsys, "--apply")
    assert code == 2 and "--live" in err


def test_unknown_context_is_a_kubeconfig_error(capsys, kubeconfig, fake):
    code, _, err = diagnose(capsys, "--live", "--kubeconfig", kubeconfig, "--context", "nope")
    assert code == 3 and "nope" in err and fake.requests == []


def test_gardener_grid_is_the_smallest_that_holds_the_nodes():
    def snapshot(count):
        return Snapshot({"nodes": [node(f"n{i:02d}") for i in range(count)]})
    assert gardener_grid(snapshot(3))[:2] == (4, 4)
    assert gardener_grid(snapshot(20))[:2] == (4, 5)
    assert gardener_grid(snapshot(37))[:2] == (6, 7)


def test_status_makes_no_api_call_unless_check(capsys, fake, kubeconfig):
    assert main(["status", "--kubeconfig", str(kubeconfig)]) == 0
    out = capsys.readouterr().out
    assert "context shop-admin" in out and fake.url in out and "numba" in out
    assert fake.requests == []
    assert main(["status", "--kubeconfig", str(kubeconfig), "--check"]) == 0
    assert "v1.30.0-fake" in capsys.readouterr().out
    assert [(r.method, r.path.rstrip("/")) for r in fake.requests] == [("GET", "/version")]


def test_status_without_kubeconfig(capsys):
    assert main(["status"]) == 0
    assert "kubeconfig: none" in capsys.readouterr().out
    assert main(["status", "--check"]) == 3
    assert kernel.NUM_ACTIONS == 15


def test_gardener_recommends_clean_on_the_pressured_node_by_name():
    from puffer_cluster.cluster_ops.live import gardener_recommendations
    from puffer_cluster.config import load_config
    from puffer_cluster.registry import policy_factory
    snapshot = Snapshot({
        "nodes": [node("cool-1"), node("hot-2"), node("cool-3")],
        "pods": [pod("big", "hot-2", memory="6Gi", priority="high"), pod("small", "cool-1")],
        "priorityclasses": [{"metadata": {"name": "high"}, "value": 100}],
    })
    grid, recommendations = gardener_recommendations(snapshot, policy_factory("heuristic", load_config()))
    assert [(r["action"], r["node"]) for r in recommendations] == [("CLEAN", "hot-2")]
    assert recommendations[0]["memory"] == 0.75 and recommendations[0]["priority"] == 1.0
    assert grid["cells"][0] == ["cool-1", "cool-3", "hot-2", None]  # by name, row by row
