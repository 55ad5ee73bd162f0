"""Helpers for tests that run pods for real: creating them with kubectl, bounded waits on
their status (a timeout fails the test with the pod's status and events attached), logs,
and looking at the host — the container's processes (found through the pod's cgroup),
namespaces, cgroup files, mounts, shim processes and cgroups an instance left behind.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from conftest import Api, Kubectl, Server

# Default bound of a wait for a pod to reach a state.
POD_TIMEOUT = float(os.environ.get("PODIUM_E2E_POD_TIMEOUT", "60"))
# After a server's first wait timed out with none ever succeeding there, its later waits
# are cut to this.
DEAD_AGENT_TIMEOUT = 10.0
# Kubeconfig path (one per server) → whether any pod wait on it has succeeded.
_AGENT_WORKED: dict[str, bool] = {}


def create(kubectl: Kubectl, ns: str, doc: dict | list[dict] | str) -> None:
    """`kubectl create -n ns -f -` of a manifest (dict or YAML text) or of several (a list
    of dicts, sent as one multi-document YAML stream)."""
    if isinstance(doc, str):
        text = doc
    elif isinstance(doc, list):
        text = yaml.safe_dump_all(doc)
    else:
        text = yaml.safe_dump(doc)
    kubectl("create", "-n", ns, "-f", "-", input=text)


def shell_pod(name: str, script: str, policy: str = "Never", **spec: Any) -> dict:
    """A one-container busybox pod running `sh -c script name` (the pod's name is $0, so
    each pod's processes can be found by it), 2 s of grace."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script, name]}],
            **spec,
        },
    }


def get_pod(api: Api, ns: str, name: str) -> dict | None:
    r = api.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    if r.status == 404:
        return None
    assert r.status == 200, r
    return r.json()


def events(api: Api, ns: str, name: str | None = None) -> list[dict]:
    r = api.get(f"/api/v1/namespaces/{ns}/events")
    assert r.status == 200, r
    items = r.json().get("items") or []
    if name is not None:
        items = [e for e in items if (e.get("involvedObject") or {}).get("name") == name]
    return items


def describe(api: Api, ns: str, name: str) -> str:
    """The pod's status and events, for failure messages."""
    pod = get_pod(api, ns, name)
    status = json.dumps((pod or {}).get("status"), indent=1)[:6000] if pod else "(pod not found)"
    evs = "\n".join(
        f"  {e.get('type')} {e.get('reason')}: {e.get('message')}" for e in events(api, ns, name)
    )  # fmt: skip
    return f"pod {ns}/{name} status:\n{status}\nevents:\n{evs or '  (none)'}"


def wait_pod(
    api: Api,
    ns: str,
    name: str,
    pred: Callable[[dict], bool],
    what: str,
    timeout: float = POD_TIMEOUT,
) -> dict:
    """Polls the pod until pred(pod) holds; fails with its status and events after timeout."""
    if not _AGENT_WORKED.get(str(api.kc.path), True):
        # Every earlier wait on this server timed out: the agent runs nothing. Fail faster
        # so a dead agent costs seconds per test, not minutes (the failure says why).
        timeout = min(timeout, DEAD_AGENT_TIMEOUT)
    deadline = time.monotonic() + timeout
    while True:
        pod = get_pod(api, ns, name)
        if pod is not None:
            try:
                if pred(pod):
                    _AGENT_WORKED[str(api.kc.path)] = True
                    return pod
            except (KeyError, IndexError, TypeError):
                pass
        if time.monotonic() > deadline:
            _AGENT_WORKED.setdefault(str(api.kc.path), False)
            note = "" if _AGENT_WORKED[str(api.kc.path)] else " (no pod wait has succeeded on this server yet)"
            pytest.fail(f"pod {ns}/{name}: not {what} within {timeout}s{note}\n{describe(api, ns, name)}")
        time.sleep(0.2)


def phase(pod: dict) -> str | None:
    return (pod.get("status") or {}).get("phase")


def wait_phase(api: Api, ns: str, name: str, want: str | tuple[str, ...], timeout: float = POD_TIMEOUT) -> dict:
    wants = (want,) if isinstance(want, str) else want
    return wait_pod(api, ns, name, lambda p: phase(p) in wants, f"in phase {'/'.join(wants)}", timeout)


def wait_running(api: Api, ns: str, name: str, timeout: float = POD_TIMEOUT) -> dict:
    """Running with every container running (not merely the phase)."""

    def ok(p: dict) -> bool:
        sts = p["status"].get("containerStatuses") or []
        return phase(p) == "Running" and bool(sts) and all("running" in (s.get("state") or {}) for s in sts)

    return wait_pod(api, ns, name, ok, "Running with all containers running", timeout)


def agent_timeout(api: Api, timeout: float) -> float:
    """`timeout`, cut short on a server where no wait has ever succeeded (see wait_pod)."""
    return min(timeout, DEAD_AGENT_TIMEOUT) if _AGENT_WORKED.get(str(api.kc.path), True) is False else timeout


def agent_worked(api: Api, ok: bool) -> None:
    if ok:
        _AGENT_WORKED[str(api.kc.path)] = True
    else:
        _AGENT_WORKED.setdefault(str(api.kc.path), False)


def wait_gone(api: Api, ns: str, name: str, timeout: float = POD_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while get_pod(api, ns, name) is not None:
        if time.monotonic() > deadline:
            pytest.fail(f"pod {ns}/{name} still exists {timeout}s after deletion\n{describe(api, ns, name)}")
        time.sleep(0.2)


def cstatus(pod: dict, container: str, init: bool = False) -> dict:
    key = "initContainerStatuses" if init else "containerStatuses"
    for s in pod["status"].get(key) or []:
        if s["name"] == container:
            return s
    raise KeyError(f"no {key} entry for {container}: {pod['status']}")


def waiting_reason(pod: dict, container: str) -> str | None:
    return ((cstatus(pod, container).get("state") or {}).get("waiting") or {}).get("reason")


def condition(pod: dict, ty: str) -> str | None:
    for c in pod["status"].get("conditions") or []:
        if c["type"] == ty:
            return c["status"]
    return None


def logs(kubectl: Kubectl, ns: str, name: str, *args: str, timeout: float = 30) -> str:
    return kubectl("logs", "-n", ns, name, *args, timeout=timeout)


def wait_logs(
    kubectl: Kubectl, ns: str, name: str, pred: Callable[[str], bool], *args: str, timeout: float = POD_TIMEOUT
) -> str:
    """Polls `kubectl logs` until pred(output) holds."""
    if not _AGENT_WORKED.get(kubectl.env["KUBECONFIG"], True):
        timeout = min(timeout, DEAD_AGENT_TIMEOUT)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        p = kubectl.run("logs", "-n", ns, name, *args, check=False, timeout=30)
        last = p.stdout if p.returncode == 0 else f"(exit {p.returncode}) {p.stderr}"
        if p.returncode == 0 and pred(p.stdout):
            _AGENT_WORKED[kubectl.env["KUBECONFIG"]] = True
            return p.stdout
        if time.monotonic() > deadline:
            _AGENT_WORKED.setdefault(kubectl.env["KUBECONFIG"], False)
            pytest.fail(f"logs of {ns}/{name} {' '.join(args)}: no match within {timeout}s; last:\n{last}")
        time.sleep(0.3)


def uid_forms(uid: str) -> tuple[str, str]:
    """A pod UID as it may appear in host names (kubelet's systemd driver uses underscores)."""
    return uid, uid.replace("-", "_")


# --- the host side ----------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cmdline(pid: int) -> list[str]:
    return [a for a in _read(f"/proc/{pid}/cmdline").split("\0") if a]


def pod_pids(uid: str) -> list[int]:
    """Processes whose cgroup path names the pod (`.../pod<uid>/...`)."""
    forms = uid_forms(uid)
    out = []
    for pid in pids():
        cg = _read(f"/proc/{pid}/cgroup")
        if any(f in cg for f in forms):
            out.append(pid)
    return out


def pids_with_arg(marker: str) -> list[int]:
    """Processes with `marker` in an argument (tests put a unique marker in `sh -c` $0)."""
    me = os.getpid()
    found = {pid for pid in pids() if pid != me and any(marker in a for a in cmdline(pid))}
    # A shell's child between fork and exec still shows the shell's command line: only
    # the topmost process with the marker counts.
    return sorted(pid for pid in found if ppid(pid) not in found)


def is_live_pause(pid: int) -> bool:
    """Whether `pid` is a pause process (PID 1 of a pod's shared pid namespace) that has
    not exited (a zombie waiting for its new parent to reap it counts as exited)."""
    stat = _read(f"/proc/{pid}/stat")
    return "(pause)" in stat and stat.split(")")[-1].split()[:1] != ["Z"]


def pause_processes(pid_ns_pins: list[str]) -> list[int]:
    """Live pause processes whose pid namespace is one of these pinned namespace files."""
    pins = set()
    for pin in pid_ns_pins:
        try:
            pins.add(os.stat(pin).st_ino)
        except OSError:
            pass
    out = []
    for p in pids():
        try:
            if is_live_pause(p) and os.stat(f"/proc/{p}/ns/pid").st_ino in pins:
                out.append(p)
        except OSError:
            pass
    return out


def ppid(pid: int) -> int | None:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return None


def wait_pids_with_arg(marker: str, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        found = pids_with_arg(marker)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def ns_inode(pid: int | str, kind: str) -> str:
    """`net:[4026531840]` for /proc/<pid>/ns/<kind>."""
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def cgroup_paths(pid: int) -> dict[str, str]:
    """controller (or "" for the v2 entry) → path, from /proc/<pid>/cgroup."""
    out = {}
    for line in _read(f"/proc/{pid}/cgroup").splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            out[c] = path
    return out


def cgroup_file(pid: int, controller: str, name: str, up: int = 0) -> str | None:
    """The contents of a cgroup file of the process: cgroup v1 (`controller`'s hierarchy)
    or, when that controller is not mounted on v1, the unified hierarchy. `up` levels
    above the process's own cgroup (1: a container's pod cgroup)."""
    paths = {c: p.rsplit("/", up)[0] if up else p for c, p in cgroup_paths(pid).items()}
    if controller in paths:
        for mount in Path("/sys/fs/cgroup").iterdir():
            if controller in mount.name.split(","):
                f = mount / paths[controller].lstrip("/") / name
                if f.exists():
                    return f.read_text().strip()
    if "" in paths:
        base = Path("/sys/fs/cgroup")
        if not (base / "cgroup.controllers").exists():
            base = base / "unified"
        f = base / paths[""].lstrip("/") / name
        if f.exists():
            return f.read_text().strip()
    return None


def mounts_mentioning(*needles: str) -> list[str]:
    """Lines of /proc/self/mountinfo naming any of the needles (paths, ids, uids)."""
    return [l for l in _read("/proc/self/mountinfo").splitlines() if any(n in l for n in needles if n)]


def shim_processes(*needles: str) -> list[tuple[int, str]]:
    """`podium shim` processes whose arguments mention any of the needles."""
    out = []
    for pid in pids():
        args = cmdline(pid)
        if len(args) >= 2 and args[0].endswith("podium") and args[1] == "shim":
            text = " ".join(args)
            if any(n in text for n in needles if n):
                out.append((pid, text))
    return out


def cgroups_mentioning(instance: str, *needles: str) -> list[str]:
    """Cgroup directories under /sys/fs/cgroup/*/ (and the unified tree) whose path has the
    instance name and any of the needles (none given: every cgroup of the instance)."""
    found = []
    roots = [p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir()] + [Path("/sys/fs/cgroup")]
    seen = set()
    for root in roots:
        top = root / instance
        if not top.is_dir() or top in seen:
            continue
        seen.add(top)
        for dirpath, dirnames, _ in os.walk(top):
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if not needles or any(n in full for n in needles if n):
                    found.append(full)
    return found


def paths_mentioning(root: Path, *needles: str) -> list[str]:
    """Files and directories under root whose path contains any needle."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            if any(x in full for x in needles if x):
                out.append(full)
    return out


def container_id(status: dict) -> str:
    """The id part of containerID (`podium://<id>` or `containerd://<id>`)."""
    cid = status.get("containerID") or ""
    return cid.split("://", 1)[-1]


# --- cleanup of a server's pods ---------------------------------------------------------


def delete_all_pods(srv: Server, timeout: float = 60) -> list[str]:
    """Deletes every pod of a (running) server with a short grace period and waits until
    they are gone; returns the names of pods still there after `timeout`."""
    api = srv.api()
    if _AGENT_WORKED.get(str(api.kc.path)) is False:
        timeout = min(timeout, 5)  # no agent finishes their deletion
    r = api.get("/api/v1/pods")
    if r.status != 200:
        return [f"(listing pods: {r!r})"]
    for p in r.json().get("items") or []:
        m = p["metadata"]
        api.request("DELETE", f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}", {"gracePeriodSeconds": 1})
    deadline = time.monotonic() + timeout
    left: list[str] = []
    while time.monotonic() < deadline:
        items = api.get("/api/v1/pods").json().get("items") or []
        left = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in items]
        if not left:
            return []
        time.sleep(0.5)
    return left


def janitor(srv: Server) -> list[str]:
    """After a pod server stopped: kills what its instance left running (processes in its
    cgroups, its shims, by pid) and lazily unmounts its mounts, so a failing run does not
    leave containers on the machine. Returns what it had to clean (for the log)."""
    import signal
    import subprocess

    inst = srv.instance
    cleaned: list[str] = []
    for cg in cgroups_mentioning(inst):
        for pid in _read(os.path.join(cg, "cgroup.procs")).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
                cleaned.append(f"killed pid {pid} in {cg}")
            except (ProcessLookupError, ValueError):
                pass
    for pid, text in shim_processes(inst, str(srv.data_dir)):
        try:
            os.kill(pid, signal.SIGKILL)
            cleaned.append(f"killed shim {pid}: {text[:200]}")
        except ProcessLookupError:
            pass
    run_root = f"/run/podium/{inst}"
    mps = []
    for line in _read("/proc/self/mountinfo").splitlines():
        mp = line.split()[4]
        if mp.startswith(run_root) or mp.startswith(str(srv.data_dir)):
            mps.append(mp)
    for mp in sorted(set(mps), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True, timeout=10)
        cleaned.append(f"unmounted {mp}")
    time.sleep(0.2)
    for cg in sorted(cgroups_mentioning(inst), key=len, reverse=True):
        try:
            os.rmdir(cg)
        except OSError:
            pass
    # The instance's run directory (sandboxes of pods left running at shutdown), once
    # nothing is mounted below it any more: never delete through a mount.
    still_mounted = [
        line.split()[4] for line in _read("/proc/self/mountinfo").splitlines() if line.split()[4].startswith(run_root)
    ]
    if os.path.isdir(run_root) and not still_mounted:
        import shutil

        shutil.rmtree(run_root, ignore_errors=True)
        cleaned.append(f"removed {run_root}")
    return cleaned
