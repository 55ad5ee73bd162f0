"""Server lifecycle: clean restarts on an existing data dir, SIGTERM/SIGINT, two servers
side by side, the same settings given through `--config` (k3s-style YAML), and the
default kubeconfig location."""

from __future__ import annotations

import signal

import yaml

from conftest import Server


def test_restart_is_fast_and_clean(spawn):
    """SIGTERM exits 0; an existing data dir is serving again well under a second later."""
    srv = spawn("restart-node")
    srv.start()
    api = srv.api()
    api.create_namespace("keep")
    api.create_pod("keep", "survivor")
    ca_before, token_before = api.kc.ca_pem, api.kc.token
    assert srv.stop() == 0, srv.log_tail()
    srv.start()
    # Generous for a debug build on a busy 2-core VM; the target is well under a second.
    assert srv.ready_after < 3, f"ready after {srv.ready_after:.2f}s on an existing data dir"
    api = srv.api()
    assert api.kc.ca_pem == ca_before, "the CA must persist across restarts"
    assert api.kc.token == token_before, "the admin credential must persist across restarts"
    assert api.get("/api/v1/namespaces/keep/pods/survivor").status == 200
    assert srv.stop(sig=signal.SIGINT) == 0, "SIGINT must also exit cleanly"


def test_two_servers_side_by_side(spawn):
    a, b = spawn("node-a"), spawn("node-b")
    a.start()
    b.start()
    api_a, api_b = a.api(), b.api()
    api_a.create_pod("default", "only-in-a")
    assert api_b.get("/api/v1/namespaces/default/pods/only-in-a").status == 404
    nodes_b = [n["metadata"]["name"] for n in api_b.get("/api/v1/nodes").json()["items"]]
    assert nodes_b == ["node-b"]
    # Each server trusts only its own credential.
    r = api_b.request("GET", "/api/v1/nodes", token=api_a.kc.token)
    assert r.status == 401, r
    # And each kubectl talks to its own server.
    assert a.kubectl()("get", "pods", "-o", "name").split() == ["pod/only-in-a"]
    assert b.kubectl().run("get", "pods").stderr.strip() == "No resources found in default namespace."


class ConfigServer(Server):
    """A server whose settings all come from a `--config` YAML file."""

    def flags(self) -> list[str]:
        cfg = self.workdir / "config.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "data-dir": str(self.data_dir),
                    "https-listen-port": self.port,
                    "bind-address": "127.0.0.1",
                    "write-kubeconfig": str(self.kubeconfig_path),
                    "node-name": self.node_name,
                    "cluster-domain": "cluster.local",
                }
            )
        )
        return ["--config", str(cfg)]


def test_config_file(spawn):
    srv = spawn("cfg-node", ConfigServer)
    srv.start()
    api = srv.api()
    assert api.port == srv.port
    nodes = [n["metadata"]["name"] for n in api.get("/api/v1/nodes").json()["items"]]
    assert nodes == ["cfg-node"]
    assert any(srv.data_dir.iterdir())


class DefaultKubeconfigServer(Server):
    """No --write-kubeconfig: the kubeconfig goes to <data-dir>/kubeconfig.yaml."""

    def flags(self) -> list[str]:
        f = super().flags()
        i = f.index("--write-kubeconfig")
        return f[:i] + f[i + 2 :]


def test_default_kubeconfig_location(spawn):
    srv = spawn("kc-node", DefaultKubeconfigServer)
    srv.start()
    assert srv.kubeconfig_path == srv.data_dir / "kubeconfig.yaml" and srv.kubeconfig_path.exists()
    assert str(srv.kubeconfig_path) in srv.log_path.read_text()
    mode = srv.kubeconfig_path.stat().st_mode & 0o777
    assert mode & 0o077 == 0, f"the admin kubeconfig is readable by others: {oct(mode)}"
