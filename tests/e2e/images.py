"""Test images and local registries for the end-to-end suite.

- Images are built here, in Python, from Debian's static busybox (/bin/busybox, package
  busybox-static): a base layer holding bin/busybox, a symlink per applet, a minimal
  /etc (passwd, group), /tmp and /root; image-specific files go into a second layer, so
  images share their base layer the way real ones do. Tar and gzip output is
  deterministic (fixed mtimes, owners and order): the same inputs give the same digests,
  which is what the "Always with an unchanged digest" tests rely on.
- `Registry` runs Debian's `docker-registry` (the CNCF distribution server) on
  127.0.0.1:<free port> with filesystem storage in a temp dir and its access log (the
  server writes it to stdout) in a file, optionally behind htpasswd (bcrypt) auth.
- `Registry.push` uploads an image with the registry HTTP API: HEAD a blob, else POST
  /v2/<repo>/blobs/uploads/ and PUT <location>?digest=...; then PUT the manifest with its
  media type.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import socket
import subprocess
import tarfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUSYBOX = Path(os.environ.get("PODIUM_E2E_BUSYBOX", "/bin/busybox"))
DOCKER_REGISTRY = os.environ.get("PODIUM_E2E_REGISTRY_BIN", "/usr/bin/docker-registry")
HTPASSWD = os.environ.get("PODIUM_E2E_HTPASSWD_BIN", "/usr/bin/htpasswd")

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

# The PATH of Docker Hub's busybox image.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Fixed mtime of every tar entry (2024-01-01): deterministic layers.
EPOCH = 1704067200


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def busybox_applets() -> list[str]:
    """The applet names the host's busybox was built with (`busybox --list`)."""
    out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True, timeout=10).stdout
    return sorted({a for a in out.split() if a and a != "busybox" and "/" not in a})


@dataclass
class File:
    """One entry of a layer: a regular file, a directory or a symlink."""

    path: str
    data: bytes = b""
    mode: int = 0o644
    kind: str = "file"  # file | dir | symlink
    target: str = ""
    uid: int = 0
    gid: int = 0


def tar_bytes(entries: list[File]) -> bytes:
    """A deterministic uncompressed tar of the entries (in the given order)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.path.lstrip("/"))
            ti.mtime = EPOCH
            ti.uid, ti.gid = e.uid, e.gid
            ti.uname = ti.gname = "root" if e.uid == 0 else ""
            ti.mode = e.mode
            if e.kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif e.kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e.target
                ti.mode = 0o777
                tf.addfile(ti)
            else:
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
    return buf.getvalue()


@dataclass
class Layer:
    blob: bytes  # gzip-compressed tar
    diff_id: str  # digest of the uncompressed tar

    @property
    def digest(self) -> str:
        return sha256(self.blob)

    @classmethod
    def from_entries(cls, entries: list[File]) -> "Layer":
        raw = tar_bytes(entries)
        # mtime=0 keeps the gzip header, and so the blob digest, deterministic.
        return cls(gzip.compress(raw, compresslevel=6, mtime=0), sha256(raw))


_BASE_CACHE: dict[str, Layer] = {}


def busybox_base_layer() -> Layer:
    """bin/busybox, a symlink per applet in /bin, /etc/{passwd,group}, /tmp, /root."""
    key = str(BUSYBOX)
    if key in _BASE_CACHE:
        return _BASE_CACHE[key]
    entries = [
        File("bin", kind="dir", mode=0o755),
        File("bin/busybox", BUSYBOX.read_bytes(), mode=0o755),
    ]
    entries += [File(f"bin/{a}", kind="symlink", target="busybox") for a in busybox_applets()]
    entries += [
        File("etc", kind="dir", mode=0o755),
        File(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
            b"www-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        ),
        File("etc/group", b"root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nnogroup:x:65534:\n"),
        File("root", kind="dir", mode=0o700),
        File("tmp", kind="dir", mode=0o1777),
        File("usr", kind="dir", mode=0o755),
        File("usr/bin", kind="dir", mode=0o755),
        File("usr/sbin", kind="dir", mode=0o755),
        File("var", kind="dir", mode=0o755),
        File("home", kind="dir", mode=0o755),
    ]
    layer = Layer.from_entries(entries)
    _BASE_CACHE[key] = layer
    return layer


@dataclass
class Image:
    """An image ready to push: config and layers as blobs plus the manifest."""

    config: bytes
    layers: list[Layer]
    oci: bool = False

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def manifest_media_type(self) -> str:
        return OCI_MANIFEST if self.oci else DOCKER_MANIFEST

    @property
    def manifest(self) -> bytes:
        doc = {
            "schemaVersion": 2,
            "mediaType": self.manifest_media_type,
            "config": {
                "mediaType": OCI_CONFIG if self.oci else DOCKER_CONFIG,
                "size": len(self.config),
                "digest": self.config_digest,
            },
            "layers": [
                {"mediaType": OCI_LAYER if self.oci else DOCKER_LAYER, "size": len(l.blob), "digest": l.digest}
                for l in self.layers
            ],
        }
        return json.dumps(doc, indent=3).encode()

    @property
    def digest(self) -> str:
        """The manifest digest (what `image@sha256:...` and imageID name)."""
        return sha256(self.manifest)


def build_image(
    *,
    files: list[File] | None = None,
    entrypoint: list[str] | None = None,
    cmd: list[str] | None = None,
    env: list[str] | None = None,
    workdir: str | None = None,
    stop_signal: str | None = None,
    exposed_ports: list[str] | None = None,
    labels: dict[str, str] | None = None,
    oci: bool = False,
) -> Image:
    """A busybox-based image; `files` (if any) form a second layer."""
    layers = [busybox_base_layer()]
    if files:
        layers.append(Layer.from_entries(files))
    cfg: dict[str, Any] = {"Env": env if env is not None else [f"PATH={DEFAULT_PATH}"]}
    if entrypoint is not None:
        cfg["Entrypoint"] = entrypoint
    if cmd is not None:
        cfg["Cmd"] = cmd
    elif entrypoint is None:
        cfg["Cmd"] = ["sh"]
    if workdir:
        cfg["WorkingDir"] = workdir
    if stop_signal:
        cfg["StopSignal"] = stop_signal
    if exposed_ports:
        cfg["ExposedPorts"] = {p: {} for p in exposed_ports}
    if labels:
        cfg["Labels"] = labels
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "podium e2e"} for _ in layers],
    }
    return Image(json.dumps(config, sort_keys=True).encode(), layers, oci)


def busybox_image(nonce: str | None = None, oci: bool = False) -> Image:
    """Docker Hub's busybox look-alike: Cmd ["sh"]. A nonce adds /etc/build-id, giving
    a new digest (a "re-pushed" tag) with the same base layer."""
    files = [File("etc/build-id", f"{nonce}\n".encode())] if nonce else None
    return build_image(files=files, cmd=["sh"], oci=oci)


NGINX_INDEX = (
    b"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
    b"<body><h1>Welcome to nginx!</h1></body></html>\n"
)


NGINX_SCRIPT = b"""#!/bin/sh
# An nginx stand-in: busybox httpd on port 80 serving nginx's default document root.
# SIGQUIT (nginx's STOPSIGNAL) and SIGTERM stop it gracefully; `nginx -s quit|stop` (the
# seed's preStop hook) signals the running one.
# It also says so on the main process's stdout, so a hook's run shows in the container log.
if [ "$1" = "-s" ]; then
    echo "nginx -s $2" > /proc/1/fd/1
    kill -QUIT "$(cat /tmp/nginx.pid)"; exit $?
fi
echo $$ > /tmp/nginx.pid
trap 'kill $httpd 2>/dev/null; wait $httpd; echo "nginx stand-in: stopped"; exit 0' QUIT TERM INT
httpd -f -v -p 80 -h /usr/share/nginx/html &
httpd=$!
echo "nginx stand-in: httpd $httpd serving /usr/share/nginx/html on :80"
wait $httpd
"""


def nginx_image() -> Image:
    """An nginx stand-in (see NGINX_SCRIPT) with nginx's welcome page, ENTRYPOINT
    /usr/sbin/nginx, CMD ["-g", "daemon off;"] and STOPSIGNAL SIGQUIT."""
    files = [
        File("usr/sbin/nginx", NGINX_SCRIPT, mode=0o755),
        File("usr/share", kind="dir", mode=0o755),
        File("usr/share/nginx", kind="dir", mode=0o755),
        File("usr/share/nginx/html", kind="dir", mode=0o755),
        File("usr/share/nginx/html/index.html", NGINX_INDEX),
    ]
    return build_image(
        files=files,
        entrypoint=["/usr/sbin/nginx"],
        cmd=["-g", "daemon off;"],
        exposed_ports=["80/tcp"],
        stop_signal="SIGQUIT",
    )


REDIS_SCRIPT = b"""#!/bin/sh
# A redis stand-in: records each start in its data dir (redis' WORKDIR is /data) and
# prints the record, then serves nothing until stopped.
mkdir -p /data/redis
echo "start $(date +%s)" >> /data/redis/starts
echo "starts: $(wc -l < /data/redis/starts)"
trap 'exit 0' TERM
while true; do sleep 1; done
"""


def redis_image() -> Image:
    files = [
        File("usr/local", kind="dir", mode=0o755),
        File("usr/local/bin", kind="dir", mode=0o755),
        File("usr/local/bin/redis-server", REDIS_SCRIPT, mode=0o755),
        File("data", kind="dir", mode=0o755),
    ]
    return build_image(files=files, entrypoint=None, cmd=["redis-server"], workdir="/data", exposed_ports=["6379/tcp"])


# --- the registry ------------------------------------------------------------------------


class RegistryError(RuntimeError):
    pass


@dataclass
class Registry:
    """A docker-registry process on 127.0.0.1:<port>, optionally with htpasswd auth."""

    workdir: Path
    username: str | None = None
    password: str | None = None
    port: int = 0
    proc: subprocess.Popen | None = None
    pushed: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> manifest digest

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.storage = self.workdir / "storage"
        self.config_path = self.workdir / "config.yml"
        self.access_log = self.workdir / "access.log"
        self.server_log = self.workdir / "registry.log"
        self.htpasswd_path = self.workdir / "htpasswd"

    @property
    def host(self) -> str:
        """host:port, as image references and registries.yaml name it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if self.username:
            cfg["auth"] = {"htpasswd": {"realm": "podium-e2e", "path": str(self.htpasswd_path)}}
        return cfg

    def start(self, timeout: float = 20) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        if self.username:
            line = subprocess.run(
                [HTPASSWD, "-nbB", self.username, self.password or ""],
                capture_output=True, text=True, check=True, timeout=30,
            ).stdout.strip()  # fmt: skip
            self.htpasswd_path.write_text(line + "\n")
        self.config_path.write_text(json.dumps(self.config(), indent=2))  # JSON is YAML
        out = open(self.access_log, "ab")
        err = open(self.server_log, "ab")
        # The registry writes its access log (combined format) to stdout, its own log to stderr.
        self.proc = subprocess.Popen(
            [DOCKER_REGISTRY, "serve", str(self.config_path)],
            stdout=out, stderr=err, cwd=self.workdir, start_new_session=True,
        )  # fmt: skip
        out.close()
        err.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RegistryError(f"docker-registry exited {self.proc.returncode}: {self.log_tail()}")
            try:
                status, _, _ = self.request("GET", "/v2/", auth=False, timeout=2)
                if status in (200, 401):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RegistryError(f"docker-registry not answering on {self.host}: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.server_log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no registry log)"

    # --- HTTP ---

    def auth_header(self) -> dict[str, str]:
        if not self.username:
            return {}
        tok = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {tok}"}

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        auth: bool = True,
        timeout: float = 30,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            hdrs = dict(self.auth_header() if auth else {})
            hdrs.update(headers or {})
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return r.status, r.headers, r.read()
        finally:
            conn.close()

    def push_blob(self, repo: str, blob: bytes) -> str:
        digest = sha256(blob)
        status, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if status == 200:
            return digest
        status, headers, body = self.request("POST", f"/v2/{repo}/blobs/uploads/", b"")
        if status != 202:
            raise RegistryError(f"starting upload to {repo}: {status} {body[:300]!r}")
        loc = urllib.parse.urlsplit(headers["Location"])
        query = (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(digest)
        path = f"{loc.path}?{query}"
        status, _, body = self.request(
            "PUT", path, blob, {"Content-Type": "application/octet-stream", "Content-Length": str(len(blob))}
        )
        if status != 201:
            raise RegistryError(f"uploading {digest} to {repo}: {status} {body[:300]!r}")
        return digest

    def push(self, repo: str, tag: str, image: Image) -> str:
        """Uploads the image's blobs and tags its manifest; returns the manifest digest."""
        for layer in image.layers:
            self.push_blob(repo, layer.blob)
        self.push_blob(repo, image.config)
        status, headers, body = self.request(
            "PUT", f"/v2/{repo}/manifests/{tag}", image.manifest, {"Content-Type": image.manifest_media_type}
        )
        if status != 201:
            raise RegistryError(f"putting manifest {repo}:{tag}: {status} {body[:300]!r}")
        got = headers.get("Docker-Content-Digest")
        if got and got != image.digest:
            raise RegistryError(f"registry stored {repo}:{tag} as {got}, expected {image.digest}")
        self.pushed[f"{repo}:{tag}"] = image.digest
        return image.digest

    def manifest_digest(self, repo: str, tag: str) -> str | None:
        status, headers, _ = self.request(
            "HEAD", f"/v2/{repo}/manifests/{tag}", headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"}
        )
        return headers.get("Docker-Content-Digest") if status == 200 else None

    # --- the access log ---

    def access_lines(self) -> list[str]:
        try:
            return self.access_log.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def blob_gets(self, repo: str | None = None, since: int = 0) -> list[str]:
        """Access-log lines (from line `since`) of blob downloads (GET, not HEAD), of `repo`
        or of any repository."""
        pat = re.compile(r'"GET /v2/(?P<repo>[^ ]+)/blobs/sha256:[0-9a-f]{64} ')
        out = []
        for line in self.access_lines()[since:]:
            m = pat.search(line)
            if m and (repo is None or m.group("repo") == repo):
                out.append(line)
        return out

    def manifest_gets(self, repo: str | None = None, since: int = 0) -> list[str]:
        pat = re.compile(r'"(GET|HEAD) /v2/(?P<repo>[^ ]+)/manifests/[^ ]+ ')
        return [
            l for l in self.access_lines()[since:]
            if (m := pat.search(l)) and (repo is None or m.group("repo") == repo)
        ]  # fmt: skip

    def mark(self) -> int:
        """The access log's current length, for `since=` of the counters above. Waits a
        moment for the registry to flush lines of requests already answered."""
        time.sleep(0.2)
        return len(self.access_lines())


def registries_yaml(mirror: Registry, mirrored_hosts: tuple[str, ...] = ("docker.io", "gcr.io")) -> str:
    """A k3s-format registries.yaml sending `mirrored_hosts` to the mirror registry."""
    doc = {"mirrors": {h: {"endpoint": [mirror.url]} for h in mirrored_hosts}}
    return json.dumps(doc, indent=2) + "\n"


def dockerconfigjson(server: str, username: str, password: str, email: str = "e2e@example.com") -> str:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {server: {"username": username, "password": password, "email": email, "auth": auth}}})


# Images the suite pushes: (registry role, repository, tag) -> builder.
PUBLIC_IMAGES = {
    ("library/busybox", "latest"): busybox_image,
    ("library/busybox", "1.36"): busybox_image,
    ("library/nginx", "latest"): nginx_image,
    ("library/redis", "latest"): redis_image,
    ("library/alpine", "3.4"): busybox_image,  # the seed's hello-world image
    ("google_containers/busybox", "latest"): busybox_image,  # the seed's Downward API image
}
PRIVATE_IMAGES = {("private/busybox", "1"): busybox_image}
