//! hostPath volumes: kubelet's type checks (`checkTypeInternal`, same messages) and the
//! `...OrCreate` types. Checks follow symlinks, as kubelet's `os.Stat` does: a hostPath is
//! the administrator's choice of host path, not something the pod's containers control.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use super::mounts::io_err;
use super::SetUpError;

fn kind_of(path: &Path) -> Option<fs::FileType> {
    fs::metadata(path).ok().map(|m| m.file_type())
}

/// Checks (or creates) `path` for hostPath `type`. An empty type only makes a missing path
/// a directory (0755), as containerd's CRI does before binding a missing host path.
pub fn check_type(path: &Path, ty: &str) -> Result<(), SetUpError> {
    let shown = path.display();
    let fail = |what: &str| {
        Err(SetUpError::HostPathType(format!(
            "hostPath type check failed: {shown} is not {what}"
        )))
    };
    let t = kind_of(path);
    match ty {
        "" => {
            if t.is_none() {
                make_dir(path)?;
            }
        }
        "DirectoryOrCreate" => match t {
            None => make_dir(path)?,
            Some(t) if !t.is_dir() => return fail("a directory"),
            Some(_) => {}
        },
        "Directory" => {
            if !t.is_some_and(|t| t.is_dir()) {
                return fail("a directory");
            }
        }
        "FileOrCreate" => match t {
            None => make_file(path)?,
            Some(t) if !t.is_file() => return fail("a file"),
            Some(_) => {}
        },
        "File" => {
            if !t.is_some_and(|t| t.is_file()) {
                return fail("a file");
            }
        }
        "Socket" => {
            if !t.is_some_and(|t| t.is_socket()) {
                return fail("a socket file");
            }
        }
        "CharDevice" => {
            if !t.is_some_and(|t| t.is_char_device()) {
                return fail("a character device");
            }
        }
        "BlockDevice" => {
            if !t.is_some_and(|t| t.is_block_device()) {
                return fail("a block device");
            }
        }
        other => {
            return Err(SetUpError::HostPathType(format!(
                "{other} is an invalid volume type"
            )))
        }
    }
    Ok(())
}

/// `mkdir -p` with 0755 (subject to the umask, as kubelet's `os.MkdirAll`).
fn make_dir(path: &Path) -> Result<(), SetUpError> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("mkdir", path)(e).into()),
    }
}

/// An empty 0644 file; the parent must exist (kubelet's `makeFile`).
fn make_file(path: &Path) -> Result<(), SetUpError> {
    match fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("create", path)(e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn types_are_checked_with_kubelets_messages() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("dir");
        let file = t.path().join("file");
        fs::create_dir(&dir).unwrap();
        fs::write(&file, "x").unwrap();
        let msg = |p: &Path, ty: &str| check_type(p, ty).unwrap_err().to_string();

        check_type(&dir, "Directory").unwrap();
        assert_eq!(
            msg(&file, "Directory"),
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        assert_eq!(
            msg(&t.path().join("missing"), "Directory"),
            format!(
                "hostPath type check failed: {}/missing is not a directory",
                t.path().display()
            )
        );
        check_type(&file, "File").unwrap();
        assert_eq!(
            msg(&dir, "File"),
            format!(
                "hostPath type check failed: {} is not a file",
                dir.display()
            )
        );
        assert!(msg(&file, "Socket").ends_with("is not a socket file"));
        assert!(msg(&file, "BlockDevice").ends_with("is not a block device"));
        check_type(Path::new("/dev/null"), "CharDevice").unwrap();
        assert!(msg(&file, "CharDevice").ends_with("is not a character device"));
        assert_eq!(msg(&file, "Weird"), "Weird is an invalid volume type");

        let sock = t.path().join("sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        check_type(&sock, "Socket").unwrap();

        // ...OrCreate.
        let created = t.path().join("a/b/c");
        check_type(&created, "DirectoryOrCreate").unwrap();
        assert!(created.is_dir());
        assert!(msg(&file, "DirectoryOrCreate").ends_with("is not a directory"));
        let newfile = dir.join("new");
        check_type(&newfile, "FileOrCreate").unwrap();
        let m = fs::metadata(&newfile).unwrap();
        assert!(m.is_file() && m.len() == 0);
        assert_eq!(m.mode() & 0o7777 & !0o644, 0, "at most 0644");
        assert!(msg(&dir, "FileOrCreate").ends_with("is not a file"));
        // FileOrCreate needs the parent.
        assert!(check_type(&t.path().join("no/parent"), "FileOrCreate").is_err());
        // Empty type: no checks; a missing path becomes a directory.
        check_type(&file, "").unwrap();
        let plain = t.path().join("plain");
        check_type(&plain, "").unwrap();
        assert!(plain.is_dir());
    }
}
