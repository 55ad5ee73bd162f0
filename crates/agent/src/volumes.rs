//! The node agent's volume layer (kubelet's volume manager and in-tree plugins for the
//! volume types a Pod on one node can use without storage drivers): emptyDir (disk, and
//! `medium: Memory` as a real tmpfs), hostPath with its types, configMap, secret,
//! downwardAPI and projected volumes, fsGroup ownership, safe subPath mounts, and the
//! teardown that leaves nothing behind.
//!
//! Layout (kubelet's): `<pods_root>/<pod-uid>/volumes/kubernetes.io~<kind>/<name>` for
//! every volume but hostPath, and `<pods_root>/<pod-uid>/volume-subpaths/<container>/<index>`
//! for subPath staging mounts. Secret and projected volumes live on a tmpfs (as kubelet's
//! memory-backed wrapper), so secret material never reaches the disk.
//!
//! Submodules: [`payload`] (what content volumes hold), [`atomic_writer`] (how they are
//! written), [`host_path`] (type checks), [`mounts`] (mountinfo, tmpfs, unmounting,
//! ownership), [`subpath`] (descriptor-based subPath resolution and staging binds).
//!
//! Not done by Podium: an emptyDir's `sizeLimit` on disk is not enforced (kubelet enforces
//! it by evicting the pod when usage exceeds it; Podium has no eviction yet). A memory
//! emptyDir's `sizeLimit` is enforced by the tmpfs size.

pub mod atomic_writer;
pub mod host_path;
pub mod mounts;
pub mod payload;
pub mod subpath;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use podium_api::quantity::Quantity;
use serde_json::Value;

pub use mounts::IoError;
pub use subpath::SubPathError;

use crate::env::EnvError;
use crate::facts::{arr_at, at, i64_at, str_at, NodeFacts, Resolved, VolumeHost};

/// Directory of a pod's volumes inside its pod dir.
pub const VOLUMES_DIR: &str = "volumes";
/// Directory of a pod's subPath staging mounts inside its pod dir.
pub const SUBPATHS_DIR: &str = "volume-subpaths";
pub const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
pub const CONFIGMAP_DIR: &str = "kubernetes.io~configmap";
pub const SECRET_DIR: &str = "kubernetes.io~secret";
pub const DOWNWARD_API_DIR: &str = "kubernetes.io~downward-api";
pub const PROJECTED_DIR: &str = "kubernetes.io~projected";

/// Why one volume could not be set up: the text after kubelet's
/// `MountVolume.SetUp failed for volume "<name>" : `.
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKeyMissing(String),
    #[error("references non-existent secret key: {0}")]
    SecretKeyMissing(String),
    #[error("{kind} {name:?} key {key:?} is not valid base64")]
    NotBase64 {
        kind: &'static str,
        name: String,
        key: String,
    },
    /// An item path rejected by the AtomicWriter (kubelet's message).
    #[error("{0}")]
    InvalidPath(String),
    /// A hostPath type check (kubelet's message).
    #[error("{0}")]
    HostPathType(String),
    #[error(transparent)]
    DownwardApi(EnvError),
    #[error("volume type {0} is not supported by Podium")]
    Unsupported(String),
    #[error("invalid volume name {0:?}")]
    InvalidName(String),
    /// Several sources of a projected volume failed (Go's aggregate error format).
    #[error("[{}]", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Multiple(Vec<SetUpError>),
    #[error(transparent)]
    Io(#[from] IoError),
}

impl SetUpError {
    /// Whether the failure is a missing ConfigMap/Secret or key (it may appear later, so
    /// kubelet keeps retrying with the pod in ContainerCreating).
    pub fn is_missing_source(&self) -> bool {
        match self {
            SetUpError::ConfigMapNotFound(_)
            | SetUpError::SecretNotFound(_)
            | SetUpError::ConfigMapKeyMissing(_)
            | SetUpError::SecretKeyMissing(_) => true,
            SetUpError::Multiple(all) => all.iter().any(SetUpError::is_missing_source),
            _ => false,
        }
    }
}

/// Volume layer errors. `Display` is the event message; [`VolumeError::reason`] the
/// event reason.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid pod uid {0:?}")]
    InvalidPodUid(String),
    #[error("invalid container name {0:?}")]
    InvalidContainerName(String),
    /// kubelet's FailedMount event text.
    #[error("MountVolume.SetUp failed for volume {volume:?} : {cause}")]
    SetUp { volume: String, cause: SetUpError },
    /// kubelet's message (the container's CreateContainerConfigError); the detail, which
    /// kubelet keeps out of the user-visible text, is the `source()`.
    #[error("failed to prepare subPath for volumeMount #{index} of container {container:?}")]
    SubPath {
        container: String,
        index: usize,
        #[source]
        cause: SubPathError,
    },
    #[error("UnmountVolume.TearDown failed for pod {pod_uid:?}: {cause}")]
    TearDown { pod_uid: String, cause: IoError },
    #[error("UnmountVolume.TearDown failed for pod {pod_uid:?}: still mounted: {}", .mounts.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(", "))]
    StillMounted {
        pod_uid: String,
        mounts: Vec<PathBuf>,
    },
    #[error(transparent)]
    Io(#[from] IoError),
}

impl VolumeError {
    /// The event reason: kubelet's `FailedMount` for setup failures and `Failed` for
    /// subPath failures; `FailedUnmount` (Podium's own; kubelet only logs these) for
    /// teardown failures.
    pub fn reason(&self) -> &'static str {
        match self {
            VolumeError::SubPath { .. } | VolumeError::InvalidContainerName(_) => "Failed",
            VolumeError::TearDown { .. } | VolumeError::StillMounted { .. } => "FailedUnmount",
            VolumeError::InvalidPodUid(_) | VolumeError::SetUp { .. } | VolumeError::Io(_) => {
                "FailedMount"
            }
        }
    }
}

/// A name usable as one path component (pod uids, volume and container names are
/// API-validated; this keeps the host layout safe regardless).
fn valid_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The volume kinds Podium implements, by their field name in a Volume.
const KINDS: &[&str] = &[
    "emptyDir",
    "hostPath",
    "configMap",
    "secret",
    "downwardAPI",
    "projected",
];

/// The kind of a volume: its source field (the one key besides `name`).
fn kind_of(volume: &Value) -> String {
    volume
        .as_object()
        .and_then(|m| m.keys().find(|k| *k != "name").cloned())
        .unwrap_or_default()
}

/// kubelet's `calculateEmptyDirMemorySize`: node allocatable memory, lowered to the pod's
/// memory limit and then to the volume's sizeLimit when those are smaller.
fn memory_volume_size(pod: &Value, facts: &NodeFacts, size_limit: Option<&Value>) -> Option<i64> {
    let mut size = facts.allocatable.memory.value();
    let mut lower = |v: i64| {
        if v > 0 && (size <= 0 || v <= size) {
            size = v;
        }
    };
    if let Some(limit) = crate::qos::pod_resources(pod, None).memory_limit {
        lower(limit);
    }
    if let Some(q) = size_limit.and_then(|v| Quantity::from_json(v).ok()) {
        lower(q.value());
    }
    (size > 0).then_some(size)
}

/// Sets up and tears down the volumes of the pods of one agent instance.
#[derive(Debug, Clone)]
pub struct VolumeManager {
    pods_root: PathBuf,
    instance: String,
}

impl VolumeManager {
    /// `pods_root` is `<data-dir>/pods`; `instance` names this server's tmpfs mounts
    /// (their mount source) so `findmnt` shows whose they are.
    pub fn new(pods_root: PathBuf, instance: &str) -> VolumeManager {
        VolumeManager {
            pods_root,
            instance: instance.to_string(),
        }
    }

    pub fn pods_root(&self) -> &Path {
        &self.pods_root
    }

    /// The pods root, created if asked, canonical (mountinfo shows canonical paths).
    /// `None` when it does not exist and was not to be created.
    fn root(&self, create: bool) -> Result<Option<PathBuf>, IoError> {
        if create {
            fs::create_dir_all(&self.pods_root)
                .map_err(mounts::io_err("mkdir", &self.pods_root))?;
        }
        match fs::canonicalize(&self.pods_root) {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => Ok(None),
            Err(e) => Err(mounts::io_err("resolve", &self.pods_root)(e)),
        }
    }

    /// `<root>/<uid>` and `<root>/<uid>/volumes`, created (0750).
    fn pod_volumes_dir(&self, uid: &str) -> Result<PathBuf, VolumeError> {
        if !valid_component(uid) {
            return Err(VolumeError::InvalidPodUid(uid.to_string()));
        }
        let root = self.root(true)?.unwrap_or_else(|| self.pods_root.clone());
        let pod_dir = root.join(uid);
        mounts::ensure_dir(&pod_dir, 0o750)?;
        let dir = pod_dir.join(VOLUMES_DIR);
        mounts::ensure_dir(&dir, 0o750)?;
        Ok(dir)
    }

    /// Creates every volume of the pod under `<pods_root>/<pod-uid>/volumes/<kind>/<name>`
    /// and returns the host path of each. Idempotent: an existing emptyDir keeps its data,
    /// a mounted tmpfs is not mounted again, content volumes are rewritten only if changed.
    pub fn setup(
        &self,
        pod: &Value,
        resolved: &Resolved,
        facts: &NodeFacts,
    ) -> Result<BTreeMap<String, VolumeHost>, VolumeError> {
        let vdir = self.pod_volumes_dir(str_at(pod, &["metadata", "uid"]))?;
        let mut out = BTreeMap::new();
        for v in arr_at(pod, &["spec", "volumes"]) {
            let name = str_at(v, &["name"]);
            let host = self
                .setup_one(&vdir, v, pod, resolved, facts, false)
                .map_err(|cause| VolumeError::SetUp {
                    volume: name.to_string(),
                    cause,
                })?;
            if let Some(h) = host {
                out.insert(name.to_string(), h);
            }
        }
        Ok(out)
    }

    /// Re-writes configMap/secret/downwardAPI/projected contents whose sources changed,
    /// atomically. A failing volume keeps its previous content (the error is returned
    /// after the other volumes are refreshed).
    pub fn refresh(
        &self,
        pod: &Value,
        resolved: &Resolved,
        facts: &NodeFacts,
    ) -> Result<(), VolumeError> {
        let vdir = self.pod_volumes_dir(str_at(pod, &["metadata", "uid"]))?;
        let mut first = None;
        for v in arr_at(pod, &["spec", "volumes"]) {
            if let Err(cause) = self.setup_one(&vdir, v, pod, resolved, facts, true) {
                first.get_or_insert(VolumeError::SetUp {
                    volume: str_at(v, &["name"]).to_string(),
                    cause,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Sets up one volume; with `content_only`, only the AtomicWriter kinds (returns
    /// `None` for the others).
    fn setup_one(
        &self,
        vdir: &Path,
        v: &Value,
        pod: &Value,
        resolved: &Resolved,
        facts: &NodeFacts,
        content_only: bool,
    ) -> Result<Option<VolumeHost>, SetUpError> {
        let name = str_at(v, &["name"]);
        if !valid_component(name) {
            return Err(SetUpError::InvalidName(name.to_string()));
        }
        let kind = kind_of(v);
        if !KINDS.contains(&kind.as_str()) {
            return Err(SetUpError::Unsupported(kind));
        }
        let fs_group = i64_at(pod, &["spec", "securityContext", "fsGroup"])
            .and_then(|g| u32::try_from(g).ok());
        let source = at(v, &[kind.as_str()]).unwrap_or(&Value::Null);
        let dir_of = |kind_dir: &str| -> Result<PathBuf, IoError> {
            let k = vdir.join(kind_dir);
            mounts::ensure_dir(&k, 0o750)?;
            Ok(k.join(name))
        };
        match kind.as_str() {
            "emptyDir" | "hostPath" if content_only => Ok(None),
            "emptyDir" => {
                let dir = dir_of(EMPTY_DIR)?;
                // kubelet's emptyDir is world-writable (0777, umask ignored).
                let mut fresh = mounts::ensure_dir(&dir, 0o777)?;
                match str_at(source, &["medium"]) {
                    "" => {}
                    "Memory" => {
                        if !mounts::is_mount_point(&dir)? {
                            let size = memory_volume_size(pod, facts, at(source, &["sizeLimit"]));
                            mounts::mount_tmpfs(&self.instance, &dir, size)?;
                            fresh = true;
                        }
                    }
                    other => {
                        return Err(SetUpError::Unsupported(format!("emptyDir medium {other}")))
                    }
                }
                if let (Some(g), true) = (fs_group, fresh) {
                    mounts::set_volume_ownership(&dir, g, false)?;
                }
                Ok(Some(VolumeHost {
                    path: dir,
                    readonly: false,
                }))
            }
            "hostPath" => {
                let path = PathBuf::from(str_at(source, &["path"]));
                host_path::check_type(&path, str_at(source, &["type"]))?;
                Ok(Some(VolumeHost {
                    path,
                    readonly: false,
                }))
            }
            _ => {
                let (kind_dir, in_memory) = match kind.as_str() {
                    "configMap" => (CONFIGMAP_DIR, false),
                    "secret" => (SECRET_DIR, true),
                    "downwardAPI" => (DOWNWARD_API_DIR, false),
                    _ => (PROJECTED_DIR, true),
                };
                // Compute first: a missing source must leave no half-made volume behind.
                let mode = payload::default_mode(source);
                let files = match kind.as_str() {
                    "configMap" => payload::configmap_payload(source, resolved, mode)?,
                    "secret" => payload::secret_payload(
                        source,
                        str_at(source, &["secretName"]),
                        resolved,
                        mode,
                    )?,
                    "downwardAPI" => {
                        payload::downward_api_payload(arr_at(source, &["items"]), pod, facts, mode)?
                    }
                    _ => payload::projected_payload(source, pod, resolved, facts)?,
                };
                let dir = dir_of(kind_dir)?;
                mounts::ensure_dir(&dir, 0o777)?;
                if in_memory && !mounts::is_mount_point(&dir)? {
                    let size = memory_volume_size(pod, facts, None);
                    mounts::mount_tmpfs(&self.instance, &dir, size)?;
                }
                atomic_writer::write(&dir, &files, fs_group)?;
                Ok(Some(VolumeHost {
                    path: dir,
                    readonly: true,
                }))
            }
        }
    }

    /// Resolves container `container`'s subPath `sub_path` inside `volume` safely and
    /// bind-mounts the result onto `<pod dir>/volume-subpaths/<container>/<mount_index>`,
    /// which is returned for the runtime to bind. Missing directories on the way are
    /// created (as kubelet does). Calling it again (container restart) re-resolves.
    pub fn subpath(
        &self,
        pod_uid: &str,
        container: &str,
        mount_index: usize,
        volume: &VolumeHost,
        sub_path: &str,
    ) -> Result<PathBuf, VolumeError> {
        if !valid_component(pod_uid) {
            return Err(VolumeError::InvalidPodUid(pod_uid.to_string()));
        }
        if !valid_component(container) {
            return Err(VolumeError::InvalidContainerName(container.to_string()));
        }
        let wrap = |cause: SubPathError| VolumeError::SubPath {
            container: container.to_string(),
            index: mount_index,
            cause,
        };
        let (fd, is_dir) = subpath::open_beneath(&volume.path, sub_path).map_err(wrap)?;
        let root = self.root(true)?.unwrap_or_else(|| self.pods_root.clone());
        let pod_dir = root.join(pod_uid);
        mounts::ensure_dir(&pod_dir, 0o750)?;
        let mut dir = pod_dir.join(SUBPATHS_DIR);
        mounts::ensure_dir(&dir, 0o750)?;
        dir.push(container);
        mounts::ensure_dir(&dir, 0o750)?;
        let staging = dir.join(mount_index.to_string());
        subpath::bind_fd(&fd, is_dir, &staging).map_err(|e| wrap(SubPathError::Io(e)))?;
        Ok(staging)
    }

    /// Unmounts everything below the pod dir (subPath binds, tmpfs volumes; deepest
    /// first, detaching busy ones) and removes `<pods_root>/<pod-uid>` entirely.
    /// Nothing is removed while anything is still mounted there. Idempotent.
    pub fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        if !valid_component(pod_uid) {
            return Err(VolumeError::InvalidPodUid(pod_uid.to_string()));
        }
        let wrap = |cause: IoError| VolumeError::TearDown {
            pod_uid: pod_uid.to_string(),
            cause,
        };
        let Some(root) = self.root(false).map_err(wrap)? else {
            return Ok(());
        };
        let pod_dir = root.join(pod_uid);
        let left = mounts::unmount_all_under(&pod_dir).map_err(wrap)?;
        if !left.is_empty() {
            return Err(VolumeError::StillMounted {
                pod_uid: pod_uid.to_string(),
                mounts: left,
            });
        }
        match fs::remove_dir_all(&pod_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(wrap(mounts::io_err("remove", &pod_dir)(e))),
        }
    }

    /// Pod UIDs that have volume dirs (`volumes/` or `volume-subpaths/` in their pod dir),
    /// sorted; to clean up pods deleted while the agent was down.
    pub fn list(&self) -> Result<Vec<String>, VolumeError> {
        let rd = match fs::read_dir(&self.pods_root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(mounts::io_err("read dir", &self.pods_root)(e).into()),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(mounts::io_err("read dir", &self.pods_root))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let p = entry.path();
            let has = |d: &str| fs::symlink_metadata(p.join(d)).is_ok_and(|m| m.is_dir());
            if is_dir && valid_component(&name) && (has(VOLUMES_DIR) || has(SUBPATHS_DIR)) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
