"""Fixtures for the end-to-end suite: a real `podium server` per test module, driven by
the real kubectl (through /usr/bin/kubectl's version dispatcher), raw HTTPS and the
Python `kubernetes` client.

Each server gets its own data dir, a free port, a fresh HOME and KUBECACHEDIR (so
kubectl's discovery cache never leaks between runs) and KUBECONFIG pointing at the
kubeconfig the server writes. Every subprocess call carries a timeout: a hung kubectl
fails its test instead of hanging the suite. When a test fails, the tail of the server's
log is attached to the report.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import queue
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import images

REPO = Path(__file__).resolve().parents[2]
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")
# Default deadline of one kubectl call; a hang past this fails the test.
KUBECTL_TIMEOUT = float(os.environ.get("PODIUM_E2E_KUBECTL_TIMEOUT", "60"))
START_TIMEOUT = float(os.environ.get("PODIUM_E2E_START_TIMEOUT", "30"))


def podium_bin() -> Path:
    """PODIUM_BIN, else the debug build in CARGO_TARGET_DIR, /work/target or <repo>/target."""
    if os.environ.get("PODIUM_BIN"):
        return Path(os.environ["PODIUM_BIN"])
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug/podium")
    candidates += [Path("/work/target/debug/podium"), REPO / "target/debug/podium"]
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    """A DNS-1123 name unique to this run."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        text = self.body[:2000].decode("utf-8", "replace")
        return f"<HTTP {self.status} {text}>"


@dataclass
class Kubeconfig:
    path: Path
    server: str
    ca_pem: bytes
    token: str | None

    @classmethod
    def load(cls, path: Path) -> "Kubeconfig":
        doc = yaml.safe_load(path.read_text())
        ctx_name = doc["current-context"]
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
        if "certificate-authority-data" in cluster:
            ca = base64.b64decode(cluster["certificate-authority-data"])
        else:
            ca = Path(cluster["certificate-authority"]).read_bytes()
        return cls(path, cluster["server"], ca, user.get("token"))


class Api:
    """Raw HTTPS against the server, trusting only the kubeconfig's CA."""

    def __init__(self, kc: Kubeconfig):
        self.kc = kc
        host_port = kc.server.removeprefix("https://").rstrip("/")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.ctx = ssl.create_default_context(cadata=kc.ca_pem.decode())

    def connection(self, timeout: float = 30) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        token: str | None | bool = True,
        timeout: float = 30,
    ) -> Response:
        """token=True uses the admin token; None/False sends no credential; a str sends it."""
        hdrs = {"Accept": "application/json"}
        if token is True:
            token = self.kc.token
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        conn = self.connection(timeout)
        try:
            try:
                conn.request(method, path, body=data, headers=hdrs)
            except OSError:
                # The server may answer (413) and close before reading a large body;
                # its answer can still be read. No connection at all is a real error.
                if conn.sock is None:
                    raise
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Response:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)

    def create_namespace(self, name: str) -> None:
        r = self.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        assert r.status == 201, f"creating namespace {name}: {r!r}"

    def create_pod(self, ns: str, name: str, labels: dict[str, str] | None = None, image: str = "busybox:1.36") -> dict:
        r = self.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(name, labels=labels, image=image))
        assert r.status == 201, f"creating pod {ns}/{name}: {r!r}"
        return r.json()


def pod_manifest(name: str, labels: dict[str, str] | None = None, image: str = "busybox:1.36", **spec: Any) -> dict:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}], **spec},
    }


class Kubectl:
    """Runs kubectl against one server with its own HOME/KUBECACHEDIR/KUBECONFIG."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.env = env
        self.cwd = cwd

    def run(
        self, *args: str, input: str | None = None, timeout: float = KUBECTL_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess:
        cmd = [KUBECTL, *args]
        try:
            p = subprocess.run(
                cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=self.cwd
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(
                f"kubectl timed out after {timeout}s: {' '.join(args)}\nstdout: {e.stdout}\nstderr: {e.stderr}"
            )
        if check and p.returncode != 0:
            pytest.fail(
                f"kubectl {' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
            )
        return p

    def __call__(self, *args: str, **kw: Any) -> str:
        """stdout of a kubectl call that must succeed."""
        return self.run(*args, **kw).stdout

    def fails(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        """A kubectl call that must fail (exit non-zero)."""
        p = self.run(*args, check=False, **kw)
        assert p.returncode != 0, f"kubectl {' '.join(args)} unexpectedly succeeded:\n{p.stdout}\n{p.stderr}"
        return p

    def popen(self, *args: str) -> "Streamed":
        proc = subprocess.Popen(
            [KUBECTL, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        return Streamed(proc)


class Streamed:
    """A long-running process (kubectl get -w) whose stdout lines are read with deadlines."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.seen: list[str] = []
        self.stderr = ""
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pred, timeout: float = 20) -> str:
        """The first new line for which pred(line) holds; fails after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self.stop()
                pytest.fail(f"stream ended; lines so far: {self.seen}\nstderr: {self.stderr}")
            self.seen.append(line)
            if pred(line):
                return line
        self.stop()
        pytest.fail(f"no matching line within {timeout}s; lines so far: {self.seen}\nstderr: {self.stderr}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=10)
            self.stderr = err or self.stderr
        except (subprocess.TimeoutExpired, ValueError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Server:
    """One `podium server` process on its own data dir and port."""

    workdir: Path
    node_name: str = "podium-e2e"
    port: int = 0
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    starts: int = 0
    # Written to <data-dir>/registries.yaml before the first start (pod servers: the
    # local registry as the docker.io mirror).
    registries_yaml: str | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.data_dir = self.workdir / "data"
        self.home = self.workdir / "home"
        self.cachedir = self.workdir / "kubecache"
        for d in (self.data_dir, self.home, self.cachedir):
            d.mkdir(parents=True, exist_ok=True)
        self.kubeconfig_path = self.data_dir / "kubeconfig.yaml"
        self.log_path = self.workdir / "server.log"
        if self.registries_yaml is not None:
            (self.data_dir / "registries.yaml").write_text(self.registries_yaml)

    @property
    def instance(self) -> str:
        """The agent's instance name (crates/agent/src/paths.rs): `podium-` + 8 hex digits of
        the SHA-256 of the canonical data dir. Host-wide names (run dir, cgroups, container
        ids) carry it."""
        digest = hashlib.sha256(os.fsencode(os.path.realpath(self.data_dir))).hexdigest()
        return f"podium-{digest[:8]}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env.update(HOME=str(self.home), KUBECACHEDIR=str(self.cachedir), KUBECONFIG=str(self.kubeconfig_path))
        return env

    def flags(self) -> list[str]:
        return [
            "--data-dir", str(self.data_dir),
            "--https-listen-port", str(self.port),
            "--bind-address", "127.0.0.1",
            "--write-kubeconfig", str(self.kubeconfig_path),
            "--node-name", self.node_name,
        ]  # fmt: skip

    def start(self) -> None:
        self.starts += 1
        cmd = [str(podium_bin()), "server", *self.flags(), *self.extra_args]
        log = open(self.log_path, "a")
        log.write(f"\n===== start #{self.starts}: {' '.join(cmd)}\n")
        log.flush()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir, start_new_session=True
        )
        log.close()
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"podium server exited with {self.proc.returncode}\n{self.log_tail()}")
            if self.kubeconfig_path.exists():
                try:
                    r = self.api().get("/readyz", timeout=2)
                    if r.status == 200:
                        self.ready_after = time.monotonic() - self.started_at
                        return
                    last = repr(r)
                except (OSError, ssl.SSLError, yaml.YAMLError, KeyError, StopIteration, http.client.HTTPException) as e:
                    last = repr(e)
            time.sleep(0.05)
        raise RuntimeError(f"podium server not ready after {START_TIMEOUT}s (last: {last})\n{self.log_tail()}")

    def api(self) -> Api:
        return Api(Kubeconfig.load(self.kubeconfig_path))

    def kubectl(self) -> Kubectl:
        return Kubectl(self.env, self.workdir)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise RuntimeError(f"podium server ignored signal {sig} for {timeout}s\n{self.log_tail()}")
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(text[-lines:])


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """An API-only server: `--disable-agent`, so pods stay unbound and Pending and the API
    semantics under test are not mixed with a node running them. Its Node (and Lease) are
    registered by the fixture, the way test clusters register hollow nodes; the real node
    agent's registration is tested with `pod_server`."""
    workdir = Path(tempfile.mkdtemp(prefix="podium-e2e-", dir=tmp_path_factory.getbasetemp()))
    srv = Server(workdir, extra_args=["--disable-agent"])
    srv.start()
    register_hollow_node(srv)
    yield srv
    srv.stop()


def register_hollow_node(srv: Server) -> None:
    """Creates a Node with every NodeSystemInfo field and its heartbeat Lease."""
    api = Api(Kubeconfig.load(srv.kubeconfig_path))
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": srv.node_name,
            "labels": {"kubernetes.io/hostname": srv.node_name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
        },
    }
    r = api.post("/api/v1/nodes", node)
    assert r.status == 201, r
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "capacity": {"cpu": "2", "memory": "2Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "2Gi", "pods": "110"},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "hollow node",
             "lastHeartbeatTime": now, "lastTransitionTime": now},
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": srv.node_name}],
        "nodeInfo": {
            "machineID": "hollow", "systemUUID": "hollow", "bootID": "hollow", "kernelVersion": "hollow",
            "osImage": "hollow", "containerRuntimeVersion": "hollow://0", "kubeletVersion": "v1.32.0",
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        },
    }  # fmt: skip
    r = api.request("PATCH", f"/api/v1/nodes/{srv.node_name}/status", {"status": status},
                    content_type="application/merge-patch+json")  # fmt: skip
    assert r.status == 200, r
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": srv.node_name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": srv.node_name, "leaseDurationSeconds": 40,
                 "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())},
    }  # fmt: skip
    r = api.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)
    assert r.status == 201, r


@pytest.fixture
def spawn(request, tmp_path_factory):
    """Makes (unstarted) servers for one test; their logs go into its failure report and
    they are stopped when it ends."""
    made: list[Server] = []
    request.node.podium_servers = made

    def make(node_name: str = "podium-e2e", cls: type[Server] = Server, **kw: Any) -> Server:
        workdir = Path(tempfile.mkdtemp(prefix="podium-", dir=tmp_path_factory.getbasetemp()))
        srv = cls(workdir, node_name=node_name, **kw)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        if srv.registries_yaml is not None:
            stop_pod_server(srv)
            continue
        try:
            srv.stop()
        except RuntimeError as e:
            print(e)
        # Its node agent may have started sandboxes for pods the test made: remove them.
        clean_instance(srv)


# --- local registries and servers that run pods ------------------------------------------

# Credentials of the auth registry: random per run, so finding the password in a log or an
# event is meaningful.
REGISTRY_USER = "podium-e2e"
REGISTRY_PASSWORD = f"Pw-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Iterator[images.Registry]:
    """The anonymous registry, with images.PUBLIC_IMAGES pushed: the docker.io (and gcr.io)
    mirror of every pod server."""
    reg = images.Registry(Path(tempfile.mkdtemp(prefix="registry-", dir=tmp_path_factory.getbasetemp())))
    reg.start()
    try:
        for (repo, tag), build in images.PUBLIC_IMAGES.items():
            reg.push(repo, tag, build())
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory) -> Iterator[images.Registry]:
    """The htpasswd (bcrypt) registry with images.PRIVATE_IMAGES."""
    workdir = Path(tempfile.mkdtemp(prefix="auth-registry-", dir=tmp_path_factory.getbasetemp()))
    reg = images.Registry(workdir, username=REGISTRY_USER, password=REGISTRY_PASSWORD)
    reg.start()
    try:
        for (repo, tag), build in images.PRIVATE_IMAGES.items():
            reg.push(repo, tag, build())
        yield reg
    finally:
        reg.stop()


def stop_pod_server(srv: Server) -> None:
    """Deletes the server's pods (bounded), stops it, then has the janitor remove whatever
    its instance left on the machine; both leftovers are printed (shown with -s or on
    failure), never silently dropped."""
    import podutil

    if srv.proc is not None and srv.proc.poll() is None:
        try:
            left = podutil.delete_all_pods(srv, timeout=45)
            if left:
                print(f"pods of {srv.workdir} not gone before stop: {left}")
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            print(f"deleting the pods of {srv.workdir}: {e!r}")
    try:
        srv.stop()
    except RuntimeError as e:
        print(e)
    clean_instance(srv)


def clean_instance(srv: Server) -> None:
    """After a server stopped: removes what its instance left on the machine (podutil.janitor)
    and prints it."""
    import podutil

    cleaned = podutil.janitor(srv)
    if cleaned:
        print(f"janitor for {srv.instance} ({srv.workdir}):\n  " + "\n  ".join(cleaned))


@pytest.fixture(scope="module")
def pod_server(tmp_path_factory, registry) -> Iterator[Server]:
    """A server whose node agent runs pods, with the local registry as docker.io mirror
    (its registries.yaml is written before the server starts). Volume contents are
    refreshed every 2 s (`--sync-frequency`, default 1m) so tests see updates quickly, and
    pods may run 2048 processes (`--pod-max-pids`, default unlimited)."""
    workdir = Path(tempfile.mkdtemp(prefix="podium-pods-", dir=tmp_path_factory.getbasetemp()))
    srv = Server(
        workdir,
        registries_yaml=images.registries_yaml(registry),
        extra_args=["--sync-frequency", "2s", "--pod-max-pids", "2048"],
    )
    srv.start()
    yield srv
    stop_pod_server(srv)


@pytest.fixture(scope="module")
def papi(pod_server: Server) -> Api:
    return pod_server.api()


@pytest.fixture(scope="module")
def pkubectl(pod_server: Server) -> Kubectl:
    return pod_server.kubectl()


@pytest.fixture
def pns(papi: Api) -> str:
    """A fresh namespace on the pod server."""
    name = unique("pods")
    papi.create_namespace(name)
    return name


@pytest.fixture(scope="module")
def api(server: Server) -> Api:
    return server.api()


@pytest.fixture(scope="module")
def kubectl(server: Server) -> Kubectl:
    return server.kubectl()


@pytest.fixture
def ns(api: Api) -> str:
    """A fresh namespace for one test."""
    name = unique("e2e")
    api.create_namespace(name)
    return name


@pytest.fixture
def manifest(tmp_path: Path):
    """Writes a manifest (dict or YAML text) to a file and returns its path."""

    def write(doc: Any, name: str = "manifest.yaml") -> str:
        p = tmp_path / name
        p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
        return str(p)

    return write


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        servers = [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, Server)]
        servers += getattr(item, "podium_servers", [])
        for srv in servers:
            report.sections.append((f"podium server log tail ({srv.log_path})", srv.log_tail()))

