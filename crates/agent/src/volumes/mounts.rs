//! The kernel side of volumes: reading /proc/self/mountinfo, tmpfs mounts, unmounting
//! everything below a directory, kubelet's fsGroup ownership (`SetVolumeOwnership`), and
//! directories created without following symlinks.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// An I/O failure with what was being done and where.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {cause}")]
pub struct IoError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub cause: io::Error,
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> IoError + 'a {
    move |cause| IoError {
        op,
        path: path.to_path_buf(),
        cause,
    }
}

pub(crate) fn errno_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(Errno) -> IoError + 'a {
    move |e| IoError {
        op,
        path: path.to_path_buf(),
        cause: io::Error::from(e),
    }
}

/// Decodes the octal escapes (`\040` for space, ...) of a mountinfo path field.
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// One line of mountinfo: the mount point, filesystem type and super options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// The mounts of the calling process's mount namespace, in mountinfo order (parents
/// before the mounts on top of or below them).
pub fn mountinfo() -> Result<Vec<MountEntry>, IoError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(io_err("read", path))?;
    Ok(parse_mountinfo(&text))
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                mount_point: unescape(fields.get(4)?),
                fs_type: fields.get(sep + 1)?.to_string(),
                source: fields
                    .get(sep + 2)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                super_options: fields
                    .get(sep + 3)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Mounts at or below `dir` (canonical), in mountinfo order.
pub fn mounts_under(dir: &Path) -> Result<Vec<MountEntry>, IoError> {
    Ok(mountinfo()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect())
}

/// Whether something is mounted exactly at `dir` (canonical). Asks statx(2) for the
/// mount-root attribute (Linux 5.8+: one syscall, where reading mountinfo costs time in
/// proportion to the node's mounts, i.e. its pods); falls back to mountinfo.
pub fn is_mount_point(dir: &Path) -> Result<bool, IoError> {
    if let Some(root) = statx_mount_root(dir) {
        return Ok(root);
    }
    Ok(mountinfo()?.iter().any(|m| m.mount_point == dir))
}

/// statx's STATX_ATTR_MOUNT_ROOT of `dir` (not following a final symlink); `None` when
/// the kernel does not report it or the call fails.
fn statx_mount_root(dir: &Path) -> Option<bool> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is plain old data; zeroed is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a statx buffer we own.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            0,
            &mut st,
        )
    };
    let attr = libc::STATX_ATTR_MOUNT_ROOT as u64;
    (r == 0 && st.stx_attributes_mask & attr != 0).then_some(st.stx_attributes & attr != 0)
}

/// Mounts a tmpfs at `dir` (kubelet's emptyDir `setupTmpfs`); `size` in bytes.
pub fn mount_tmpfs(source: &str, dir: &Path, size: Option<i64>) -> Result<(), IoError> {
    let opts = size.filter(|s| *s > 0).map(|s| format!("size={s}"));
    mount(
        Some(source),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        opts.as_deref(),
    )
    .map_err(errno_err("mount tmpfs on", dir))
}

/// Unmounts every mount at or below `dir`, the most recent (deepest) first; a busy mount
/// is detached. Returns the mount points still there afterwards (none on success).
pub fn unmount_all_under(dir: &Path) -> Result<Vec<PathBuf>, IoError> {
    // Stacked mounts at one point need one umount each; a few passes settle everything.
    for _ in 0..4 {
        let found = mounts_under(dir)?;
        if found.is_empty() {
            return Ok(Vec::new());
        }
        for m in found.iter().rev() {
            match umount2(&m.mount_point, MntFlags::empty()) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
                Err(Errno::EBUSY) => {
                    umount2(&m.mount_point, MntFlags::MNT_DETACH)
                        .map_err(errno_err("unmount", &m.mount_point))?;
                }
                Err(e) => return Err(errno_err("unmount", &m.mount_point)(e)),
            }
        }
    }
    Ok(mounts_under(dir)?
        .into_iter()
        .map(|m| m.mount_point)
        .collect())
}

/// Creates `dir` (one level: its parent must exist) with exactly `mode`, or checks that an
/// existing `dir` is a real directory (not a symlink). Returns whether it was created.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<bool, IoError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => Ok(false),
        Ok(_) => Err(IoError {
            op: "use as directory",
            path: dir.to_path_buf(),
            cause: io::Error::other("exists and is not a directory"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(mode)
                .create(dir)
                .map_err(io_err("mkdir", dir))?;
            // mkdir(2) applies the umask; the mode must be exact.
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", dir))?;
            Ok(true)
        }
        Err(e) => Err(io_err("stat", dir)(e)),
    }
}

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// kubelet's `SetVolumeOwnership` without a change policy: everything below `dir` (not
/// following symlinks) gets group `fs_group`; files g+rw (g+r for read-only volumes),
/// directories additionally g+x and setgid. Symlinks are re-grouped, never chmod'ed.
pub fn set_volume_ownership(dir: &Path, fs_group: u32, readonly: bool) -> Result<(), IoError> {
    let meta = fs::symlink_metadata(dir).map_err(io_err("stat", dir))?;
    change_one(dir, &meta, fs_group, readonly)?;
    if meta.file_type().is_dir() {
        for entry in fs::read_dir(dir).map_err(io_err("read dir", dir))? {
            let entry = entry.map_err(io_err("read dir", dir))?;
            set_volume_ownership(&entry.path(), fs_group, readonly)?;
        }
    }
    Ok(())
}

fn change_one(path: &Path, meta: &fs::Metadata, gid: u32, readonly: bool) -> Result<(), IoError> {
    std::os::unix::fs::lchown(path, None, Some(gid)).map_err(io_err("chown", path))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mut mask = if readonly { RO_MASK } else { RW_MASK };
    if meta.file_type().is_dir() {
        mask |= SETGID | EXEC_MASK;
    }
    let mode = (meta.mode() & 0o7777) | mask;
    // chown(2) clears setuid/setgid of files, so set the mode after it, from the old mode.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_with_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    42 27 0:39 / /tmp/mt rw,relatime - tmpfs podium-x rw,size=1024k\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, Path::new("/mnt/with space"));
        assert_eq!(m[0].fs_type, "ext3");
        assert_eq!(m[1].source, "podium-x");
        assert_eq!(m[1].super_options, "rw,size=1024k");
    }

    #[test]
    fn ensure_dir_sets_exact_mode_and_refuses_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        assert!(ensure_dir(&d, 0o777).unwrap());
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, 0o777);
        assert!(!ensure_dir(&d, 0o777).unwrap());
        let l = t.path().join("l");
        std::os::unix::fs::symlink("/etc", &l).unwrap();
        assert!(ensure_dir(&l, 0o755).is_err());
    }

    #[test]
    fn mount_roots_are_recognised_without_mountinfo() {
        assert_eq!(statx_mount_root(Path::new("/proc")), Some(true));
        assert_eq!(statx_mount_root(Path::new("/proc/self")), Some(false));
        assert!(is_mount_point(Path::new("/proc")).unwrap());
        let d = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(d.path()).unwrap());
        assert_eq!(statx_mount_root(&d.path().join("absent")), None);
    }
}
