//! The agent's view of images ([`Images`]): make an image available under a pull policy
//! with the pod's credentials, and mount or unmount a container's root filesystem.
//! [`NodeImages`] implements it over `podium_image::ImageService` (overlayfs mounts);
//! [`FakeImages`] serves the worker's unit tests without a registry or mounts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use podium_image::snapshot::unmount;
use podium_image::{Credential, ImageConfig, ImageHandle, ImageService, PullPolicy};

use crate::facts::ImageFacts;

/// An image ready for containers.
#[derive(Debug, Clone)]
pub struct ReadyImage {
    /// Container status `imageID`.
    pub image_ref: String,
    pub facts: ImageFacts,
    /// Bytes of the image (layers and config).
    pub size: u64,
    /// How long the pull took; `None` when the local image was used without pulling.
    pub pulled: Option<Duration>,
    handle: Option<ImageHandle>,
}

impl ReadyImage {
    /// An image with no backing store (tests).
    pub fn synthetic(image_ref: &str, facts: ImageFacts, pulled: Option<Duration>) -> ReadyImage {
        ReadyImage {
            image_ref: image_ref.to_string(),
            facts,
            size: 0,
            pulled,
            handle: None,
        }
    }
}

/// Why an image is not available: kubelet's waiting reason, the message, and whether a
/// retry (with back-off) may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFailure {
    pub reason: &'static str,
    pub message: String,
    pub retryable: bool,
}

#[async_trait]
pub trait Images: Send + Sync {
    async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        credentials: &[Credential],
    ) -> Result<ReadyImage, PullFailure>;
    /// Mounts the image's root filesystem on `target`, with the container's private
    /// upper/work dirs under `container_dir`. Blocking.
    fn mount_rootfs(
        &self,
        image: &ReadyImage,
        container_dir: &Path,
        target: &Path,
    ) -> Result<(), String>;
    /// Unmounts `target` if it is mounted. Blocking; idempotent.
    fn unmount_rootfs(&self, target: &Path) -> Result<(), String>;
}

/// The image's run settings as the translation layer wants them.
pub fn image_facts(c: &ImageConfig) -> ImageFacts {
    ImageFacts {
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        env: c.env.clone(),
        working_dir: c.working_dir.clone(),
        user: c.user.clone(),
        stop_signal: (!c.stop_signal.is_empty()).then(|| c.stop_signal.clone()),
        passwd: None,
        group: None,
    }
}

/// Reads `rel` (e.g. `etc/passwd`) inside a container root without following symlinks
/// (a hostile image could point /etc/passwd at a host file). At most 1 MiB.
pub fn read_rootfs_file(root: &Path, rel: &str) -> Option<String> {
    let mut p = root.to_path_buf();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        if comp == ".." || comp == "." {
            return None;
        }
        p.push(comp);
        let md = std::fs::symlink_metadata(&p).ok()?;
        if md.file_type().is_symlink() {
            return None;
        }
    }
    let md = std::fs::symlink_metadata(&p).ok()?;
    if !md.is_file() || md.len() > 1024 * 1024 {
        return None;
    }
    std::fs::read_to_string(&p).ok()
}

/// Whether `path` is a mount point.
pub fn is_mountpoint(path: &Path) -> bool {
    crate::volumes::mounts::is_mount_point(path).unwrap_or(false)
}

/// Mount points at or below `root`.
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    crate::volumes::mounts::mounts_under(root)
        .map(|ms| ms.into_iter().map(|m| m.mount_point).collect())
        .unwrap_or_default()
}

/// [`Images`] over the node's image service.
pub struct NodeImages {
    service: Arc<ImageService>,
}

impl NodeImages {
    pub fn new(service: Arc<ImageService>) -> NodeImages {
        NodeImages { service }
    }
}

#[async_trait]
impl Images for NodeImages {
    async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        credentials: &[Credential],
    ) -> Result<ReadyImage, PullFailure> {
        let started = std::time::Instant::now();
        match self.service.ensure(image, policy, credentials, None).await {
            Ok(e) => Ok(ReadyImage {
                image_ref: e.handle.image_ref.clone(),
                facts: image_facts(&e.handle.config),
                size: e.handle.size,
                pulled: e.pulled.map(|_| started.elapsed()),
                handle: Some(e.handle),
            }),
            Err(e) => Err(PullFailure {
                reason: e.reason(),
                message: e.to_string(),
                retryable: e.retryable(),
            }),
        }
    }

    fn mount_rootfs(
        &self,
        image: &ReadyImage,
        container_dir: &Path,
        target: &Path,
    ) -> Result<(), String> {
        let handle = image
            .handle
            .as_ref()
            .ok_or_else(|| "image has no layers in the store".to_string())?;
        let spec = self
            .service
            .rootfs(handle, container_dir)
            .map_err(|e| e.to_string())?;
        std::fs::create_dir_all(target)
            .map_err(|e| format!("creating {}: {e}", target.display()))?;
        if is_mountpoint(target) {
            return Ok(());
        }
        spec.mount(target).map_err(|e| e.to_string())
    }

    fn unmount_rootfs(&self, target: &Path) -> Result<(), String> {
        if is_mountpoint(target) {
            unmount(target).map_err(|e| e.to_string())?;
        }
        match std::fs::remove_dir(target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing {}: {e}", target.display())),
        }
    }
}

/// Test images: each name maps to facts or to a failure; mounts are plain directories.
#[derive(Debug, Default)]
pub struct FakeImages {
    pub images: Mutex<BTreeMap<String, Result<ImageFacts, PullFailure>>>,
    pub pulls: Mutex<Vec<(String, PullPolicy, usize)>>,
}

impl FakeImages {
    pub fn new() -> FakeImages {
        FakeImages::default()
    }

    pub fn add(&self, image: &str, facts: ImageFacts) {
        self.images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(image.to_string(), Ok(facts));
    }

    pub fn fail(&self, image: &str, f: PullFailure) {
        self.images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(image.to_string(), Err(f));
    }

    pub fn pulls(&self) -> Vec<(String, PullPolicy, usize)> {
        self.pulls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl Images for FakeImages {
    async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        credentials: &[Credential],
    ) -> Result<ReadyImage, PullFailure> {
        self.pulls.lock().unwrap_or_else(|p| p.into_inner()).push((
            image.to_string(),
            policy,
            credentials.len(),
        ));
        let got = self
            .images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(image)
            .cloned();
        match got {
            Some(Ok(facts)) => Ok(ReadyImage::synthetic(
                &format!("docker.io/library/{image}@sha256:{}", "0".repeat(64)),
                facts,
                Some(Duration::from_millis(5)),
            )),
            Some(Err(f)) => Err(f),
            None => Err(PullFailure {
                reason: "ErrImagePull",
                message: format!("failed to pull image {image:?}: not found"),
                retryable: true,
            }),
        }
    }

    fn mount_rootfs(
        &self,
        _: &ReadyImage,
        _container_dir: &Path,
        target: &Path,
    ) -> Result<(), String> {
        std::fs::create_dir_all(target).map_err(|e| e.to_string())
    }

    fn unmount_rootfs(&self, target: &Path) -> Result<(), String> {
        let _ = std::fs::remove_dir_all(target);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_files_are_read_without_following_symlinks() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        assert!(read_rootfs_file(d.path(), "etc/passwd")
            .unwrap()
            .starts_with("root:"));
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("etc/group")).unwrap();
        assert_eq!(read_rootfs_file(d.path(), "etc/group"), None);
        assert_eq!(read_rootfs_file(d.path(), "etc/../etc/passwd"), None);
    }

    #[test]
    fn mount_points() {
        assert!(is_mountpoint(Path::new("/proc")));
        assert!(!is_mountpoint(Path::new("/proc/self")));
        assert!(mounts_under(Path::new("/proc")).contains(&PathBuf::from("/proc")));
    }
}
