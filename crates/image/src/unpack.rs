//! The safe layer unpacker: applies one OCI/Docker layer (a tar stream, uncompressed,
//! gzip or zstd, detected by magic bytes) onto a directory, without ever touching
//! anything outside it.
//!
//! How containment is enforced (the threat is the layer's content):
//! - Entry names are split into components; an absolute name, a `..` component, a NUL,
//!   a component over 255 bytes or a name over 4096 bytes is refused.
//! - Every ancestor is opened with `openat(O_DIRECTORY|O_NOFOLLOW)` from the root's fd,
//!   one component at a time; a symlinked (or non-directory) ancestor is an error, never
//!   followed. Missing ancestors are created as 0755 directories.
//! - The final component is created relative to its parent's fd with `O_EXCL|O_NOFOLLOW`
//!   (files), `mkdirat`, `symlinkat` (targets stored as-is, never resolved),
//!   `linkat` without `AT_SYMLINK_FOLLOW` (hardlinks: the target is resolved by the same
//!   walk, so it is inside the root), `mknodat`.
//! - Metadata: files get `fchown`/`fchmod`/`futimens` on their own fd; other entries
//!   `fchownat`/`utimensat` with `AT_SYMLINK_NOFOLLOW`; symlinks are never chmod'ed.
//!   Directory times are applied at the end (children change them).
//! - The tar crate is used for parsing only; its unpack functions are not used.
//!
//! Policy choices:
//! - Char/block devices are skipped with a warning unless `allow_devices`; fifos are
//!   created (harmless) unless `allow_fifos` is false.
//! - setuid/setgid bits are kept by default, as Docker and containerd do (images such as
//!   `ping` or `su` need them; containers run with no_new_privs unless
//!   allowPrivilegeEscalation). `strip_setuid` clears them.
//! - PAX `SCHILY.xattr.*` attributes are applied (e.g. `security.capability`), except
//!   `trusted.overlay.*`, which would let a layer forge overlay metadata; refused ones
//!   and unsupported ones become warnings.
//! - Whiteouts: [`WhiteoutMode::Overlay`] (snapshots) turns `.wh.<name>` into an overlayfs
//!   whiteout (char device 0/0) and `.wh..wh..opq` into `trusted.overlay.opaque=y` on the
//!   directory; [`WhiteoutMode::Apply`] (flattening onto a merged tree) deletes the
//!   lower entries instead. In both, a whiteout only hides what lower layers had, never
//!   what this layer created, so the opaque marker acts as if processed first.
//! - Caps: entry count, total regular-file bytes, and the whole uncompressed stream
//!   (file bytes + generous per-entry header allowance) so a decompression bomb stops.
//! - The diffID (sha256 of the uncompressed tar stream, trailing padding included) is
//!   computed while unpacking and checked against the expected one at the end; on a
//!   mismatch the caller must discard the directory (the snapshotter unpacks into a
//!   temporary directory for that reason).

use crate::digest::{Digest, HashingReader};
use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

const MAX_COMPONENT: usize = 255;
const MAX_PATH: usize = 4096;
/// Per-entry allowance for headers, PAX records and padding in the stream cap.
const HEADER_ALLOWANCE: u64 = 8 * 1024;
/// Bytes allowed after the end-of-archive marker (tar blocking pads to 10 KiB).
const MAX_TRAILING: u64 = 1024 * 1024;
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// How whiteout entries are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Into an overlayfs upper/snapshot directory: whiteout devices and opaque xattrs.
    Overlay,
    /// Onto a merged tree: delete what lower layers had.
    Apply,
}

/// Unpacker settings. `Default` is what snapshots use.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Cap on the sum of regular file sizes.
    pub max_bytes: u64,
    /// Cap on the number of tar entries.
    pub max_entries: u64,
    /// Create char/block device nodes (otherwise skipped with a warning).
    pub allow_devices: bool,
    /// Create fifos (otherwise skipped with a warning).
    pub allow_fifos: bool,
    /// Clear setuid/setgid bits.
    pub strip_setuid: bool,
    /// chown entries to the tar uid/gid (needs root; default: when running as root).
    pub preserve_ownership: bool,
    pub whiteouts: WhiteoutMode,
    /// When set, the layer's diffID must match.
    pub expected_diff_id: Option<Digest>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            max_bytes: 32 << 30,
            max_entries: 1_000_000,
            allow_devices: false,
            allow_fifos: true,
            strip_setuid: false,
            // SAFETY: geteuid has no preconditions.
            preserve_ownership: unsafe { libc::geteuid() } == 0,
            whiteouts: WhiteoutMode::Overlay,
            expected_diff_id: None,
        }
    }
}

/// The layer's compression, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// gzip `1f 8b`, zstd `28 b5 2f fd`, anything else is taken as a plain tar.
pub fn detect_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// What an unpack did.
#[derive(Debug, Clone)]
pub struct UnpackReport {
    /// sha256 of the uncompressed stream.
    pub diff_id: Digest,
    pub compression: Compression,
    pub entries: u64,
    /// Regular-file bytes written.
    pub bytes: u64,
    /// Entries skipped or attributes not applied, one line each.
    pub warnings: Vec<String>,
}

/// Unpack errors. Paths are the entry's name as in the tar (lossy UTF-8).
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("unpack root {path}: {source}")]
    Root {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("reading layer: {0}")]
    Read(io::Error),
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("entry {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("entry {path:?} escapes the root (absolute path or \"..\")")]
    Escape { path: String },
    #[error("entry {path:?}: ancestor {ancestor:?} is a symlink; refusing to follow it")]
    SymlinkAncestor { path: String, ancestor: String },
    #[error("entry {path:?}: ancestor {ancestor:?} is not a directory")]
    NotADirectory { path: String, ancestor: String },
    #[error("entry {path:?}: bare whiteout \".wh.\" names nothing")]
    BareWhiteout { path: String },
    #[error("entry {path:?}: invalid whiteout")]
    InvalidWhiteout { path: String },
    #[error("hardlink {path:?} -> {target:?}: {reason}")]
    Hardlink {
        path: String,
        target: String,
        reason: &'static str,
    },
    #[error("layer has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("layer unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("layer has more than {MAX_TRAILING} bytes after its end-of-archive marker")]
    TrailingData,
    #[error("layer diffID mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
}

/// Unpacks `layer` (any supported compression) onto the existing directory `root`.
pub fn unpack_layer<R: Read>(
    root: &Path,
    layer: R,
    opts: &UnpackOptions,
) -> Result<UnpackReport, UnpackError> {
    let root_err = |source| UnpackError::Root {
        path: root.to_path_buf(),
        source,
    };
    let root_dir = Dir::open_path(root).map_err(root_err)?;
    let mut buffered = BufReader::with_capacity(128 * 1024, layer);
    let compression = detect_compression(buffered.fill_buf().map_err(UnpackError::Read)?);
    let decoded: Box<dyn Read> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(UnpackError::Read)?)
        }
    };
    let stream_limit = opts
        .max_bytes
        .saturating_add(
            opts.max_entries
                .saturating_add(4)
                .saturating_mul(HEADER_ALLOWANCE),
        )
        .saturating_add(MAX_TRAILING);
    let exceeded = Rc::new(Cell::new(false));
    let limited = LimitReader {
        inner: decoded,
        left: stream_limit,
        exceeded: exceeded.clone(),
    };
    let mut hashing = HashingReader::new(limited);
    let mut u = Unpacker {
        root: root_dir,
        opts,
        entries: 0,
        bytes: 0,
        warnings: Vec::new(),
        created: HashSet::new(),
        dir_times: BTreeMap::new(),
    };
    let limit_err = |e: io::Error| {
        if exceeded.get() {
            UnpackError::TooLarge {
                limit: opts.max_bytes,
            }
        } else {
            UnpackError::Read(e)
        }
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(limit_err)? {
            let entry = entry.map_err(limit_err)?;
            u.entry(entry).map_err(|e| match e {
                UnpackError::Read(io) => limit_err(io),
                other => other,
            })?;
        }
    }
    // The diffID covers the whole stream, including the padding after the archive end.
    let trailing =
        io::copy(&mut (&mut hashing).take(MAX_TRAILING + 1), &mut io::sink()).map_err(limit_err)?;
    if trailing > MAX_TRAILING {
        return Err(UnpackError::TrailingData);
    }
    u.finish_dirs()?;
    let (diff_id, _) = hashing.finish();
    if let Some(expected) = &opts.expected_diff_id {
        if expected != &diff_id {
            return Err(UnpackError::DiffIdMismatch {
                expected: expected.clone(),
                actual: diff_id,
            });
        }
    }
    Ok(UnpackReport {
        diff_id,
        compression,
        entries: u.entries,
        bytes: u.bytes,
        warnings: u.warnings,
    })
}

/// Counts uncompressed bytes and fails once past the cap.
struct LimitReader<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for LimitReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(io::Error::other("layer stream exceeds its size cap"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

type Comps = Vec<CString>;

fn display(comps: &[CString]) -> String {
    let v: Vec<_> = comps.iter().map(|c| c.to_string_lossy()).collect();
    v.join("/")
}

fn key(comps: &[CString]) -> Vec<u8> {
    let mut k = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            k.push(b'/');
        }
        k.extend_from_slice(c.as_bytes());
    }
    k
}

/// Splits a tar name into safe components ("" and "." dropped).
fn split_path(raw: &[u8]) -> Result<Comps, UnpackError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.first() == Some(&b'/') {
        return Err(UnpackError::Escape { path: shown() });
    }
    if raw.len() > MAX_PATH {
        return Err(UnpackError::InvalidPath {
            path: shown(),
            reason: "name longer than 4096 bytes",
        });
    }
    if raw.contains(&0) {
        return Err(UnpackError::InvalidPath {
            path: shown(),
            reason: "name contains a NUL byte",
        });
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(UnpackError::Escape { path: shown() }),
            c if c.len() > MAX_COMPONENT => {
                return Err(UnpackError::InvalidPath {
                    path: shown(),
                    reason: "path component longer than 255 bytes",
                })
            }
            c => out.push(CString::new(c).map_err(|_| UnpackError::InvalidPath {
                path: shown(),
                reason: "name contains a NUL byte",
            })?),
        }
    }
    Ok(out)
}

struct Unpacker<'a> {
    root: Dir,
    opts: &'a UnpackOptions,
    entries: u64,
    bytes: u64,
    warnings: Vec<String>,
    /// Paths this layer created (whiteouts never hide them).
    created: HashSet<Vec<u8>>,
    /// Directory mtimes, applied last.
    dir_times: BTreeMap<Vec<u8>, (Comps, i64)>,
}

/// Metadata of one entry, taken from its header.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        use tar::EntryType as T;
        self.entries += 1;
        if self.entries > self.opts.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: self.opts.max_entries,
            });
        }
        let etype = entry.header().entry_type();
        if matches!(
            etype,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let comps = split_path(&raw)?;
        let shown = display(&comps);
        let meta = self.meta(&mut entry, &shown)?;

        if let Some(last) = comps.last() {
            let base = last.as_bytes();
            if let Some(name) = base.strip_prefix(b".wh.") {
                return self.whiteout(&comps[..comps.len() - 1], name, &shown);
            }
        }
        if comps.is_empty() {
            // The root itself ("./"): only its metadata can change.
            if etype != T::Directory {
                return Err(UnpackError::InvalidPath {
                    path: String::from_utf8_lossy(&raw).into_owned(),
                    reason: "only a directory may name the root",
                });
            }
            self.set_owner_mode(&self.root, None, &meta, &shown)?;
            self.dir_times.insert(Vec::new(), (Vec::new(), meta.mtime));
            return Ok(());
        }
        let (parent_comps, name) = comps.split_at(comps.len() - 1);
        let name = &name[0];
        match etype {
            T::Directory => self.directory(&comps, parent_comps, name, &meta, &shown),
            T::Regular | T::Continuous | T::GNUSparse => {
                self.regular(&mut entry, &comps, parent_comps, name, &meta, &shown)
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                self.symlink(&comps, parent_comps, name, &target, &meta, &shown)
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                self.hardlink(&comps, parent_comps, name, &target, &shown)
            }
            T::Char | T::Block | T::Fifo => {
                let allowed = if etype == T::Fifo {
                    self.opts.allow_fifos
                } else {
                    self.opts.allow_devices
                };
                if !allowed {
                    self.warnings.push(format!(
                        "{shown}: {} skipped (not allowed)",
                        if etype == T::Fifo {
                            "fifo"
                        } else {
                            "device node"
                        }
                    ));
                    return Ok(());
                }
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                let kind = match etype {
                    T::Char => libc::S_IFCHR,
                    T::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                self.node(
                    &comps,
                    parent_comps,
                    name,
                    kind,
                    major,
                    minor,
                    &meta,
                    &shown,
                )
            }
            other => {
                self.warnings
                    .push(format!("{shown}: entry type {other:?} skipped"));
                Ok(())
            }
        }
    }

    fn meta<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<Meta, UnpackError> {
        let h = entry.header();
        let mut mode = h.mode().unwrap_or(0o644) & 0o7777;
        if self.opts.strip_setuid {
            mode &= !0o6000;
        }
        let uid = u32::try_from(h.uid().unwrap_or(0)).unwrap_or(0);
        let gid = u32::try_from(h.gid().unwrap_or(0)).unwrap_or(0);
        let mtime = i64::try_from(h.mtime().unwrap_or(0)).unwrap_or(0);
        let mut xattrs = Vec::new();
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                    continue;
                };
                if name.starts_with(b"trusted.overlay.") {
                    self.warnings.push(format!(
                        "{shown}: xattr {} refused",
                        String::from_utf8_lossy(name)
                    ));
                    continue;
                }
                if let Ok(n) = CString::new(name) {
                    xattrs.push((n, ext.value_bytes().to_vec()));
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    /// Opens the directory `comps` from the root, one component at a time, never
    /// following a symlink. `create` makes missing directories.
    fn walk(&mut self, comps: &[CString], create: bool, shown: &str) -> Result<Dir, UnpackError> {
        let mut cur = self.root.dup().map_err(|source| UnpackError::Io {
            op: "dup",
            path: shown.to_string(),
            source,
        })?;
        for (i, c) in comps.iter().enumerate() {
            let next = match cur.open_dir(c) {
                Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => {
                    cur.mkdir(c, 0o755).map_err(|source| UnpackError::Io {
                        op: "mkdir",
                        path: display(&comps[..=i]),
                        source,
                    })?;
                    self.created.insert(key(&comps[..=i]));
                    cur.open_dir(c)
                }
                r => r,
            };
            cur = match next {
                Ok(d) => d,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                    let ancestor = display(&comps[..=i]);
                    let is_link = cur
                        .lstat(c)
                        .ok()
                        .flatten()
                        .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
                    return Err(if is_link {
                        UnpackError::SymlinkAncestor {
                            path: shown.to_string(),
                            ancestor,
                        }
                    } else {
                        UnpackError::NotADirectory {
                            path: shown.to_string(),
                            ancestor,
                        }
                    });
                }
                Err(source) => {
                    return Err(UnpackError::Io {
                        op: "open",
                        path: display(&comps[..=i]),
                        source,
                    })
                }
            };
        }
        Ok(cur)
    }

    /// Makes room for a new entry `name` in `parent`: an existing directory stays when
    /// the new entry is a directory; anything else is removed. Returns whether the old
    /// entry was an overlay whiteout.
    fn make_room(
        &self,
        parent: &Dir,
        name: &CStr,
        new_is_dir: bool,
        shown: &str,
    ) -> Result<bool, UnpackError> {
        let io = |op| {
            move |source| UnpackError::Io {
                op,
                path: shown.to_string(),
                source,
            }
        };
        let Some(st) = parent.lstat(name).map_err(io("lstat"))? else {
            return Ok(false);
        };
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFDIR {
            if !new_is_dir {
                parent.remove_all(name).map_err(io("remove"))?;
            }
            return Ok(false);
        }
        parent.unlink(name, false).map_err(io("unlink"))?;
        Ok(fmt == libc::S_IFCHR && st.st_rdev == 0)
    }

    fn directory(
        &mut self,
        comps: &[CString],
        parent_comps: &[CString],
        name: &CStr,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let parent = self.walk(parent_comps, true, shown)?;
        let was_whiteout = self.make_room(&parent, name, true, shown)?;
        let io = |op| {
            move |source| UnpackError::Io {
                op,
                path: shown.to_string(),
                source,
            }
        };
        match parent.mkdir(name, 0o700) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(io("mkdir")(e)),
        }
        let dir = match parent.open_dir(name) {
            Ok(d) => d,
            Err(source) => return Err(io("open")(source)),
        };
        if was_whiteout && self.opts.whiteouts == WhiteoutMode::Overlay {
            // A directory replacing a whiteout must not merge with the lower one.
            dir.set_xattr(OPAQUE_XATTR, b"y").map_err(io("setxattr"))?;
        }
        self.set_owner_mode(&dir, None, meta, shown)?;
        self.apply_xattrs(&dir, meta, shown);
        self.created.insert(key(comps));
        self.dir_times
            .insert(key(comps), (comps.to_vec(), meta.mtime));
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &[CString],
        parent_comps: &[CString],
        name: &CStr,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let size = entry.size();
        let left = self.opts.max_bytes.saturating_sub(self.bytes);
        if size > left {
            return Err(UnpackError::TooLarge {
                limit: self.opts.max_bytes,
            });
        }
        let parent = self.walk(parent_comps, true, shown)?;
        self.make_room(&parent, name, false, shown)?;
        let io = |op| {
            move |source| UnpackError::Io {
                op,
                path: shown.to_string(),
                source,
            }
        };
        let mut file = parent.create_file(name).map_err(io("create"))?;
        self.created.insert(key(comps));
        let mut limited = entry.take(left + 1);
        let n = copy_counting(&mut limited, &mut file).map_err(|e| match e {
            CopyError::Read(e) => UnpackError::Read(e),
            CopyError::Write(e) => io("write")(e),
        })?;
        if n > left {
            return Err(UnpackError::TooLarge {
                limit: self.opts.max_bytes,
            });
        }
        self.bytes += n;
        let fd = file.as_raw_fd();
        if self.opts.preserve_ownership {
            // SAFETY: fd is an open file we own.
            cvt(unsafe { libc::fchown(fd, meta.uid, meta.gid) }).map_err(io("chown"))?;
        }
        // chmod after chown: chown clears setuid bits.
        // SAFETY: as above.
        cvt(unsafe { libc::fchmod(fd, meta.mode) }).map_err(io("chmod"))?;
        for (k, v) in &meta.xattrs {
            // SAFETY: valid fd, NUL-terminated name, value pointer/len from a slice.
            let r = unsafe { libc::fsetxattr(fd, k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
            if let Err(e) = cvt(r) {
                self.warnings.push(format!(
                    "{shown}: xattr {} not set: {e}",
                    k.to_string_lossy()
                ));
            }
        }
        let ts = times(meta.mtime);
        // SAFETY: valid fd and a two-element timespec array.
        cvt(unsafe { libc::futimens(fd, ts.as_ptr()) }).map_err(io("utimes"))?;
        Ok(())
    }

    fn symlink(
        &mut self,
        comps: &[CString],
        parent_comps: &[CString],
        name: &CStr,
        target: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if target.is_empty() {
            return Err(UnpackError::InvalidPath {
                path: shown.to_string(),
                reason: "symlink with an empty target",
            });
        }
        let target = CString::new(target).map_err(|_| UnpackError::InvalidPath {
            path: shown.to_string(),
            reason: "symlink target contains a NUL byte",
        })?;
        let parent = self.walk(parent_comps, true, shown)?;
        self.make_room(&parent, name, false, shown)?;
        let io = |op| {
            move |source| UnpackError::Io {
                op,
                path: shown.to_string(),
                source,
            }
        };
        // The target is stored as-is; nothing resolves it here.
        // SAFETY: NUL-terminated strings, valid dirfd.
        cvt(unsafe { libc::symlinkat(target.as_ptr(), parent.fd(), name.as_ptr()) })
            .map_err(io("symlink"))?;
        self.created.insert(key(comps));
        self.set_owner_mode(&parent, Some(name), meta, shown)?;
        parent
            .utimes_nofollow(name, meta.mtime)
            .map_err(io("utimes"))?;
        Ok(())
    }

    fn hardlink(
        &mut self,
        comps: &[CString],
        parent_comps: &[CString],
        name: &CStr,
        target: &[u8],
        shown: &str,
    ) -> Result<(), UnpackError> {
        let tshown = String::from_utf8_lossy(target).into_owned();
        let herr = |reason| UnpackError::Hardlink {
            path: shown.to_string(),
            target: tshown.clone(),
            reason,
        };
        let tcomps = match split_path(target) {
            Ok(c) => c,
            Err(UnpackError::Escape { .. }) => {
                return Err(herr("target is outside the root (absolute or \"..\")"))
            }
            Err(_) => return Err(herr("invalid target name")),
        };
        let Some((tname, tparent_comps)) = tcomps.split_last() else {
            return Err(herr("target is the root"));
        };
        if tcomps == comps {
            return Ok(());
        }
        let tparent = match self.walk(tparent_comps, false, &tshown) {
            Ok(d) => d,
            Err(UnpackError::SymlinkAncestor { .. }) => {
                return Err(herr("target path goes through a symlink"))
            }
            Err(UnpackError::NotADirectory { .. }) => return Err(herr("target does not exist")),
            Err(UnpackError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Err(herr("target does not exist"))
            }
            Err(e) => return Err(e),
        };
        match tparent.lstat(tname) {
            Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                return Err(herr("target is a directory"))
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err(herr("target does not exist")),
            Err(source) => {
                return Err(UnpackError::Io {
                    op: "lstat",
                    path: tshown.clone(),
                    source,
                })
            }
        }
        let parent = self.walk(parent_comps, true, shown)?;
        self.make_room(&parent, name, false, shown)?;
        // flags 0: a symlink target is linked itself, not followed.
        // SAFETY: valid dirfds and NUL-terminated names.
        cvt(unsafe { libc::linkat(tparent.fd(), tname.as_ptr(), parent.fd(), name.as_ptr(), 0) })
            .map_err(|source| UnpackError::Io {
            op: "link",
            path: shown.to_string(),
            source,
        })?;
        self.created.insert(key(comps));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn node(
        &mut self,
        comps: &[CString],
        parent_comps: &[CString],
        name: &CStr,
        kind: libc::mode_t,
        major: u32,
        minor: u32,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let parent = self.walk(parent_comps, true, shown)?;
        self.make_room(&parent, name, false, shown)?;
        let io = |op| {
            move |source| UnpackError::Io {
                op,
                path: shown.to_string(),
                source,
            }
        };
        parent
            .mknod(
                name,
                kind | (meta.mode & 0o777),
                libc::makedev(major, minor),
            )
            .map_err(io("mknod"))?;
        self.created.insert(key(comps));
        self.set_owner_mode(&parent, Some(name), meta, shown)?;
        parent
            .utimes_nofollow(name, meta.mtime)
            .map_err(io("utimes"))?;
        Ok(())
    }

    fn whiteout(
        &mut self,
        parent_comps: &[CString],
        name: &[u8],
        shown: &str,
    ) -> Result<(), UnpackError> {
        if name.is_empty() {
            return Err(UnpackError::BareWhiteout {
                path: shown.to_string(),
            });
        }
        let parent = self.walk(parent_comps, true, shown)?;
        let io = |op| {
            move |source| UnpackError::Io {
                op,
                path: shown.to_string(),
                source,
            }
        };
        if name == b".wh..opq" {
            match self.opts.whiteouts {
                WhiteoutMode::Overlay => {
                    parent
                        .set_xattr(OPAQUE_XATTR, b"y")
                        .map_err(io("setxattr trusted.overlay.opaque"))?;
                }
                WhiteoutMode::Apply => {
                    // Remove every child that this layer did not create.
                    let pkey = key(parent_comps);
                    for child in parent.list().map_err(io("readdir"))? {
                        let mut k = pkey.clone();
                        if !k.is_empty() {
                            k.push(b'/');
                        }
                        k.extend_from_slice(child.as_bytes());
                        if !self.created.contains(&k) {
                            parent.remove_all(&child).map_err(io("remove"))?;
                        }
                    }
                }
            }
            return Ok(());
        }
        if name.starts_with(b".wh.") {
            // Other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): meaningless here.
            self.warnings
                .push(format!("{shown}: aufs metadata entry skipped"));
            return Ok(());
        }
        if name == b"." || name == b".." || name.contains(&b'/') {
            return Err(UnpackError::InvalidWhiteout {
                path: shown.to_string(),
            });
        }
        let target = CString::new(name).map_err(|_| UnpackError::InvalidWhiteout {
            path: shown.to_string(),
        })?;
        let mut k = key(parent_comps);
        if !k.is_empty() {
            k.push(b'/');
        }
        k.extend_from_slice(name);
        if self.created.contains(&k) {
            // A whiteout hides lower layers only, never this layer's own entry.
            return Ok(());
        }
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                if parent.lstat(&target).map_err(io("lstat"))?.is_some() {
                    parent.remove_all(&target).map_err(io("remove"))?;
                }
                parent
                    .mknod(&target, libc::S_IFCHR, libc::makedev(0, 0))
                    .map_err(io("mknod whiteout"))?;
            }
            WhiteoutMode::Apply => {
                if parent.lstat(&target).map_err(io("lstat"))?.is_some() {
                    parent.remove_all(&target).map_err(io("remove"))?;
                }
            }
        }
        Ok(())
    }

    /// chown (no-follow) and, except for symlinks, chmod. `name` None means `dir` itself.
    fn set_owner_mode(
        &self,
        dir: &Dir,
        name: Option<&CStr>,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let io = |op| {
            move |source| UnpackError::Io {
                op,
                path: shown.to_string(),
                source,
            }
        };
        match name {
            None => {
                if self.opts.preserve_ownership {
                    // SAFETY: valid fd.
                    cvt(unsafe { libc::fchown(dir.fd(), meta.uid, meta.gid) })
                        .map_err(io("chown"))?;
                }
                // SAFETY: valid fd.
                cvt(unsafe { libc::fchmod(dir.fd(), meta.mode) }).map_err(io("chmod"))?;
            }
            Some(n) => {
                if self.opts.preserve_ownership {
                    // SAFETY: valid dirfd, NUL-terminated name.
                    cvt(unsafe {
                        libc::fchownat(
                            dir.fd(),
                            n.as_ptr(),
                            meta.uid,
                            meta.gid,
                            libc::AT_SYMLINK_NOFOLLOW,
                        )
                    })
                    .map_err(io("chown"))?;
                }
                let st = dir.lstat(n).map_err(io("lstat"))?;
                let is_link = st.is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFLNK);
                if !is_link {
                    // Just checked: not a symlink, and nothing else writes this tree.
                    // SAFETY: valid dirfd, NUL-terminated name.
                    cvt(unsafe { libc::fchmodat(dir.fd(), n.as_ptr(), meta.mode, 0) })
                        .map_err(io("chmod"))?;
                }
            }
        }
        Ok(())
    }

    fn apply_xattrs(&mut self, dir: &Dir, meta: &Meta, shown: &str) {
        for (k, v) in &meta.xattrs {
            if let Err(e) = dir.set_xattr(k, v) {
                self.warnings.push(format!(
                    "{shown}: xattr {} not set: {e}",
                    k.to_string_lossy()
                ));
            }
        }
    }

    /// Applies directory mtimes last (creating children changed them).
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let dirs = std::mem::take(&mut self.dir_times);
        for (_, (comps, mtime)) in dirs.iter().rev() {
            let shown = display(comps);
            let dir = match self.walk(comps, false, &shown) {
                Ok(d) => d,
                // Replaced later in the layer by a non-directory: nothing to do.
                Err(UnpackError::NotADirectory { .. } | UnpackError::SymlinkAncestor { .. }) => {
                    continue
                }
                Err(UnpackError::Io { source, .. })
                    if source.raw_os_error() == Some(libc::ENOENT) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let ts = times(*mtime);
            // SAFETY: valid fd, two-element timespec array.
            cvt(unsafe { libc::futimens(dir.fd(), ts.as_ptr()) }).map_err(|source| {
                UnpackError::Io {
                    op: "utimes",
                    path: shown.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_counting<R: Read, W: Write>(r: &mut R, w: &mut W) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..k]).map_err(CopyError::Write)?;
        n += k as u64;
    }
}

fn times(mtime: i64) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    [t, t]
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An open directory; every operation is relative to it and never follows a symlink in
/// the final component.
pub(crate) struct Dir(OwnedFd);

impl Dir {
    pub(crate) fn open_path(p: &Path) -> io::Result<Dir> {
        let c = CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: NUL-terminated path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn dup(&self) -> io::Result<Dir> {
        Ok(Dir(self.0.try_clone()?))
    }

    fn open_dir(&self, name: &CStr) -> io::Result<Dir> {
        // SAFETY: valid dirfd, NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                self.fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened.
        Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn create_file(&self, name: &CStr) -> io::Result<File> {
        // SAFETY: valid dirfd, NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                self.fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    fn lstat(&self, name: &CStr) -> io::Result<Option<libc::stat>> {
        let mut st = MaybeUninit::<libc::stat>::uninit();
        // SAFETY: valid dirfd, NUL-terminated name, st is writable.
        let r = unsafe {
            libc::fstatat(
                self.fd(),
                name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r == 0 {
            // SAFETY: fstatat succeeded and filled st.
            Ok(Some(unsafe { st.assume_init() }))
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOENT) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }

    fn mkdir(&self, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
        // SAFETY: valid dirfd, NUL-terminated name.
        cvt(unsafe { libc::mkdirat(self.fd(), name.as_ptr(), mode) })
    }

    fn mknod(&self, name: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
        // SAFETY: valid dirfd, NUL-terminated name.
        cvt(unsafe { libc::mknodat(self.fd(), name.as_ptr(), mode, dev) })
    }

    fn unlink(&self, name: &CStr, dir: bool) -> io::Result<()> {
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: valid dirfd, NUL-terminated name.
        cvt(unsafe { libc::unlinkat(self.fd(), name.as_ptr(), flags) })
    }

    fn utimes_nofollow(&self, name: &CStr, mtime: i64) -> io::Result<()> {
        let ts = times(mtime);
        // SAFETY: valid dirfd, NUL-terminated name, two-element array.
        cvt(unsafe {
            libc::utimensat(
                self.fd(),
                name.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
    }

    fn set_xattr(&self, name: &CStr, value: &[u8]) -> io::Result<()> {
        // SAFETY: valid fd, NUL-terminated name, value pointer/len from a slice.
        cvt(unsafe {
            libc::fsetxattr(
                self.fd(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        })
    }

    /// Names in this directory, without `.` and `..`.
    fn list(&self) -> io::Result<Vec<CString>> {
        let c_dot = c".";
        // A fresh fd: fdopendir takes ownership of it.
        // SAFETY: valid dirfd, NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                self.fd(),
                c_dot.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a directory fd we own; on success the DIR owns it.
        let dirp = unsafe { libc::fdopendir(fd) };
        if dirp.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so we still own fd.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let mut out = Vec::new();
        let result = loop {
            // SAFETY: errno is thread-local.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: dirp is a valid DIR*.
            let ent = unsafe { libc::readdir64(dirp) };
            if ent.is_null() {
                let e = io::Error::last_os_error();
                break if e.raw_os_error().unwrap_or(0) == 0 {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            // SAFETY: d_name is NUL-terminated within the entry.
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
            if name.to_bytes() != b"." && name.to_bytes() != b".." {
                out.push(name.to_owned());
            }
        };
        // SAFETY: dirp is valid and closed once.
        unsafe { libc::closedir(dirp) };
        result.map(|()| out)
    }

    /// Removes `name` and, for a directory, everything under it, never following links.
    fn remove_all(&self, name: &CStr) -> io::Result<()> {
        let Some(st) = self.lstat(name)? else {
            return Ok(());
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let child = self.open_dir(name)?;
            for n in child.list()? {
                child.remove_all(&n)?;
            }
            self.unlink(name, true)
        } else {
            self.unlink(name, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rules() {
        let ok = |s: &str| display(&split_path(s.as_bytes()).unwrap());
        assert_eq!(ok("./a//b/./c/"), "a/b/c");
        assert_eq!(ok("./"), "");
        assert!(matches!(
            split_path(b"/etc/x"),
            Err(UnpackError::Escape { .. })
        ));
        assert!(matches!(
            split_path(b"a/../b"),
            Err(UnpackError::Escape { .. })
        ));
        assert!(matches!(
            split_path(b"a\0b"),
            Err(UnpackError::InvalidPath { .. })
        ));
        let long = "x".repeat(256);
        assert!(matches!(
            split_path(long.as_bytes()),
            Err(UnpackError::InvalidPath { .. })
        ));
    }

    #[test]
    fn compression_magic() {
        assert_eq!(detect_compression(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(detect_compression(b"etc/"), Compression::None);
        assert_eq!(detect_compression(b""), Compression::None);
    }
}
