//! OCI / Docker schema 2 manifests, indexes and image configs: the JSON shapes, the
//! node-platform choice from an index, and [`ImageConfig`], the part of the config the
//! runtime needs (ENTRYPOINT, CMD, ENV, WorkingDir, User, StopSignal, ExposedPorts).
//! Docker schema 1 is refused (registries stopped serving it; kubelet 1.32 cannot
//! run it either).

use crate::client::{
    MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The node's platform.
pub const NODE_OS: &str = "linux";
pub const NODE_ARCH: &str = "amd64";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what} is not valid JSON: {detail}")]
    Json { what: &'static str, detail: String },
    #[error("unsupported manifest media type {0:?} (Docker schema 1 is not supported)")]
    MediaType(String),
    #[error("no manifest for linux/amd64 in the image index (platforms: {0})")]
    NoPlatform(String),
    #[error("invalid digest in {what}: {detail}")]
    Digest { what: &'static str, detail: String },
    #[error("config has {diff_ids} diffIDs for {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    pub fn digest(&self, what: &'static str) -> Result<Digest, ManifestError> {
        Digest::parse(&self.digest).map_err(|e| ManifestError::Digest {
            what,
            detail: e.to_string(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest-or-index document.
#[derive(Debug, Clone)]
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    manifests: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

impl Document {
    /// Parses by the media type (from the header, else the body's `mediaType`, else the
    /// shape: OCI allows omitting it).
    pub fn parse(bytes: &[u8], header_media_type: &str) -> Result<Document, ManifestError> {
        let json = |e: serde_json::Error| ManifestError::Json {
            what: "manifest",
            detail: e.to_string(),
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(json)?;
        let header = header_media_type.split(';').next().unwrap_or("").trim();
        let media = if !probe.media_type.is_empty() {
            probe.media_type.clone()
        } else if matches!(
            header,
            MEDIA_DOCKER_LIST | MEDIA_OCI_INDEX | MEDIA_DOCKER_MANIFEST | MEDIA_OCI_MANIFEST
        ) {
            header.to_string()
        } else if probe.manifests.is_some() {
            MEDIA_OCI_INDEX.to_string()
        } else if probe.config.is_some() && probe.schema_version == 2 {
            MEDIA_OCI_MANIFEST.to_string()
        } else {
            return Err(ManifestError::MediaType(if header.is_empty() {
                format!("schemaVersion {}", probe.schema_version)
            } else {
                header.to_string()
            }));
        };
        match media.as_str() {
            MEDIA_DOCKER_LIST | MEDIA_OCI_INDEX => Ok(Document::Index(
                serde_json::from_slice(bytes).map_err(json)?,
            )),
            MEDIA_DOCKER_MANIFEST | MEDIA_OCI_MANIFEST => Ok(Document::Manifest(
                serde_json::from_slice(bytes).map_err(json)?,
            )),
            other => Err(ManifestError::MediaType(other.to_string())),
        }
    }
}

impl Index {
    /// The node platform's manifest: linux/amd64 (any variant, `v1`/none preferred).
    pub fn select_platform(&self) -> Result<&Descriptor, ManifestError> {
        let matching: Vec<&Descriptor> = self
            .manifests
            .iter()
            .filter(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == NODE_OS && p.architecture == NODE_ARCH)
            })
            .collect();
        if let Some(d) = matching.iter().find(|d| {
            d.platform
                .as_ref()
                .and_then(|p| p.variant.as_deref())
                .is_none_or(|v| v == "v1")
        }) {
            return Ok(d);
        }
        if let Some(d) = matching.first() {
            return Ok(d);
        }
        // An index whose single entry has no platform (some OCI layouts): take it.
        if self.manifests.len() == 1 && self.manifests[0].platform.is_none() {
            return Ok(&self.manifests[0]);
        }
        let names: Vec<String> = self
            .manifests
            .iter()
            .map(|d| match &d.platform {
                Some(p) => format!("{}/{}", p.os, p.architecture),
                None => "unknown".into(),
            })
            .collect();
        Err(ManifestError::NoPlatform(names.join(", ")))
    }
}

/// What the runtime needs from an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` strings, in order.
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: String,
    /// `80/tcp`, sorted.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub os: String,
    pub architecture: String,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<RawRun>,
    rootfs: RawRootfs,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawRun {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    stop_signal: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Parses a config blob: the runtime settings and the layers' diffIDs.
pub fn parse_config(bytes: &[u8]) -> Result<(ImageConfig, Vec<Digest>), ManifestError> {
    let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| ManifestError::Json {
        what: "image config",
        detail: e.to_string(),
    })?;
    let run = raw.config.unwrap_or_default();
    let diff_ids = raw
        .rootfs
        .diff_ids
        .iter()
        .map(|d| {
            Digest::parse(d).map_err(|e| ManifestError::Digest {
                what: "config rootfs.diff_ids",
                detail: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = ImageConfig {
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
        env: run.env.unwrap_or_default(),
        working_dir: run.working_dir.unwrap_or_default(),
        user: run.user.unwrap_or_default(),
        stop_signal: run.stop_signal.unwrap_or_default(),
        exposed_ports: run
            .exposed_ports
            .map(|m| m.into_keys().collect())
            .unwrap_or_default(),
        labels: run.labels.unwrap_or_default(),
        os: raw.os,
        architecture: raw.architecture,
    };
    Ok((cfg, diff_ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_fields() {
        let (c, d) = parse_config(
            br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sh"],"Cmd":["-c","x"],
            "Env":["PATH=/bin","A=b"],"WorkingDir":"/w","User":"1000:1000","StopSignal":"SIGQUIT",
            "ExposedPorts":{"80/tcp":{},"53/udp":{}},"Labels":{"k":"v"}},
            "rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#,
        )
        .unwrap();
        assert_eq!(c.entrypoint, ["/bin/sh"]);
        assert_eq!(c.cmd, ["-c", "x"]);
        assert_eq!(c.env, ["PATH=/bin", "A=b"]);
        assert_eq!(c.working_dir, "/w");
        assert_eq!(c.user, "1000:1000");
        assert_eq!(c.stop_signal, "SIGQUIT");
        assert_eq!(c.exposed_ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.labels["k"], "v");
        assert_eq!(d.len(), 1);
        // A config without a "config" section (scratch images) is fine.
        let (c, _) = parse_config(br#"{"rootfs":{"diff_ids":[]}}"#).unwrap();
        assert!(c.cmd.is_empty());
    }

    #[test]
    fn platform_choice_and_media_types() {
        let idx = br#"{"schemaVersion":2,"manifests":[
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":2,"platform":{"os":"linux","architecture":"amd64"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":3,"platform":{"os":"windows","architecture":"amd64"}}]}"#;
        let Document::Index(i) = Document::parse(idx, "").unwrap() else {
            panic!("expected an index")
        };
        assert_eq!(i.select_platform().unwrap().digest, "sha256:bb");
        let only_arm = Index {
            manifests: vec![i.manifests[0].clone()],
            ..i.clone()
        };
        let e = only_arm.select_platform().unwrap_err().to_string();
        assert!(e.contains("linux/arm64"), "{e}");
        let schema1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(matches!(
            Document::parse(
                schema1,
                "application/vnd.docker.distribution.manifest.v1+prettyjws"
            ),
            Err(ManifestError::MediaType(_))
        ));
    }
}
