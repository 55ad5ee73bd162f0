//! Layer snapshots and overlayfs root filesystems.
//!
//! Each layer is unpacked once, with [`crate::unpack`] in overlay whiteout mode, into
//! `<root>/snapshots/<chainID hex>/fs`, and shared by every image whose layer chain
//! starts the same way. The chain ID is OCI's: `ChainID(L0) = DiffID(L0)`,
//! `ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))`.
//!
//! A snapshot is unpacked into `<root>/snapshots/tmp-<hex>-<pid>-<n>` and renamed into
//! place only when the unpack (with its diffID check) succeeded, so a present
//! `snapshots/<hex>` is always complete; leftovers of a crash are removed by
//! [`Snapshotter::open`]. Unpacks of one chain ID in this process are serialised, so
//! concurrent pulls unpack a shared layer once.
//!
//! A container's root filesystem is an overlayfs mount: `lowerdir` = the image's
//! snapshots top-to-bottom, `upperdir`/`workdir` per container ([`OverlayMount`]).
//!
//! The image service (pull through oci-client, `registries.yaml`, the `podium image`
//! CLI) plugs in above this module: it resolves a manifest, ingests its blobs into the
//! [`crate::store::ContentStore`], then calls [`Snapshotter::apply_layer`] for each
//! layer with the config's diffIDs, and [`Snapshotter::mount_spec`] when a container
//! starts.

use crate::digest::{Digest, Hasher};
use crate::unpack::{unpack_layer, UnpackError, UnpackOptions, UnpackReport, WhiteoutMode};
use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The longest mount data the kernel accepts (one page, NUL included).
const MAX_MOUNT_DATA: usize = 4095;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("opening layer {diff_id}: {source}")]
    Open { diff_id: Digest, source: io::Error },
    #[error("unpacking layer {diff_id}: {source}")]
    Unpack {
        diff_id: Digest,
        source: UnpackError,
    },
    #[error("snapshot {0} is not present")]
    Missing(Digest),
    #[error("path {0} cannot be used in overlay options (contains ':' or ',')")]
    BadPath(PathBuf),
    #[error(
        "overlay options for {layers} layers are {len} bytes, over the kernel's {MAX_MOUNT_DATA}"
    )]
    OptionsTooLong { layers: usize, len: usize },
    #[error("an image needs at least one layer")]
    NoLayers,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// OCI chain ID of `diff_id` on top of `parent`'s chain.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => {
            let mut h = Hasher::new();
            h.update(format!("{p} {diff_id}").as_bytes());
            h.finish()
        }
    }
}

/// The chain IDs of an image's layers, bottom to top.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let c = chain_id(out.last(), d);
        out.push(c);
    }
    out
}

/// overlayfs mount options for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    /// Snapshot directories, top layer first (overlayfs order).
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: PathBuf,
    pub workdir: PathBuf,
}

impl OverlayMount {
    /// `lowerdir=top:...:bottom,upperdir=...,workdir=...`
    pub fn options(&self) -> Result<String, SnapshotError> {
        let mut all: Vec<&Path> = self.lowerdirs.iter().map(PathBuf::as_path).collect();
        all.push(&self.upperdir);
        all.push(&self.workdir);
        for p in &all {
            let b = p.as_os_str().as_bytes();
            if b.contains(&b':') || b.contains(&b',') {
                return Err(SnapshotError::BadPath(p.to_path_buf()));
            }
        }
        let lowers: Vec<_> = self
            .lowerdirs
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let s = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            self.upperdir.display(),
            self.workdir.display()
        );
        if s.len() > MAX_MOUNT_DATA {
            return Err(SnapshotError::OptionsTooLong {
                layers: self.lowerdirs.len(),
                len: s.len(),
            });
        }
        Ok(s)
    }

    /// mount(2) an overlay on `target` (needs CAP_SYS_ADMIN).
    pub fn mount(&self, target: &Path) -> Result<(), SnapshotError> {
        let data = CString::new(self.options()?)
            .map_err(|_| SnapshotError::BadPath(self.upperdir.clone()))?;
        let tgt = cpath(target)?;
        // SAFETY: all pointers are NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                tgt.as_ptr(),
                c"overlay".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(io_err("mount overlay on", target)(
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

/// umount(2) `target`.
pub fn unmount(target: &Path) -> Result<(), SnapshotError> {
    let tgt = cpath(target)?;
    // SAFETY: NUL-terminated path.
    if unsafe { libc::umount2(tgt.as_ptr(), 0) } != 0 {
        return Err(io_err("unmount", target)(io::Error::last_os_error()));
    }
    Ok(())
}

fn cpath(p: &Path) -> Result<CString, SnapshotError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| SnapshotError::BadPath(p.to_path_buf()))
}

/// Snapshots of unpacked layers under `<root>/snapshots`.
#[derive(Debug)]
pub struct Snapshotter {
    dir: PathBuf,
    inflight: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    counter: AtomicU64,
}

impl Snapshotter {
    /// Opens (creating) `<root>/snapshots` and removes unfinished unpacks.
    pub fn open(root: impl AsRef<Path>) -> Result<Snapshotter, SnapshotError> {
        let dir = root.as_ref().join("snapshots");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        for e in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let e = e.map_err(io_err("read", &dir))?;
            if e.file_name().as_bytes().starts_with(b"tmp-") {
                let p = e.path();
                fs::remove_dir_all(&p).map_err(io_err("remove", &p))?;
            }
        }
        Ok(Snapshotter {
            dir,
            inflight: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
        })
    }

    /// `<root>/snapshots/<hex>`
    pub fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex())
    }

    /// `<root>/snapshots/<hex>/fs`: the layer's files, an overlay lowerdir.
    pub fn fs_path(&self, chain_id: &Digest) -> PathBuf {
        self.snapshot_dir(chain_id).join("fs")
    }

    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.fs_path(chain_id).is_dir()
    }

    /// The parent chain ID recorded for a snapshot (None for a base layer).
    pub fn parent(&self, chain_id: &Digest) -> Result<Option<Digest>, SnapshotError> {
        let p = self.snapshot_dir(chain_id).join("parent");
        match fs::read_to_string(&p) {
            Ok(s) => Ok(Digest::parse(s.trim()).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.exists(chain_id) {
                    Ok(None)
                } else {
                    Err(SnapshotError::Missing(chain_id.clone()))
                }
            }
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    /// Ensures the snapshot of `diff_id` on top of `parent` (a chain ID) exists,
    /// unpacking the layer from `open_layer` (called only when needed) with `opts`
    /// (whiteouts forced to overlay mode, diffID forced to `diff_id`). Returns the chain
    /// ID and, when it unpacked, the unpack report.
    pub fn apply_layer<R, F>(
        &self,
        parent: Option<&Digest>,
        diff_id: &Digest,
        open_layer: F,
        opts: &UnpackOptions,
    ) -> Result<(Digest, Option<UnpackReport>), SnapshotError>
    where
        R: Read,
        F: FnOnce() -> io::Result<R>,
    {
        let id = chain_id(parent, diff_id);
        if let Some(p) = parent {
            if !self.exists(p) {
                return Err(SnapshotError::Missing(p.clone()));
            }
        }
        let l = {
            let mut m = lock(&self.inflight);
            m.entry(id.clone()).or_default().clone()
        };
        let result = {
            let _g = lock(&l);
            if self.exists(&id) {
                Ok((id.clone(), None))
            } else {
                self.unpack_new(&id, parent, diff_id, open_layer, opts)
                    .map(|r| (id.clone(), Some(r)))
            }
        };
        {
            let mut m = lock(&self.inflight);
            if Arc::strong_count(&l) == 2 {
                m.remove(&id);
            }
        }
        result
    }

    fn unpack_new<R, F>(
        &self,
        id: &Digest,
        parent: Option<&Digest>,
        diff_id: &Digest,
        open_layer: F,
        opts: &UnpackOptions,
    ) -> Result<UnpackReport, SnapshotError>
    where
        R: Read,
        F: FnOnce() -> io::Result<R>,
    {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!("tmp-{}-{}-{n}", id.hex(), std::process::id()));
        let fs_dir = tmp.join("fs");
        fs::create_dir_all(&fs_dir).map_err(io_err("create", &fs_dir))?;
        let result = (|| {
            let reader = open_layer().map_err(|source| SnapshotError::Open {
                diff_id: diff_id.clone(),
                source,
            })?;
            let opts = UnpackOptions {
                whiteouts: WhiteoutMode::Overlay,
                expected_diff_id: Some(diff_id.clone()),
                ..opts.clone()
            };
            let report =
                unpack_layer(&fs_dir, reader, &opts).map_err(|source| SnapshotError::Unpack {
                    diff_id: diff_id.clone(),
                    source,
                })?;
            if let Some(p) = parent {
                let pf = tmp.join("parent");
                fs::write(&pf, p.to_string()).map_err(io_err("write", &pf))?;
            }
            let df = tmp.join("diffid");
            fs::write(&df, diff_id.to_string()).map_err(io_err("write", &df))?;
            let dest = self.snapshot_dir(id);
            fs::rename(&tmp, &dest).map_err(io_err("rename", &dest))?;
            Ok(report)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Overlay options for an image with these diffIDs (bottom to top) and a container
    /// whose private dirs live in `container_dir` (`upper/` and `work/` are created).
    pub fn mount_spec(
        &self,
        diff_ids: &[Digest],
        container_dir: &Path,
    ) -> Result<OverlayMount, SnapshotError> {
        if diff_ids.is_empty() {
            return Err(SnapshotError::NoLayers);
        }
        let mut lowerdirs = Vec::with_capacity(diff_ids.len());
        for id in chain_ids(diff_ids).iter().rev() {
            if !self.exists(id) {
                return Err(SnapshotError::Missing(id.clone()));
            }
            lowerdirs.push(self.fs_path(id));
        }
        let upperdir = container_dir.join("upper");
        let workdir = container_dir.join("work");
        for d in [&upperdir, &workdir] {
            fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        let m = OverlayMount {
            lowerdirs,
            upperdir,
            workdir,
        };
        m.options()?;
        Ok(m)
    }

    /// Every complete snapshot.
    pub fn list(&self) -> Result<Vec<Digest>, SnapshotError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io_err("read", &self.dir))? {
            let e = e.map_err(io_err("read", &self.dir))?;
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a snapshot (the caller makes sure no image or container uses it).
    pub fn remove(&self, chain_id: &Digest) -> Result<(), SnapshotError> {
        let p = self.snapshot_dir(chain_id);
        match fs::remove_dir_all(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &p)(e)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_definition() {
        let a = Digest::of_bytes(b"a");
        let b = Digest::of_bytes(b"b");
        let c = Digest::of_bytes(b"c");
        let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of_bytes(format!("{a} {b}").as_bytes()));
        assert_eq!(
            ids[2],
            Digest::of_bytes(format!("{} {c}", ids[1]).as_bytes())
        );
        assert_eq!(chain_id(Some(&ids[1]), &c), ids[2]);
    }
}
