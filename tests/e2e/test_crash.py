"""Crash durability: `kill -9` the server during 1000 concurrent pod creates; after a
restart on the same data dir every acknowledged (201) create is present, and the
resourceVersions of new writes are greater than every acknowledged one."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time

from conftest import pod_manifest

TOTAL = 1000
WORKERS = 50
# Kill once this many creates were acknowledged (so some are in flight at the kill).
KILL_AFTER = 300


def test_kill9_during_concurrent_creates(spawn):
    # A store durability test: no node agent, so the 1000 pods stay unbound.
    srv = spawn("crash-node", extra_args=["--disable-agent"])
    srv.start()
    api = srv.api()
    ns = "crash"
    api.create_namespace(ns)
    token = api.kc.token
    body_for = lambda i: json.dumps(pod_manifest(f"crash-{i:04d}")).encode()  # noqa: E731

    acked: dict[str, str] = {}  # name -> resourceVersion from the 201
    lock = threading.Lock()
    next_index = iter(range(TOTAL))
    kill_now = threading.Event()
    other_status: list[tuple[int, bytes]] = []

    def worker() -> None:
        conn: http.client.HTTPSConnection | None = None
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            name = f"crash-{i:04d}"
            try:
                if conn is None:
                    conn = api.connection(timeout=20)
                conn.request(
                    "POST",
                    f"/api/v1/namespaces/{ns}/pods",
                    body=body_for(i),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                    },
                )
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException, ssl.SSLError):
                # The server is gone (or going): this create was never acknowledged.
                if conn is not None:
                    conn.close()
                conn = None
                if kill_now.is_set():
                    continue
                time.sleep(0.05)
                continue
            if resp.status == 201:
                rv = json.loads(data)["metadata"]["resourceVersion"]
                with lock:
                    acked[name] = rv
                    if len(acked) >= KILL_AFTER:
                        kill_now.set()
            else:
                with lock:
                    other_status.append((resp.status, data[:300]))
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    assert kill_now.wait(timeout=120), f"only {len(acked)} creates acknowledged in 120 s; others: {other_status[:5]}"
    srv.kill9()
    killed_at = time.monotonic() - t0
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a client thread hung after the kill"

    with lock:
        acked_snapshot = dict(acked)
    assert not other_status, f"unexpected non-201 answers: {other_status[:5]}"
    assert len(acked_snapshot) >= KILL_AFTER
    rvs = [int(v) for v in acked_snapshot.values()]
    assert len(set(rvs)) == len(rvs), "two acknowledged creates share a resourceVersion"
    max_acked = max(rvs)

    srv.start()
    print(f"killed after {killed_at:.2f}s with {len(acked_snapshot)} acknowledged; restart ready in {srv.ready_after:.2f}s")

    api = srv.api()
    lst = api.get(f"/api/v1/namespaces/{ns}/pods", timeout=60)
    assert lst.status == 200, lst
    doc = lst.json()
    present = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in doc["items"]}
    missing = sorted(set(acked_snapshot) - set(present))
    assert not missing, f"{len(missing)} acknowledged creates lost after kill -9: {missing[:10]}"
    for name, rv in acked_snapshot.items():
        assert int(present[name]) >= int(rv), f"{name}: resourceVersion went back from {rv} to {present[name]}"
    assert int(doc["metadata"]["resourceVersion"]) >= max_acked

    # New writes after the restart get resourceVersions above every acknowledged one.
    created = api.create_pod(ns, "after-restart")
    assert int(created["metadata"]["resourceVersion"]) > max_acked
    # A watch from the last acknowledged resourceVersion (made before the crash) resumes.
    conn = api.connection(timeout=20)
    try:
        conn.request(
            "GET",
            f"/api/v1/namespaces/{ns}/pods?watch=1&resourceVersion={max_acked}&timeoutSeconds=5",
            headers={"Authorization": f"Bearer {token}"},
        )
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        evs = []
        while not any(e["object"]["metadata"].get("name") == "after-restart" for e in evs):
            line = resp.readline()
            assert line, f"watch from {max_acked} ended without the new pod; got {[e['type'] for e in evs]}"
            evs.append(json.loads(line))
        assert all(int(e["object"]["metadata"]["resourceVersion"]) > max_acked for e in evs), evs
    finally:
        conn.close()

    first_acked = min(acked_snapshot)
    r = api.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/{first_acked}",
        {"metadata": {"labels": {"touched": "yes"}}},
        content_type="application/merge-patch+json",
    )
    assert r.status == 200, r
    assert int(r.json()["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    # A second clean restart keeps everything too.
    assert srv.stop() is not None
    srv.start()
    again = srv.api().get(f"/api/v1/namespaces/{ns}/pods", timeout=60).json()
    names = {p["metadata"]["name"] for p in again["items"]}
    assert set(acked_snapshot) <= names and "after-restart" in names

