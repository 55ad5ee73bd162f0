//! Where the agent keeps things on the host, and the names it gives host resources. Every
//! host-wide name carries the server's instance name (`podium-` + 8 hex digits of a hash
//! of the canonical data dir), so two servers on one machine never collide:
//!
//! - `<data-dir>/pods/<uid>/`: the pod dir — managed `etc-hosts`, `etc-hostname`,
//!   `resolv.conf`, the pod's [`index`](crate::index) file, per-container termination logs
//!   and overlay upper/work dirs under `containers/<id>/` (volumes are the volume manager's).
//! - `<data-dir>/pods/<ns>_<name>_<uid>/<container>/<restartCount>.log`: container logs
//!   (kubelet's /var/log/pods layout).
//! - `/run/podium/<instance>/`: the runtime root (sandboxes, shim state) and container root
//!   filesystem mount points under `rootfs/<id>`.
//! - cgroups under `/<instance>/kubepods/...`.
//! - container ids `<instance>-<pod uid>-<container>-<attempt>`.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// The instance name of a server using `data_dir` (canonicalised when it exists).
pub fn instance_name(data_dir: &Path) -> String {
    let canonical = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("podium-{hex}")
}

/// The host layout of one agent instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub instance: String,
    /// `<data-dir>/pods`.
    pub pods_root: PathBuf,
    /// `/run/podium/<instance>`.
    pub run_root: PathBuf,
}

impl Layout {
    pub fn new(instance: &str, data_dir: &Path, run_base: &Path) -> Layout {
        Layout {
            instance: instance.to_string(),
            pods_root: data_dir.join("pods"),
            run_root: run_base.join(instance),
        }
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_root.join(uid)
    }

    /// `<ns>_<name>_<uid>`: the pod's log directory.
    pub fn pod_log_dir(&self, ns: &str, name: &str, uid: &str) -> PathBuf {
        self.pods_root.join(format!("{ns}_{name}_{uid}"))
    }

    pub fn log_path(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        container: &str,
        restart: u32,
    ) -> PathBuf {
        self.pod_log_dir(ns, name, uid)
            .join(container)
            .join(format!("{restart}.log"))
    }

    /// The container's private dir (overlay upper/work, termination log).
    pub fn container_dir(&self, uid: &str, id: &str) -> PathBuf {
        self.pod_dir(uid).join("containers").join(id)
    }

    /// Where the container's root filesystem is mounted.
    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.run_root.join("rootfs").join(id)
    }

    /// The runtime's sandbox dir of a pod (see `LinuxRuntime::pods_dir`).
    pub fn sandbox_dir(&self, uid: &str) -> PathBuf {
        self.run_root.join("pods").join(uid)
    }

    /// The root of this instance's pod cgroups.
    pub fn cgroup_root(&self) -> String {
        format!("/{}/kubepods", self.instance)
    }

    /// A container id unique per pod, container and attempt.
    pub fn container_id(&self, uid: &str, container: &str, attempt: u32) -> String {
        let id = format!("{}-{uid}-{container}-{attempt}", self.instance);
        if id.len() <= 128 && valid_id(&id) {
            return id;
        }
        // Not reachable with API-validated names and uids; keep ids valid regardless.
        let digest = Sha256::digest(id.as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{}-{hex}-{attempt}", self.instance)
    }

    /// Whether a runtime container id belongs to this instance.
    pub fn owns_container(&self, id: &str) -> bool {
        id.strip_prefix(&self.instance)
            .is_some_and(|rest| rest.starts_with('-'))
    }
}

/// The runtime's id alphabet.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A pod uid safe to use as a path component.
pub fn valid_uid(uid: &str) -> bool {
    valid_id(uid) && uid != "." && uid != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_differ_by_data_dir_and_are_stable() {
        let a = instance_name(Path::new("/nonexistent/a"));
        let b = instance_name(Path::new("/nonexistent/b"));
        assert_ne!(a, b);
        assert_eq!(a, instance_name(Path::new("/nonexistent/a")));
        assert!(
            a.starts_with("podium-") && a.len() == "podium-".len() + 8,
            "{a}"
        );
    }

    #[test]
    fn layout_paths_and_ids() {
        let l = Layout::new(
            "podium-0a1b2c3d",
            Path::new("/data"),
            Path::new("/run/podium"),
        );
        assert_eq!(l.run_root, Path::new("/run/podium/podium-0a1b2c3d"));
        assert_eq!(
            l.log_path("ns", "web", "u-1", "main", 2),
            Path::new("/data/pods/ns_web_u-1/main/2.log")
        );
        assert_eq!(l.cgroup_root(), "/podium-0a1b2c3d/kubepods");
        let uid = "0d6b9c1e-5a2f-4c3b-9e8d-7f6a5b4c3d2e";
        let id = l.container_id(uid, &"c".repeat(63), 12345);
        assert!(id.len() <= 128 && valid_id(&id), "{id}");
        assert!(l.owns_container(&id));
        assert_ne!(l.container_id(uid, "a", 0), l.container_id(uid, "a", 1));
        assert!(!l.owns_container("podium-0a1b2c3dx-1"));
        assert!(!valid_uid(".."));
    }
}
