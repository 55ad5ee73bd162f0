//! Image garbage collection, as kubelet's image GC: when the disk holding the data dir
//! is used above the high threshold (default 85 %), images not in use are removed,
//! least recently used first, until usage would be at the low threshold (default 80 %).
//! Images in use (the caller passes their IDs) are never removed.
//!
//! Removing an image removes its metadata; [`prune`] then deletes every blob and
//! snapshot no remaining image references. Blobs and snapshots younger than
//! `min_age` are kept, so a pull that has written blobs but not yet its metadata is not
//! undone by a concurrent collection.

use crate::digest::Digest;
use crate::pull::ImageService;
use crate::snapshot::chain_ids;
use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("statfs {path}: {source}")]
    Statfs { path: String, source: io::Error },
    #[error("image gc: {0}")]
    Store(String),
    #[error(
        "invalid image gc thresholds: low {low}% must be below high {high}% (and high at most 100)"
    )]
    Thresholds { low: u8, high: u8 },
}

/// kubelet's `imageGCHighThresholdPercent` / `imageGCLowThresholdPercent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    pub high_threshold_percent: u8,
    pub low_threshold_percent: u8,
    /// Unreferenced blobs/snapshots younger than this are kept (in-flight pulls).
    pub min_age: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(600),
        }
    }
}

/// Capacity and free bytes of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub capacity: u64,
    pub available: u64,
}

impl DiskUsage {
    pub fn used(&self) -> u64 {
        self.capacity.saturating_sub(self.available)
    }
}

/// statvfs(2) of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> Result<DiskUsage, GcError> {
    let err = |source| GcError::Statfs {
        path: path.display().to_string(),
        source,
    };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is NUL-terminated and `st` is a valid out-pointer for statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // The field types differ between libc targets; these are u64 on x86_64.
    #[allow(clippy::unnecessary_cast)]
    let (frsize, blocks, avail) = (st.f_frsize as u64, st.f_blocks as u64, st.f_bavail as u64);
    Ok(DiskUsage {
        capacity: blocks * frsize,
        available: avail * frsize,
    })
}

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed_images: Vec<Digest>,
    pub removed_blobs: usize,
    pub removed_snapshots: usize,
    pub freed_bytes: u64,
}

/// Collects if `usage` is above the high threshold. `in_use` holds image IDs.
pub fn collect(
    svc: &ImageService,
    policy: &GcPolicy,
    usage: DiskUsage,
    in_use: &HashSet<Digest>,
) -> Result<GcReport, GcError> {
    let (high, low) = (policy.high_threshold_percent, policy.low_threshold_percent);
    if low >= high || high > 100 {
        return Err(GcError::Thresholds { low, high });
    }
    let mut report = GcReport::default();
    if usage.capacity == 0 || usage.used() * 100 < usage.capacity * high as u64 {
        return Ok(report);
    }
    let target = usage.capacity * low as u64 / 100;
    let to_free = usage.used().saturating_sub(target);
    let mut candidates: Vec<_> = svc
        .metadata()
        .list()
        .into_iter()
        .filter(|r| !in_use.contains(&r.id))
        .collect();
    candidates.sort_by_key(|r| (r.last_used, r.created));
    for r in candidates {
        if report.freed_bytes >= to_free {
            break;
        }
        svc.metadata()
            .remove(&r.id)
            .map_err(|e| GcError::Store(e.to_string()))?;
        report.removed_images.push(r.id.clone());
        let p = prune(svc, policy.min_age)?;
        report.removed_blobs += p.removed_blobs;
        report.removed_snapshots += p.removed_snapshots;
        report.freed_bytes += p.freed_bytes;
    }
    Ok(report)
}

fn older_than(path: &Path, min_age: Duration) -> bool {
    if min_age.is_zero() {
        return true;
    }
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age >= min_age)
}

/// Deletes blobs and snapshots no image references (older than `min_age`).
pub fn prune(svc: &ImageService, min_age: Duration) -> Result<GcReport, GcError> {
    let mut blobs: HashSet<Digest> = HashSet::new();
    let mut snaps: HashSet<Digest> = HashSet::new();
    for r in svc.metadata().list() {
        blobs.insert(r.id.clone());
        blobs.insert(r.manifest_digest.clone());
        if let Some(i) = &r.index_digest {
            blobs.insert(i.clone());
        }
        for l in &r.layers {
            blobs.insert(l.digest.clone());
        }
        snaps.extend(chain_ids(&r.diff_ids()));
    }
    let mut report = GcReport::default();
    let s = |e: &dyn std::fmt::Display| GcError::Store(e.to_string());
    for d in svc.store().list().map_err(|e| s(&e))? {
        if blobs.contains(&d) || !older_than(&svc.store().blob_path(&d), min_age) {
            continue;
        }
        let size = svc.store().size(&d).unwrap_or(0);
        svc.store().delete(&d).map_err(|e| s(&e))?;
        report.removed_blobs += 1;
        report.freed_bytes += size;
    }
    for c in svc.snapshots().list().map_err(|e| s(&e))? {
        let dir = svc.snapshots().snapshot_dir(&c);
        if snaps.contains(&c) || !older_than(&dir, min_age) {
            continue;
        }
        let size = tree_size(&dir);
        svc.snapshots().remove(&c).map_err(|e| s(&e))?;
        report.removed_snapshots += 1;
        report.freed_bytes += size;
    }
    Ok(report)
}

/// Bytes of regular files under `dir` (symlinks not followed).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}
