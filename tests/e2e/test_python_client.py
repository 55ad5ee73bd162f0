"""The official Python `kubernetes` client against `podium server`.

scripts/e2e.sh runs this file under two client lines (37.x and 32.x): the older one
sends `watch=True` and has a different request layer, the newer one validates more of
the response models (required fields, `items: []`).
"""

from __future__ import annotations

import queue
import threading
import time

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from conftest import unique



@pytest.fixture(scope="module")
def v1(server) -> client.CoreV1Api:
    api_client = config.new_client_from_config(config_file=str(server.kubeconfig_path))
    return client.CoreV1Api(api_client)


@pytest.fixture
def pyns(v1) -> str:
    name = unique("py")
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def make_pod(name: str, labels: dict[str, str] | None = None, containers: int = 1) -> client.V1Pod:
    cs = [
        client.V1Container(name=f"c{i}", image="busybox:1.36", command=["sleep", "3600"]) for i in range(containers)
    ]
    return client.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(containers=cs),
    )


def merge_patch(v1: client.CoreV1Api, name: str, ns: str, body: dict) -> client.V1Pod:
    """A JSON merge patch (application/merge-patch+json) in either client line."""
    try:
        return v1.patch_namespaced_pod(name, ns, body, _content_type="application/merge-patch+json")
    except TypeError:
        # Clients before the 33.x generator have no _content_type: go one level down.
        return v1.api_client.call_api(
            "/api/v1/namespaces/{namespace}/pods/{name}",
            "PATCH",
            path_params={"namespace": ns, "name": name},
            header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
            body=body,
            response_type="V1Pod",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )


def test_version(server):
    api_client = config.new_client_from_config(config_file=str(server.kubeconfig_path))
    info = client.VersionApi(api_client).get_code()
    assert info.major == "1" and info.minor == "32"


def test_nodes_deserialize(v1, server):
    nodes = v1.list_node()
    names = [n.metadata.name for n in nodes.items]
    assert server.node_name in names
    node = v1.read_node(server.node_name)
    assert node.status.node_info.kubelet_version.startswith("v1.32")


def test_namespaces_listed(v1):
    names = {n.metadata.name for n in v1.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_create_list_read(v1, pyns):
    created = v1.create_namespaced_pod(pyns, make_pod("p1", labels={"app": "x"}))
    assert created.metadata.name == "p1" and created.metadata.namespace == pyns
    assert created.metadata.uid and int(created.metadata.resource_version) > 0
    assert created.status.phase == "Pending"
    assert created.spec.containers[0].image_pull_policy == "IfNotPresent"
    v1.create_namespaced_pod(pyns, make_pod("p2"))

    lst = v1.list_namespaced_pod(pyns)
    assert sorted(p.metadata.name for p in lst.items) == ["p1", "p2"]
    assert int(lst.metadata.resource_version) >= int(created.metadata.resource_version)
    sel = v1.list_namespaced_pod(pyns, label_selector="app=x")
    assert [p.metadata.name for p in sel.items] == ["p1"]
    fsel = v1.list_namespaced_pod(pyns, field_selector="metadata.name=p2")
    assert [p.metadata.name for p in fsel.items] == ["p2"]
    assert "p1" in {p.metadata.name for p in v1.list_pod_for_all_namespaces().items if p.metadata.namespace == pyns}

    got = v1.read_namespaced_pod("p1", pyns)
    assert got.metadata.uid == created.metadata.uid
    assert got.metadata.labels == {"app": "x"}


def test_empty_list(v1, pyns):
    lst = v1.list_namespaced_pod(pyns)
    assert lst.items == []


def test_duplicate_create_is_409(v1, pyns):
    v1.create_namespaced_pod(pyns, make_pod("dup"))
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod(pyns, make_pod("dup"))
    assert e.value.status == 409
    assert e.value.reason == "Conflict"
    assert '"reason":"AlreadyExists"' in e.value.body.replace(" ", "")


def test_missing_read_is_404(v1, pyns):
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_pod("missing", pyns)
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:
        v1.delete_namespaced_pod("missing", pyns)
    assert e.value.status == 404


def test_invalid_is_422(v1, pyns):
    pod = make_pod("bad")
    pod.spec.containers[0].image = None
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod(pyns, pod)
    assert e.value.status == 422
    assert "spec.containers[0].image" in e.value.body


def test_strategic_merge_patch(v1, pyns):
    v1.create_namespaced_pod(pyns, make_pod("smp", labels={"a": "1"}, containers=2))
    # A dict body is sent as a strategic merge patch: containers merge by name.
    patched = v1.patch_namespaced_pod(
        "smp", pyns, {"metadata": {"labels": {"b": "2"}}, "spec": {"containers": [{"name": "c1", "image": "busybox:1.37"}]}}
    )
    assert patched.metadata.labels == {"a": "1", "b": "2"}
    assert [(c.name, c.image) for c in patched.spec.containers] == [("c0", "busybox:1.36"), ("c1", "busybox:1.37")]
    assert v1.read_namespaced_pod("smp", pyns).spec.containers[1].image == "busybox:1.37"


def test_json_merge_patch(v1, pyns):
    v1.create_namespaced_pod(pyns, make_pod("jmp", labels={"a": "1", "b": "2"}))
    patched = merge_patch(v1, "jmp", pyns, {"metadata": {"labels": {"a": None, "c": "3"}}})
    assert patched.metadata.labels == {"b": "2", "c": "3"}


def test_json_patch(v1, pyns):
    v1.create_namespaced_pod(pyns, make_pod("jp"))
    patched = v1.patch_namespaced_pod(
        "jp", pyns, [{"op": "add", "path": "/metadata/labels", "value": {"via": "jsonpatch"}}]
    )
    assert patched.metadata.labels == {"via": "jsonpatch"}


def test_replace_and_conflict(v1, pyns):
    v1.create_namespaced_pod(pyns, make_pod("rep"))
    pod = v1.read_namespaced_pod("rep", pyns)
    stale_rv = pod.metadata.resource_version
    pod.metadata.labels = {"round": "1"}
    replaced = v1.replace_namespaced_pod("rep", pyns, pod)
    assert replaced.metadata.labels == {"round": "1"}
    assert int(replaced.metadata.resource_version) > int(stale_rv)

    pod.metadata.resource_version = stale_rv
    pod.metadata.labels = {"round": "2"}
    with pytest.raises(ApiException) as e:
        v1.replace_namespaced_pod("rep", pyns, pod)
    assert e.value.status == 409
    assert "the object has been modified" in e.value.body
    assert v1.read_namespaced_pod("rep", pyns).metadata.labels == {"round": "1"}


def test_delete(v1, pyns):
    v1.create_namespaced_pod(pyns, make_pod("del"))
    v1.delete_namespaced_pod("del", pyns, grace_period_seconds=0)
    deadline = time.monotonic() + 15
    while True:
        try:
            v1.read_namespaced_pod("del", pyns)
        except ApiException as e:
            assert e.status == 404
            break
        assert time.monotonic() < deadline, "pod still there 15 s after delete"
        time.sleep(0.1)


def test_delete_collection(v1, pyns):
    for n in ("a", "b"):
        v1.create_namespaced_pod(pyns, make_pod(n, labels={"g": "1"}))
    v1.create_namespaced_pod(pyns, make_pod("c"))
    v1.delete_collection_namespaced_pod(pyns, label_selector="g=1")
    deadline = time.monotonic() + 15
    while sorted(p.metadata.name for p in v1.list_namespaced_pod(pyns).items) != ["c"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_configmap_and_secret_roundtrip(v1, pyns):
    v1.create_namespaced_config_map(
        pyns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"k": "v"})
    )
    assert v1.read_namespaced_config_map("cm", pyns).data == {"k": "v"}
    v1.create_namespaced_secret(
        pyns, client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"pw": "x"})
    )
    s = v1.read_namespaced_secret("s", pyns)
    assert s.data == {"pw": "eA=="} and s.type == "Opaque"


def test_watch_stream(v1, pyns):
    events: "queue.Queue[tuple[str, str, dict]]" = queue.Queue()
    w = watch.Watch()
    start_rv = v1.list_namespaced_pod(pyns).metadata.resource_version
    errors: list[BaseException] = []
    stopping = threading.Event()

    def run() -> None:
        try:
            for ev in w.stream(v1.list_namespaced_pod, namespace=pyns, resource_version=start_rv, timeout_seconds=30):
                obj = ev["object"]
                events.put((ev["type"], obj.metadata.name, dict(obj.metadata.labels or {})))
        except BaseException as e:  # noqa: BLE001 - surfaced below
            # 37.x's Watch.stop() shuts the socket down under the reading thread: an error
            # after stop() is the client's doing, not the server's.
            if not stopping.is_set():
                errors.append(e)
        finally:
            events.put(("END", "", {}))

    t = threading.Thread(target=run, daemon=True)
    t.start()

    v1.create_namespaced_pod(pyns, make_pod("watched"))
    v1.patch_namespaced_pod("watched", pyns, {"metadata": {"labels": {"step": "2"}}})
    v1.delete_namespaced_pod("watched", pyns, grace_period_seconds=0)

    seen: list[tuple[str, str, dict]] = []
    deadline = time.monotonic() + 30
    while not any(e[0] == "DELETED" for e in seen):
        left = deadline - time.monotonic()
        assert left > 0, f"events so far: {seen}"
        ev = events.get(timeout=left)
        assert ev[0] != "END", f"stream ended early: {seen} {errors}"
        seen.append(ev)
    stopping.set()
    w.stop()
    # 32.x checks stop() only between events: one more event ends its stream now.
    v1.create_namespaced_pod(pyns, make_pod("nudge"))

    types = [e[0] for e in seen if e[1] == "watched"]
    assert types[0] == "ADDED", seen
    assert "MODIFIED" in types, seen
    assert types[-1] == "DELETED", seen
    assert types.index("MODIFIED") < types.index("DELETED")
    modified = next(e for e in seen if e[0] == "MODIFIED")
    assert modified[2] == {"step": "2"}
    t.join(timeout=35)
    assert not errors, errors


def test_watch_resumes_from_resource_version(v1, pyns):
    """A watch from an old resourceVersion replays what happened after it."""
    rv = v1.list_namespaced_pod(pyns).metadata.resource_version
    v1.create_namespaced_pod(pyns, make_pod("later1"))
    v1.create_namespaced_pod(pyns, make_pod("later2"))
    w = watch.Watch()
    names = []
    for ev in w.stream(v1.list_namespaced_pod, namespace=pyns, resource_version=rv, timeout_seconds=10):
        assert ev["type"] == "ADDED"
        names.append(ev["object"].metadata.name)
        if len(names) == 2:
            w.stop()
    assert names == ["later1", "later2"]


def test_paging(v1, pyns):
    for i in range(5):
        v1.create_namespaced_pod(pyns, make_pod(f"pg{i}"))
    names, cont = [], None
    while True:
        kw = {"limit": 2}
        if cont:
            kw["_continue"] = cont
        lst = v1.list_namespaced_pod(pyns, **kw)
        names += [p.metadata.name for p in lst.items]
        cont = lst.metadata._continue
        if not cont:
            break
    assert sorted(names) == [f"pg{i}" for i in range(5)]


def test_status_subresource(v1, pyns):
    v1.create_namespaced_pod(pyns, make_pod("st"))
    v1.patch_namespaced_pod_status("st", pyns, {"status": {"phase": "Running"}})
    assert v1.read_namespaced_pod_status("st", pyns).status.phase == "Running"
    assert v1.read_namespaced_pod("st", pyns).status.phase == "Running"


def test_other_groups_deserialize(v1, server):
    api_client = v1.api_client
    leases = client.CoordinationV1Api(api_client).list_namespaced_lease("kube-node-lease")
    assert server.node_name in [l.metadata.name for l in leases.items]
    slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice("default")
    assert isinstance(slices.items, list)
    svc = v1.read_namespaced_service("kubernetes", "default")
    assert svc.spec.ports[0].port == 443
    sas = v1.list_namespaced_service_account("default")
    assert "default" in [s.metadata.name for s in sas.items]
    v1.list_event_for_all_namespaces()
    v1.list_namespaced_endpoints("default")
