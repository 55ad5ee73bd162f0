"""Image pulls against the local registries, through `podium image` (issue 3, "How it is
shown"): anonymous pulls by host:port and through the docker.io mirror of registries.yaml,
Docker schema 2 and OCI manifests, basic auth (flags, a .dockerconfigjson file,
registries.yaml), a wrong password refused without the password in any output,
imagePullPolicy Always re-resolving the tag without fetching a blob when the digest is
unchanged, and a re-pushed tag pulled as its new digest. Blob fetches are counted in the
registry's access log. The same behaviours through pods are in test_pods_images.py.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

import images
from conftest import REGISTRY_PASSWORD, REGISTRY_USER, podium_bin


class ImageCli:
    """`podium image --data-dir D ...` on one data dir."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(podium_bin()), "image", "--data-dir", str(self.data_dir), *args],
            input=input, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def ok(self, *args: str, **kw) -> str:
        p = self.run(*args, **kw)
        assert p.returncode == 0, f"podium image {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p.stdout

    def inspect(self, ref: str) -> dict:
        recs = json.loads(self.ok("inspect", ref))
        assert len(recs) == 1, recs
        return recs[0]


@pytest.fixture
def cli(tmp_path: Path, registry) -> ImageCli:
    c = ImageCli(tmp_path / "data")
    (c.data_dir / "registries.yaml").write_text(images.registries_yaml(registry))
    return c


@pytest.fixture
def bare_cli(tmp_path: Path) -> ImageCli:
    """A data dir without registries.yaml."""
    return ImageCli(tmp_path / "bare")


def test_anonymous_pull_by_host_port(bare_cli, registry):
    ref = f"{registry.host}/library/busybox:1.36"
    since = registry.mark()
    out = bare_cli.ok("pull", ref)
    digest = registry.pushed["library/busybox:1.36"]
    assert out.strip().splitlines()[-1] == f"{ref.rsplit(':', 1)[0]}@{digest}", out
    rec = bare_cli.inspect(ref)
    assert rec["manifest_digest"] == digest
    assert rec["config"]["cmd"] == ["sh"]
    assert any(l["media_type"] == images.DOCKER_LAYER for l in rec["layers"])
    # Every blob (one layer and the config) was fetched exactly once.
    got = registry.blob_gets("library/busybox", since)
    base = images.busybox_base_layer().digest
    assert sum(base in l for l in got) == 1, got
    assert len(got) == 2, got
    assert ref in bare_cli.ok("ls") or "127.0.0.1" in bare_cli.ok("ls")


def test_pull_through_docker_io_mirror(cli, registry):
    since = registry.mark()
    out = cli.ok("pull", "busybox")
    assert "docker.io/library/busybox" in out, out
    rec = cli.inspect("busybox")
    assert "docker.io/library/busybox:latest" in rec["tags"], rec["tags"]
    assert f"docker.io/library/busybox@{registry.pushed['library/busybox:latest']}" in rec["repo_digests"]
    # It came from the mirror: the registry served its manifest and blobs.
    assert registry.manifest_gets("library/busybox", since), registry.access_lines()[since:]
    assert registry.blob_gets("library/busybox", since), registry.access_lines()[since:]
    # The seed's other image names reach the mirror too.
    cli.ok("pull", "gcr.io/google_containers/busybox")
    cli.ok("pull", "nginx")
    assert cli.inspect("nginx")["config"]["entrypoint"][0] == "/usr/sbin/nginx"


def test_oci_manifest_pull(bare_cli, registry):
    repo = f"oci/busybox-{uuid.uuid4().hex[:8]}"
    digest = registry.push(repo, "1", images.busybox_image(oci=True))
    ref = f"{registry.host}/{repo}:1"
    bare_cli.ok("pull", ref)
    rec = bare_cli.inspect(ref)
    assert rec["manifest_digest"] == digest
    assert [l["media_type"] for l in rec["layers"]] == [images.OCI_LAYER]


def test_always_with_unchanged_digest_fetches_no_blob(cli, registry):
    cli.ok("pull", "busybox")
    since = registry.mark()
    out = cli.ok("pull", "busybox")  # `podium image pull` resolves the tag every time
    assert registry.manifest_gets("library/busybox", since), "the tag was not resolved again"
    fetched = registry.blob_gets(since=since)
    assert fetched == [], "blobs fetched again for an unchanged digest:\n" + "\n".join(fetched)
    assert registry.pushed["library/busybox:latest"] in out


def test_repushed_tag_gives_new_digest(cli, registry):
    repo = f"library/repush-{uuid.uuid4().hex[:8]}"
    name = repo.removeprefix("library/")
    first = registry.push(repo, "latest", images.busybox_image(nonce="one"))
    cli.ok("pull", name)
    assert cli.inspect(name)["manifest_digest"] == first
    second = registry.push(repo, "latest", images.busybox_image(nonce="two"))
    assert second != first
    since = registry.mark()
    out = cli.ok("pull", name)
    assert second in out, out
    rec = cli.inspect(name)
    assert rec["manifest_digest"] == second
    assert f"docker.io/{repo}@{second}" in rec["repo_digests"]
    # Only what changed was fetched: the new layer and config, not the shared base layer.
    fetched = registry.blob_gets(repo, since)
    assert not any(images.busybox_base_layer().digest in l for l in fetched), fetched
    assert len(fetched) == 2, fetched


def test_basic_auth_with_username_and_password(bare_cli, auth_registry):
    ref = f"{auth_registry.host}/private/busybox:1"
    out = bare_cli.ok("pull", ref, "--username", REGISTRY_USER, "--password-stdin", input=REGISTRY_PASSWORD + "\n")
    assert auth_registry.pushed["private/busybox:1"] in out
    assert REGISTRY_PASSWORD not in out


def test_basic_auth_with_docker_config_file(bare_cli, auth_registry, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(images.dockerconfigjson(auth_registry.host, REGISTRY_USER, REGISTRY_PASSWORD))
    out = bare_cli.ok("pull", f"{auth_registry.host}/private/busybox:1", "--docker-config", str(cfg))
    assert auth_registry.pushed["private/busybox:1"] in out


def test_basic_auth_from_registries_yaml(tmp_path, auth_registry):
    cli = ImageCli(tmp_path / "data")
    doc = {"configs": {auth_registry.host: {"auth": {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}}}}
    (cli.data_dir / "registries.yaml").write_text(json.dumps(doc))
    cli.ok("pull", f"{auth_registry.host}/private/busybox:1")


@pytest.mark.parametrize("password", [None, "wrong"])
def test_missing_or_wrong_credentials_fail_readably(bare_cli, auth_registry, password):
    ref = f"{auth_registry.host}/private/busybox:1"
    if password is None:
        p = bare_cli.run("pull", ref)
    else:
        password = f"Wrong-{uuid.uuid4().hex[:10]}"
        p = bare_cli.run("pull", ref, "--username", REGISTRY_USER, "--password-stdin", input=password)
    assert p.returncode != 0, p
    text = p.stdout + p.stderr
    assert "private/busybox" in text, text
    assert any(w in text.lower() for w in ("401", "unauthorized", "authentication", "credentials")), text
    assert REGISTRY_PASSWORD not in text
    if password:
        assert password not in text
    assert bare_cli.run("inspect", ref).returncode != 0


def test_missing_tag_and_unknown_repository(bare_cli, registry):
    for ref in (f"{registry.host}/library/busybox:no-such-tag", f"{registry.host}/nope/nothing:1"):
        p = bare_cli.run("pull", ref)
        assert p.returncode != 0, p
        assert "not found" in (p.stdout + p.stderr).lower() or "unknown" in (p.stdout + p.stderr).lower(), p.stderr


def test_rm_removes_image(cli, registry):
    cli.ok("pull", "busybox")
    cli.ok("rm", "busybox")
    assert cli.run("inspect", "busybox").returncode != 0
    assert "busybox" not in cli.ok("ls")
