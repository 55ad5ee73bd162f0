"""Raw HTTPS against `podium server`: authentication, body limits, Status objects,
discovery and watch framing, checked the way Kubernetes' apiserver answers."""

from __future__ import annotations

import json
import ssl
import subprocess

import pytest

from conftest import pod_manifest


def assert_status(r, code: int, reason: str | None = None) -> dict:
    assert r.status == code, r
    st = r.json()
    assert st["kind"] == "Status" and st["apiVersion"] == "v1", st
    assert st["status"] == "Failure" and st["code"] == code, st
    if reason:
        assert st["reason"] == reason, st
    return st


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize("path", ["/api/v1/namespaces", "/api/v1/namespaces/default/pods", "/api", "/apis"])
def test_no_credentials_is_401(api, path):
    assert_status(api.get(path, token=None), 401, "Unauthorized")


@pytest.mark.parametrize("token", ["wrong", "", "a" * 64])
def test_wrong_token_is_401(api, token):
    r = api.request("GET", "/api/v1/namespaces/default/pods", headers={"Authorization": f"Bearer {token}"}, token=None)
    assert_status(r, 401, "Unauthorized")


def test_basic_auth_garbage_is_401(api):
    r = api.request("GET", "/api/v1/nodes", headers={"Authorization": "Basic Zm9vOmJhcg=="}, token=None)
    assert_status(r, 401, "Unauthorized")


def test_unauthenticated_write_stores_nothing(api, ns):
    r = api.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest("sneaky"), token="wrong")
    assert_status(r, 401, "Unauthorized")
    assert api.get(f"/api/v1/namespaces/{ns}/pods/sneaky").status == 404


def test_curl_with_ca_and_token(server, api):
    ca = server.workdir / "ca.pem"
    ca.write_bytes(api.kc.ca_pem)
    base = api.kc.server
    run = lambda *a: subprocess.run(  # noqa: E731
        ["curl", "-sS", "--cacert", str(ca), "-o", "/dev/null", "-w", "%{http_code}", *a],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert run(f"{base}/api/v1/namespaces").stdout == "401"
    assert run("-H", "Authorization: Bearer nope", f"{base}/api/v1/namespaces").stdout == "401"
    assert run("-H", f"Authorization: Bearer {api.kc.token}", f"{base}/api/v1/namespaces").stdout == "200"


def test_https_only(api):
    # Plain HTTP on the HTTPS port must not be served.
    import http.client

    conn = http.client.HTTPConnection(api.host, api.port, timeout=10)
    try:
        conn.request("GET", "/api/v1/namespaces", headers={"Authorization": f"Bearer {api.kc.token}"})
        status = conn.getresponse().status
        assert status == 400, f"plain HTTP answered {status}"  # Go's "client sent an HTTP request to an HTTPS server"
    except (ConnectionError, http.client.HTTPException, OSError):
        pass
    finally:
        conn.close()


def test_serving_cert_is_verified_by_kubeconfig_ca(api):
    # A client trusting only the system roots must refuse the self-generated CA.
    import http.client

    conn = http.client.HTTPSConnection(api.host, api.port, context=ssl.create_default_context(), timeout=10)
    with pytest.raises(ssl.SSLError):
        conn.request("GET", "/version")
        conn.getresponse()
    conn.close()


# ---------------------------------------------------------------- limits, errors


def test_4mib_body_is_413(api, ns):
    doc = pod_manifest("huge")
    doc["metadata"]["annotations"] = {"blob": "x" * (4 * 1024 * 1024)}
    r = api.post(f"/api/v1/namespaces/{ns}/pods", doc, timeout=60)
    assert r.status == 413, r
    if r.body:
        assert r.json()["kind"] == "Status"
    assert api.get(f"/api/v1/namespaces/{ns}/pods/huge").status == 404


def test_body_under_limit_is_not_413(api, ns):
    # A 900 KiB ConfigMap (under ConfigMap's 1 MiB data limit, a body far under 3 MiB).
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"blob": "x" * (900 * 1024)}}
    r = api.post(f"/api/v1/namespaces/{ns}/configmaps", doc, timeout=60)
    assert r.status == 201, r
    got = api.get(f"/api/v1/namespaces/{ns}/configmaps/big").json()
    assert len(got["data"]["blob"]) == 900 * 1024


def test_annotations_over_256k_are_invalid(api, ns):
    doc = pod_manifest("fat")
    doc["metadata"]["annotations"] = {"blob": "x" * (300 * 1024)}
    st = assert_status(api.post(f"/api/v1/namespaces/{ns}/pods", doc), 422, "Invalid")
    assert "metadata.annotations" in [c.get("field") for c in st["details"]["causes"]], st
    assert api.get(f"/api/v1/namespaces/{ns}/pods/fat").status == 404


def test_not_found_and_already_exists_status(api, ns):
    st = assert_status(api.get(f"/api/v1/namespaces/{ns}/pods/nope"), 404, "NotFound")
    assert st["message"] == 'pods "nope" not found'
    assert st["details"] == {"name": "nope", "kind": "pods"}
    api.create_pod(ns, "twice")
    st = assert_status(api.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest("twice")), 409, "AlreadyExists")
    assert st["message"] == 'pods "twice" already exists'
    assert st["details"] == {"name": "twice", "kind": "pods"}


def test_update_with_stale_resource_version_is_conflict(api, ns):
    pod = api.create_pod(ns, "cas")
    fresh = dict(pod)
    fresh["metadata"] = dict(pod["metadata"], labels={"v": "1"})
    r = api.request("PUT", f"/api/v1/namespaces/{ns}/pods/cas", fresh)
    assert r.status == 200, r
    new_rv = r.json()["metadata"]["resourceVersion"]
    assert int(new_rv) > int(pod["metadata"]["resourceVersion"])
    stale = dict(pod)
    stale["metadata"] = dict(pod["metadata"], labels={"v": "2"})
    st = assert_status(api.request("PUT", f"/api/v1/namespaces/{ns}/pods/cas", stale), 409, "Conflict")
    assert st["message"].startswith('Operation cannot be fulfilled on pods "cas": the object has been modified')


def test_delete_with_uid_precondition(api, ns):
    api.create_pod(ns, "pre")
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-the-uid"}}
    r = api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/pre", body)
    assert_status(r, 409, "Conflict")
    assert api.get(f"/api/v1/namespaces/{ns}/pods/pre").status == 200


def test_deletecollection(api, ns):
    for n in ("d1", "d2", "d3"):
        api.create_pod(ns, n, labels={"batch": "yes" if n != "d3" else "no"})
    r = api.delete(f"/api/v1/namespaces/{ns}/pods?labelSelector=batch%3Dyes")
    assert r.status == 200, r
    names = [p["metadata"]["name"] for p in api.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]]
    assert names == ["d3"]


def test_list_shape(api, ns):
    r = api.get(f"/api/v1/namespaces/{ns}/pods")
    assert r.status == 200, r
    lst = r.json()
    assert lst["kind"] == "PodList" and lst["apiVersion"] == "v1"
    assert lst["items"] == []  # present even when empty: the Python client requires it
    assert lst["metadata"]["resourceVersion"].isdigit()


# ---------------------------------------------------------------- discovery, version


def test_version_endpoint(api):
    v = api.get("/version").json()
    assert v["major"] == "1" and v["minor"] == "32"


def test_legacy_discovery(api):
    r = api.get("/api/v1")
    assert r.status == 200, r
    res = {x["name"]: x for x in r.json()["resources"]}
    for name in ("pods", "pods/status", "pods/binding", "pods/log", "nodes", "nodes/status", "namespaces",
                 "secrets", "configmaps", "events", "serviceaccounts", "services", "endpoints"):  # fmt: skip
        assert name in res, f"{name} missing from /api/v1"
    assert "po" in res["pods"].get("shortNames", [])
    assert res["pods"]["namespaced"] is True and res["nodes"]["namespaced"] is False
    assert {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"} <= set(res["pods"]["verbs"])
    groups = {g["name"]: g for g in api.get("/apis").json()["groups"]}
    assert "coordination.k8s.io" in groups and "discovery.k8s.io" in groups


def test_aggregated_discovery(api):
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    r = api.get("/api", headers={"Accept": accept})
    assert r.status == 200, r
    assert "as=APIGroupDiscoveryList" in r.headers["Content-Type"], r.headers["Content-Type"]
    doc = r.json()
    assert doc["kind"] == "APIGroupDiscoveryList"
    v1 = doc["items"][0]["versions"][0]
    pods = next(x for x in v1["resources"] if x["resource"] == "pods")
    assert pods["responseKind"]["kind"] == "Pod" and "po" in pods["shortNames"]


# ---------------------------------------------------------------- watch framing


@pytest.mark.parametrize("flag", ["true", "1", "True"])
def test_watch_query_booleans(api, ns, flag):
    lst = api.get(f"/api/v1/namespaces/{ns}/pods").json()
    rv = lst["metadata"]["resourceVersion"]
    api.create_pod(ns, f"wq-{flag.lower()}")
    conn = api.connection(timeout=15)
    try:
        conn.request(
            "GET",
            f"/api/v1/namespaces/{ns}/pods?watch={flag}&resourceVersion={rv}&timeoutSeconds=5",
            headers={"Authorization": f"Bearer {api.kc.token}", "Accept": "application/json"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        line = resp.readline()
        ev = json.loads(line)
        assert ev["type"] == "ADDED", ev
        assert ev["object"]["metadata"]["name"] == f"wq-{flag.lower()}"
        assert ev["object"]["kind"] == "Pod"
    finally:
        conn.close()

