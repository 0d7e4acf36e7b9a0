"""`puffer-cluster simkube run`: the Simulation it builds (checked against SimKube's CRD schema
with jsonschema) and the client flow against a Kubernetes API faked on loopback
(tests/fake_kube_api.py), reached through a generated kubeconfig: the exact requests, the
watch handling, the preflight failures and their exit statuses, the cleanup on every way out,
and no write at all in the read-only modes."""
from __future__ import annotations

import copy
import socket
from pathlib import Path

import jsonschema
import pytest
import yaml

from puffer_cluster import cli
from puffer_cluster.config import ConfigError
from puffer_cluster.simkube import (
    CrdMismatchError, KubeconfigError, LeftoverPodsError, SimkubeSettings, api_client_from_kubeconfig,
    build_simulation, check_crd, default_simulation_name, default_timeout, default_trace_path,
    find_kubeconfig, format_sim_duration, load_hooks, load_replayable_trace, parse_sim_duration,
    preflight, run_simulation, simkube_settings, simulation_yaml, trace_warnings, virtual_namespaces,
)
from puffer_cluster.traces import Trace, TraceEvent, TraceFormatError, TraceVersionError, save_trace
from fake_kube_api import CRD_PATH, SIM_PREFIX, SIMULATION_CRD, FakeKubeAPI, make_pod

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "simkube"
REAL_CRD_FILE = DATA / "k8s_raw_simkube.io_simulations.yml"
REAL_HOOKS_FILE = DATA / "config_hooks_default.yml"
NAME = "web-shop"
PODS = "/api/v1/namespaces/virtual-shop/pods"
PREFLIGHT_CALLS = [("GET", "/version/"), ("GET", CRD_PATH), ("GET", "/api/v1/namespaces/monitoring"),
                   ("GET", SIM_PREFIX), ("GET", PODS)]


# ------------------------------------------------------------------------------ fixtures

def deployment(name: str, namespace: str = "shop") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx",
                 "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]}}}}


def write_trace(path: Path, events: list[TraceEvent] | None = None) -> Path:
    web = deployment("web")
    trace = Trace(config={"trackedObjects": {"apps/v1.Deployment": {}}},
                  events=events if events is not None else
                  [TraceEvent(1000, applied_objs=[web]), TraceEvent(1060, deleted_objs=[web])])
    save_trace(trace, path)
    return path


pytestmark = pytest.mark.usefixtures("no_real_kubeconfig", "ctrl_c_raises")  # conftest.py


@pytest.fixture
def trace_file(tmp_path) -> Path:
    return write_trace(tmp_path / "web-shop.sktrace")


@pytest.fixture
def fake():
    with FakeKubeAPI() as server:
        yield server


@pytest.fixture
def kubeconfig(fake, tmp_path) -> Path:
    return fake.write_kubeconfig(tmp_path / "kubeconfig.yaml")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["simkube", "run", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def expected_simulation(trace_file: Path, **options) -> dict:
    return build_simulation(NAME, f"file:///data/{trace_file.name}", SimkubeSettings(),
                            trace=load_replayable_trace(trace_file), **options)


# ------------------------------------------------------- the Simulation against the CRD schema

def _real_crd() -> dict:
    if not REAL_CRD_FILE.is_file():
        pytest.skip(f"SimKube's CRD is not in the shared data: {REAL_CRD_FILE}")
    documents = [doc for doc in yaml.safe_load_all(REAL_CRD_FILE.read_text()) if doc]
    return next(doc for doc in documents if doc["metadata"]["name"] == "simulations.simkube.io")


def strict_validator(crd: dict) -> jsonschema.Draft4Validator:
    """The CRD's v1 schema, where an object may only hold the fields it declares (the API server
    would silently prune the others), plus the top-level apiVersion/kind/metadata."""
    schema = copy.deepcopy(next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
                           ["schema"]["openAPIV3Schema"])

    def close(node):
        if isinstance(node, dict):
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    schema["properties"].update(
        apiVersion={"type": "string", "enum": ["simkube.io/v1"]},
        kind={"type": "string", "enum": ["Simulation"]},
        metadata={"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "labels": {"type": "object"}, "annotations": {"type": "object"}},
            "additionalProperties": False})
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return jsonschema.Draft4Validator(schema)


HOOKS = {"preStartHooks": [{"cmd": "kubectl", "args": ["create", "namespace", "monitoring-hd"],
                            "ignoreFailure": True}],
         "postStopHooks": [{"cmd": "echo", "args": ["done"], "sendSim": False}]}


@pytest.mark.parametrize("options", [
    {},
    {"duration_s": 300, "speed": 2.5, "repetitions": 3, "hooks": HOOKS},
], ids=["defaults", "everything"])
def test_simulation_validates_against_simkubes_crd_schema(trace_file, options):
    validator = strict_validator(_real_crd())
    simulation = expected_simulation(trace_file, **options)
    errors = sorted(validator.iter_errors(simulation), key=str)
    assert not errors, [error.message for error in errors]
    assert check_crd(_real_crd(), simulation) == []  # nothing the API server would drop
    # and the YAML printed by --dry-run is the same object
    assert yaml.safe_load(simulation_yaml(simulation)) == simulation


def test_the_strict_schema_check_catches_what_the_api_server_would_drop_or_refuse(trace_file):
    validator = strict_validator(_real_crd())
    simulation = expected_simulation(trace_file)
    missing = copy.deepcopy(simulation)
    del missing["spec"]["lifecycleParams"]
    typo = copy.deepcopy(simulation)
    typo["spec"]["driver"]["tracepath"] = typo["spec"]["driver"].pop("tracePath")
    null = copy.deepcopy(simulation)
    null["spec"]["duration"] = None
    for broken in (missing, typo, null):
        assert not validator.is_valid(broken)


def test_simulation_fields(trace_file):
    simulation = expected_simulation(trace_file, duration_s=5400, hooks=HOOKS)
    local = load_replayable_trace(trace_file)
    assert simulation["metadata"] == {
        "name": NAME, "labels": {"app.kubernetes.io/managed-by": "puffer-cluster"},
        "annotations": {"puffer-cluster.io/trace-file": "web-shop.sktrace",
                        "puffer-cluster.io/trace-sha256": local.sha256}}
    assert simulation["spec"] == {
        "driver": {"image": "quay.io/appliedcomputing/sk-driver:v2.7.0", "namespace": "simkube",
                   "port": 8888, "tracePath": "file:///data/web-shop.sktrace",
                   "virtualNsPrefix": "virtual"},
        "duration": "+90 minutes", "speed": 1.0, "repetitions": 1,
        "hooks": {"preStartHooks": HOOKS["preStartHooks"], "postStopHooks": HOOKS["postStopHooks"]},
        "lifecycleParams": {"imagePullDelay": 0, "imagePullJitter": 0, "podStartupDelay": 0,
                            "podStartupJitter": 0}}


def test_fake_crd_is_the_real_one_cut_down():
    real = _real_crd()
    fake_spec, real_spec = SIMULATION_CRD["spec"], real["spec"]
    assert (fake_spec["group"], fake_spec["scope"], fake_spec["names"]["plural"]) == \
        (real_spec["group"], real_spec["scope"], real_spec["names"]["plural"])
    fake_schema = fake_spec["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    real_schema = real_spec["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for part in (lambda s: s, lambda s: s["properties"]["driver"],
                 lambda s: s["properties"]["lifecycleParams"], lambda s: s["properties"]["hooks"]):
        assert set(part(fake_schema)["properties"]) == set(part(real_schema)["properties"])
        assert part(fake_schema).get("required") == part(real_schema).get("required")


# ----------------------------------------------------------- names, paths, durations, hooks

@pytest.mark.parametrize("text, seconds, written", [
    ("300", 300, "+5 minutes"), ("90s", 90, "+90 seconds"), ("5m", 300, "+5 minutes"),
    ("+5m", 300, "+5 minutes"), ("1h30m", 5400, "+90 minutes"), ("1h", 3600, "+1 hour"),
    ("2d", 172800, "+48 hours"), ("61", 61, "+61 seconds"), ("1.5m", 90, "+90 seconds"),
    ("1", 1, "+1 second"),
])
def test_durations_are_written_in_a_form_simkube_parses(text, seconds, written):
    assert parse_sim_duration(text) == seconds
    assert format_sim_duration(seconds) == written


@pytest.mark.parametrize("text", ["", "0", "-5m", "5x", "m5", "1.5s", "5 minutes", "5m3", "inf"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ConfigError, match="duration"):
        parse_sim_duration(text)


@pytest.mark.parametrize("file, name", [
    ("trace-0001.msgpack", "trace-0001"), ("My_Trace.v2.sktrace", "my-trace"),
    ("0001.sktrace", "sim-0001"), ("--x--.sktrace", "x"), (".hidden.sktrace", "hidden"),
    ("a" * 80 + ".sktrace", "a" * 49),
])
def test_default_names(file, name):
    assert default_simulation_name(file) == name
    assert len(name) <= 49


def test_default_trace_path_and_url_checks(trace_file):
    assert default_trace_path("/tmp/x/t.sktrace") == "file:///data/t.sktrace"
    assert default_trace_path("t.sktrace", "s3://bucket/traces/") == "s3://bucket/traces/t.sktrace"
    for good in ("file:///data/t.sktrace", "s3://bucket/t.sktrace", "gs://b/t", "azure://c/t",
                 "https://example.com/t.sktrace"):
        build_simulation(NAME, good)
    for bad in ("/data/t.sktrace", "file://node/t", "file:///", "ftp://host/t", "s3:///t"):
        with pytest.raises(ConfigError, match="--trace-path"):
            build_simulation(NAME, bad)
    for bad_name in ("Web", "1web", "web-", "web_shop", "a" * 50):
        with pytest.raises(ConfigError, match="--name"):
            build_simulation(bad_name, "file:///data/t")
    with pytest.raises(ConfigError, match="--speed"):
        build_simulation(NAME, "file:///data/t", speed=0)
    with pytest.raises(ConfigError, match="--repetitions"):
        build_simulation(NAME, "file:///data/t", repetitions=0)


def test_settings_come_from_the_config_and_are_checked():
    assert simkube_settings({}) == SimkubeSettings()
    assert simkube_settings({"simkube": {"driver_port": 9000}}).driver_port == 9000
    for bad in ({"driver_port": 0}, {"driver_namespace": "Bad_NS"}, {"trace_dir": "/data"},
                {"observe_interval": 0.5}, {"pod_startup_delay": -1}, {"driver_port": "x"},
                {"no_such_key": 1}):
        with pytest.raises(ConfigError):
            simkube_settings({"simkube": bad})


def test_hook_files_merge_in_order_and_refuse_what_simkube_would_ignore(tmp_path):
    first = tmp_path / "a.yml"
    first.write_text("preStartHooks:\n  - cmd: kubectl\n    args: [create, namespace, x]\n"
                     "    ignoreFailure: true\n")
    second = tmp_path / "b.yml"
    second.write_text("preStartHooks:\n  - cmd: echo\npostStopHooks:\n  - cmd: kubectl\n"
                      "    args: [delete, namespace, x]\n")
    assert load_hooks([first, second]) == {
        "preStartHooks": [{"cmd": "kubectl", "args": ["create", "namespace", "x"], "ignoreFailure": True},
                          {"cmd": "echo"}],
        "postStopHooks": [{"cmd": "kubectl", "args": ["delete", "namespace", "x"]}]}
    assert load_hooks([]) is None
    for text, message in (("preStart: []", "unknown hook list"),
                          ("preStartHooks: [{args: [a]}]", "missing 'cmd'"),
                          ("preStartHooks: [{cmd: x, arg: [a]}]", "unknown field"),
                          ("preStartHooks: [{cmd: x, args: [8080]}]", "quote it"),
                          ("- cmd: x", "expected a map"), ("preStartHooks: {cmd: x}", "must be a list")):
        bad = tmp_path / "bad.yml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_hooks([bad])


def test_simkubes_default_hooks_file_loads():
    if not REAL_HOOKS_FILE.is_file():
        pytest.skip(f"not in the shared data: {REAL_HOOKS_FILE}")
    hooks = load_hooks([REAL_HOOKS_FILE])
    assert [hook["cmd"] for hook in hooks["preStartHooks"]] == ["kubectl", "kubectl"]
    assert len(hooks["postStopHooks"]) == 2


def test_warnings_and_timeout(tmp_path):
    single = load_replayable_trace(write_trace(tmp_path / "one.sktrace",
                                               [TraceEvent(5, applied_objs=[deployment("a")])])).trace
    assert any("spans 0 s" in w for w in trace_warnings(single, None))
    assert trace_warnings(single, 60) == []
    leading = load_replayable_trace(write_trace(tmp_path / "lead.sktrace", [
        TraceEvent(0), TraceEvent(1_700_000_000, applied_objs=[deployment("a")])])).trace
    warnings = trace_warnings(leading, 300)
    assert any("waits that long" in w for w in warnings)
    assert any("none of them applies an object" in w for w in warnings)
    two = load_replayable_trace(write_trace(tmp_path / "two.sktrace")).trace
    assert default_timeout(two, None, 2.0, 3, 600) == 60 / 2 * 3 + 600
    assert default_timeout(two, 300, 1.0, 1, 0) == 300
    assert virtual_namespaces(two, "virtual") == ["virtual-shop"]


def test_find_kubeconfig(tmp_path, monkeypatch):
    assert find_kubeconfig() is None
    home_config = tmp_path / "home" / ".kube" / "config"
    home_config.parent.mkdir(parents=True)
    home_config.write_text("apiVersion: v1\n")
    assert find_kubeconfig() == str(home_config)
    other = tmp_path / "other.yaml"
    other.write_text("apiVersion: v1\n")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{other}")
    assert find_kubeconfig() == str(other)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert find_kubeconfig() is None  # as kubectl: no config
    assert find_kubeconfig(other) == str(other)
    with pytest.raises(KubeconfigError, match="no such file"):
        find_kubeconfig(tmp_path / "missing")


# --------------------------------------------------------------- dry run and the local trace

def test_dry_run_prints_the_simulation_and_calls_nothing(capsys, fake, kubeconfig, trace_file, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # a cluster is configured, but --dry-run
    code, out, err = run_cli(capsys, "--trace", trace_file, "--duration", "5m", "--dry-run")
    assert code == 0, err
    assert yaml.safe_load(out) == expected_simulation(trace_file, duration_s=300)
    assert out.startswith("---\napiVersion: simkube.io/v1\nkind: Simulation\n")
    assert fake.requests == []


def test_without_a_kubeconfig_the_default_is_a_dry_run(capsys, fake, trace_file):
    code, out, err = run_cli(capsys, "--trace", trace_file)
    assert code == 0
    assert "no kubeconfig found" in err and "dry run" in err
    assert yaml.safe_load(out) == expected_simulation(trace_file)
    assert fake.requests == []


def test_read_only_needs_a_kubeconfig(capsys, trace_file):
    code, _, err = run_cli(capsys, "--trace", trace_file, "--read-only")
    assert code == 3 and "no kubeconfig was found" in err


def _v1_array_trace(path: Path) -> None:  # SimKube <= 1.1.1: a top-level array
    import msgpack
    path.write_bytes(msgpack.packb([{"trackedObjects": {}}, [], {}]))


@pytest.mark.parametrize("make, code, message", [
    (lambda p: _v1_array_trace(p), 2, "SimKube <= 1.1.1"),
    (lambda p: p.write_bytes(__import__("msgpack").packb({"version": 1, "events": []})), 2,
     "sim-arena version 1 trace"),
    (lambda p: p.write_bytes(b"\xc1 not msgpack"), 2, "not msgpack"),
    (lambda p: p.write_text('{"version": 2, "config": {"trackedObjects": {}}, "events": [{"ts": 1, '
                            '"applied_objs": [], "deleted_objs": []}], "index": {}, "pod_lifecycles": {}}'),
     2, "SimKube's driver reads msgpack only"),
    (lambda p: write_trace(p, []), 2, "no events"),
    (lambda p: write_trace(p, [TraceEvent(1, applied_objs=[{"apiVersion": "v1", "kind": "Node",
                                                           "metadata": {"name": "n"}}])]),
     2, "has no namespace"),
    (lambda p: None, 1, "cannot read"),
], ids=["v1", "sim-arena-v1", "malformed", "json", "empty", "cluster-scoped", "missing"])
def test_unusable_traces_are_refused_before_any_api_call(capsys, fake, kubeconfig, tmp_path, make, code,
                                                          message):
    path = tmp_path / "bad.sktrace"
    make(path)
    result, out, err = run_cli(capsys, "--trace", path, "--kubeconfig", kubeconfig)
    assert result == code and message in err and out == ""
    assert fake.requests == []


def test_trace_errors_are_the_readers_typed_errors(tmp_path):
    _v1_array_trace(tmp_path / "v1.sktrace")
    with pytest.raises(TraceVersionError):
        load_replayable_trace(tmp_path / "v1.sktrace")
    (tmp_path / "bad.sktrace").write_bytes(b"\x81\xa7version")
    with pytest.raises(TraceFormatError):
        load_replayable_trace(tmp_path / "bad.sktrace")


# ----------------------------------------------------------------------------- preflight

def test_read_only_runs_the_preflight_checks_with_reads_only(capsys, fake, kubeconfig, trace_file):
    code, out, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig, "--read-only")
    assert code == 0, err
    assert fake.calls() == PREFLIGHT_CALLS
    assert fake.writes() == []
    assert all(r.headers["authorization"] == "Bearer fake-token" for r in fake.requests)
    assert "read-only: preflight passed, nothing was submitted" in out
    assert f"cluster {fake.url} (kubeconfig {kubeconfig})" in out
    assert yaml.safe_load(out.split("\ncluster ")[0]) == expected_simulation(trace_file)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _crd_with(change) -> dict:
    crd = copy.deepcopy(SIMULATION_CRD)
    change(crd)
    return crd


def _spec_schema(crd: dict) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


@pytest.mark.parametrize("setup, code, message", [
    (lambda f: f.failures.update({("GET", "/version"): (401, "Unauthorized")}), 4, "credentials"),
    (lambda f: setattr(f, "crd", None), 5, "SimKube is not installed"),
    (lambda f: setattr(f, "crd", _crd_with(lambda c: c["spec"].update(scope="Namespaced"))), 5,
     "Namespaced-scoped"),
    (lambda f: setattr(f, "crd", _crd_with(lambda c: c["spec"]["versions"][0].update(served=False))), 5,
     "does not serve v1"),
    (lambda f: setattr(f, "crd", _crd_with(lambda c: _spec_schema(c)["required"].append("tenant"))), 5,
     "requires spec.tenant"),
    (lambda f: f.namespaces.discard("monitoring"), 8, "namespace 'monitoring' does not exist"),
    (lambda f: f.add_simulation("old-run", "Finished"), 6, "old-run (Finished)"),
    (lambda f: f.add_simulation(NAME), 6, f"a Simulation named {NAME} exists already"),
    (lambda f: f.pods.update({"virtual-shop": [make_pod("web-1")]}), 7,
     "virtual namespace virtual-shop still holds 1 pods (web-1)"),
], ids=["unauthorized", "no-crd", "namespaced-crd", "v1-not-served", "crd-requires-more",
        "no-monitoring-namespace", "leftover-simulation", "same-name", "leftover-pods"])
@pytest.mark.parametrize("mode", [["--read-only"], []], ids=["read-only", "run"])
def test_preflight_failures_have_their_own_exit_status_and_write_nothing(
        capsys, fake, kubeconfig, trace_file, setup, code, message, mode):
    setup(fake)
    result, out, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig, *mode)
    assert result == code, err
    assert message in err
    assert fake.writes() == []


def test_unreachable_api_server(capsys, tmp_path, trace_file):
    kubeconfig = tmp_path / "kc.yaml"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
        f"    server: http://127.0.0.1:{_closed_port()}\nusers:\n- name: u\n  user:\n    token: t\n"
        "contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n")
    code, _, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig)
    assert code == 4 and "is unreachable" in err


@pytest.mark.parametrize("content, extra, message", [
    ("{not: [yaml", [], "is not usable"),
    (None, ["--context", "nope"], "context 'nope'"),
    (None, ["--kubeconfig-missing"], "no such file"),
], ids=["malformed", "unknown-context", "missing"])
def test_unusable_kubeconfig(capsys, fake, kubeconfig, trace_file, tmp_path, content, extra, message):
    if content is not None:
        kubeconfig.write_text(content)
    if extra == ["--kubeconfig-missing"]:
        kubeconfig, extra = tmp_path / "missing.yaml", []
    code, _, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig, *extra)
    assert code == 3 and message in err
    assert fake.requests == []


def test_an_older_crd_is_accepted_with_a_warning_for_fields_it_would_drop(capsys, fake, kubeconfig,
                                                                         trace_file):
    fake.crd = _crd_with(lambda c: (_spec_schema(c)["properties"].pop("lifecycleParams"),
                                    _spec_schema(c)["required"].remove("lifecycleParams")))
    code, out, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig, "--read-only")
    assert code == 0, err
    assert "warn the installed CRD does not know spec.lifecycleParams" in out


def test_library_preflight_raises_typed_errors(fake, kubeconfig, trace_file):
    api = api_client_from_kubeconfig(str(kubeconfig))
    simulation = expected_simulation(trace_file)
    fake.pods["virtual-shop"] = [make_pod(f"p{i}") for i in range(7)]
    with pytest.raises(LeftoverPodsError, match=r"7 pods \(p0, p1, p2, p3, p4, \.\.\.\)"):
        preflight(api, simulation, ["virtual-shop"], echo=lambda line: None)
    fake.crd = _crd_with(lambda c: c["spec"].update(group="example.com"))
    with pytest.raises(CrdMismatchError):
        preflight(api, simulation, ["virtual-shop"], echo=lambda line: None)
    api.close()


# ------------------------------------------------------------------------------ the run

def _watches(fake):
    return [r for r in fake.requests if r.is_watch]


def test_a_run_creates_watches_observes_and_deletes(capsys, fake, kubeconfig, trace_file):
    fake.watch_script = [
        ("state", "Initializing"),
        ("pods", "virtual-shop", [make_pod("web-1"), make_pod("web-2", "Pending", ready=False)]),
        ("state", "Running"),
        ("until", lambda f: f.count("GET", PODS) >= 2),  # the observation while Running
        ("pods", "virtual-shop", []),  # the driver cleans up before the job completes
        ("state", "Finished"),
    ]
    code, out, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig,
                             "--duration", "5m", "--speed", "2")
    assert code == 0, err
    assert fake.calls() == PREFLIGHT_CALLS + [
        ("POST", SIM_PREFIX), ("WATCH", SIM_PREFIX), ("GET", PODS), ("GET", PODS),
        ("DELETE", f"{SIM_PREFIX}/{NAME}")]
    post, watch, delete = fake.writes()[0], _watches(fake)[0], fake.writes()[1]
    assert post.body == expected_simulation(trace_file, duration_s=300, speed=2.0)
    assert watch.query["fieldSelector"] == f"metadata.name={NAME}"
    assert watch.query["timeoutSeconds"] == "10" and watch.query["resourceVersion"]
    assert delete.body == {"propagationPolicy": "Background"}
    assert all(r.headers["authorization"] == "Bearer fake-token" for r in fake.requests)
    assert "state Initializing" in out and "state Running" in out
    assert "pods virtual-shop: 2 pods, 1 ready (1 Pending, 1 Running)" in out
    assert f"Simulation {NAME} Finished after" in out and "(Initializing -> Running -> Finished)" in out
    assert "last pods while running: virtual-shop: 2 pods, 1 ready" in out
    assert f"deleted Simulation {NAME}" in out
    assert fake.simulations == {}


def test_run_simulation_returns_what_it_saw(fake, kubeconfig, trace_file):
    api = api_client_from_kubeconfig(str(kubeconfig))
    simulation = expected_simulation(trace_file)
    fake.watch_script = [("state", "Initializing"), ("pods", "virtual-shop", [make_pod("a")]),
                         ("state", "Running"), ("until", lambda f: f.count("GET", PODS) >= 1),
                         ("state", "Finished")]
    lines = []
    run = run_simulation(api, simulation, ["virtual-shop"], timeout_s=20, echo=lines.append)
    api.close()
    assert run.state == "Finished" and run.deleted
    assert [state for _, state in run.states] == ["Initializing", "Running", "Finished"]
    assert [(o["state"], o["pods"]) for o in run.observations] == [
        ("Running", {"virtual-shop": {"total": 1, "ready": 1, "phases": {"Running": 1}}}),
        ("Finished", {"virtual-shop": {"total": 1, "ready": 1, "phases": {"Running": 1}}})]


def test_a_closed_watch_resumes_from_the_last_resource_version(capsys, fake, kubeconfig, trace_file):
    fake.watch_script = [("state", "Initializing"), ("close",), ("state", "Running"), ("close",),
                         ("state", "Finished")]
    code, _, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig)
    assert code == 0, err
    versions = [int(w.query["resourceVersion"]) for w in _watches(fake)]
    assert len(versions) == 3
    # each watch starts at the version of the last event seen: the created object's, then
    # Initializing's, then Running's (the fake numbers every change and list in turn)
    assert versions[1] == versions[0] + 1 and versions[2] == versions[1] + 1
    assert fake.count("DELETE", f"{SIM_PREFIX}/{NAME}") == 1


def test_an_expired_watch_reads_the_simulation_and_watches_again(capsys, fake, kubeconfig, trace_file):
    fake.watch_script = [("state", "Initializing"), ("error", 410, "Expired"),
                         ("state", "Running"), ("state", "Finished")]
    code, _, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig)
    assert code == 0, err
    assert fake.calls()[len(PREFLIGHT_CALLS):] == [
        ("POST", SIM_PREFIX), ("WATCH", SIM_PREFIX), ("GET", f"{SIM_PREFIX}/{NAME}"), ("WATCH", SIM_PREFIX),
        ("GET", PODS), ("GET", PODS), ("DELETE", f"{SIM_PREFIX}/{NAME}")]
    first, second = _watches(fake)
    assert int(second.query["resourceVersion"]) == int(first.query["resourceVersion"]) + 1


@pytest.mark.parametrize("script, code, message", [
    ([("state", "Initializing"), ("state", "Running"), ("state", "Failed")], 9,
     f"Simulation {NAME} Failed"),
    ([("state", "Initializing"), ("error", 500, "InternalError")], 11,
     "watching Simulation web-shop failed"),
    ([("state", "Initializing"), ("event", "DELETED")], 11, "was deleted by someone else"),
], ids=["failed", "watch-error", "deleted-elsewhere"])
def test_the_simulation_is_deleted_when_the_run_goes_wrong(capsys, fake, kubeconfig, trace_file, script,
                                                           code, message):
    fake.watch_script = script
    result, _, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig)
    assert result == code and message in err
    assert fake.calls()[-1] == ("DELETE", f"{SIM_PREFIX}/{NAME}")
    assert fake.simulations == {}


def test_a_timeout_deletes_the_simulation(capsys, fake, kubeconfig, trace_file):
    fake.watch_script = [("state", "Initializing")]  # then nothing: the watch stays quiet
    code, _, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig, "--timeout", "1")
    assert code == 10 and "still Initializing after 1 s" in err
    assert [w.query["timeoutSeconds"] for w in _watches(fake)] == ["1"]
    assert fake.calls()[-1] == ("DELETE", f"{SIM_PREFIX}/{NAME}") and fake.simulations == {}


def test_pods_are_observed_periodically_while_running(capsys, fake, kubeconfig, trace_file):
    fake.watch_script = [("pods", "virtual-shop", [make_pod("a")]), ("state", "Running")]
    code, out, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig, "--timeout", "2",
                             "--simkube.observe-interval", "1")
    assert code == 10, err
    assert [w.query["timeoutSeconds"] for w in _watches(fake)] == ["1", "1"]
    assert fake.count("GET", PODS) >= 1 + 2  # preflight, then at Running and after the first second
    assert out.count("pods virtual-shop: 1 pods, 1 ready (1 Running)") >= 2
    assert fake.calls()[-1] == ("DELETE", f"{SIM_PREFIX}/{NAME}")


def test_ctrl_c_deletes_the_simulation(capsys, fake, kubeconfig, trace_file):
    fake.watch_script = [("state", "Initializing"), ("interrupt",), ("state", "Running")]
    code, out, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig)
    assert code == 130 and "interrupted" in err
    assert fake.calls()[-1] == ("DELETE", f"{SIM_PREFIX}/{NAME}") and fake.simulations == {}
    assert f"deleted Simulation {NAME}" in out


def test_run_simulation_lets_keyboard_interrupt_through_after_deleting(fake, kubeconfig, trace_file):
    api = api_client_from_kubeconfig(str(kubeconfig))
    fake.watch_script = [("interrupt",), ("state", "Initializing")]
    with pytest.raises(KeyboardInterrupt):
        run_simulation(api, expected_simulation(trace_file), ["virtual-shop"], timeout_s=20,
                       echo=lambda line: None)
    api.close()
    assert fake.writes()[-1].method == "DELETE" and fake.simulations == {}


def test_a_refused_create_deletes_nothing(capsys, fake, kubeconfig, trace_file):
    fake.failures[("POST", SIM_PREFIX)] = (409, "AlreadyExists")  # e.g. created by someone meanwhile
    code, _, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig)
    assert code == 11 and "the API refused Simulation web-shop: 409" in err
    assert [r.method for r in fake.writes()] == ["POST"]


def test_a_failed_delete_says_how_to_clean_up(capsys, fake, kubeconfig, trace_file):
    fake.watch_script = [("state", "Finished")]
    fake.failures[("DELETE", f"{SIM_PREFIX}/{NAME}")] = (500, "InternalError")
    code, _, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig)
    assert code == 11
    assert f"could not delete Simulation {NAME}" in err
    assert f"kubectl delete simulations.simkube.io {NAME}" in err


def test_kubeconfig_from_the_environment_and_config_overrides(capsys, fake, kubeconfig, trace_file,
                                                              monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    fake.watch_script = [("state", "Finished")]
    code, _, err = run_cli(capsys, "--trace", trace_file, "--name", "custom", "--trace-path",
                           "s3://bucket/t.sktrace", "--simkube.driver-namespace", "sims",
                           "--simkube.pod-startup-delay", "250")
    assert code == 0, err
    body = fake.writes()[0].body
    assert body["metadata"]["name"] == "custom"
    assert body["spec"]["driver"]["tracePath"] == "s3://bucket/t.sktrace"
    assert body["spec"]["driver"]["namespace"] == "sims"
    assert body["spec"]["lifecycleParams"]["podStartupDelay"] == 250
    assert fake.calls()[-1] == ("DELETE", f"{SIM_PREFIX}/custom")


@pytest.mark.parametrize("args, message", [
    (["--duration", "5 minutes"], "duration"), (["--name", "Bad"], "--name"),
    (["--simkube.driver-port", "0"], "driver_port"), (["--simkube.nope", "1"], "unknown key"),
    (["--trace-path", "/data/t"], "--trace-path"),
])
def test_bad_arguments_exit_2_before_any_api_call(capsys, fake, kubeconfig, trace_file, args, message):
    code, _, err = run_cli(capsys, "--trace", trace_file, "--kubeconfig", kubeconfig, *args)
    assert code == 2 and message in err
    assert fake.requests == []
