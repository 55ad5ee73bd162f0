//! Registry configuration in k3s's `registries.yaml` format (`<data-dir>/registries.yaml`):
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//!     rewrite:
//!       "^library/(.*)": "mirrored/$1"
//! configs:
//!   "registry.example.com:5000":
//!     auth: {username: u, password: p}      # or auth: <base64 u:p>, identitytoken
//!     tls: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, insecure_skip_verify: false}
//! ```
//!
//! Parsing is strict (unknown keys are errors, as typos in a security-relevant file
//! should be). [`RegistriesConfig::endpoints`] turns an image's registry host into the
//! ordered list of places to try: the mirror endpoints, then the registry itself (as k3s
//! and containerd do; `"*"` mirrors every registry). An endpoint without a scheme is
//! https, except on loopback hosts (127.0.0.0/8, ::1, localhost), which get plain http,
//! so a local test registry works without configuration. `http://` is honoured when
//! written explicitly in this file (that is "configured otherwise").

use crate::reference::DOCKER_HUB;
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// File name inside the data dir.
pub const REGISTRIES_FILE: &str = "registries.yaml";

/// Where Docker Hub's registry API really lives.
pub const DOCKER_HUB_ENDPOINT: &str = "https://registry-1.docker.io";

#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: mirror {host:?}: invalid endpoint {endpoint:?}: {reason}")]
    Endpoint {
        path: PathBuf,
        host: String,
        endpoint: String,
        reason: &'static str,
    },
    #[error("{path}: mirror {host:?}: invalid rewrite pattern {pattern:?}: {message}")]
    Rewrite {
        path: PathBuf,
        host: String,
        pattern: String,
        message: String,
    },
    #[error("{path}: configs {host:?}: auth: {reason}")]
    Auth {
        path: PathBuf,
        host: String,
        reason: &'static str,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regex → replacement, applied to the repository path (first match wins, in key
    /// order, as k3s does).
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub auth: Option<AuthConfig>,
    pub tls: Option<TlsConfig>,
}

/// Credentials for one host. Debug never shows secrets.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// base64 of `user:password`.
    #[serde(default)]
    pub auth: String,
    #[serde(default)]
    pub identitytoken: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("auth", &"<redacted>")
            .field("identitytoken", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to fetch an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]` as used in URLs and as the key into `configs`.
    pub host: String,
    /// Path prefix before `/v2` (k3s allows `https://mirror/some/prefix`); no trailing `/`.
    pub path_prefix: String,
    /// Repository path after any mirror rewrite.
    pub repository: String,
    /// False for a mirror, true for the image's own registry.
    pub is_upstream: bool,
}

impl Endpoint {
    /// `scheme://host[/prefix]/v2` — base of every API URL.
    pub fn base_url(&self) -> String {
        format!("{}://{}{}/v2", self.scheme, self.host, self.path_prefix)
    }
}

impl RegistriesConfig {
    /// Reads `<data_dir>/registries.yaml`; a missing file is an empty configuration.
    pub fn load(data_dir: &Path) -> Result<RegistriesConfig, RegistriesError> {
        let path = data_dir.join(REGISTRIES_FILE);
        match std::fs::read_to_string(&path) {
            Ok(s) => RegistriesConfig::parse(&s, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConfig::default()),
            Err(source) => Err(RegistriesError::Read { path, source }),
        }
    }

    /// Parses and validates the YAML text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<RegistriesConfig, RegistriesError> {
        let cfg: RegistriesConfig = if text.trim().is_empty() {
            RegistriesConfig::default()
        } else {
            serde_norway::from_str(text).map_err(|e| RegistriesError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        };
        for (host, m) in &cfg.mirrors {
            for ep in &m.endpoint {
                parse_endpoint(ep).map_err(|reason| RegistriesError::Endpoint {
                    path: path.to_path_buf(),
                    host: host.clone(),
                    endpoint: ep.clone(),
                    reason,
                })?;
            }
            for pattern in m.rewrite.keys() {
                regex::Regex::new(pattern).map_err(|e| RegistriesError::Rewrite {
                    path: path.to_path_buf(),
                    host: host.clone(),
                    pattern: pattern.clone(),
                    message: e.to_string(),
                })?;
            }
        }
        for (host, c) in &cfg.configs {
            if let Some(a) = &c.auth {
                a.basic().map_err(|reason| RegistriesError::Auth {
                    path: path.to_path_buf(),
                    host: host.clone(),
                    reason,
                })?;
            }
        }
        Ok(cfg)
    }

    /// The endpoints to try for `repository` on `registry`, in order: the mirrors
    /// configured for that host (or for `"*"`), then the registry itself.
    pub fn endpoints(&self, registry: &str, repository: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        if let Some(m) = mirror {
            let repo = rewrite(&m.rewrite, repository);
            for ep in &m.endpoint {
                if let Ok((scheme, host, path_prefix)) = parse_endpoint(ep) {
                    out.push(Endpoint {
                        scheme,
                        host,
                        path_prefix,
                        repository: repo.clone(),
                        is_upstream: false,
                    });
                }
            }
        }
        let (scheme, host, path_prefix) = if registry == DOCKER_HUB {
            (
                "https".to_string(),
                "registry-1.docker.io".to_string(),
                String::new(),
            )
        } else {
            parse_endpoint(registry)
                .unwrap_or_else(|_| ("https".to_string(), registry.to_string(), String::new()))
        };
        let upstream = Endpoint {
            scheme,
            host,
            path_prefix,
            repository: repository.to_string(),
            is_upstream: true,
        };
        if !out
            .iter()
            .any(|e| e.host == upstream.host && e.path_prefix == upstream.path_prefix)
        {
            out.push(upstream);
        }
        out
    }

    /// `configs` entry for an endpoint host (`host:port`, then `host`).
    pub fn host_config(&self, host: &str) -> Option<&HostConfig> {
        self.configs.get(host).or_else(|| {
            let (h, _) = split_host_port(host);
            self.configs.get(h)
        })
    }
}

impl AuthConfig {
    /// `(username, password)` from `auth` (base64 `user:pass`) or the explicit fields;
    /// `None` when only an identity token (or nothing) is configured.
    pub fn basic(&self) -> Result<Option<(String, String)>, &'static str> {
        if !self.auth.is_empty() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .map_err(|_| "\"auth\" is not valid base64")?;
            let s = String::from_utf8(raw).map_err(|_| "\"auth\" is not UTF-8")?;
            let (u, p) = s
                .split_once(':')
                .ok_or("\"auth\" must decode to \"username:password\"")?;
            return Ok(Some((u.to_string(), p.to_string())));
        }
        if self.username.is_empty() && self.password.is_empty() {
            return Ok(None);
        }
        Ok(Some((self.username.clone(), self.password.clone())))
    }
}

fn rewrite(rules: &BTreeMap<String, String>, repository: &str) -> String {
    for (pattern, replacement) in rules {
        if let Ok(re) = regex::Regex::new(pattern) {
            if re.is_match(repository) {
                return re.replace(repository, replacement.as_str()).into_owned();
            }
        }
    }
    repository.to_string()
}

/// `[scheme://]host[:port][/prefix]` → (scheme, host, prefix).
fn parse_endpoint(ep: &str) -> Result<(String, String, String), &'static str> {
    let (scheme, rest) = match ep.split_once("://") {
        Some(("http", r)) => (Some("http"), r),
        Some(("https", r)) => (Some("https"), r),
        Some(_) => return Err("scheme must be http or https"),
        None => (None, ep),
    };
    let (host, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let prefix = prefix.strip_suffix("/v2").unwrap_or(prefix);
    if host.is_empty()
        || host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || matches!(b, b'@' | b'?' | b'#'))
    {
        return Err("expected [http[s]://]host[:port][/path]");
    }
    let scheme = match scheme {
        Some(s) => s,
        None if is_loopback_host(host) => "http",
        None => "https",
    };
    Ok((scheme.to_string(), host.to_string(), prefix.to_string()))
}

/// `host:port` → (`host`, Some(`port`)); handles `[v6]:port`.
pub fn split_host_port(h: &str) -> (&str, Option<&str>) {
    if let Some(rest) = h.strip_prefix('[') {
        if let Some((v6, after)) = rest.split_once(']') {
            return (v6, after.strip_prefix(':'));
        }
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (h, None),
    }
}

/// 127.0.0.0/8, ::1 and `localhost` (with or without a port).
pub fn is_loopback_host(host_port: &str) -> bool {
    let (h, _) = split_host_port(host_port);
    h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RegistriesConfig, RegistriesError> {
        RegistriesConfig::parse(s, Path::new("registries.yaml"))
    }

    #[test]
    fn k3s_example_parses() {
        let c = parse(
            r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com/prefix/v2"
    rewrite:
      "^library/(.*)": "mirrored/$1"
configs:
  "mirror.example.com":
    auth:
      username: u
      password: p
    tls:
      ca_file: /etc/ca.pem
      insecure_skip_verify: true
  "other:5000":
    auth:
      auth: dTpw
"#,
        )
        .unwrap();
        let eps = c.endpoints("docker.io", "library/busybox");
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].base_url(), "http://127.0.0.1:5000/v2");
        assert_eq!(eps[0].repository, "mirrored/busybox");
        assert!(!eps[0].is_upstream);
        assert_eq!(eps[1].base_url(), "https://mirror.example.com/prefix/v2");
        assert_eq!(eps[2].base_url(), "https://registry-1.docker.io/v2");
        assert_eq!(eps[2].repository, "library/busybox");
        assert!(eps[2].is_upstream);
        let hc = c.host_config("mirror.example.com").unwrap();
        assert!(hc.tls.as_ref().unwrap().insecure_skip_verify);
        assert_eq!(
            hc.auth.as_ref().unwrap().basic().unwrap(),
            Some(("u".into(), "p".into()))
        );
        assert_eq!(
            c.host_config("other:5000")
                .unwrap()
                .auth
                .as_ref()
                .unwrap()
                .basic()
                .unwrap(),
            Some(("u".into(), "p".into()))
        );
        // Debug of the auth never shows the password.
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("dTpw") && !dbg.contains("\"p\""), "{dbg}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(parse("mirror:\n  docker.io: {endpoint: []}\n").is_err());
        assert!(parse("mirrors:\n  docker.io: {endpoints: [x]}\n").is_err());
        assert!(parse("configs:\n  h: {auth: {user: x}}\n").is_err());
        assert!(parse("configs:\n  h: {tls: {insecure: true}}\n").is_err());
        assert!(matches!(
            parse("mirrors:\n  docker.io: {endpoint: [\"ftp://x\"]}\n"),
            Err(RegistriesError::Endpoint { .. })
        ));
        assert!(matches!(
            parse("mirrors:\n  d: {endpoint: [x], rewrite: {\"(\": y}}\n"),
            Err(RegistriesError::Rewrite { .. })
        ));
        assert!(matches!(
            parse("configs:\n  h: {auth: {auth: \"!!!\"}}\n"),
            Err(RegistriesError::Auth { .. })
        ));
        assert!(parse("").unwrap().mirrors.is_empty());
    }

    #[test]
    fn loopback_gets_http_others_https() {
        let c = RegistriesConfig::default();
        for (reg, url) in [
            ("127.0.0.1:5000", "http://127.0.0.1:5000/v2"),
            ("127.1.2.3:80", "http://127.1.2.3:80/v2"),
            ("localhost:5000", "http://localhost:5000/v2"),
            ("[::1]:5000", "http://[::1]:5000/v2"),
            ("localhost", "http://localhost/v2"),
            ("gcr.io", "https://gcr.io/v2"),
            ("10.0.0.1:5000", "https://10.0.0.1:5000/v2"),
            ("docker.io", "https://registry-1.docker.io/v2"),
        ] {
            let eps = c.endpoints(reg, "x/y");
            assert_eq!(eps.len(), 1);
            assert_eq!(eps[0].base_url(), url, "{reg}");
        }
        // Explicit http in the file is honoured for any host.
        let c = parse("mirrors:\n  \"*\": {endpoint: [\"http://10.1.1.1:5000\"]}\n").unwrap();
        let eps = c.endpoints("quay.io", "a/b");
        assert_eq!(eps[0].base_url(), "http://10.1.1.1:5000/v2");
        assert_eq!(eps[1].base_url(), "https://quay.io/v2");
    }
}
