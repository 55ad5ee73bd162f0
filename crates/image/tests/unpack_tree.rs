//! Positive unpack tests: a layer produces exactly the expected tree (types, modes,
//! owners, mtimes, contents, link targets, hardlinks), the same for plain, gzip and
//! zstd; the diffID is verified; whiteouts and opaque directories in both modes.
//! Ownership and overlay-whiteout checks need root (CI runs as root); they are skipped
//! with a message otherwise.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use podium_image::unpack::{unpack_layer, Compression, UnpackError, UnpackOptions, WhiteoutMode};
use podium_image::Digest;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;

const T1: u64 = 1_500_000_000;
const T2: u64 = 1_600_000_123;

fn sample() -> Vec<u8> {
    let mut l = Layer::new();
    l.full("etc/", DIR, 0o750, 0, 0, T1, "", b"", (0, 0))
        .full(
            "etc/hosts",
            REG,
            0o640,
            1000,
            1001,
            T2,
            "",
            b"127.0.0.1 localhost\n",
            (0, 0),
        )
        .full(
            "etc/hosts.link",
            HARD,
            0o640,
            1000,
            1001,
            T2,
            "etc/hosts",
            b"",
            (0, 0),
        )
        .full("etc/alias", SYM, 0o777, 0, 0, T1, "hosts", b"", (0, 0))
        .full("bin/", DIR, 0o755, 0, 0, T2, "", b"", (0, 0))
        .full(
            "bin/tool",
            REG,
            0o4755,
            0,
            0,
            T1,
            "",
            b"#!/bin/sh\n",
            (0, 0),
        )
        .full("run/fifo", FIFO, 0o600, 0, 0, T1, "", b"", (0, 0))
        .full(
            "var/lib/deep/file",
            REG,
            0o600,
            0,
            0,
            T1,
            "",
            b"implicit parents",
            (0, 0),
        );
    l.raw(
        b"etc/xattr",
        REG,
        0o644,
        b"",
        b"x",
        None,
        &[("SCHILY.xattr.user.podium", b"yes")],
    );
    l.finish()
}

fn expected(root_owned: bool) -> BTreeMap<String, String> {
    let own = |u: u32, g: u32| if root_owned { (u, g) } else { (0, 0) };
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    let sha = |d: &[u8]| format!("sha256 {}", Digest::of_bytes(d));
    let (u, g) = own(1000, 1001);
    put(
        "etc",
        format!("mode 40750 uid 0 gid 0 nlink 2 rdev 0 mtime {T1} "),
    );
    put(
        "etc/hosts",
        format!(
            "mode 100640 uid {u} gid {g} nlink 2 rdev 0 mtime {T2} {}",
            sha(b"127.0.0.1 localhost\n")
        ),
    );
    put(
        "etc/hosts.link",
        format!(
            "mode 100640 uid {u} gid {g} nlink 2 rdev 0 mtime {T2} {}",
            sha(b"127.0.0.1 localhost\n")
        ),
    );
    put(
        "etc/alias",
        format!("mode 120777 uid 0 gid 0 nlink 1 rdev 0 mtime {T1} -> hosts"),
    );
    put(
        "etc/xattr",
        format!(
            "mode 100644 uid 0 gid 0 nlink 1 rdev 0 mtime 1600000000 {}",
            sha(b"x")
        ),
    );
    put(
        "bin",
        format!("mode 40755 uid 0 gid 0 nlink 2 rdev 0 mtime {T2} "),
    );
    put(
        "bin/tool",
        format!(
            "mode 104755 uid 0 gid 0 nlink 1 rdev 0 mtime {T1} {}",
            sha(b"#!/bin/sh\n")
        ),
    );
    put(
        "run/fifo",
        format!("mode 10600 uid 0 gid 0 nlink 1 rdev 0 mtime {T1} "),
    );
    put(
        "var/lib/deep/file",
        format!(
            "mode 100600 uid 0 gid 0 nlink 1 rdev 0 mtime {T1} {}",
            sha(b"implicit parents")
        ),
    );
    m
}

#[test]
fn exact_tree_for_every_compression() {
    let tar = sample();
    let diff_id = Digest::of_bytes(&tar);
    let owned = is_root();
    for (data, comp) in [
        (tar.clone(), Compression::None),
        (gzip(&tar), Compression::Gzip),
        (zstd(&tar), Compression::Zstd),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = UnpackOptions {
            expected_diff_id: Some(diff_id.clone()),
            ..UnpackOptions::default()
        };
        let rep = unpack_layer(dir.path(), &data[..], &opts).unwrap();
        assert_eq!(rep.compression, comp);
        assert_eq!(rep.diff_id, diff_id);
        assert_eq!(rep.entries, 9);
        assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
        let mut got = tree(dir.path());
        // Implicit parents (run, var, var/lib, var/lib/deep) get the unpack time.
        for k in ["run", "var", "var/lib", "var/lib/deep"] {
            let v = got.remove(k).unwrap();
            assert!(v.starts_with("mode 40755 "), "{k}: {v}");
        }
        assert_eq!(got, expected(owned), "{comp:?}");
        let a = fs::metadata(dir.path().join("etc/hosts")).unwrap();
        let b = fs::metadata(dir.path().join("etc/hosts.link")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hardlink shares the inode");
        let x = xattr::get(dir.path().join("etc/xattr"), "user.podium").unwrap();
        assert_eq!(x.as_deref(), Some(&b"yes"[..]));
    }
}

#[test]
fn diff_id_mismatch_is_an_error() {
    let tar = sample();
    let dir = tempfile::tempdir().unwrap();
    let wrong = Digest::of_bytes(b"something else");
    let opts = UnpackOptions {
        expected_diff_id: Some(wrong.clone()),
        ..UnpackOptions::default()
    };
    match unpack_layer(dir.path(), &gzip(&tar)[..], &opts) {
        Err(UnpackError::DiffIdMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Digest::of_bytes(&tar));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn replacements_within_one_layer() {
    let mut l = Layer::new();
    l.file("a", b"file first")
        .dir("a/")
        .file("a/child", b"c")
        .dir("b/")
        .file("b/x", b"x")
        .file("b", b"file replaces dir")
        .file("c", b"old")
        .symlink("c", "a")
        .symlink("d", "a")
        .file("d", b"new");
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(dir.path(), &l.finish()[..], &UnpackOptions::default()).unwrap();
    let r = dir.path();
    assert!(r.join("a").symlink_metadata().unwrap().is_dir());
    assert_eq!(fs::read(r.join("a/child")).unwrap(), b"c");
    assert_eq!(fs::read(r.join("b")).unwrap(), b"file replaces dir");
    assert_eq!(fs::read_link(r.join("c")).unwrap().to_str(), Some("a"));
    assert!(r.join("d").symlink_metadata().unwrap().is_file());
}

fn lower() -> Vec<u8> {
    let mut l = Layer::new();
    l.file("a/b", b"gone")
        .file("a/keep", b"kept")
        .file("c/old", b"old")
        .file("c/sub/x", b"x");
    l.finish()
}

fn upper() -> Vec<u8> {
    let mut l = Layer::new();
    // The opaque marker comes after c/new: it still only hides the lower layer.
    l.file("a/.wh.b", b"")
        .file("c/new", b"new")
        .file("c/.wh..wh..opq", b"")
        .file(".wh.nothing", b"");
    l.finish()
}

#[test]
fn whiteouts_apply_mode() {
    let dir = tempfile::tempdir().unwrap();
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Apply,
        ..UnpackOptions::default()
    };
    unpack_layer(dir.path(), &lower()[..], &opts).unwrap();
    unpack_layer(dir.path(), &upper()[..], &opts).unwrap();
    let got: Vec<String> = tree(dir.path()).keys().cloned().collect();
    assert_eq!(got, ["a", "a/keep", "c", "c/new"]);
}

#[test]
fn whiteouts_overlay_mode() {
    if !is_root() {
        eprintln!("skipped: overlay whiteouts need root (mknod, trusted.* xattrs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(dir.path(), &upper()[..], &UnpackOptions::default()).unwrap();
    let r = dir.path();
    for wh in ["a/b", "nothing"] {
        let m = fs::symlink_metadata(r.join(wh)).unwrap();
        assert_eq!(m.mode() & libc::S_IFMT, libc::S_IFCHR, "{wh}");
        assert_eq!(m.rdev(), 0, "{wh}");
    }
    assert_eq!(
        xattr::get(r.join("c"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        xattr::get(r.join("a"), "trusted.overlay.opaque").unwrap(),
        None
    );
    assert_eq!(fs::read(r.join("c/new")).unwrap(), b"new");
    let names: Vec<String> = tree(r).keys().cloned().collect();
    assert!(!names.iter().any(|n| n.contains(".wh.")), "{names:?}");
}
