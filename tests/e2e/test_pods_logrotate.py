"""Container logs rotated by size, as kubelet's containerLogMaxSize/containerLogMaxFiles
(`--container-log-max-size`, `--container-log-max-files`): a server with a tiny limit
(2Ki, 3 files) runs containers that write a lot.

- The container's log directory holds at most 3 files per run (`0.log` and
  `0.log.<time>`), each at most the limit plus one record, each made of whole records.
- `kubectl logs` shows the latest lines (the current file, as kubelet does);
  `--previous` the latest lines of the run before.
- `kubectl logs -f` of a slow writer (one numbered line every 10 ms) goes on across many
  rotations without losing or repeating a line.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import images
import podutil as pu
from conftest import KUBECTL, Server, stop_pod_server

MAX_SIZE = 2048
MAX_FILES = 3
RECORD = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] .*\n$")


@pytest.fixture(scope="module")
def rot_server(tmp_path_factory, registry):
    """One server with the tiny limits for the module (its log goes into failure reports
    through the `rot` fixture)."""
    workdir = Path(tempfile.mkdtemp(prefix="podium-logrotate-", dir=tmp_path_factory.getbasetemp()))
    srv = Server(
        workdir,
        node_name="logrotate-node",
        registries_yaml=images.registries_yaml(registry),
        extra_args=["--container-log-max-size", "2Ki", "--container-log-max-files", str(MAX_FILES)],
    )  # fmt: skip
    srv.start()
    yield srv
    stop_pod_server(srv)


@pytest.fixture
def rot(rot_server: Server, request):
    request.node.podium_servers = [rot_server]
    ns = f"rot-{os.urandom(4).hex()}"
    rot_server.api().create_namespace(ns)
    return rot_server, ns


def log_dir(srv: Server, ns: str, p: dict) -> Path:
    m = p["metadata"]
    return srv.data_dir / "pods" / f"{ns}_{m['name']}_{m['uid']}" / "main"


def check_files(d: Path, run: int = 0) -> list[Path]:
    """The run's files: at most MAX_FILES, each within the limit (+ one record), of whole
    records. Returns them oldest first (current last)."""
    cur = d / f"{run}.log"
    rotated = sorted(p for p in d.iterdir() if p.name.startswith(f"{run}.log."))
    files = rotated + [cur]
    assert cur.exists() and len(files) <= MAX_FILES, sorted(p.name for p in d.iterdir())
    for f in files:
        assert re.fullmatch(rf"{run}\.log(\.\d{{8}}-\d{{6}}\.\d{{9}})?", f.name), f.name
        data = f.read_bytes()
        lines = data.splitlines(keepends=True)
        assert all(RECORD.match(l) for l in lines), (f.name, [l for l in lines if not RECORD.match(l)][:3])
        longest = max((len(l) for l in lines), default=0)
        assert len(data) <= MAX_SIZE + longest, (f.name, len(data))
    return files


def numbers(text: str, prefix: str) -> list[int]:
    return [int(l[len(prefix):]) for l in text.splitlines() if l.startswith(prefix)]


def test_log_dir_keeps_max_files_and_logs_shows_the_latest_lines(rot):
    srv, ns = rot
    api, kubectl = srv.api(), srv.kubectl()
    pu.create(kubectl, ns, pu.shell_pod("bulk", "seq 1 3000 | sed 's/^/line /'; echo end"))
    p = pu.wait_phase(api, ns, "bulk", "Succeeded")
    assert pu.cstatus(p, "main")["state"]["terminated"]["exitCode"] == 0
    files = check_files(log_dir(srv, ns, p))
    assert len(files) == MAX_FILES, files
    out = pu.logs(kubectl, ns, "bulk")
    lines = out.splitlines()
    assert lines[-1] == "end", out[-300:]
    got = numbers(out, "line ")
    # The newest lines, in order, none missing: the current file's.
    assert got and got[-1] == 3000 and got == list(range(got[0], 3001)), got[:5]
    assert len(out) < MAX_SIZE
    assert pu.logs(kubectl, ns, "bulk", "--tail", "3") == "line 2999\nline 3000\nend\n"
    # Everything kept on disk is the newest part of the output, in order.
    kept = b"".join(f.read_bytes() for f in files)
    kept_numbers = [int(m) for m in re.findall(rb" stdout F line (\d+)\n", kept)]
    assert kept_numbers == list(range(kept_numbers[0], 3001)), kept_numbers[:5]
    assert kept_numbers[0] < got[0]
    # Deleting the pod removes its logs, rotated files included (a finished pod's object
    # goes at once; the agent cleans up right after).
    kubectl("delete", "pod", "bulk", "-n", ns, "--timeout=60s")
    pod_logs = log_dir(srv, ns, p).parent
    deadline = time.monotonic() + 20
    while pod_logs.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pod_logs.exists(), list(pod_logs.rglob("*"))


def test_previous_shows_the_latest_lines_of_the_run_before(rot):
    srv, ns = rot
    api, kubectl = srv.api(), srv.kubectl()
    pu.create(kubectl, ns, pu.shell_pod("again", "seq 1 1500 | sed 's/^/line /'; echo end-of-run; exit 1", policy="OnFailure"))
    p = pu.wait_pod(api, ns, "again", lambda x: pu.cstatus(x, "main")["restartCount"] >= 1, "restarted", timeout=60)
    prev = pu.logs(kubectl, ns, "again", "--previous")
    assert prev.endswith("line 1500\nend-of-run\n"), prev[-200:]
    got = numbers(prev, "line ")
    assert got == list(range(got[0], 1501)) and got[0] > 1, got[:5]
    d = log_dir(srv, ns, p)
    check_files(d, run=0)
    assert len(list(d.glob("0.log*"))) == MAX_FILES


def test_follow_across_rotations_loses_and_repeats_nothing(rot):
    srv, ns = rot
    api, kubectl = srv.api(), srv.kubectl()
    total = 500
    # One numbered line every 10 ms (~46-byte records: a rotation every ~45 lines).
    script = f"i=0; while [ $i -lt {total} ]; do i=$((i+1)); echo \"n $i\"; usleep 10000; done"
    pu.create(kubectl, ns, pu.shell_pod("slow", script))
    pu.wait_pod(api, ns, "slow", lambda x: pu.phase(x) in ("Running", "Succeeded"), "started")
    proc = subprocess.Popen(
        [KUBECTL, "logs", "-f", "-n", ns, "slow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kubectl.env, cwd=kubectl.cwd,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"logs -f did not end with the container; got {len(out.splitlines())} lines\n{err}")
    assert proc.returncode == 0, err
    got = numbers(out, "n ")
    assert len(got) == len(out.splitlines()), out[:500]
    assert got, "nothing followed"
    first = got[0]
    dups = sorted({n for n in got if got.count(n) > 1})
    gaps = sorted(set(range(first, total + 1)) - set(got))
    assert not dups and not gaps, f"first {first}, {len(got)} lines; repeated {dups[:10]}, missing {gaps[:10]}"
    assert got == list(range(first, total + 1))
    p = pu.wait_phase(api, ns, "slow", "Succeeded")
    files = check_files(log_dir(srv, ns, p))
    # It followed through more than the files still on disk hold: many rotations.
    on_disk = sum(len(f.read_bytes().splitlines()) for f in files)
    print(f"followed {len(got)} lines from n {first}; {on_disk} lines in {len(files)} files on disk")
    assert total - first + 1 > on_disk * 2, (first, on_disk)
