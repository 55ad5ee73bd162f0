"""The node agent survives its own crash, and deleted pods leave nothing behind (issue 4,
"How it is shown"):

- kill -9 of the server with pods running: the containers keep running meanwhile (their
  shims are not the server's children); after the restart every pod has the same
  container IDs, the same host processes and 0 restarts, and an exit that happened while
  the server was down is reported with its real exit code (not lost).
- After many pods are deleted, none of their mounts (/proc/self/mountinfo), shim processes
  (`podium shim`), cgroups (under /sys/fs/cgroup/*/<instance>/), run or data directories
  remain — checked the moment each Pod object is gone, since it goes only after cleanup.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

import images
import podutil as pu
from conftest import Server

KILL9_PODS = int(os.environ.get("PODIUM_E2E_KILL9_PODS", "20"))
LEFTOVER_PODS = int(os.environ.get("PODIUM_E2E_LEFTOVER_PODS", "50"))

SERVE = 'trap "exit 0" TERM; echo started; while [ ! -f /tmp/exit-now ]; do sleep 0.2; done; echo exiting; exit 7'


def pod(name: str, marker: str, policy: str = "Always", volumes: bool = False, share_pid: bool = False) -> dict:
    c: dict = {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", SERVE, marker]}
    spec: dict = {"containers": [c], "restartPolicy": policy, "terminationGracePeriodSeconds": 5}
    if share_pid:
        spec["shareProcessNamespace"] = True
    if volumes:
        c["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def all_running(api, ns: str, names: list[str], timeout: float = 90) -> dict[str, dict]:
    timeout = pu.agent_timeout(api, timeout)
    deadline = time.monotonic() + timeout
    while True:
        pods = {n: pu.get_pod(api, ns, n) for n in names}
        bad = [n for n, p in pods.items() if not p or pu.phase(p) != "Running" or not all(
            "running" in (s.get("state") or {}) for s in p["status"].get("containerStatuses") or [{}])]
        if not bad:
            pu.agent_worked(api, True)
            return pods
        if time.monotonic() > deadline:
            pu.agent_worked(api, False)
            pytest.fail(f"{len(bad)} pods not running after {timeout}s: {bad[:5]}\n{pu.describe(api, ns, bad[0])}")
        time.sleep(0.5)


def pod_server(spawn, registry, name: str) -> Server:
    srv = spawn(name, registries_yaml=images.registries_yaml(registry))
    srv.start()
    return srv


def test_kill9_server_keeps_containers_and_readopts_them(spawn, registry):
    srv = pod_server(spawn, registry, "kill9-node")
    api, kubectl = srv.api(), srv.kubectl()
    ns = "kill9"
    api.create_namespace(ns)
    tag = uuid.uuid4().hex[:8]
    names = [f"p{i:02d}" for i in range(KILL9_PODS)]
    markers = {n: f"k9-{tag}-{n}" for n in names}
    # The last one has restartPolicy Never: it exits (code 7) while the server is down.
    quitter = names[-1]
    docs = [pod(n, markers[n], policy="Never" if n == quitter else "Always") for n in names]
    pu.create(kubectl, ns, docs)
    before = all_running(api, ns, names)
    ids = {n: pu.container_id(pu.cstatus(p, "main")) for n, p in before.items()}
    started = {n: pu.cstatus(p, "main")["state"]["running"]["startedAt"] for n, p in before.items()}
    procs = {n: sorted(pu.wait_pids_with_arg(markers[n])) for n in names}
    assert all(procs.values()), {n: p for n, p in procs.items() if not p}

    srv.kill9()
    # The containers do not depend on the server process.
    time.sleep(1)
    for n in names:
        assert sorted(pu.pids_with_arg(markers[n])) == procs[n], f"{n}'s process changed while the server was down"
    # One container exits while nobody watches.
    Path(f"/proc/{procs[quitter][0]}/root/tmp/exit-now").write_text("")
    deadline = time.monotonic() + 10
    while pu.pids_with_arg(markers[quitter]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pu.pids_with_arg(markers[quitter])

    srv.start()
    p = pu.wait_phase(api, ns, quitter, "Failed", timeout=60)
    term = pu.cstatus(p, "main")["state"]["terminated"]
    assert term["exitCode"] == 7 and term["reason"] == "Error", term
    # Give the agent time to (wrongly) restart anything, then compare.
    time.sleep(3)
    after = all_running(api, ns, names[:-1], timeout=30)
    for n, p in after.items():
        st = pu.cstatus(p, "main")
        assert pu.container_id(st) == ids[n], f"{n}: container {ids[n]} replaced by {st.get('containerID')}"
        assert st["restartCount"] == 0, f"{n} restarted: {st}"
        assert st["state"]["running"]["startedAt"] == started[n], st
        assert sorted(pu.pids_with_arg(markers[n])) == procs[n], f"{n}'s process changed"
        assert pu.logs(kubectl, ns, n) == "started\n"
    # The readopted containers are still managed: deleting one stops its process.
    kubectl("delete", "pod", names[0], "-n", ns, "--timeout=60s")
    assert not pu.pids_with_arg(markers[names[0]])


def leftovers(
    srv: Server, uids: list[str], cids: list[str], markers: list[str], pauses: list[int] | None = None
) -> dict[str, list]:
    needles = [f for u in uids for f in pu.uid_forms(u)] + [c for c in cids if c]
    run_root = Path(f"/run/podium/{srv.instance}")
    found = {
        "mounts": pu.mounts_mentioning(*needles),
        "shims": pu.shim_processes(*needles),
        "cgroups": pu.cgroups_mentioning(srv.instance, *needles),
        "data dir": pu.paths_mentioning(srv.data_dir, *needles),
        "run dir": pu.paths_mentioning(run_root, *needles) if run_root.exists() else [],
        "netns": [n for n in os.listdir("/run/netns") if any(x in n for x in needles)]
        if os.path.isdir("/run/netns")
        else [],
        "processes": [m for m in markers if pu.pids_with_arg(m)],
        "pause processes": [p for p in pauses or [] if pu.is_live_pause(p)],
    }
    return {k: v for k, v in found.items() if v}


def test_no_leftovers_after_deleting_pods(spawn, registry):
    srv = pod_server(spawn, registry, "leftover-node")
    api, kubectl = srv.api(), srv.kubectl()
    ns = "leftovers"
    api.create_namespace(ns)
    tag = uuid.uuid4().hex[:8]
    names = [f"p{i:02d}" for i in range(LEFTOVER_PODS)]
    markers = [f"lo-{tag}-{n}" for n in names]
    # Half of them share a pid namespace, so have a pause process to clean up.
    docs = [pod(n, m, volumes=True, share_pid=i % 2 == 0) for i, (n, m) in enumerate(zip(names, markers))]
    pu.create(kubectl, ns, docs)
    pods = all_running(api, ns, names, timeout=120)
    uids = [p["metadata"]["uid"] for p in pods.values()]
    cids = [pu.container_id(pu.cstatus(p, "main")) for p in pods.values()]
    # Before deletion the checks do find the pods' traces (so they can fail).
    pauses = pu.pause_processes([f"/run/podium/{srv.instance}/pods/{u}/ns/pid" for u in uids])
    assert len(pauses) == (len(names) + 1) // 2, pauses
    present = leftovers(srv, uids, cids, markers, pauses)
    assert "processes" in present and ("mounts" in present or "cgroups" in present), present
    assert "pause processes" in present, present
    kubectl("delete", "pods", "--all", "-n", ns, "--timeout=120s", timeout=150)
    assert not (api.get(f"/api/v1/namespaces/{ns}/pods").json().get("items") or [])
    now = leftovers(srv, uids, cids, markers, pauses)
    if now:
        time.sleep(10)
        later = leftovers(srv, uids, cids, markers, pauses)
        pytest.fail(
            "traces of deleted pods right after deletion: "
            + "; ".join(f"{k}: {len(v)} e.g. {v[0]}" for k, v in now.items())
            + "\n10 s later: "
            + ("none" if not later else "; ".join(f"{k}: {len(v)} e.g. {v[0]}" for k, v in later.items()))
        )
