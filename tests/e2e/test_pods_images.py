"""Images as pods use them (issues 3 and 4): the seed's private-reg pod with a secret
made by the seed's `kubectl create secret docker-registry` command (and through a
service account), a wrong password ending in ImagePullBackOff with a readable reason
and the password nowhere, imagePullPolicy Never / IfNotPresent / Always as the seed says
(Always with an unchanged digest fetches no blob; a re-pushed tag gives the new digest),
counted in the registry's access log.
"""

from __future__ import annotations

import uuid

import pytest
import yaml

import images
import podutil as pu
from conftest import REGISTRY_PASSWORD, REGISTRY_USER


def pod(name: str, image: str, policy: str | None = None, **spec) -> dict:
    c = {"name": "main", "image": image, "command": ["sh", "-c", "echo up; exec sleep 3600"]}
    if policy:
        c["imagePullPolicy"] = policy
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [c], **spec}}


def create_regsecret(kubectl, ns: str, name: str, server: str, password: str) -> None:
    # The seed's command, verbatim but for the values.
    kubectl(
        "create", "secret", "docker-registry", name, f"--docker-server={server}",
        f"--docker-username={REGISTRY_USER}", f"--docker-password={password}",
        "--docker-email=e2e@example.com", "-n", ns,
    )  # fmt: skip


PRIVATE_REG = """
apiVersion: v1
kind: Pod
metadata:
  name: private-reg
spec:
  containers:
    - name: private-reg-container
      image: {image}
  imagePullSecrets:
    - name: regsecret
"""


def ran(p: dict, c: str) -> bool:
    """The container started at least once (busybox's `sh` with no stdin exits 0 at once)."""
    s = pu.cstatus(p, c)
    st, last = s.get("state") or {}, s.get("lastState") or {}
    return "running" in st or st.get("terminated", {}).get("exitCode") == 0 or last.get("terminated", {}).get(
        "exitCode"
    ) == 0


def test_seed_private_reg_with_docker_registry_secret(papi, pkubectl, pns, auth_registry):
    create_regsecret(pkubectl, pns, "regsecret", auth_registry.host, REGISTRY_PASSWORD)
    image = f"{auth_registry.host}/private/busybox:1"
    pu.create(pkubectl, pns, PRIVATE_REG.format(image=image))
    p = pu.wait_pod(papi, pns, "private-reg", lambda p: ran(p, "private-reg-container"), "started")
    st = pu.cstatus(p, "private-reg-container")
    assert st["imageID"] == f"{auth_registry.host}/private/busybox@{auth_registry.pushed['private/busybox:1']}", st


def test_service_account_image_pull_secrets(papi, pkubectl, pns, auth_registry):
    create_regsecret(pkubectl, pns, "regsecret", auth_registry.host, REGISTRY_PASSWORD)
    pkubectl(
        "create", "-n", pns, "-f", "-",
        input=yaml.safe_dump({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "puller"},
                              "imagePullSecrets": [{"name": "regsecret"}]}),
    )  # fmt: skip
    pu.create(pkubectl, pns, pod("via-sa", f"{auth_registry.host}/private/busybox:1", serviceAccountName="puller"))
    pu.wait_running(papi, pns, "via-sa")


@pytest.mark.parametrize("secret", ["wrong", "none"])
def test_bad_credentials_image_pull_backoff(papi, pkubectl, pns, auth_registry, pod_server, secret):
    wrong = f"Wrong-{uuid.uuid4().hex[:10]}"
    # An image this node never pulled: a present one would run under IfNotPresent without
    # any credential check, as on kubelet.
    repo = f"private/busybox-{uuid.uuid4().hex[:8]}"
    auth_registry.push(repo, "1", images.busybox_image())
    image = f"{auth_registry.host}/{repo}:1"
    if secret == "wrong":
        create_regsecret(pkubectl, pns, "regsecret", auth_registry.host, wrong)
        pu.create(pkubectl, pns, PRIVATE_REG.format(image=image))
    else:
        pu.create(pkubectl, pns, pod("private-reg", image))
    p = pu.wait_pod(
        papi, pns, "private-reg",
        lambda p: pu.waiting_reason(p, p["spec"]["containers"][0]["name"]) == "ImagePullBackOff",
        "in ImagePullBackOff",
    )  # fmt: skip
    c = p["spec"]["containers"][0]["name"]
    msg = pu.cstatus(p, c)["state"]["waiting"].get("message", "")
    assert repo in msg, msg
    evs = pu.events(papi, pns, "private-reg")
    failed = [e["message"] for e in evs if e["reason"] == "Failed"]
    readable = ("unauthorized", "401", "authentication")
    assert any(image in m and any(w in m.lower() for w in readable) for m in failed), failed
    assert {"BackOff", "Failed"} <= {e["reason"] for e in evs}, [e["reason"] for e in evs]
    # The password appears nowhere: events, the pod, kubectl describe, the server log.
    texts = {
        "events": pkubectl("get", "events", "-n", pns, "-o", "yaml"),
        "pod": pkubectl("get", "pod", "private-reg", "-n", pns, "-o", "yaml"),
        "describe": pkubectl("describe", "pod", "private-reg", "-n", pns),
        "server log": pod_server.log_path.read_text(errors="replace"),
    }
    for what, text in texts.items():
        assert wrong not in text, f"the wrong password is in the {what}"
        assert REGISTRY_PASSWORD not in text, f"the registry password is in the {what}"


def test_never_with_absent_image(papi, pkubectl, pns, registry):
    repo = f"library/absent-{uuid.uuid4().hex[:8]}"
    since = registry.mark()
    pu.create(pkubectl, pns, pod("never", f"{registry.host}/{repo}:1", "Never"))
    p = pu.wait_pod(
        papi, pns, "never", lambda p: pu.waiting_reason(p, "main") == "ErrImageNeverPull", "ErrImageNeverPull"
    )
    assert repo in pu.cstatus(p, "main")["state"]["waiting"].get("message", ""), p["status"]
    assert pu.phase(p) == "Pending"
    assert not [l for l in registry.access_lines()[since:] if repo in l], "Never asked the registry"


def test_default_pull_policies(papi, pkubectl, pns):
    pu.create(pkubectl, pns, pod("latest", "busybox"))
    pu.create(pkubectl, pns, pod("tagged", "busybox:1.36"))
    assert pu.get_pod(papi, pns, "latest")["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert pu.get_pod(papi, pns, "tagged")["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    for n in ("latest", "tagged"):
        pu.wait_running(papi, pns, n)


def test_always_with_unchanged_digest_fetches_no_blob_and_repush_is_used(papi, pkubectl, pns, registry):
    repo = f"library/always-{uuid.uuid4().hex[:8]}"
    name = repo.removeprefix("library/")
    first = registry.push(repo, "latest", images.busybox_image(nonce=name))
    pu.create(pkubectl, pns, pod("one", name))  # :latest → Always
    p1 = pu.wait_running(papi, pns, "one")
    assert pu.cstatus(p1, "main")["imageID"] == f"docker.io/{repo}@{first}"
    since = registry.mark()
    pu.create(pkubectl, pns, pod("two", name))
    p2 = pu.wait_running(papi, pns, "two")
    assert pu.cstatus(p2, "main")["imageID"] == f"docker.io/{repo}@{first}"
    after = registry.access_lines()[since:]
    assert registry.manifest_gets(repo, since), f"Always did not resolve the tag:\n{after}"
    assert not registry.blob_gets(since=since), "blobs fetched again for an unchanged digest:\n" + "\n".join(after)
    # Re-push the tag: the next pod runs the new digest; the old pod keeps its image.
    second = registry.push(repo, "latest", images.busybox_image(nonce=name + "-2"))
    since = registry.mark()
    pu.create(pkubectl, pns, pod("three", name))
    p3 = pu.wait_running(papi, pns, "three")
    assert pu.cstatus(p3, "main")["imageID"] == f"docker.io/{repo}@{second}"
    fetched = registry.blob_gets(repo, since)
    assert not any(images.busybox_base_layer().digest in l for l in fetched), "the shared base layer was fetched again"
    assert pu.cstatus(pu.get_pod(papi, pns, "one"), "main")["imageID"] == f"docker.io/{repo}@{first}"
    reasons = [e["reason"] for e in pu.events(papi, pns, "three")]
    assert "Pulled" in reasons, reasons


def test_if_not_present_pulls_only_when_absent(papi, pkubectl, pns, registry):
    repo = f"library/inp-{uuid.uuid4().hex[:8]}"
    name = repo.removeprefix("library/")
    first = registry.push(repo, "1", images.busybox_image(nonce=name))
    pu.create(pkubectl, pns, pod("one", f"{name}:1"))
    pu.wait_running(papi, pns, "one")
    registry.push(repo, "1", images.busybox_image(nonce=name + "-2"))
    since = registry.mark()
    pu.create(pkubectl, pns, pod("two", f"{name}:1"))
    p2 = pu.wait_running(papi, pns, "two")
    # Present: no registry request at all, and the local (old) digest runs.
    assert not [l for l in registry.access_lines()[since:] if repo in l]
    assert pu.cstatus(p2, "main")["imageID"] == f"docker.io/{repo}@{first}"
    # Never runs a present image.
    pu.create(pkubectl, pns, pod("three", f"{name}:1", "Never"))
    pu.wait_running(papi, pns, "three")
