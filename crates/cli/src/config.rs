//! Server flags (k3s-style names) and the `--config FILE` YAML file that may hold the same
//! keys. File values come first on the command line, so flags given explicitly win.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

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
    /// A YAML file with any of these flags as keys (`data-dir: /x`).
    #[arg(long)]
    pub config: Option<PathBuf>,
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
}
