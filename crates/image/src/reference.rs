//! Image references, normalised exactly as Docker (distribution/reference
//! `ParseNormalizedNamed` + `TagNameOnly`) and Kubernetes do:
//!
//! - `nginx` → `docker.io/library/nginx:latest`
//! - `gcr.io/google_containers/busybox` → `gcr.io/google_containers/busybox:latest`
//! - `localhost:5000/repo:tag`, `localhost/x`, `[::1]:5000/x`
//! - `repo@sha256:<64 hex>` (no tag is added) and `repo:tag@sha256:...`
//!
//! The first path component is a registry host when it contains `.` or `:`, is
//! `localhost`, or contains uppercase letters (Docker's rule); otherwise the registry is
//! `docker.io`. `index.docker.io` is folded into `docker.io`.
//!
//! Also here: [`PullPolicy`], the typed imagePullPolicy. Its default (the seed's rule)
//! is applied once, by API admission (`podium_api::admission::pod::default_pull_policy`).

use crate::digest::{Digest, DigestError};
use std::fmt;
use std::str::FromStr;

/// Docker Hub's canonical host name.
pub const DOCKER_HUB: &str = "docker.io";
const LEGACY_HUB: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// Why a reference was refused. Every message names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference: empty")]
    Empty,
    #[error("invalid image reference {0:?}: repository name must be lowercase")]
    Uppercase(String),
    #[error("invalid image reference {reference:?}: invalid registry host {host:?}")]
    Host { reference: String, host: String },
    #[error("invalid image reference {reference:?}: invalid repository path component {component:?} (allowed: lowercase letters, digits and separators . _ __ -)")]
    Component {
        reference: String,
        component: String,
    },
    #[error("invalid image reference {reference:?}: invalid tag {tag:?} (allowed: [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})")]
    Tag { reference: String, tag: String },
    #[error("invalid image reference {reference:?}: {source}")]
    Digest {
        reference: String,
        source: DigestError,
    },
    #[error("invalid image reference {0:?}: repository name longer than 255 characters")]
    TooLong(String),
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `s`. A reference with neither tag nor digest gets `latest`.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let err_ref = || s.to_string();
        let (rest, digest) = match s.split_once('@') {
            Some((n, d)) => (
                n,
                Some(Digest::parse(d).map_err(|source| ReferenceError::Digest {
                    reference: err_ref(),
                    source,
                })?),
            ),
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Tag {
                    reference: err_ref(),
                    tag: t.to_string(),
                });
            }
        }
        let (registry, path) = split_registry(name);
        let registry = match registry {
            Some(h) => {
                if !valid_host(h) {
                    return Err(ReferenceError::Host {
                        reference: err_ref(),
                        host: h.to_string(),
                    });
                }
                if h == LEGACY_HUB {
                    DOCKER_HUB.to_string()
                } else {
                    h.to_string()
                }
            }
            None => DOCKER_HUB.to_string(),
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(err_ref()));
        }
        for c in path.split('/') {
            if !valid_component(c) {
                return Err(ReferenceError::Component {
                    reference: err_ref(),
                    component: c.to_string(),
                });
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path.to_string()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(err_ref()));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Registry host (with port, if any), e.g. `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag; `latest` when the input had neither tag nor digest; `None` for a
    /// digest-only reference.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, e.g. `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker prints: `nginx:latest`, `foo/bar:1`, `gcr.io/x/y:latest`.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix(OFFICIAL_PREFIX)
                .filter(|r| !r.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        };
        self.with_suffix(name)
    }

    /// `repo@sha256:...` — the form of a container status' imageID.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same reference without its digest (tag kept; `latest` if it had none).
    pub fn without_digest(&self) -> Reference {
        Reference {
            tag: self.tag.clone().or_else(|| Some("latest".to_string())),
            digest: None,
            ..self.clone()
        }
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    /// The fully-qualified form: `docker.io/library/nginx:latest[@sha256:...]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.name()))
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

/// Docker's `splitDockerDomain` rule.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// `domain-component ('.' domain-component)* (':' port)?`, or `[ipv6]:port`.
fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("ok", Some(port)),
                None => return false,
            },
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

/// `[a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or '-'+, followed by an alnum.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// A container's imagePullPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }

    /// Parses the API string; unknown values are `None` (validation rejects them).
    pub fn from_api(s: &str) -> Option<PullPolicy> {
        match s {
            "Always" => Some(PullPolicy::Always),
            "IfNotPresent" => Some(PullPolicy::IfNotPresent),
            "Never" => Some(PullPolicy::Never),
            _ => None,
        }
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(s).unwrap();
        (
            r.registry().to_string(),
            r.repository().to_string(),
            r.tag().map(str::to_string),
            r.digest().map(|d| d.to_string()),
        )
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = Reference::parse("nginx").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(r.familiar(), "nginx:latest");
        assert_eq!(r.name(), "docker.io/library/nginx");
        let r = Reference::parse("bitnami/redis:7.2").unwrap();
        assert_eq!(r.to_string(), "docker.io/bitnami/redis:7.2");
        assert_eq!(r.familiar(), "bitnami/redis:7.2");
        let r = Reference::parse("index.docker.io/library/busybox:1.36").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:1.36");
        assert_eq!(r.familiar(), "busybox:1.36");
        // docker.io/library/a/b is not an official image: keep the prefix.
        let r = Reference::parse("docker.io/library/a/b").unwrap();
        assert_eq!(r.familiar(), "library/a/b:latest");
    }

    #[test]
    fn other_registries() {
        assert_eq!(
            parts("gcr.io/google_containers/busybox"),
            (
                "gcr.io".into(),
                "google_containers/busybox".into(),
                Some("latest".into()),
                None
            )
        );
        assert_eq!(
            parts("localhost:5000/team/app:v1.2-rc_3"),
            (
                "localhost:5000".into(),
                "team/app".into(),
                Some("v1.2-rc_3".into()),
                None
            )
        );
        assert_eq!(parts("localhost/x").0, "localhost");
        assert_eq!(parts("localhost/x").1, "x");
        assert_eq!(parts("127.0.0.1:5000/x").0, "127.0.0.1:5000");
        assert_eq!(parts("[::1]:5000/x:t").0, "[::1]:5000");
        let r = Reference::parse("gcr.io/google_containers/busybox").unwrap();
        assert_eq!(r.familiar(), "gcr.io/google_containers/busybox:latest");
        // A single-component name without registry is a Docker Hub official image,
        // even when it looks like "localhost" (no slash).
        assert_eq!(parts("localhost").1, "library/localhost");
    }

    #[test]
    fn digests() {
        let s = format!("busybox@sha256:{HEX}");
        let r = Reference::parse(&s).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox@sha256:{HEX}")
        );
        assert_eq!(r.familiar(), format!("busybox@sha256:{HEX}"));
        let r = Reference::parse(&format!("localhost:5000/a/b:1.0@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(
            r.to_string(),
            format!("localhost:5000/a/b:1.0@sha256:{HEX}")
        );
        let r2 = r.without_digest();
        assert_eq!(r2.to_string(), "localhost:5000/a/b:1.0");
        let d = Digest::from_hex(HEX).unwrap();
        assert_eq!(
            Reference::parse("nginx")
                .unwrap()
                .with_digest(d)
                .to_string(),
            format!("docker.io/library/nginx:latest@sha256:{HEX}")
        );
    }

    #[test]
    fn rejections() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        let e = Reference::parse("Nginx").unwrap_err();
        assert!(matches!(e, ReferenceError::Uppercase(_)), "{e}");
        assert!(e.to_string().contains("lowercase"));
        // Uppercase first component with a slash is a host (Docker's rule), and the
        // rest must still be lowercase.
        assert_eq!(parts("Example.com/x").0, "Example.com");
        assert!(matches!(
            Reference::parse("library/Nginx"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            Reference::parse("nginx:"),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            Reference::parse("nginx:-bad"),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            Reference::parse(&format!("nginx:{}", "a".repeat(129))),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            Reference::parse("nginx@sha256:abc"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            Reference::parse(&format!("nginx@md5:{HEX}")),
            Err(ReferenceError::Digest { .. })
        ));
        for bad in ["a//b", "-a", "a-", "a..b", "a___b", "a b", "/a", "a/"] {
            assert!(
                matches!(Reference::parse(bad), Err(ReferenceError::Component { .. })),
                "{bad}: {:?}",
                Reference::parse(bad)
            );
        }
        assert!(matches!(
            Reference::parse("host:abc/x"),
            Err(ReferenceError::Host { .. })
        ));
        assert!(matches!(
            Reference::parse("-bad.host/x"),
            Err(ReferenceError::Host { .. })
        ));
        assert!(matches!(
            Reference::parse(&format!("x/{}", "a".repeat(260))),
            Err(ReferenceError::TooLong(_))
        ));
        // Valid separators.
        for ok in ["a.b", "a_b", "a__b", "a---b", "a-b/c.d_e"] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn pull_policy_names() {
        assert_eq!(PullPolicy::from_api("Never"), Some(PullPolicy::Never));
        assert_eq!(PullPolicy::from_api("never"), None);
        assert_eq!(PullPolicy::IfNotPresent.to_string(), "IfNotPresent");
    }
}
