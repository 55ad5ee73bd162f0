//! Registry credentials from Kubernetes image pull secrets, matched to an image as
//! kubelet's `credentialprovider` package does (`BasicDockerKeyring`):
//!
//! - `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`: `{"auths": {KEY: ENTRY}}`) and
//!   `kubernetes.io/dockercfg` (`.dockercfg`: the legacy top-level `{KEY: ENTRY}` map).
//! - ENTRY has `username`/`password`, or `auth` = base64(`user:pass`), which wins.
//! - KEY may be `host`, `host:port`, `https://host/v1/`, `host/path/prefix`, and the host
//!   may have glob parts (`*.example.com`); the scheme is dropped, `/v1/` and `/v2/`
//!   mean the bare host. A key matches an image name (`registry/repository`) when the
//!   host has as many dot-parts as the key, each part matches its glob, the ports are
//!   equal and the image path starts with the key's path.
//! - Within one secret the keys are tried in reverse lexical order (more specific paths
//!   first); when none matches and the image is on Docker Hub, the `index.docker.io`
//!   entry is used. Secrets are consulted in the order given (kubelet: the pod's
//!   `imagePullSecrets`, which the ServiceAccount admission already extended with the
//!   service account's), and all matches are returned in that order: the puller tries
//!   each until one works, and pulls anonymously only when there is none.
//!
//! Secrets never leak: [`Credential`]'s `Debug` redacts the password and it has no
//! `Display`.

use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Secret type names and data keys, as in the Kubernetes API.
pub const SECRET_TYPE_DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
pub const SECRET_TYPE_DOCKERCFG: &str = "kubernetes.io/dockercfg";
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
pub const DOCKERCFG_KEY: &str = ".dockercfg";

const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// A username and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credential {
    pub username: String,
    pub password: String,
    /// An OAuth2 refresh token (`identitytoken`), used instead of the password for
    /// bearer-token registries that issue one.
    pub identity_token: Option<String>,
}

impl Credential {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credential {
        Credential {
            username: username.into(),
            password: password.into(),
            identity_token: None,
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Deliberately without the JSON error's text, which can quote the secret.
    #[error("secret {secret:?}: {key} is not valid JSON of the expected shape")]
    Json { secret: String, key: &'static str },
    #[error("secret {secret:?}: entry {entry:?}: \"auth\" is not base64 of \"user:password\"")]
    Auth { secret: String, entry: String },
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize, Default)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default, rename = "identitytoken")]
    identity_token: String,
}

/// The credentials of one secret, indexed as kubelet does.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// Normalised key (`host[/path]`) → credentials, iterated in reverse order.
    creds: BTreeMap<String, Vec<Credential>>,
}

impl Keyring {
    /// From a `.dockerconfigjson` value.
    pub fn from_dockerconfigjson(secret: &str, data: &[u8]) -> Result<Keyring, CredentialError> {
        let cfg: ConfigJson = serde_json::from_slice(data).map_err(|_| CredentialError::Json {
            secret: secret.to_string(),
            key: DOCKER_CONFIG_JSON_KEY,
        })?;
        Keyring::from_entries(secret, cfg.auths)
    }

    /// From a legacy `.dockercfg` value.
    pub fn from_dockercfg(secret: &str, data: &[u8]) -> Result<Keyring, CredentialError> {
        let cfg: BTreeMap<String, Entry> =
            serde_json::from_slice(data).map_err(|_| CredentialError::Json {
                secret: secret.to_string(),
                key: DOCKERCFG_KEY,
            })?;
        Keyring::from_entries(secret, cfg)
    }

    /// From a Secret's type and decoded `data`, as kubelet reads pull secrets: a secret
    /// of another type, or without its key, contributes nothing.
    pub fn from_secret(
        secret: &str,
        secret_type: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Keyring, CredentialError> {
        match secret_type {
            SECRET_TYPE_DOCKER_CONFIG_JSON => match data.get(DOCKER_CONFIG_JSON_KEY) {
                Some(d) if !d.is_empty() => Keyring::from_dockerconfigjson(secret, d),
                _ => Ok(Keyring::default()),
            },
            SECRET_TYPE_DOCKERCFG => match data.get(DOCKERCFG_KEY) {
                Some(d) if !d.is_empty() => Keyring::from_dockercfg(secret, d),
                _ => Ok(Keyring::default()),
            },
            _ => Ok(Keyring::default()),
        }
    }

    fn from_entries(
        secret: &str,
        entries: BTreeMap<String, Entry>,
    ) -> Result<Keyring, CredentialError> {
        let mut k = Keyring::default();
        for (loc, e) in entries {
            let (mut username, mut password) = (e.username, e.password);
            if !e.auth.is_empty() {
                let bad = || CredentialError::Auth {
                    secret: secret.to_string(),
                    entry: loc.clone(),
                };
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(e.auth.trim())
                    .map_err(|_| bad())?;
                let s = String::from_utf8(raw).map_err(|_| bad())?;
                let (u, p) = s.split_once(':').ok_or_else(bad)?;
                username = u.to_string();
                password = p.to_string();
            }
            let cred = Credential {
                username,
                password,
                identity_token: Some(e.identity_token).filter(|t| !t.is_empty()),
            };
            k.creds.entry(normalise_key(&loc)).or_default().push(cred);
        }
        Ok(k)
    }

    pub fn is_empty(&self) -> bool {
        self.creds.is_empty()
    }

    /// Credentials for `image` (`registry/repository`, e.g. the output of
    /// [`crate::Reference::name`]; a tag or digest is ignored), most specific first.
    pub fn lookup(&self, image: &str) -> Vec<Credential> {
        let image = strip_tag_digest(image);
        let mut out = Vec::new();
        for (key, creds) in self.creds.iter().rev() {
            if urls_match(key, &image) {
                out.extend(creds.iter().cloned());
            }
        }
        if out.is_empty() && is_default_registry_match(&image) {
            if let Some(c) = self.creds.get(DEFAULT_REGISTRY_HOST) {
                out.extend(c.iter().cloned());
            }
        }
        out
    }
}

/// All candidate credentials for `image` from keyrings in the caller's order.
pub fn lookup_all(keyrings: &[Keyring], image: &str) -> Vec<Credential> {
    keyrings.iter().flat_map(|k| k.lookup(image)).collect()
}

fn strip_tag_digest(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[last_slash..].rfind(':') {
        Some(i) => name[..last_slash + i].to_string(),
        None => name.to_string(),
    }
}

/// kubelet's key normalisation: drop the scheme, `/v1/`/`/v2/` prefixes mean the host.
fn normalise_key(loc: &str) -> String {
    let rest = loc
        .strip_prefix("https://")
        .or_else(|| loc.strip_prefix("http://"))
        .unwrap_or(loc);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = if path.starts_with("/v2/") || path.starts_with("/v1/") {
        &path[3..]
    } else {
        path
    };
    if path.is_empty() || path == "/" {
        host.to_string()
    } else {
        format!("{host}{path}")
    }
}

/// Splits a schemeless URL into (host parts, port, path).
fn split_url(s: &str) -> (Vec<&str>, &str, &str) {
    let (host_port, path) = match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p),
        _ => (host_port, ""),
    };
    (host.split('.').collect(), port, path)
}

/// kubelet's `URLsMatch`: glob host parts, equal ports, path prefix.
fn urls_match(glob: &str, target: &str) -> bool {
    let (gparts, gport, gpath) = split_url(glob);
    let (tparts, tport, tpath) = split_url(target);
    gport == tport
        && gparts.len() == tparts.len()
        && gparts.iter().zip(&tparts).all(|(g, t)| glob_match(g, t))
        && tpath.starts_with(gpath)
}

/// `filepath.Match` for one host part: `*` (any run), `?` (one character), literals.
fn glob_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// kubelet's `isDefaultRegistryMatch`.
fn is_default_registry_match(image: &str) -> bool {
    let mut parts = image.splitn(2, '/');
    let first = parts.next().unwrap_or("");
    if first.is_empty() {
        return false;
    }
    if parts.next().is_none() {
        return true;
    }
    first == "docker.io" || first == DEFAULT_REGISTRY_HOST || !first.contains(['.', ':'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn users(c: &[Credential]) -> Vec<&str> {
        c.iter().map(|c| c.username.as_str()).collect()
    }

    #[test]
    fn dockerconfigjson_matching() {
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "registry.example.com:5000": {{"username": "port", "password": "pp"}},
                "registry.example.com": {{"username": "noport", "password": "np"}},
                "quay.io/coreos": {{"username": "coreos", "password": "x"}},
                "quay.io": {{"username": "quay", "password": "x"}},
                "*.gcr.io": {{"username": "glob", "password": "x"}}
            }}}}"#,
            b64("hub:hubpass")
        );
        let k = Keyring::from_dockerconfigjson("s", json.as_bytes()).unwrap();
        assert_eq!(
            users(&k.lookup("docker.io/library/busybox:latest")),
            ["hub"]
        );
        assert_eq!(k.lookup("busybox")[0].password, "hubpass");
        assert_eq!(users(&k.lookup("registry.example.com:5000/a/b")), ["port"]);
        assert_eq!(users(&k.lookup("registry.example.com/a/b")), ["noport"]);
        // More specific path first.
        assert_eq!(users(&k.lookup("quay.io/coreos/etcd")), ["coreos", "quay"]);
        assert_eq!(users(&k.lookup("quay.io/other/x")), ["quay"]);
        assert_eq!(users(&k.lookup("eu.gcr.io/p/img@sha256:00")), ["glob"]);
        // A glob part matches exactly one host part.
        assert!(k.lookup("gcr.io/p/img").is_empty());
        assert!(k.lookup("a.b.gcr.io/p/img").is_empty());
        assert!(k.lookup("other.com/x").is_empty());
    }

    #[test]
    fn dockercfg_and_secret_types() {
        let cfg = format!(
            r#"{{"127.0.0.1:5000": {{"auth": "{}"}}}}"#,
            b64("u:p:with:colons")
        );
        let mut data = BTreeMap::new();
        data.insert(DOCKERCFG_KEY.to_string(), cfg.into_bytes());
        let k = Keyring::from_secret("old", SECRET_TYPE_DOCKERCFG, &data).unwrap();
        let c = k.lookup("127.0.0.1:5000/test/busybox:1");
        assert_eq!(c, vec![Credential::new("u", "p:with:colons")]);
        // Wrong type for the data: nothing, as kubelet.
        let k = Keyring::from_secret("old", SECRET_TYPE_DOCKER_CONFIG_JSON, &data).unwrap();
        assert!(k.is_empty());
        let k = Keyring::from_secret("old", "Opaque", &data).unwrap();
        assert!(k.is_empty());
    }

    #[test]
    fn order_across_secrets() {
        let a = Keyring::from_dockerconfigjson(
            "a",
            br#"{"auths":{"r.io":{"username":"first","password":"1"}}}"#,
        )
        .unwrap();
        let b = Keyring::from_dockerconfigjson(
            "b",
            br#"{"auths":{"r.io":{"username":"second","password":"2"}}}"#,
        )
        .unwrap();
        assert_eq!(users(&lookup_all(&[a, b], "r.io/x")), ["first", "second"]);
    }

    #[test]
    fn secrets_never_shown() {
        let c = Credential::new("user", "s3cret-pw");
        assert!(!format!("{c:?}").contains("s3cret-pw"));
        let bad =
            Keyring::from_dockerconfigjson("s", br#"{"auths": {"h": {"auth": "s3cret-pw"}}}"#)
                .unwrap_err();
        assert!(!bad.to_string().contains("s3cret-pw"), "{bad}");
        let bad = Keyring::from_dockerconfigjson("s", br#"{"auths": "s3cret-pw"}"#).unwrap_err();
        assert!(!bad.to_string().contains("s3cret-pw"), "{bad}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "abc"));
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "abbc"));
        assert!(!glob_match("*.x", "y"));
    }
}
