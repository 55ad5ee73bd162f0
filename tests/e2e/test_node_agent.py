"""The real node agent's Node: registration, system info, conditions, heartbeat Lease and
events, as `podium server` (agent enabled) registers this machine."""

from __future__ import annotations

import time

NODE_INFO_FIELDS = {
    "machineID", "systemUUID", "bootID", "kernelVersion", "osImage",
    "containerRuntimeVersion", "kubeletVersion", "kubeProxyVersion", "operatingSystem", "architecture",
}  # fmt: skip


def wait_node(papi, name: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = papi.get(f"/api/v1/nodes/{name}")
        if r.status == 200 and r.json().get("status", {}).get("nodeInfo"):
            return r.json()
        assert time.monotonic() < deadline, f"node {name} not registered: {r}"
        time.sleep(0.2)


def test_node_registers_with_capacity_info_and_labels(pod_server, papi):
    node = wait_node(papi, pod_server.node_name)
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == pod_server.node_name
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] in ("amd64", "arm64")
    status = node["status"]
    assert set(status["nodeInfo"]) >= NODE_INFO_FIELDS
    assert status["nodeInfo"]["operatingSystem"] == "linux"
    for key in ("cpu", "memory", "ephemeral-storage", "pods"):
        assert key in status["capacity"] and key in status["allocatable"], key
    assert status["capacity"]["pods"] == "110"
    conds = {c["type"]: c for c in status["conditions"]}
    assert set(conds) >= {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    assert conds["Ready"]["status"] == "True"
    assert conds["Ready"]["reason"] == "KubeletReady"
    types = {a["type"] for a in status["addresses"]}
    assert {"InternalIP", "Hostname"} <= types


def test_node_lease_heartbeat(pod_server, papi):
    wait_node(papi, pod_server.node_name)
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{pod_server.node_name}"
    deadline = time.monotonic() + 15
    while (r := papi.get(path)).status != 200:
        assert time.monotonic() < deadline, r
        time.sleep(0.2)
    lease = r.json()
    assert lease["spec"]["holderIdentity"] == pod_server.node_name
    first = lease["spec"]["renewTime"]
    # The agent renews every 10 s.
    deadline = time.monotonic() + 25
    while papi.get(path).json()["spec"]["renewTime"] == first:
        assert time.monotonic() < deadline, "lease not renewed"
        time.sleep(0.5)


def test_describe_node_shows_agent_events(pod_server, pkubectl):
    out = ""
    deadline = time.monotonic() + 15
    while "RegisteredNode" not in out:
        assert time.monotonic() < deadline, out
        out = pkubectl("describe", "node", pod_server.node_name)
        time.sleep(0.3)
    assert "Starting" in out
    assert "KubeletReady" in out
