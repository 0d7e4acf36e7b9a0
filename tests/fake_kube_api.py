"""A small Kubernetes API server on loopback for the `simkube run` tests (no cluster here).

It speaks just enough of the API for the `kubernetes` client: GET /version, the Simulation
CRD, cluster-scoped simkube.io/v1 simulations (list, get, create, delete, and watch streaming
JSON lines), GET namespaces and namespaced pod lists (with an equality labelSelector). `on_create`
and `on_delete`, when set, are called as hook(server, simulation) after a Simulation is created or
deleted (the agent loop's tests set and clear pods with them). Every request is recorded (method, path,
query, JSON body, headers) so tests can check exactly what was sent, and that nothing was
written.

A watch request plays the next steps of `watch_script` until a ("close",) step (that watch
ends) or the end of the script (the watch then stays open, sending nothing, for its
timeoutSeconds). Steps:
    ("state", "Running")          set status.state of the watched Simulation, send MODIFIED
    ("event", "DELETED")          delete the Simulation, send DELETED
    ("error", 410, "Gone")        send an ERROR event carrying a Status with that code; the
                                  watch ends there, as the API server's do
    ("pods", ns, [pod, ...])      set the pods of a namespace (nothing is sent)
    ("until", predicate)          wait (at most 5 s) until predicate(server) is true
    ("interrupt",)                raise KeyboardInterrupt in the main thread (as Ctrl-C does)
    ("signal", signum)            send the signal to this process (e.g. SIGTERM)
    ("close",)                    end this watch response

For `diagnose --live`, `resources` maps a list path ("/api/v1/nodes", "/api/v1/pods",
"/apis/apps/v1/deployments", ...) to the items a GET of it returns; with `accept_writes` set,
PATCH / POST / DELETE of any other path are answered 200 (and recorded), as a cluster that
allowed them would.
"""
from __future__ import annotations

import _thread
import copy
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

SIM_PREFIX = "/apis/simkube.io/v1/simulations"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/simulations.simkube.io"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

_INT = {"type": "integer"}
_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}
_HOOK = {"type": "object", "required": ["cmd"], "properties": {
    "cmd": _STR, "args": _STRS, "sendSim": {"type": "boolean"}, "ignoreFailure": {"type": "boolean"}}}
_HOOKS = {"type": "array", "items": _HOOK}

# The Simulation CRD of SimKube 2.7 (k8s/raw/simkube.io_simulations.yml), its schema cut down
# to the field names, types and required lists (metrics and status are left open).
SIMULATION_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "simulations.simkube.io", "resourceVersion": "1"},
    "spec": {
        "group": "simkube.io",
        "names": {"kind": "Simulation", "plural": "simulations", "singular": "simulation",
                  "shortNames": ["sim", "sims"]},
        "scope": "Cluster",
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object", "required": ["spec"], "title": "Simulation",
                "properties": {
                    "spec": {"type": "object", "required": ["driver", "lifecycleParams"], "properties": {
                        "driver": {"type": "object",
                                   "required": ["image", "namespace", "port", "tracePath"],
                                   "properties": {
                                       "args": _STRS, "certManagerIssuer": _STR, "image": _STR,
                                       "namespace": _STR, "port": _INT, "secrets": _STRS,
                                       "tracePath": _STR, "virtualNsPrefix": _STR}},
                        "duration": _STR,
                        "hooks": {"type": "object", "properties": {
                            "postRunHooks": _HOOKS, "postStopHooks": _HOOKS,
                            "preRunHooks": _HOOKS, "preStartHooks": _HOOKS}},
                        "lifecycleParams": {"type": "object", "properties": {
                            "imagePullDelay": _INT, "imagePullJitter": _INT,
                            "podStartupDelay": _INT, "podStartupJitter": _INT}},
                        "metrics": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        "pausedTime": _STR,
                        "repetitions": _INT,
                        "rescheduleInterruptedBarePods": {"type": "boolean"},
                        "speed": {"type": "number"},
                    }},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }},
        }],
    },
}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch", "").lower() in ("true", "1")


def make_pod(name: str, phase: str = "Running", ready: bool = True,
             labels: dict[str, str] | None = None, unschedulable: str | None = None) -> dict[str, Any]:
    """A pod as the API returns it (the client needs spec.containers); `unschedulable` is the
    scheduler's message on a pod it could not place (condition PodScheduled False)."""
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if unschedulable is not None:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": unschedulable})
    metadata = {"name": name, "uid": f"uid-{name}", "resourceVersion": "1"}
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": {"containers": [{"name": "main", "image": "fake"}]},
        "status": {"phase": phase, "conditions": conditions},
    }


def _selected(pod: dict[str, Any], selector: str) -> bool:
    """Whether a pod's labels match an equality labelSelector ('app=web,tier=front')."""
    labels = pod["metadata"].get("labels") or {}
    wanted = (term.split("=", 1) for term in selector.split(",") if term)
    return all(labels.get(key) == value for key, value in wanted)


class FakeKubeAPI:
    """Start with `with FakeKubeAPI() as api:`; `api.write_kubeconfig(path)` points a client at it."""

    def __init__(self, *, crd: dict | None = SIMULATION_CRD,
                 namespaces: tuple[str, ...] = ("default", "kube-system", "monitoring", "simkube")):
        self.crd = copy.deepcopy(crd)
        self.namespaces = set(namespaces)
        self.simulations: dict[str, dict] = {}
        self.pods: dict[str, list[dict]] = {}
        self.requests: list[Recorded] = []
        self.watch_script: list[tuple] = []
        self.on_create = None
        self.on_delete = None
        # (method, path) -> (code, reason): answered instead of the normal response, every time.
        self.failures: dict[tuple[str, str], tuple[int, str]] = {}
        self.resources: dict[str, list[dict]] = {}
        self.accept_writes = False
        self.git_version = "v1.30.0-fake"
        self._resource_version = 100
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "FakeKubeAPI":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def write_kubeconfig(self, path: Path, *, context: str = "fake", token: str = "fake-token") -> Path:
        """A kubeconfig whose current context `context` talks to this server with a token."""
        path = Path(path)
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: fake-cluster\n  cluster:\n    server: {self.url}\n"
            f"users:\n- name: fake-user\n  user:\n    token: {token}\n"
            f"contexts:\n- name: {context}\n  context:\n    cluster: fake-cluster\n    user: fake-user\n"
            f"current-context: {context}\n")
        return path

    # ------------------------------------------------------------------ queries for tests
    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.is_write]

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request, watches as 'WATCH'."""
        return [("WATCH" if r.is_watch else r.method, r.path) for r in self.requests]

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.path == path)

    # ------------------------------------------------------------------ state helpers
    def next_resource_version(self) -> str:
        with self._lock:
            self._resource_version += 1
            return str(self._resource_version)

    def add_simulation(self, name: str, state: str | None = None) -> dict:
        obj = {"apiVersion": "simkube.io/v1", "kind": "Simulation",
               "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1,
                            "resourceVersion": self.next_resource_version()},
               "spec": {}}
        if state:
            obj["status"] = {"observedGeneration": 1, "state": state}
        self.simulations[name] = obj
        return obj


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeKubeAPI

    def log_message(self, *args) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold each response for ~40 ms
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ------------------------------------------------------------------ plumbing
    def _record(self) -> Recorded:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        recorded = Recorded(self.command, unquote(parts.path), dict(parse_qsl(parts.query)), body,
                            {k.lower(): v for k, v in self.headers.items()})
        with self.server_fake._lock:
            self.server_fake.requests.append(recorded)
        return recorded

    def _send(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": reason, "code": code})

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # ------------------------------------------------------------------ routes
    def _dispatch(self) -> None:
        fake = self.server_fake
        request = self._record()
        method, path = request.method, request.path.rstrip("/") or "/"
        failure = fake.failures.get((method, path))
        if failure is not None:
            self._status(failure[0], failure[1], f"injected failure: {failure[1]}")
            return
        if method == "GET" and path == "/version":
            self._send(200, {"major": "1", "minor": "30", "gitVersion": fake.git_version,
                             "gitCommit": "0" * 40, "gitTreeState": "clean",
                             "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22",
                             "compiler": "gc", "platform": "linux/amd64"})
        elif method == "GET" and path == CRD_PATH:
            if fake.crd is None:
                self._status(404, "NotFound", 'customresourcedefinitions.apiextensions.k8s.io '
                                              '"simulations.simkube.io" not found')
            else:
                self._send(200, fake.crd)
        elif path == SIM_PREFIX or path.startswith(SIM_PREFIX + "/"):
            if fake.crd is None:
                self._status(404, "NotFound", "the server could not find the requested resource")
            else:
                self._simulations(request, path[len(SIM_PREFIX):].strip("/"))
        elif method == "GET" and path.startswith("/api/v1/namespaces/"):
            rest = path[len("/api/v1/namespaces/"):].split("/")
            if len(rest) == 1:
                if rest[0] in fake.namespaces:
                    self._send(200, {"apiVersion": "v1", "kind": "Namespace",
                                     "metadata": {"name": rest[0]}, "status": {"phase": "Active"}})
                else:
                    self._status(404, "NotFound", f'namespaces "{rest[0]}" not found')
            elif len(rest) == 2 and rest[1] == "pods":
                selector = request.query.get("labelSelector", "")
                with fake._lock:
                    items = [copy.deepcopy(pod) for pod in fake.pods.get(rest[0], [])
                             if _selected(pod, selector)]
                self._send(200, {"apiVersion": "v1", "kind": "PodList",
                                 "metadata": {"resourceVersion": fake.next_resource_version()},
                                 "items": items})
            else:
                self._status(404, "NotFound", "the server could not find the requested resource")
        elif method == "GET" and path in fake.resources:
            with fake._lock:
                items = copy.deepcopy(fake.resources[path])
            self._send(200, {"apiVersion": "v1", "kind": "List", "items": items,
                             "metadata": {"resourceVersion": fake.next_resource_version()}})
        elif method in WRITE_METHODS and fake.accept_writes:
            body = request.body if isinstance(request.body, dict) else {}
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", **body})
        else:
            self._status(404, "NotFound", "the server could not find the requested resource")

    def _simulations(self, request: Recorded, name: str) -> None:
        fake = self.server_fake
        method = request.method
        if not name and method == "GET" and request.is_watch:
            self._watch(request)
        elif not name and method == "GET":
            with fake._lock:
                items = [copy.deepcopy(obj) for obj in fake.simulations.values()]
            self._send(200, {"apiVersion": "simkube.io/v1", "kind": "SimulationList",
                             "metadata": {"resourceVersion": fake.next_resource_version()},
                             "items": items})
        elif not name and method == "POST":
            body = copy.deepcopy(request.body)
            new_name = body["metadata"]["name"]
            with fake._lock:
                if new_name in fake.simulations:
                    self._status(409, "AlreadyExists",
                                 f'simulations.simkube.io "{new_name}" already exists')
                    return
                body["metadata"].update(uid=f"uid-{new_name}", generation=1,
                                        resourceVersion=fake.next_resource_version(),
                                        creationTimestamp="2026-01-01T00:00:00Z")
                fake.simulations[new_name] = body
                if fake.on_create is not None:
                    fake.on_create(fake, copy.deepcopy(body))
            self._send(201, body)
        elif name and method == "GET":
            with fake._lock:
                obj = copy.deepcopy(fake.simulations.get(name))
            if obj is None:
                self._status(404, "NotFound", f'simulations.simkube.io "{name}" not found')
            else:
                self._send(200, obj)
        elif name and method == "DELETE":
            with fake._lock:
                obj = fake.simulations.pop(name, None)
                if obj is not None and fake.on_delete is not None:
                    fake.on_delete(fake, copy.deepcopy(obj))
            if obj is None:
                self._status(404, "NotFound", f'simulations.simkube.io "{name}" not found')
            else:
                self._send(200, obj)
        else:
            self._status(405, "MethodNotAllowed", f"{method} is not supported here")

    def _watch(self, request: Recorded) -> None:
        fake = self.server_fake
        selector = request.query.get("fieldSelector", "")
        name = selector.removeprefix("metadata.name=") if selector.startswith("metadata.name=") else None
        timeout = float(request.query.get("timeoutSeconds", "5"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            while True:
                with fake._lock:
                    step = fake.watch_script.pop(0) if fake.watch_script else None
                if step is None:  # nothing more scripted: stay quiet until the watch times out
                    fake._stopping.wait(timeout)
                    break
                if step[0] == "close":
                    break
                self._play(step, name)
                if step[0] == "error":  # the API server ends a watch after an ERROR event
                    break
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _play(self, step: tuple, name: str | None) -> None:
        fake = self.server_fake
        kind = step[0]
        if kind == "state":
            with fake._lock:
                obj = fake.simulations[name]
                obj["status"] = {"observedGeneration": 1, "state": step[1]}
                obj["metadata"]["resourceVersion"] = fake.next_resource_version()
                event = {"type": "MODIFIED", "object": copy.deepcopy(obj)}
            self._line(event)
        elif kind == "event":
            with fake._lock:
                obj = fake.simulations.pop(name) if step[1] == "DELETED" else fake.simulations[name]
                event = {"type": step[1], "object": copy.deepcopy(obj)}
            self._line(event)
        elif kind == "error":
            self._line({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": f"scripted error {step[1]}", "reason": step[2], "code": step[1]}})
        elif kind == "pods":
            with fake._lock:
                fake.pods[step[1]] = list(step[2])
        elif kind == "until":
            deadline = time.monotonic() + 5
            while not step[1](fake) and time.monotonic() < deadline:
                time.sleep(0.005)
        elif kind == "interrupt":
            _thread.interrupt_main()
        elif kind == "signal":
            os.kill(os.getpid(), step[1])
        else:
            raise ValueError(f"unknown watch step {step!r}")

    def _line(self, event: dict) -> None:
        self._chunk(json.dumps(event).encode() + b"\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
