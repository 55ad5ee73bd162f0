"""Pods run by runc: a server started with `--container-runtime runc` runs busybox pods
whose containers runc creates (its state sits under the instance's run dir,
`/run/podium/<instance>/oci/<container id>`), with logs, Running/Succeeded/Failed status
and exit codes as with the builtin runtime; a container survives a kill -9 of the server
and is re-adopted; deletion leaves no runc state, shim process, cgroup, mount or file.

Skipped when runc is not installed (Debian: `apt-get install runc`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import images
import podutil as pu
from conftest import Server

RUNC = shutil.which("runc") or "/usr/sbin/runc"

pytestmark = pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason=f"runc not installed ({RUNC})")


def runc_server(spawn, registry, name: str) -> Server:
    srv = spawn(name, registries_yaml=images.registries_yaml(registry), extra_args=["--container-runtime", "runc"])
    srv.start()
    return srv


def oci_root(srv: Server) -> Path:
    return Path(f"/run/podium/{srv.instance}/oci")


def runc_state(srv: Server, cid: str) -> dict | None:
    """`runc state` of a container in the server's runc root; None if runc does not know it."""
    p = subprocess.run(
        [RUNC, "--root", str(oci_root(srv)), "state", cid], capture_output=True, text=True, timeout=20
    )  # fmt: skip
    return json.loads(p.stdout) if p.returncode == 0 else None


def traces(srv: Server, uids: list[str], cids: list[str]) -> dict[str, list]:
    """What deleted pods may leave on the host."""
    needles = [f for u in uids for f in pu.uid_forms(u)] + [c for c in cids if c]
    run_root = Path(f"/run/podium/{srv.instance}")
    found = {
        "runc state": [str(oci_root(srv) / c) for c in cids if (oci_root(srv) / c).exists()],
        "runc list": [c for c in cids if runc_state(srv, c) is not None],
        "shims": pu.shim_processes(*needles),
        "mounts": pu.mounts_mentioning(*needles),
        "cgroups": pu.cgroups_mentioning(srv.instance, *needles),
        "data dir": pu.paths_mentioning(srv.data_dir, *needles),
        "run dir": pu.paths_mentioning(run_root, *needles) if run_root.exists() else [],
    }
    return {k: v for k, v in found.items() if v}


def test_runc_runs_pods_with_logs_status_exit_codes_and_no_leftovers(spawn, registry):
    srv = runc_server(spawn, registry, "runc-node")
    api, kubectl = srv.api(), srv.kubectl()
    assert f"container runtime {RUNC}" in srv.log_path.read_text(), srv.log_tail()
    ns = "runc"
    api.create_namespace(ns)
    tag = uuid.uuid4().hex[:8]
    pu.create(
        kubectl, ns,
        [
            pu.shell_pod("ok", f"echo hello-{tag}; echo warn-{tag} >&2; exit 0"),
            pu.shell_pod("fails", f"echo bye-{tag}; exit 3"),
            # Runs until /tmp/done appears, then exits 5.
            pu.shell_pod("waits", f"echo up-{tag}; while [ ! -f /tmp/done ]; do sleep 0.1; done; echo down; exit 5"),
            pu.shell_pod("keeps", f"echo always-{tag}; exec sleep 3600", policy="Always"),
        ],
    )  # fmt: skip

    # Succeeded, with exit code 0 and both streams in the log.
    p = pu.wait_phase(api, ns, "ok", "Succeeded")
    term = pu.cstatus(p, "main")["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed", term
    # stdout and stderr are read by two pumps: their order in the log is not fixed.
    assert sorted(pu.logs(kubectl, ns, "ok").splitlines()) == [f"hello-{tag}", f"warn-{tag}"]
    ok_id = pu.container_id(pu.cstatus(p, "main"))
    # runc made it: its state is in the instance's runc root and says it stopped.
    st = runc_state(srv, ok_id)
    assert st is not None and st["status"] == "stopped", st

    # A non-zero exit: Failed with the code.
    p = pu.wait_phase(api, ns, "fails", "Failed")
    term = pu.cstatus(p, "main")["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error", term
    assert pu.logs(kubectl, ns, "fails") == f"bye-{tag}\n"

    # Running: runc reports it running with the host pid of the container's process.
    p = pu.wait_running(api, ns, "waits")
    assert pu.wait_logs(kubectl, ns, "waits", lambda t: t == f"up-{tag}\n")
    waits_id = pu.container_id(pu.cstatus(p, "main"))
    st = runc_state(srv, waits_id)
    assert st is not None and st["status"] == "running", st
    pid = st["pid"]
    assert pu.cmdline(pid)[:2] == ["sh", "-c"] and "waits" in pu.cmdline(pid), pu.cmdline(pid)
    assert pu.shim_processes(waits_id), "no shim for the container"

    # kill -9 of the server: the container keeps running under its shim and is re-adopted.
    keeps = pu.wait_running(api, ns, "keeps")
    keeps_id = pu.container_id(pu.cstatus(keeps, "main"))
    keeps_pid = runc_state(srv, keeps_id)["pid"]
    srv.kill9()
    time.sleep(0.5)
    assert runc_state(srv, keeps_id)["status"] == "running"
    srv.start()
    time.sleep(2)
    keeps = pu.wait_running(api, ns, "keeps")
    st = pu.cstatus(keeps, "main")
    assert pu.container_id(st) == keeps_id and st["restartCount"] == 0, st
    assert runc_state(srv, keeps_id)["pid"] == keeps_pid
    assert pu.logs(kubectl, ns, "keeps") == f"always-{tag}\n"

    # The waiting one (re-adopted too) ends with its exit code, seen by `logs -f`, which
    # then ends by itself.
    follow = kubectl.popen("logs", "-f", "-n", ns, "waits")
    follow.wait_for(lambda line: line == f"up-{tag}")
    Path(f"/proc/{pid}/root/tmp/done").write_text("")
    follow.wait_for(lambda line: line == "down")
    assert follow.proc.wait(timeout=30) == 0
    p = pu.wait_phase(api, ns, "waits", "Failed")
    term = pu.cstatus(p, "main")["state"]["terminated"]
    assert term["exitCode"] == 5, term
    assert pu.logs(kubectl, ns, "waits") == f"up-{tag}\ndown\n"
    assert runc_state(srv, waits_id)["status"] == "stopped"

    # Deletion: nothing of the pods is left, runc's state included.
    pods = api.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
    uids = [x["metadata"]["uid"] for x in pods]
    cids = [pu.container_id(s) for x in pods for s in x["status"].get("containerStatuses") or []]
    assert len(cids) == 4 and all(cids), cids
    present = traces(srv, uids, cids)
    assert "runc state" in present and "shims" in present, present
    kubectl("delete", "pods", "--all", "-n", ns, "--timeout=60s", timeout=90)
    left = traces(srv, uids, cids)
    assert not left, left
    assert not os.path.exists(f"/proc/{keeps_pid}") or pu.cmdline(keeps_pid)[:1] != ["sleep"], "process left"


def test_runc_container_started_by_runc_is_deleted_by_a_builtin_server(spawn, registry):
    """The runtime is recorded per container: a server restarted without the flag still
    stops and deletes (with runc) what runc started."""
    srv = runc_server(spawn, registry, "runc-switch")
    api, kubectl = srv.api(), srv.kubectl()
    ns = "switch"
    api.create_namespace(ns)
    pu.create(kubectl, ns, pu.shell_pod("sleeper", "echo started; exec sleep 3600", policy="Always"))
    p = pu.wait_running(api, ns, "sleeper")
    cid = pu.container_id(pu.cstatus(p, "main"))
    pid = runc_state(srv, cid)["pid"]
    srv.stop()
    srv.extra_args = []
    srv.start()
    p = pu.wait_running(api, ns, "sleeper")
    assert pu.container_id(pu.cstatus(p, "main")) == cid
    assert pu.logs(kubectl, ns, "sleeper") == "started\n"
    kubectl("delete", "pod", "sleeper", "-n", ns, "--timeout=60s", timeout=90)
    assert not os.path.exists(f"/proc/{pid}") or pu.cmdline(pid)[:1] != ["sleep"]
    left = traces(srv, [p["metadata"]["uid"]], [cid])
    assert not left, left


SHOW_NS = "for n in ipc net pid uts mnt; do echo ns.$n=$(readlink /proc/self/ns/$n); done; "


def ns_of(text: str) -> dict[str, str]:
    return dict(l[3:].split("=", 1) for l in text.splitlines() if l.startswith("ns."))


def test_runc_pod_namespaces_shared_pid_limits_and_oom(spawn, registry):
    """What the sandbox and the agent ask of the runtime, with runc: containers of a pod
    join its pinned net/ipc/uts namespaces (and a shared pid namespace with its pause
    process), get their cgroup limits, and an OOM kill is reported as OOMKilled."""
    srv = runc_server(spawn, registry, "runc-pods")
    api, kubectl = srv.api(), srv.kubectl()
    ns = "runcpods"
    api.create_namespace(ns)
    show = "cat /proc/1/comm; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done; "
    two = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two"},
        "spec": {
            "shareProcessNamespace": True,
            "containers": [
                {"name": "a", "image": "busybox", "command": ["sh", "-c", SHOW_NS + "echo done; exec sleep 3601"],
                 "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}},
                {"name": "b", "image": "busybox", "command": ["sh", "-c", "sleep 1; " + SHOW_NS + show + "echo done; exec sleep 3602"]},
            ],
        },
    }  # fmt: skip
    oom = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "oom"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "hog", "image": "busybox", "command": ["tail", "/dev/zero"],
                            "resources": {"limits": {"memory": "32Mi"}}}],
        },
    }  # fmt: skip
    pu.create(kubectl, ns, [two, oom])
    p = pu.wait_running(api, ns, "two")
    a = pu.wait_logs(kubectl, ns, "two", lambda t: "done" in t, "-c", "a")
    b = pu.wait_logs(kubectl, ns, "two", lambda t: "done" in t, "-c", "b")
    na, nb = ns_of(a), ns_of(b)
    for kind in ("ipc", "net", "uts", "pid"):
        assert na[kind] == nb[kind], (kind, na, nb)
    assert na["mnt"] != nb["mnt"], (na, nb)
    lines = [l.strip() for l in b.splitlines()]
    assert "pause" in lines and "sleep 3601" in lines, lines
    cid = pu.container_id(pu.cstatus(p, "a"))
    st = runc_state(srv, cid)
    assert st is not None and st["status"] == "running", st
    pid = st["pid"]
    quota = pu.cgroup_file(pid, "cpu", "cpu.cfs_quota_us")
    if quota is not None:
        assert quota == "50000"
        assert pu.cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(64 << 20)
    else:
        assert pu.cgroup_file(pid, "cpu", "cpu.max") == "50000 100000"
        assert pu.cgroup_file(pid, "memory", "memory.max") == str(64 << 20)

    p = pu.wait_phase(api, ns, "oom", ("Failed", "Succeeded"))
    term = pu.cstatus(p, "hog")["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137, term

    pods = api.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
    uids = [x["metadata"]["uid"] for x in pods]
    cids = [pu.container_id(s) for x in pods for s in x["status"].get("containerStatuses") or []]
    kubectl("delete", "pods", "--all", "-n", ns, "--timeout=60s", timeout=90)
    left = traces(srv, uids, cids)
    assert not left, left
