//! Safe subPath mounts (kubelet's `doSafeMakeDir` + `doBindSubPath`, done with file
//! descriptors end to end). The subPath is resolved below the volume directory one
//! component at a time with `openat(O_PATH|O_NOFOLLOW)`: a directory is descended into by
//! its descriptor, a symlink is read from its own descriptor and its target resolved by the
//! same rules (absolute targets and `..` above the volume root are refused), missing
//! directories are created with `mkdirat` and re-opened without following. The result is a
//! descriptor, never a path, and it is bind-mounted through `/proc/self/fd/<n>` onto a
//! staging path in the pod dir, which the runtime then binds into the container: a symlink
//! swapped into the volume at any moment can change which error we return, never which
//! inode ends up mounted.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::mounts::{errno_err, io_err, is_mount_point, IoError};

/// Linux's limit on symlinks followed in one lookup.
const MAX_SYMLINKS: usize = 40;

/// Why a subPath cannot be mounted. Carries no host paths (kubelet keeps host details out
/// of the user-visible message; these are for the agent's log).
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    #[error("subPath {0:?} must not be an absolute path")]
    Absolute(String),
    #[error("subPath {0:?} must not contain '..'")]
    Backsteps(String),
    #[error("subPath {0:?} escapes its volume")]
    Escapes(String),
    #[error("subPath {0:?}: too many levels of symbolic links")]
    TooManyLinks(String),
    #[error("subPath {0:?}: a non-directory is used as a directory")]
    NotADirectory(String),
    #[error("subPath {sub_path:?}: {op}: {cause}")]
    Resolve {
        sub_path: String,
        op: &'static str,
        cause: io::Error,
    },
    #[error(transparent)]
    Io(#[from] IoError),
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC)`.
fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = c_name(name)?;
    // SAFETY: `c` is a valid NUL-terminated string and `dir` a live descriptor.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The target of the symlink `fd` refers to (an `O_PATH|O_NOFOLLOW` descriptor).
fn readlink_fd(fd: BorrowedFd<'_>) -> io::Result<OsString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: the empty path with a symlink O_PATH descriptor reads that symlink; `buf`
    // is writable for `buf.len()` bytes.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    if n >= buf.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidData));
    }
    buf.truncate(n);
    Ok(OsString::from_vec(buf))
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)
}

/// kubelet's checks of a subPath string: relative, no `..` component.
pub fn validate(sub_path: &str) -> Result<(), SubPathError> {
    if sub_path.starts_with('/') {
        return Err(SubPathError::Absolute(sub_path.to_string()));
    }
    if sub_path.split('/').any(|c| c == "..") {
        return Err(SubPathError::Backsteps(sub_path.to_string()));
    }
    Ok(())
}

/// Opens `sub_path` below the directory `root`, creating missing directories with the
/// root's permissions. Returns the descriptor and whether it is a directory.
pub fn open_beneath(root: &Path, sub_path: &str) -> Result<(OwnedFd, bool), SubPathError> {
    validate(sub_path)?;
    let err = |op: &'static str| {
        move |cause: io::Error| SubPathError::Resolve {
            sub_path: sub_path.to_string(),
            op,
            cause,
        }
    };
    // The volume root itself is the agent's (or the administrator's, for hostPath).
    let root_fd: OwnedFd = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)
        .map_err(io_err("open volume", root))?
        .into();
    let root_mode = fstat(root_fd.as_fd()).map_err(err("stat volume"))?.st_mode;
    let new_dir_mode = (root_mode & 0o777) | (root_mode & 0o2000);

    let mut stack: Vec<OwnedFd> = vec![root_fd];
    let mut todo: VecDeque<OsString> = sub_path.split('/').map(OsString::from).collect();
    let mut leaf: Option<OwnedFd> = None;
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c.is_empty() || c == "." {
            continue;
        }
        if leaf.is_some() {
            return Err(SubPathError::NotADirectory(sub_path.to_string()));
        }
        if c == ".." {
            if stack.len() == 1 {
                return Err(SubPathError::Escapes(sub_path.to_string()));
            }
            stack.pop();
            continue;
        }
        let parent = stack
            .last()
            .ok_or_else(|| SubPathError::Escapes(sub_path.to_string()))?
            .as_fd();
        let fd = match openat(parent, &c, libc::O_PATH) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let created = match nix::sys::stat::mkdirat(
                    Some(parent.as_raw_fd()),
                    c.as_os_str(),
                    nix::sys::stat::Mode::from_bits_truncate(new_dir_mode),
                ) {
                    Ok(()) => true,
                    Err(Errno::EEXIST) => false,
                    Err(e) => return Err(err("mkdir")(io::Error::from(e))),
                };
                // Re-open without following: a symlink raced in here fails with ELOOP.
                let d = openat(parent, &c, libc::O_RDONLY | libc::O_DIRECTORY)
                    .map_err(err("open created directory"))?;
                if created {
                    nix::sys::stat::fchmod(
                        d.as_raw_fd(),
                        nix::sys::stat::Mode::from_bits_truncate(new_dir_mode),
                    )
                    .map_err(|e| err("chmod")(io::Error::from(e)))?;
                }
                d
            }
            Err(e) => return Err(err("open")(e)),
        };
        let st = fstat(fd.as_fd()).map_err(err("stat"))?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => stack.push(fd),
            libc::S_IFLNK => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(SubPathError::TooManyLinks(sub_path.to_string()));
                }
                let target = readlink_fd(fd.as_fd()).map_err(err("readlink"))?;
                if target.as_bytes().starts_with(b"/") {
                    return Err(SubPathError::Escapes(sub_path.to_string()));
                }
                let parts: Vec<OsString> = target
                    .as_bytes()
                    .split(|b| *b == b'/')
                    .map(|p| OsString::from_vec(p.to_vec()))
                    .collect();
                for p in parts.into_iter().rev() {
                    todo.push_front(p);
                }
            }
            _ => leaf = Some(fd),
        }
    }
    match leaf {
        Some(fd) => Ok((fd, false)),
        None => stack
            .pop()
            .map(|fd| (fd, true))
            .ok_or_else(|| SubPathError::Escapes(sub_path.to_string())),
    }
}

/// Bind-mounts what `fd` refers to onto `staging` (canonical, inside the pod dir), after
/// removing a previous staging mount; the staging entry is a directory or an empty file
/// to match. Verifies that the mounted inode is the opened one.
pub fn bind_fd(fd: &OwnedFd, is_dir: bool, staging: &Path) -> Result<(), IoError> {
    for _ in 0..8 {
        if !is_mount_point(staging)? {
            break;
        }
        umount2(staging, MntFlags::MNT_DETACH).map_err(errno_err("unmount", staging))?;
    }
    match fs::symlink_metadata(staging) {
        Ok(m) if m.is_dir() => fs::remove_dir(staging).map_err(io_err("remove", staging))?,
        Ok(_) => fs::remove_file(staging).map_err(io_err("remove", staging))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("stat", staging)(e)),
    }
    if is_dir {
        fs::DirBuilder::new()
            .mode(0o750)
            .create(staging)
            .map_err(io_err("mkdir", staging))?;
    } else {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(staging)
            .map_err(io_err("create", staging))?;
    }
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    mount(
        Some(source.as_str()),
        staging,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(errno_err("bind subPath onto", staging))?;
    let want = fstat(fd.as_fd()).map_err(io_err("stat subPath", staging))?;
    let got = fs::symlink_metadata(staging).map_err(io_err("stat", staging))?;
    if got.dev() != want.st_dev || got.ino() != want.st_ino {
        let _ = umount2(staging, MntFlags::MNT_DETACH);
        return Err(IoError {
            op: "verify subPath mount",
            path: staging.to_path_buf(),
            cause: io::Error::other("mounted inode differs from the opened one"),
        });
    }
    Ok(())
}
