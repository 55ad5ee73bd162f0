//! kubelet's AtomicWriter: a content volume's files live in a timestamped directory
//! (`..2026_01_01_00_00_00.123456789`), `..data` is a symlink to it, and each user-visible
//! top-level entry is a symlink `name -> ..data/name`. An update writes a new timestamped
//! directory and renames a fresh `..data_tmp` symlink over `..data` (rename(2) is atomic),
//! so a reader sees either the old or the new set of files, never a mix; a reader that
//! holds an old file open keeps reading the old content.
//!
//! Only this module writes inside a content volume; the volume's host directory is private
//! to the agent (containers get it read-only), and every file is created with
//! `O_CREAT|O_EXCL` in a directory this writer just made, so nothing follows a symlink.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::mounts::{io_err, set_volume_ownership, IoError};
use super::payload::Payload;

pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// The top-level name of a cleaned relative path.
fn top(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// The target of `..data`, if it is a symlink to a timestamped dir of this volume.
fn current_ts_dir(target: &Path) -> Option<String> {
    let link = fs::read_link(target.join(DATA_DIR)).ok()?;
    let name = link.to_str()?.to_string();
    (name.starts_with("..") && !name.contains('/') && name != DATA_DIR).then_some(name)
}

/// Files (relative paths) and directories below `dir`, not following symlinks.
fn walk(dir: &Path, prefix: &str, files: &mut BTreeSet<String>, dirs: &mut BTreeSet<String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                walk(&entry.path(), &rel, files, dirs);
                dirs.insert(rel);
            }
            _ => {
                files.insert(rel);
            }
        }
    }
}

fn read_no_follow(path: &Path) -> Option<Vec<u8>> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let mut out = Vec::new();
    f.read_to_end(&mut out).ok()?;
    Some(out)
}

/// Whether the timestamped dir `old` differs from `payload` (a changed, added or removed
/// file; modes alone do not count, as in kubelet).
fn differs(old: &Path, payload: &Payload) -> bool {
    let (mut files, mut dirs) = (BTreeSet::new(), BTreeSet::new());
    walk(old, "", &mut files, &mut dirs);
    let wanted_dirs: BTreeSet<String> = payload
        .keys()
        .flat_map(|p| {
            let parts: Vec<&str> = p.split('/').collect();
            (1..parts.len())
                .map(|n| parts[..n].join("/"))
                .collect::<Vec<_>>()
        })
        .collect();
    if files.iter().any(|f| !payload.contains_key(f))
        || dirs.iter().any(|d| !wanted_dirs.contains(d))
    {
        return true;
    }
    payload
        .iter()
        .any(|(p, f)| read_no_follow(&old.join(p)).as_deref() != Some(&f.data[..]))
}

/// Creates a fresh timestamped directory (mode 0755) in `target`.
fn new_ts_dir(target: &Path) -> Result<(String, PathBuf), IoError> {
    let now = chrono::Utc::now();
    let base = now.format("..%Y_%m_%d_%H_%M_%S").to_string();
    let mut nanos = now.timestamp_subsec_nanos();
    loop {
        let name = format!("{base}.{nanos:09}");
        let path = target.join(&name);
        match fs::DirBuilder::new().mode(0o755).create(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &path))?;
                return Ok((name, path));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => nanos = nanos.wrapping_add(1),
            Err(e) => return Err(io_err("mkdir", &path)(e)),
        }
    }
}

fn write_payload(dir: &Path, payload: &Payload) -> Result<(), IoError> {
    for (rel, file) in payload {
        let full = dir.join(rel);
        // Parents (0755), component by component: all are new, inside `dir`.
        let mut cur = dir.to_path_buf();
        let parts: Vec<&str> = rel.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            cur.push(part);
            match fs::DirBuilder::new().mode(0o755).create(&cur) {
                Ok(()) => fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &cur))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !fs::symlink_metadata(&cur).is_ok_and(|m| m.is_dir()) {
                        return Err(io_err("mkdir", &cur)(e));
                    }
                }
                Err(e) => return Err(io_err("mkdir", &cur)(e)),
            }
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&full)
            .map_err(io_err("create", &full))?;
        f.write_all(&file.data).map_err(io_err("write", &full))?;
        // The umask applied at creation; the mode must be exact.
        f.set_permissions(fs::Permissions::from_mode(file.mode))
            .map_err(io_err("chmod", &full))?;
    }
    Ok(())
}

/// Writes `payload` into the volume directory `target` (which must exist). Returns whether
/// anything was written (`false` when the current content already equals the payload).
/// `fs_group` applies kubelet's read-only volume ownership to everything written.
pub fn write(target: &Path, payload: &Payload, fs_group: Option<u32>) -> Result<bool, IoError> {
    let old_ts = current_ts_dir(target);
    if let Some(old) = &old_ts {
        if !differs(&target.join(old), payload) {
            return Ok(false);
        }
    }
    let (ts_name, ts_path) = new_ts_dir(target)?;
    if let Err(e) = write_payload(&ts_path, payload).and_then(|()| match fs_group {
        Some(g) => set_volume_ownership(&ts_path, g, true),
        None => Ok(()),
    }) {
        let _ = fs::remove_dir_all(&ts_path);
        return Err(e);
    }
    // The new ..data: a fresh symlink renamed over the old one.
    let tmp = target.join(DATA_DIR_TMP);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &tmp)(e)),
    }
    std::os::unix::fs::symlink(&ts_name, &tmp).map_err(io_err("symlink", &tmp))?;
    let data = target.join(DATA_DIR);
    fs::rename(&tmp, &data).map_err(io_err("rename", &data))?;

    // User-visible entries: `name -> ..data/name` for each new top-level name.
    let new_tops: BTreeSet<&str> = payload.keys().map(|p| top(p)).collect();
    for name in &new_tops {
        let visible = target.join(name);
        if fs::symlink_metadata(&visible).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_DIR).join(name), &visible)
                .map_err(io_err("symlink", &visible))?;
        }
    }
    // Old user-visible entries not in the payload any more.
    if let Some(old) = &old_ts {
        let (mut files, mut dirs) = (BTreeSet::new(), BTreeSet::new());
        walk(&target.join(old), "", &mut files, &mut dirs);
        let old_tops: BTreeMap<String, ()> = files
            .iter()
            .chain(dirs.iter())
            .filter(|p| !p.contains('/'))
            .map(|p| (p.clone(), ()))
            .collect();
        for name in old_tops.keys().filter(|n| !new_tops.contains(n.as_str())) {
            let visible = target.join(name);
            if fs::symlink_metadata(&visible).is_ok_and(|m| m.file_type().is_symlink()) {
                fs::remove_file(&visible).map_err(io_err("remove", &visible))?;
            }
        }
        let old_path = target.join(old);
        fs::remove_dir_all(&old_path).map_err(io_err("remove", &old_path))?;
    }
    if let Some(g) = fs_group {
        set_volume_ownership(target, g, true)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::payload::FileProjection;
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn payload(items: &[(&str, &str, u32)]) -> Payload {
        items
            .iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    FileProjection {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn layout_is_kubelets() {
        let t = tempfile::tempdir().unwrap();
        let v = t.path();
        assert!(write(v, &payload(&[("a", "A", 0o644), ("d/b", "B", 0o400)]), None).unwrap());
        let ts = fs::read_link(v.join("..data")).unwrap();
        let ts = ts.to_str().unwrap();
        // ..YYYY_MM_DD_HH_MM_SS.nnnnnnnnn
        assert_eq!(ts.len(), "..2026_01_01_00_00_00.123456789".len(), "{ts}");
        assert!(ts.starts_with("..20"));
        assert_eq!(fs::read_link(v.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(fs::read_link(v.join("d")).unwrap(), Path::new("..data/d"));
        assert_eq!(fs::read_to_string(v.join("d/b")).unwrap(), "B");
        assert_eq!(fs::metadata(v.join("d/b")).unwrap().mode() & 0o7777, 0o400);
        assert_eq!(fs::metadata(v.join("a")).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(fs::metadata(v.join(ts)).unwrap().mode() & 0o7777, 0o755);
        let mut names: Vec<String> = fs::read_dir(v)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [ts, "..data", "a", "d"]);
        // Unchanged payload: nothing written.
        assert!(!write(v, &payload(&[("a", "A", 0o644), ("d/b", "B", 0o400)]), None).unwrap());
        assert_eq!(fs::read_link(v.join("..data")).unwrap(), Path::new(ts));
    }

    #[test]
    fn update_swaps_content_and_open_readers_keep_old_content() {
        let t = tempfile::tempdir().unwrap();
        let v = t.path();
        write(
            v,
            &payload(&[("k", "old", 0o644), ("gone", "x", 0o644)]),
            None,
        )
        .unwrap();
        let old_ts = fs::read_link(v.join("..data")).unwrap();
        let mut reader = fs::File::open(v.join("k")).unwrap();
        assert!(write(
            v,
            &payload(&[("k", "new", 0o644), ("added", "y", 0o644)]),
            None
        )
        .unwrap());
        // Same path, new content.
        assert_eq!(fs::read_to_string(v.join("k")).unwrap(), "new");
        assert_eq!(fs::read_to_string(v.join("added")).unwrap(), "y");
        // The open file is the old one.
        let mut s = String::new();
        reader.read_to_string(&mut s).unwrap();
        assert_eq!(s, "old");
        // Removed key and the old timestamped dir are gone.
        assert!(fs::symlink_metadata(v.join("gone")).is_err());
        assert!(fs::symlink_metadata(v.join(&old_ts)).is_err());
        assert_ne!(fs::read_link(v.join("..data")).unwrap(), old_ts);
        assert!(fs::symlink_metadata(v.join("..data_tmp")).is_err());
    }
}
