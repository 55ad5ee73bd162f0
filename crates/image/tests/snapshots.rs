//! Snapshots by chain ID: unpacked once and shared, verified by diffID, crash leftovers
//! cleaned; and (root only — CI runs as root) a real overlayfs mount of two layers in
//! which a whiteout hides a lower file and an opaque directory hides a lower directory.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use podium_image::snapshot::{chain_ids, unmount, SnapshotError, Snapshotter};
use podium_image::unpack::UnpackOptions;
use podium_image::Digest;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

fn layers() -> (Vec<u8>, Vec<u8>) {
    let mut l1 = Layer::new();
    l1.file("etc/hello", b"one")
        .file("etc/gone", b"to be whited out")
        .file("dir/a", b"lower a")
        .file("keep", b"lower");
    let mut l2 = Layer::new();
    l2.file("etc/hello", b"two")
        .file("etc/.wh.gone", b"")
        .file("dir/.wh..wh..opq", b"")
        .file("dir/b", b"upper b");
    (l1.finish(), l2.finish())
}

fn open_bytes<'a>(b: &'a [u8]) -> impl FnOnce() -> io::Result<&'a [u8]> + 'a {
    move || Ok(b)
}

#[test]
fn snapshots_are_unpacked_once_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(dir.path()).unwrap();
    let (l1, _) = layers();
    let d1 = Digest::of_bytes(&l1);
    let gz = gzip(&l1);
    let (id, rep) = snaps
        .apply_layer(None, &d1, open_bytes(&gz), &UnpackOptions::default())
        .unwrap();
    assert_eq!(id, d1, "a base layer's chain ID is its diffID");
    assert!(rep.is_some());
    assert_eq!(
        fs::read(
            dir.path()
                .join("snapshots")
                .join(d1.hex())
                .join("fs/etc/hello")
        )
        .unwrap(),
        b"one"
    );
    // Second image with the same base: not unpacked again, layer not even opened.
    let (id2, rep2) = snaps
        .apply_layer(
            None,
            &d1,
            || -> io::Result<&[u8]> { panic!("must not open the layer again") },
            &UnpackOptions::default(),
        )
        .unwrap();
    assert_eq!((id2, rep2.is_none()), (d1.clone(), true));
    // Wrong diffID: error, and nothing (not even a tmp dir) left behind.
    let wrong = Digest::of_bytes(b"not this layer");
    let err = snaps
        .apply_layer(None, &wrong, open_bytes(&l1), &UnpackOptions::default())
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Unpack { .. }), "{err}");
    assert!(!snaps.exists(&wrong));
    let names: Vec<_> = fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![d1.hex().to_string()]);
    // A parent that does not exist is refused.
    assert!(matches!(
        snaps.apply_layer(
            Some(&wrong),
            &d1,
            open_bytes(&l1),
            &UnpackOptions::default()
        ),
        Err(SnapshotError::Missing(_))
    ));
    // Crash leftovers are removed on open.
    fs::create_dir_all(dir.path().join("snapshots/tmp-abc-1-0/fs")).unwrap();
    let snaps = Snapshotter::open(dir.path()).unwrap();
    assert_eq!(snaps.list().unwrap(), vec![d1.clone()]);
    assert_eq!(snaps.parent(&d1).unwrap(), None);
}

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

#[test]
fn overlay_mount_with_whiteouts() {
    if !is_root() {
        eprintln!("skipped: needs root (mknod whiteouts, trusted xattrs, mount)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(dir.path().join("data")).unwrap();
    let (l1, l2) = layers();
    let diff_ids = [Digest::of_bytes(&l1), Digest::of_bytes(&l2)];
    let opts = UnpackOptions::default();
    let (c1, _) = snaps
        .apply_layer(None, &diff_ids[0], open_bytes(&zstd(&l1)), &opts)
        .unwrap();
    let (c2, _) = snaps
        .apply_layer(Some(&c1), &diff_ids[1], open_bytes(&l2), &opts)
        .unwrap();
    assert_eq!(vec![c1.clone(), c2.clone()], chain_ids(&diff_ids));
    assert_eq!(snaps.parent(&c2).unwrap(), Some(c1.clone()));

    let ctr = dir.path().join("containers/c1");
    let spec = snaps.mount_spec(&diff_ids, &ctr).unwrap();
    assert_eq!(spec.lowerdirs, vec![snaps.fs_path(&c2), snaps.fs_path(&c1)]);
    assert_eq!(
        spec.options().unwrap(),
        format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            snaps.fs_path(&c2).display(),
            snaps.fs_path(&c1).display(),
            ctr.join("upper").display(),
            ctr.join("work").display()
        )
    );
    let merged = ctr.join("rootfs");
    fs::create_dir_all(&merged).unwrap();
    spec.mount(&merged).unwrap();
    let guard = Mounted(merged.clone());

    assert_eq!(read(&merged.join("etc/hello")).as_deref(), Some("two"));
    assert_eq!(read(&merged.join("keep")).as_deref(), Some("lower"));
    assert!(
        merged.join("etc/gone").symlink_metadata().is_err(),
        "whiteout must hide the lower file"
    );
    assert!(
        merged.join("dir/a").symlink_metadata().is_err(),
        "opaque dir must hide the lower dir's content"
    );
    assert_eq!(read(&merged.join("dir/b")).as_deref(), Some("upper b"));
    // Writes go to the container's upper dir, never to a shared snapshot.
    fs::write(merged.join("etc/hello"), b"written").unwrap();
    assert_eq!(
        read(&ctr.join("upper/etc/hello")).as_deref(),
        Some("written")
    );
    assert_eq!(
        read(&snaps.fs_path(&c2).join("etc/hello")).as_deref(),
        Some("two")
    );
    drop(guard);
    assert!(
        merged.join("etc").symlink_metadata().is_err(),
        "unmounted: the mount point is empty again"
    );
}

#[test]
fn mount_spec_needs_every_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(dir.path()).unwrap();
    let (l1, _) = layers();
    let d1 = Digest::of_bytes(&l1);
    assert!(matches!(
        snaps.mount_spec(&[], dir.path()),
        Err(SnapshotError::NoLayers)
    ));
    assert!(matches!(
        snaps.mount_spec(&[d1], &dir.path().join("c")),
        Err(SnapshotError::Missing(_))
    ));
}
