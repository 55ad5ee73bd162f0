"""Container lifecycle on a real node (issue 4): the restartPolicy matrix (Always,
OnFailure, Never × exit 0 / exit 1) with restart counts, phases and kubelet's crash
back-off measured; graceful termination (a process trapping SIGTERM exits at once, one
ignoring it is killed at the grace period ± 1 s), DeleteOptions' grace period and
`kubectl delete --grace-period=0 --force`; activeDeadlineSeconds; termination messages;
and `kubectl logs` with -c, --previous, --tail, --timestamps, --limit-bytes and -f.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime

import pytest

import podutil as pu


def pod(name: str, *containers: dict, **spec) -> dict:
    spec = {"containers": list(containers), **spec}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def sh(name: str, script: str, marker: str | None = None, **extra) -> dict:
    """A busybox container running `sh -c script`; a marker becomes $0, visible in the
    process's command line on the host."""
    cmd = ["sh", "-c", script] + ([marker] if marker else [])
    return {"name": name, "image": "busybox", "command": cmd, **extra}


# --- the restartPolicy matrix -----------------------------------------------------------

POLICIES = ("Always", "OnFailure", "Never")
CODES = (0, 1)


class Observed:
    """What polling saw of one pod: phases, waiting reasons, container runs (a run is a
    containerID first seen running, with the time it was seen) and, at every observation
    in CrashLoopBackOff, (restartCount, runs seen so far)."""

    def __init__(self) -> None:
        self.phases: list[str] = []
        self.waiting: set[str] = set()
        self.runs: dict[str, float] = {}
        self.backoff_counts: list[tuple[int, int]] = []
        self.max_restarts = 0
        self.last: dict = {}

    def see(self, p: dict) -> None:
        self.last = p
        self.phases.append(pu.phase(p) or "")
        for s in p["status"].get("containerStatuses") or []:
            self.max_restarts = max(self.max_restarts, s["restartCount"])
            state = s.get("state") or {}
            if "running" in state and s.get("containerID"):
                self.runs.setdefault(s["containerID"], time.monotonic())
            if r := state.get("waiting", {}).get("reason"):
                self.waiting.add(r)
                if r == "CrashLoopBackOff":
                    self.backoff_counts.append((s["restartCount"], len(self.runs)))


BACKOFF = ("Always", "backoff")  # key of the pod whose runs last 1 s, to time the back-off


@pytest.fixture(scope="module")
def matrix(pod_server, papi, pkubectl):
    """Creates the six pods of the matrix and a crash-looping pod whose runs last 1 s, then
    polls them (≤ 60 s) until every one shows its outcome and the latter ran 4 times."""
    ns = f"matrix-{uuid.uuid4().hex[:6]}"
    papi.create_namespace(ns)
    names = {}
    docs = []
    for pol in POLICIES:
        for code in CODES:
            name = f"{pol.lower()}-exit{code}"
            names[(pol, code)] = name
            docs.append(pod(name, sh("main", f"echo ran; exit {code}"), restartPolicy=pol))
    names[BACKOFF] = "backoff"
    docs.append(pod("backoff", sh("main", "echo ran; sleep 1; exit 1")))
    pu.create(pkubectl, ns, docs)
    obs = {k: Observed() for k in names}
    start = time.monotonic()

    def done() -> bool:
        for (pol, code), o in obs.items():
            if not o.last:
                return False
            if (pol, code) == BACKOFF:
                if len(o.runs) < 4:
                    return False
                continue
            restarting = pol == "Always" or (pol == "OnFailure" and code == 1)
            if restarting and o.max_restarts < 2:
                return False
            if not restarting and pu.phase(o.last) not in ("Succeeded", "Failed"):
                return False
        return True

    while time.monotonic() - start < 60:
        for key, name in names.items():
            p = pu.get_pod(papi, ns, name)
            if p:
                obs[key].see(p)
        if done():
            break
        time.sleep(0.1)
    return ns, names, obs


EXPECT = {
    # (policy, exit code): (phase, restarts?, lastState/state reason)
    ("Always", 0): ("Running", True, "Completed"),
    ("Always", 1): ("Running", True, "Error"),
    ("OnFailure", 0): ("Succeeded", False, "Completed"),
    ("OnFailure", 1): ("Running", True, "Error"),
    ("Never", 0): ("Succeeded", False, "Completed"),
    ("Never", 1): ("Failed", False, "Error"),
}


@pytest.mark.parametrize("policy,code", list(EXPECT))
def test_restart_policy_matrix(matrix, papi, pkubectl, policy, code):
    ns, names, obs = matrix
    o = obs[(policy, code)]
    name = names[(policy, code)]
    want_phase, restarts, reason = EXPECT[(policy, code)]
    assert o.last, f"pod {name} never seen"
    st = pu.cstatus(o.last, "main")
    ctx = pu.describe(papi, ns, name)
    assert pu.phase(o.last) == want_phase, ctx
    if restarts:
        assert st["restartCount"] >= 2, ctx
        term = st["lastState"]["terminated"]
        assert term["exitCode"] == code and term["reason"] == reason, ctx
        assert term.get("startedAt") and term.get("finishedAt"), term
        # Between restarts the container waits in CrashLoopBackOff, as kubectl shows.
        assert "CrashLoopBackOff" in o.waiting, (o.waiting, ctx)
        # A restarting pod never leaves Running (after its first start).
        first = o.phases.index("Running")
        assert set(o.phases[first:]) == {"Running"}, o.phases
    else:
        assert st["restartCount"] == 0 and o.max_restarts == 0, ctx
        term = st["state"]["terminated"]
        assert term["exitCode"] == code and term["reason"] == reason, ctx
        assert pu.condition(o.last, "Ready") == "False"
    assert pu.logs(pkubectl, ns, name) == "ran\n"


def test_crash_backoff_intervals(matrix):
    """kubelet's back-off between runs of a crashing container: the first restart at
    once, then 10 s, then 20 s (each run lasts 1 s; ± 2 s)."""
    _, _, obs = matrix
    starts = sorted(obs[BACKOFF].runs.values())
    assert len(starts) >= 4, f"only {len(starts)} runs seen"
    gaps = [round(b - a - 1, 1) for a, b in zip(starts, starts[1:4])]
    assert 0 <= gaps[0] <= 2.5, f"back-off before restarts 1, 2, 3: {gaps} (want ~0, 10, 20)"
    assert 8 <= gaps[1] <= 12.5, f"back-off before restarts 1, 2, 3: {gaps} (want ~0, 10, 20)"
    assert 18 <= gaps[2] <= 22.5, f"back-off before restarts 1, 2, 3: {gaps} (want ~0, 10, 20)"


def test_restart_count_in_crash_loop_back_off(matrix):
    """kubelet's restartCount is the number of restarts that happened: while waiting in
    CrashLoopBackOff after n runs, it is n - 1 (`kubectl get` shows CrashLoopBackOff, 1
    after two runs)."""
    _, _, obs = matrix
    seen = sorted(set(obs[BACKOFF].backoff_counts))
    assert seen, "never seen in CrashLoopBackOff"
    wrong = [(rc, runs) for rc, runs in seen if rc != runs - 1]
    assert not wrong, f"(restartCount, runs so far) in CrashLoopBackOff: {seen}"


# --- termination --------------------------------------------------------------------------

TRAPS_TERM = 'trap "echo got TERM; exit 0" TERM; echo ready; while true; do sleep 0.2; done'
IGNORES_TERM = 'trap "" TERM; echo ready; while true; do sleep 0.2; done'


def timed_delete(kubectl, ns: str, name: str, *flags: str) -> float:
    t = time.monotonic()
    kubectl("delete", "pod", name, "-n", ns, "--timeout=90s", *flags, timeout=100)
    return time.monotonic() - t


def test_sigterm_trapping_container_exits_fast_on_delete(papi, pkubectl, pns):
    pu.create(pkubectl, pns, pod("traps", sh("main", TRAPS_TERM), terminationGracePeriodSeconds=3))
    pu.wait_running(papi, pns, "traps")
    pu.wait_logs(pkubectl, pns, "traps", lambda t: "ready" in t)
    follow = pkubectl.popen("logs", "-f", "-n", pns, "traps")
    follow.wait_for(lambda l: l == "ready")
    took = timed_delete(pkubectl, pns, "traps")
    assert took < 2.0, f"delete of a pod exiting on SIGTERM took {took:.2f}s"
    # The container ran its handler: the followed log has its last words, then ends.
    follow.wait_for(lambda l: l == "got TERM", timeout=10)
    assert follow.proc.wait(timeout=10) is not None


def test_sigterm_ignoring_container_killed_at_grace_period(papi, pkubectl, pns):
    marker = f"ignores-{uuid.uuid4().hex[:8]}"
    pu.create(pkubectl, pns, pod("ignores", sh("main", IGNORES_TERM, marker), terminationGracePeriodSeconds=3))
    pu.wait_running(papi, pns, "ignores")
    pu.wait_logs(pkubectl, pns, "ignores", lambda t: "ready" in t)
    assert pu.pids_with_arg(marker), "container process not found on the host"
    took = timed_delete(pkubectl, pns, "ignores")
    assert 2.0 <= took <= 4.5, f"grace period 3s, but the delete took {took:.2f}s"
    assert not pu.pids_with_arg(marker), "the container's process survived its pod"


def test_delete_options_grace_period_overrides_the_pods(papi, pkubectl, pns):
    pu.create(pkubectl, pns, pod("override", sh("main", IGNORES_TERM), terminationGracePeriodSeconds=30))
    pu.wait_running(papi, pns, "override")
    pu.wait_logs(pkubectl, pns, "override", lambda t: "ready" in t)
    took = timed_delete(pkubectl, pns, "override", "--grace-period=1")
    assert took <= 3.5, f"--grace-period=1 but the delete took {took:.2f}s"


def test_force_delete(papi, pkubectl, pns):
    marker = f"forced-{uuid.uuid4().hex[:8]}"
    pu.create(pkubectl, pns, pod("forced", sh("main", IGNORES_TERM, marker), terminationGracePeriodSeconds=30))
    pu.wait_running(papi, pns, "forced")
    assert pu.wait_pids_with_arg(marker), "container process not found on the host"
    t = time.monotonic()
    p = pkubectl.run("delete", "pod", "forced", "-n", pns, "--grace-period=0", "--force")
    took = time.monotonic() - t
    assert p.returncode == 0 and "force deleted" in p.stdout, p
    assert "Immediate deletion does not wait" in p.stderr, p.stderr
    assert took < 3, f"force delete took {took:.2f}s"
    assert pu.get_pod(papi, pns, "forced") is None
    # The node still kills the container, promptly.
    deadline = time.monotonic() + 10
    while pu.pids_with_arg(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pu.pids_with_arg(marker), "the force-deleted pod's process still runs after 10s"


def test_active_deadline_seconds(papi, pkubectl, pns):
    pu.create(pkubectl, pns, pod("deadline", sh("main", "exec sleep 3600"), activeDeadlineSeconds=2))
    p = pu.wait_phase(papi, pns, "deadline", "Failed", timeout=30)
    assert p["status"].get("reason") == "DeadlineExceeded", p["status"]


def test_termination_messages(papi, pkubectl, pns):
    pu.create(
        pkubectl, pns,
        pod(
            "lastwords",
            sh("file", "echo -n bye from file > /dev/termination-log; exit 3"),
            sh("fallback", "echo noise; echo last words; exit 4", terminationMessagePolicy="FallbackToLogsOnError"),
            sh("custom", "echo -n custom path > /tmp/msg; exit 0", terminationMessagePath="/tmp/msg"),
            restartPolicy="Never",
        ),
    )  # fmt: skip
    p = pu.wait_phase(papi, pns, "lastwords", ("Failed", "Succeeded"))
    t = {c: pu.cstatus(p, c)["state"]["terminated"] for c in ("file", "fallback", "custom")}
    assert t["file"]["exitCode"] == 3 and t["file"].get("message") == "bye from file", t["file"]
    assert t["fallback"]["exitCode"] == 4 and (t["fallback"].get("message") or "").strip() == "noise\nlast words", t
    assert t["custom"].get("message") == "custom path", t["custom"]


# --- logs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logpod(pod_server, papi, pkubectl):
    ns = f"logs-{uuid.uuid4().hex[:6]}"
    papi.create_namespace(ns)
    pu.create(
        pkubectl, ns,
        pod(
            "talker",
            # stdout and stderr are two pipes: a pause orders the stderr line after the rest.
            sh("a", "for i in 1 2 3 4 5; do echo line-$i; done; sleep 0.5; echo err-line >&2; exec sleep 3600"),
            sh("b", "echo b-only; exec sleep 3600"),
        ),
    )  # fmt: skip
    pu.wait_running(papi, ns, "talker")
    pu.wait_logs(pkubectl, ns, "talker", lambda t: "err-line" in t, "-c", "a")
    return ns


def test_logs_by_container(pkubectl, logpod):
    assert pu.logs(pkubectl, logpod, "talker", "-c", "a") == "line-1\nline-2\nline-3\nline-4\nline-5\nerr-line\n"
    assert pu.logs(pkubectl, logpod, "talker", "-c", "b") == "b-only\n"
    p = pkubectl.fails("logs", "-n", logpod, "talker", "-c", "nosuch")
    assert "nosuch" in p.stderr, p.stderr


def test_logs_tail_and_limit_bytes(pkubectl, logpod):
    assert pu.logs(pkubectl, logpod, "talker", "-c", "a", "--tail=2") == "line-5\nerr-line\n"
    assert pu.logs(pkubectl, logpod, "talker", "-c", "a", "--tail=0") == ""
    assert pu.logs(pkubectl, logpod, "talker", "-c", "a", "--limit-bytes=7") == "line-1\n"


def parse_ts(s: str) -> datetime:
    """RFC 3339 with up to nanoseconds (Python parses microseconds)."""
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", s)
    assert m, s
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + (m.group(2) or ".0")[:7] + tz)


def test_logs_timestamps(pkubectl, logpod):
    out = pu.logs(pkubectl, logpod, "talker", "-c", "a", "--timestamps")
    lines = out.splitlines()
    assert [l.split(" ", 1)[1] for l in lines] == ["line-1", "line-2", "line-3", "line-4", "line-5", "err-line"]
    stamps = [l.split(" ", 1)[0] for l in lines]
    for s in stamps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}(Z|[+-]\d\d:\d\d)", s), s
    parsed = [parse_ts(s) for s in stamps]
    assert parsed == sorted(parsed)
    assert abs(time.time() - parsed[0].timestamp()) < 600, stamps[0]


def test_logs_previous(papi, pkubectl, pns):
    pu.create(pkubectl, pns, pod("crashy", sh("main", "echo run-$(cut -d' ' -f1 /proc/uptime); sleep 1; exit 1")))
    pu.wait_pod(papi, pns, "crashy", lambda p: pu.cstatus(p, "main")["restartCount"] >= 1, "restarted", timeout=30)
    prev = pu.wait_logs(pkubectl, pns, "crashy", lambda t: t.startswith("run-"), "--previous")
    cur = pu.wait_logs(pkubectl, pns, "crashy", lambda t: t.startswith("run-") and t != prev)
    assert re.fullmatch(r"run-[\d.]+\n", prev) and re.fullmatch(r"run-[\d.]+\n", cur), (prev, cur)
    assert float(prev[4:]) < float(cur[4:])  # /proc/uptime at each run's start


def test_logs_previous_without_a_previous_container_fails(papi, pkubectl, pns):
    pu.create(pkubectl, pns, pod("fresh", sh("main", "echo hi; exec sleep 3600")))
    pu.wait_running(papi, pns, "fresh")
    p = pkubectl.fails("logs", "-n", pns, "fresh", "--previous")
    assert "previous terminated container" in p.stderr and "not found" in p.stderr, p.stderr


def test_logs_follow_ends_when_the_container_ends(papi, pkubectl, pns):
    ticks = sh("main", "for i in 1 2 3; do echo tick-$i; sleep 1; done")
    pu.create(pkubectl, pns, pod("ticker", ticks, restartPolicy="Never"))
    pu.wait_pod(papi, pns, "ticker", lambda p: pu.phase(p) in ("Running", "Succeeded"), "started")
    t = time.monotonic()
    out = pkubectl("logs", "-f", "-n", pns, "ticker", timeout=30)
    assert out == "tick-1\ntick-2\ntick-3\n", out
    assert time.monotonic() - t < 15
    p = pu.wait_phase(papi, pns, "ticker", "Succeeded")
    assert pu.cstatus(p, "main")["state"]["terminated"]["exitCode"] == 0
