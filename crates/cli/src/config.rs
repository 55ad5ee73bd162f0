//! Server flags (k3s-style names) and the `--config FILE` YAML file that may hold the same
//! keys. File values come first on the command line, so flags given explicitly win.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use podium_runtime::Backend;

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where the store, certificates, tokens and kubeconfig live.
    #[arg(long, default_value = "/var/lib/podium")]
    pub data_dir: PathBuf,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,
    /// Where to write the admin kubeconfig (default: <data-dir>/kubeconfig.yaml).
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// This node's name (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The pod network.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// The service network; its first address is the `kubernetes` service.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// The cluster DNS service address (default: the 10th address of the service network).
    #[arg(long)]
    pub cluster_dns: Option<String>,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Store location: empty for the embedded SQLite store in the data dir, or
    /// `sqlite:///path/to/file.db`.
    #[arg(long, default_value = "")]
    pub datastore_endpoint: String,
    /// The join token node agents authenticate with (generated and stored if absent).
    #[arg(long, env = "PODIUM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Do not run this machine's node agent.
    #[arg(long)]
    pub disable_agent: bool,
    /// The most pods this node runs (kubelet's `--max-pods`): the node's `pods` capacity
    /// and allocatable, which admission checks.
    #[arg(long, default_value_t = 110, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pods: u32,
    /// The OCI runtime that runs containers: `builtin` (youki's libcontainer inside each
    /// container's shim), `runc` (found on PATH) or the absolute path of a runc-compatible
    /// binary.
    #[arg(long, default_value = "builtin", value_parser = container_runtime)]
    pub container_runtime: Backend,
    /// Rotate a container's log when it would grow past this size (a quantity such as
    /// `10Mi`; kubelet's containerLogMaxSize).
    #[arg(long, default_value = "10Mi", value_parser = log_max_size)]
    pub container_log_max_size: u64,
    /// Log files kept per container, the current one included (kubelet's
    /// containerLogMaxFiles; at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..))]
    pub container_log_max_files: u32,
    /// How often the node agent brings configMap, secret, downwardAPI and projected
    /// volume contents up to date (kubelet's `--sync-frequency`; a Go duration such as
    /// `1m`, `30s`, `1m30s`).
    #[arg(long, default_value = "1m", value_parser = go_duration)]
    pub sync_frequency: std::time::Duration,
    /// The most processes (pids) a pod may run, set on its pod cgroup (kubelet's
    /// `--pod-max-pids`; -1, the default, is unlimited).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..))]
    pub pod_max_pids: i64,
    /// A YAML file with any of these flags as keys (`data-dir: /x`).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `--container-runtime`: `builtin`, `runc` (looked up on PATH) or an absolute path.
fn container_runtime(value: &str) -> Result<Backend, String> {
    resolve_container_runtime(value, std::env::var_os("PATH").as_deref())
}

/// [`container_runtime`] with the PATH to search given.
fn resolve_container_runtime(
    value: &str,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<Backend, String> {
    let is_executable = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    match value {
        "builtin" => Ok(Backend::Builtin),
        "runc" => path_var
            .into_iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("runc"))
            .find(|p| p.is_absolute() && is_executable(p))
            .map(Backend::External)
            .ok_or_else(|| "runc was not found on PATH (install Debian's runc)".to_string()),
        v if v.starts_with('/') => {
            let p = PathBuf::from(v);
            if is_executable(&p) {
                Ok(Backend::External(p))
            } else {
                Err(format!("{v} is not an executable file"))
            }
        }
        _ => Err(
            "expected `builtin`, `runc` or the absolute path of a runc-compatible binary"
                .to_string(),
        ),
    }
}

/// A positive Go duration as kubelet's flags take them: decimal numbers each followed by
/// a unit (`ms`, `s`, `m`, `h`), e.g. `1m30s`, `500ms`.
fn go_duration(value: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{value:?} is not a duration such as 1m, 30s or 1m30s");
    let mut total = 0f64;
    let mut rest = value.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * secs;
        rest = &rest[unit_len..];
    }
    if total > 0.0 && total.is_finite() {
        Ok(std::time::Duration::from_secs_f64(total))
    } else {
        Err(format!("{value:?} must be a positive duration"))
    }
}

/// `--container-log-max-size`: a positive Kubernetes quantity, in bytes.
fn log_max_size(value: &str) -> Result<u64, String> {
    let q = podium_api::quantity::Quantity::parse(value).map_err(|e| e.to_string())?;
    match u64::try_from(q.value()) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a positive size such as 10Mi".to_string()),
    }
}

/// Finds `--config FILE` (or `--config=FILE`) after the `server` subcommand and inserts
/// the file's keys as flags right after the subcommand, so explicit flags override them.
pub fn expand_config_file(args: Vec<String>) -> anyhow::Result<Vec<String>> {
    let Some(sub_at) = args.iter().position(|a| a == "server") else {
        return Ok(args);
    };
    let mut path = None;
    for (i, a) in args.iter().enumerate().skip(sub_at + 1) {
        if a == "--config" {
            path = args.get(i + 1).cloned();
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.to_string());
        }
    }
    let Some(path) = path else {
        return Ok(args);
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading config file {path}"))?;
    let flags = config_flags(&text).with_context(|| format!("parsing config file {path}"))?;
    let mut out: Vec<String> = args[..=sub_at].to_vec();
    out.extend(flags);
    out.extend(args[sub_at + 1..].iter().cloned());
    Ok(out)
}

const KNOWN_KEYS: &[&str] = &[
    "data-dir",
    "https-listen-port",
    "bind-address",
    "write-kubeconfig",
    "node-name",
    "cluster-cidr",
    "service-cidr",
    "cluster-dns",
    "cluster-domain",
    "datastore-endpoint",
    "token",
    "disable-agent",
    "max-pods",
    "container-runtime",
    "container-log-max-size",
    "container-log-max-files",
    "sync-frequency",
    "pod-max-pids",
];

/// Turns the YAML mapping into flags; unknown keys are an error, never ignored.
pub fn config_flags(text: &str) -> anyhow::Result<Vec<String>> {
    let doc: serde_json::Value = serde_norway::from_str(text)?;
    let Some(map) = doc.as_object() else {
        if doc.is_null() {
            return Ok(Vec::new());
        }
        bail!("the config file must be a YAML mapping of flag names to values");
    };
    let mut flags = Vec::new();
    for (key, value) in map {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            bail!("unknown key {key:?} (known: {})", KNOWN_KEYS.join(", "));
        }
        match value {
            serde_json::Value::Bool(true) => flags.push(format!("--{key}")),
            serde_json::Value::Bool(false) | serde_json::Value::Null => {}
            serde_json::Value::String(s) => flags.push(format!("--{key}={s}")),
            serde_json::Value::Number(n) => flags.push(format!("--{key}={n}")),
            _ => bail!("key {key:?}: expected a string, number or boolean"),
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_become_flags() {
        let f =
            config_flags("data-dir: /x\nhttps-listen-port: 7443\ndisable-agent: true\n").unwrap();
        assert_eq!(
            f,
            vec![
                "--data-dir=/x",
                "--https-listen-port=7443",
                "--disable-agent"
            ]
        );
        assert!(config_flags("bogus: 1").is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn max_pods_defaults_to_kubelets_110_and_can_be_raised() {
        use clap::Parser as _;
        assert_eq!(Cli::parse_from(["podium"]).server.max_pods, 110);
        let raised = Cli::parse_from(["podium", "--max-pods", "300"]);
        assert_eq!(raised.server.max_pods, 300);
        assert!(Cli::try_parse_from(["podium", "--max-pods", "0"]).is_err());
        assert_eq!(
            config_flags("max-pods: 250\n").unwrap(),
            vec!["--max-pods=250"]
        );
    }

    /// The message of a command line that must not parse.
    fn parse_err(args: &[&str]) -> String {
        use clap::Parser as _;
        match Cli::try_parse_from(args) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn container_runtime_is_builtin_runc_on_path_or_an_absolute_path() {
        use clap::Parser as _;
        assert_eq!(
            Cli::parse_from(["podium"]).server.container_runtime,
            Backend::Builtin
        );
        struct TempDir(PathBuf);
        impl Drop for TempDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        impl TempDir {
            fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        let d = TempDir(
            std::env::temp_dir().join(format!("podium-config-test-{}", std::process::id())),
        );
        let bin = d.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let runc = bin.join("runc");
        std::fs::write(&runc, "#!/bin/sh\n").unwrap();
        let not_exec = d.path().join("plain");
        std::fs::write(&not_exec, "").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = std::env::join_paths([d.path().join("none"), bin.clone()]).unwrap();
        assert_eq!(
            resolve_container_runtime("runc", Some(&path)),
            Ok(Backend::External(runc.clone()))
        );
        assert!(
            resolve_container_runtime("runc", Some(d.path().as_os_str()))
                .unwrap_err()
                .contains("not found on PATH")
        );
        assert!(resolve_container_runtime("runc", None).is_err());
        let abs = runc.display().to_string();
        assert_eq!(
            resolve_container_runtime(&abs, None),
            Ok(Backend::External(runc.clone()))
        );
        let plain = not_exec.display().to_string();
        assert!(resolve_container_runtime(&plain, None)
            .unwrap_err()
            .contains("not an executable"));
        for bad in ["crun", "bin/runc", "", "libcontainer"] {
            assert!(
                resolve_container_runtime(bad, Some(&path)).is_err(),
                "{bad}"
            );
        }
        // The error names the flag, from the command line and from a config file alike.
        let err = parse_err(&["podium", "--container-runtime", "crun"]);
        assert!(err.contains("--container-runtime"), "{err}");
        assert_eq!(
            config_flags(&format!("container-runtime: {abs}\n")).unwrap(),
            vec![format!("--container-runtime={abs}")]
        );
        let from_file = parse_err(&["podium", "--container-runtime=/nonexistent/runc"]);
        assert!(from_file.contains("--container-runtime"), "{from_file}");
    }

    #[test]
    fn container_log_rotation_flags_default_to_kubelets() {
        use clap::Parser as _;
        let d = Cli::parse_from(["podium"]).server;
        assert_eq!(d.container_log_max_size, 10 << 20);
        assert_eq!(d.container_log_max_files, 5);
        let s = Cli::parse_from([
            "podium",
            "--container-log-max-size",
            "2Ki",
            "--container-log-max-files",
            "3",
        ])
        .server;
        assert_eq!(
            (s.container_log_max_size, s.container_log_max_files),
            (2048, 3)
        );
        assert_eq!(
            Cli::parse_from(["podium", "--container-log-max-size=1M"])
                .server
                .container_log_max_size,
            1_000_000
        );
        for bad in ["0", "-1Mi", "ten", "10Q"] {
            let err = parse_err(&["podium", &format!("--container-log-max-size={bad}")]);
            assert!(err.contains("--container-log-max-size"), "{bad}: {err}");
        }
        let err = parse_err(&["podium", "--container-log-max-files", "1"]);
        assert!(err.contains("--container-log-max-files"), "{err}");
        assert_eq!(
            config_flags("container-log-max-size: 20Mi\ncontainer-log-max-files: 2\n").unwrap(),
            vec![
                "--container-log-max-size=20Mi",
                "--container-log-max-files=2"
            ]
        );
    }

    #[test]
    fn sync_frequency_takes_go_durations() {
        use clap::Parser as _;
        use std::time::Duration;
        assert_eq!(
            Cli::parse_from(["podium"]).server.sync_frequency,
            Duration::from_secs(60)
        );
        for (v, want) in [
            ("2s", Duration::from_secs(2)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
        ] {
            assert_eq!(go_duration(v), Ok(want), "{v}");
        }
        for v in ["", "10", "s", "5x", "0s", "1m-2s"] {
            assert!(go_duration(v).is_err(), "{v}");
        }
        assert!(Cli::try_parse_from(["podium", "--sync-frequency", "soon"]).is_err());
    }

    #[test]
    fn pod_max_pids_is_unlimited_by_default() {
        use clap::Parser as _;
        assert_eq!(Cli::parse_from(["podium"]).server.pod_max_pids, -1);
        assert_eq!(
            Cli::parse_from(["podium", "--pod-max-pids", "1024"])
                .server
                .pod_max_pids,
            1024
        );
        assert!(Cli::try_parse_from(["podium", "--pod-max-pids", "-2"]).is_err());
    }
}
