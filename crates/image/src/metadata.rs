//! The image metadata store: which images this node has, so `IfNotPresent` and `Never`
//! answer without a registry, `podium image ls` lists them and GC knows what uses which
//! blob and snapshot.
//!
//! One JSON file, `<data-dir>/images/index.json`, rewritten atomically (temp + fsync +
//! rename) under a mutex on every change: a node has tens to hundreds of images, so
//! the whole index is small. An image is keyed by its ID (the config digest, as Docker
//! and containerd do); names (`docker.io/library/busybox:latest`) and repo digests
//! (`docker.io/library/busybox@sha256:<manifest or index digest>`) point at IDs.

use crate::digest::Digest;
use crate::manifest::ImageConfig;
use crate::reference::Reference;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The blob (compressed) digest and size.
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// The uncompressed digest.
    pub diff_id: Digest,
}

/// One image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest.
    pub id: Digest,
    /// The platform manifest's digest.
    pub manifest_digest: Digest,
    /// Index digest when the reference resolved to an index (kept for GC).
    #[serde(default)]
    pub index_digest: Option<Digest>,
    /// Fully qualified tags pointing here.
    pub tags: Vec<String>,
    /// `name@sha256:...` of what the registry resolved (index or manifest).
    pub repo_digests: Vec<String>,
    pub config: ImageConfig,
    pub layers: Vec<LayerRecord>,
    /// Sum of blob sizes (what a pull downloads).
    pub size: u64,
    /// Unix seconds.
    pub created: u64,
    pub last_used: u64,
}

impl ImageRecord {
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    /// ID hex → record.
    images: BTreeMap<String, ImageRecord>,
}

#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    state: Mutex<IndexFile>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl MetadataStore {
    /// Opens `<dir>/index.json` (creating `dir`).
    pub fn open(dir: &Path) -> Result<MetadataStore, MetadataError> {
        fs::create_dir_all(dir).map_err(|source| MetadataError::Io {
            op: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("index.json");
        let state = match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| MetadataError::Corrupt {
                path: path.clone(),
                detail: e.to_string(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => IndexFile::default(),
            Err(source) => {
                return Err(MetadataError::Io {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        Ok(MetadataStore {
            path,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, IndexFile> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, state: &IndexFile) -> Result<(), MetadataError> {
        let tmp = self.path.with_extension("json.tmp");
        let io = |op, source| MetadataError::Io {
            op,
            path: tmp.clone(),
            source,
        };
        let data = serde_json::to_vec_pretty(state).map_err(|e| MetadataError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        let mut f = fs::File::create(&tmp).map_err(|e| io("create", e))?;
        f.write_all(&data).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("sync", e))?;
        fs::rename(&tmp, &self.path).map_err(|source| MetadataError::Io {
            op: "rename",
            path: self.path.clone(),
            source,
        })
    }

    /// The image `reference` names: by digest (a repo digest or the image's manifest)
    /// when it has one, else by tag.
    pub fn lookup(&self, reference: &Reference) -> Option<ImageRecord> {
        let st = self.lock();
        let found = match reference.digest() {
            Some(d) => {
                let rd = format!("{}@{}", reference.name(), d);
                st.images
                    .values()
                    .find(|r| r.repo_digests.contains(&rd) || &r.manifest_digest == d)
            }
            None => {
                let t = reference.to_string();
                st.images.values().find(|r| r.tags.contains(&t))
            }
        };
        found.cloned()
    }

    /// An image by ID (`sha256:...`, or a unique hex prefix of at least 4 digits).
    pub fn get_by_id(&self, id: &str) -> Option<ImageRecord> {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        if hex.len() < 4 {
            return None;
        }
        let st = self.lock();
        let mut it = st.images.iter().filter(|(k, _)| k.starts_with(hex));
        match (it.next(), it.next()) {
            (Some((_, r)), None) => Some(r.clone()),
            _ => None,
        }
    }

    /// Adds or updates an image, and moves `tag` (and `repo_digest`) to it from any
    /// other image, as a tag names one image. Images left with no name stay (by ID)
    /// until GC or `rm`.
    pub fn put(
        &self,
        mut record: ImageRecord,
        tag: Option<&str>,
        repo_digest: Option<&str>,
    ) -> Result<ImageRecord, MetadataError> {
        let mut st = self.lock();
        if let Some(t) = tag {
            for r in st.images.values_mut() {
                r.tags.retain(|x| x != t);
            }
        }
        let key = record.id.hex().to_string();
        if let Some(old) = st.images.get(&key) {
            for t in &old.tags {
                if !record.tags.contains(t) {
                    record.tags.push(t.clone());
                }
            }
            for d in &old.repo_digests {
                if !record.repo_digests.contains(d) {
                    record.repo_digests.push(d.clone());
                }
            }
            record.created = old.created.min(record.created);
        }
        if let Some(t) = tag {
            if !record.tags.iter().any(|x| x == t) {
                record.tags.push(t.to_string());
            }
        }
        if let Some(d) = repo_digest {
            if !record.repo_digests.iter().any(|x| x == d) {
                record.repo_digests.push(d.to_string());
            }
        }
        record.tags.sort();
        record.repo_digests.sort();
        st.images.insert(key, record.clone());
        self.save(&st)?;
        Ok(record)
    }

    /// Marks an image used now (for LRU garbage collection).
    pub fn touch(&self, id: &Digest) -> Result<(), MetadataError> {
        let mut st = self.lock();
        if let Some(r) = st.images.get_mut(id.hex()) {
            r.last_used = now();
            self.save(&st)?;
        }
        Ok(())
    }

    /// Test and GC hook: sets `last_used`.
    pub fn set_last_used(&self, id: &Digest, t: u64) -> Result<(), MetadataError> {
        let mut st = self.lock();
        if let Some(r) = st.images.get_mut(id.hex()) {
            r.last_used = t;
            self.save(&st)?;
        }
        Ok(())
    }

    /// Removes a tag (the image stays if it has other names) and returns the image.
    pub fn untag(&self, tag: &str) -> Result<Option<ImageRecord>, MetadataError> {
        let mut st = self.lock();
        let mut out = None;
        for r in st.images.values_mut() {
            if r.tags.iter().any(|t| t == tag) {
                r.tags.retain(|t| t != tag);
                out = Some(r.clone());
            }
        }
        if out.is_some() {
            self.save(&st)?;
        }
        Ok(out)
    }

    /// Removes an image record entirely.
    pub fn remove(&self, id: &Digest) -> Result<Option<ImageRecord>, MetadataError> {
        let mut st = self.lock();
        let r = st.images.remove(id.hex());
        if r.is_some() {
            self.save(&st)?;
        }
        Ok(r)
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        self.lock().images.values().cloned().collect()
    }
}
