//! Test helpers: a raw tar builder that can write any name (the tar crate's own
//! `set_path` refuses `..` and absolute names, which hostile layers need), and a
//! no-follow snapshot of a directory tree for canary comparisons.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub const REG: u8 = b'0';
pub const HARD: u8 = b'1';
pub const SYM: u8 = b'2';
pub const CHR: u8 = b'3';
pub const BLK: u8 = b'4';
pub const DIR: u8 = b'5';
pub const FIFO: u8 = b'6';

pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// One entry with raw name/link bytes; names over 100 bytes (or with odd bytes) go
    /// in a PAX header, as real tools do.
    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        &mut self,
        name: &[u8],
        kind: u8,
        mode: u32,
        link: &[u8],
        data: &[u8],
        size: Option<u64>,
        pax: &[(&str, &[u8])],
    ) -> &mut Self {
        let mut records: Vec<(String, Vec<u8>)> = pax
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        if name.len() > 99 || name.contains(&0) {
            records.push(("path".into(), name.to_vec()));
        }
        if link.len() > 99 || link.contains(&0) {
            records.push(("linkpath".into(), link.to_vec()));
        }
        if !records.is_empty() {
            let mut body = Vec::new();
            for (k, v) in &records {
                let rest = k.len() + v.len() + 3; // ' ' '=' '\n'
                let mut len = rest + 1;
                while len != rest + len.to_string().len() {
                    len = rest + len.to_string().len();
                }
                write!(body, "{len} {k}=").unwrap();
                body.extend_from_slice(v);
                body.push(b'\n');
            }
            let mut h = tar::Header::new_ustar();
            set_name(&mut h, b"PaxHeaders/x");
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            self.b.append(&h, &body[..]).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        let short = |b: &[u8]| -> Vec<u8> {
            if b.len() > 99 || b.contains(&0) {
                b"placeholder".to_vec()
            } else {
                b.to_vec()
            }
        };
        set_name(&mut h, &short(name));
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(size.unwrap_or(data.len() as u64));
        let l = short(link);
        h.as_old_mut().linkname[..l.len()].copy_from_slice(&l);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// Like `raw`, with uid/gid/mtime/device numbers.
    #[allow(clippy::too_many_arguments)]
    pub fn full(
        &mut self,
        name: &str,
        kind: u8,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        link: &str,
        data: &[u8],
        dev: (u32, u32),
    ) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        set_name(&mut h, name.as_bytes());
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        if kind == CHR || kind == BLK {
            h.set_device_major(dev.0).unwrap();
            h.set_device_minor(dev.1).unwrap();
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(name.as_bytes(), DIR, 0o755, b"", b"", None, &[])
    }
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name.as_bytes(), REG, 0o644, b"", data, None, &[])
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            name.as_bytes(),
            SYM,
            0o777,
            target.as_bytes(),
            b"",
            None,
            &[],
        )
    }
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            name.as_bytes(),
            HARD,
            0o644,
            target.as_bytes(),
            b"",
            None,
            &[],
        )
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn set_name(h: &mut tar::Header, name: &[u8]) {
    let n = &mut h.as_old_mut().name;
    n.fill(0);
    n[..name.len()].copy_from_slice(name);
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// Every entry under `dir` (not following symlinks): kind, mode, owner, nlink, size,
/// mtime, and the content's or link target's bytes.
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let content = if ft.is_symlink() {
            format!("-> {}", fs::read_link(&p).unwrap().display())
        } else if ft.is_file() {
            let d = fs::read(&p).unwrap();
            format!("sha256 {}", podium_image::Digest::of_bytes(&d))
        } else {
            String::new()
        };
        out.insert(
            rel,
            format!(
                "mode {:o} uid {} gid {} nlink {} rdev {} mtime {} {content}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.nlink(),
                m.rdev(),
                m.mtime()
            ),
        );
        if ft.is_dir() {
            walk(base, &p, out);
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// lgetxattr: Ok(None) when the attribute is absent.
pub mod xattr {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    pub fn get(p: impl AsRef<Path>, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        let cp = CString::new(p.as_ref().as_os_str().as_bytes()).unwrap();
        let cn = CString::new(name).unwrap();
        let mut buf = vec![0u8; 4096];
        // SAFETY: NUL-terminated strings; buf is writable for its length.
        let n = unsafe {
            libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENODATA) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        buf.truncate(n as usize);
        Ok(Some(buf))
    }
}
