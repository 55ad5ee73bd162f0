//! The hostile-layer corpus: layers that try to write, link, chmod, chown or delete
//! outside the snapshot root. Each runs against a fresh root inside a temp dir that
//! also holds a canary tree; the canary (every file's bytes, mode, owner, link count,
//! mtime and every symlink target) and the host's /etc/passwd must be unchanged, and the
//! unpacker must either fail with the expected error or contain the entry.
//!
//! Runs as root in CI (chown, device and overlay-whiteout cases need it); as non-root
//! the ownership-dependent cases still run, with ownership not preserved.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use podium_image::unpack::{unpack_layer, UnpackError, UnpackOptions, UnpackReport, WhiteoutMode};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

type Check = Box<dyn Fn(&Result<UnpackReport, UnpackError>, &Path) -> Result<(), String>>;

struct Case {
    name: &'static str,
    lower: Option<Vec<u8>>,
    layer: Vec<u8>,
    opts: UnpackOptions,
    check: Check,
}

fn err_is(pred: fn(&UnpackError) -> bool) -> Check {
    Box::new(move |r, _| match r {
        Err(e) if pred(e) => Ok(()),
        Err(e) => Err(format!("unexpected error: {e}")),
        Ok(rep) => Err(format!("unpack succeeded: {rep:?}")),
    })
}

fn ok_and(f: fn(&UnpackReport, &Path) -> Result<(), String>) -> Check {
    Box::new(move |r, root| match r {
        Ok(rep) => f(rep, root),
        Err(e) => Err(format!("unexpected error: {e}")),
    })
}

fn apply() -> UnpackOptions {
    UnpackOptions {
        whiteouts: WhiteoutMode::Apply,
        ..UnpackOptions::default()
    }
}

fn layer(f: impl FnOnce(&mut Layer)) -> Vec<u8> {
    let mut l = Layer::new();
    f(&mut l);
    l.finish()
}

const HOST_ESCAPE: &str = "/etc/podium-canary-escape";

fn cases(canary: &Path) -> Vec<Case> {
    let canary_s = canary.to_string_lossy().into_owned();
    let canary_file = format!("{canary_s}/secret");
    let c = |name, layer, check| Case {
        name,
        lower: None,
        layer,
        opts: UnpackOptions::default(),
        check,
    };
    vec![
        c(
            "dotdot file",
            layer(|l| {
                l.file("../../../canary/secret", b"pwned");
            }),
            err_is(|e| matches!(e, UnpackError::Escape { .. })),
        ),
        c(
            "dotdot etc",
            layer(|l| {
                l.file("../../etc/x", b"pwned");
            }),
            err_is(|e| matches!(e, UnpackError::Escape { .. })),
        ),
        c(
            "absolute path",
            layer(|l| {
                l.file(HOST_ESCAPE, b"pwned");
            }),
            err_is(|e| matches!(e, UnpackError::Escape { .. })),
        ),
        c(
            "dotdot in the middle",
            layer(|l| {
                l.dir("a/").file("a/../../../../canary/secret", b"pwned");
            }),
            err_is(|e| matches!(e, UnpackError::Escape { .. })),
        ),
        c(
            "symlink to / then write through it",
            layer(|l| {
                l.symlink("a", "/")
                    .file("a/etc/podium-canary-escape", b"pwned");
            }),
            err_is(|e| matches!(e, UnpackError::SymlinkAncestor { .. })),
        ),
        c(
            "symlink to canary (absolute) then write through it",
            layer(|l| {
                l.symlink("c", &canary_s).file("c/secret", b"pwned");
            }),
            err_is(|e| matches!(e, UnpackError::SymlinkAncestor { .. })),
        ),
        c(
            "symlink .. chain",
            layer(|l| {
                l.symlink("up", "..")
                    .dir("d/")
                    .symlink("d/up", "../up")
                    .file("d/up/up/up/canary/secret", b"pwned");
            }),
            err_is(|e| matches!(e, UnpackError::SymlinkAncestor { .. })),
        ),
        c(
            "symlink chain l1 -> l2 -> ../../..",
            layer(|l| {
                l.symlink("l2", "../../..")
                    .symlink("l1", "l2")
                    .file("l1/canary/secret", b"pwned");
            }),
            err_is(|e| matches!(e, UnpackError::SymlinkAncestor { .. })),
        ),
        c(
            "symlink entries are stored, not followed",
            layer(|l| {
                l.symlink("escape", "../../../canary/secret");
            }),
            ok_and(|_, root| {
                let t = fs::read_link(root.join("escape")).map_err(|e| e.to_string())?;
                (t.to_str() == Some("../../../canary/secret"))
                    .then_some(())
                    .ok_or(format!("target {t:?}"))
            }),
        ),
        c(
            "file over an existing symlink replaces the link",
            layer(|l| {
                l.symlink("f", &canary_file).file("f", b"inside");
            }),
            ok_and(|_, root| {
                let m = fs::symlink_metadata(root.join("f")).map_err(|e| e.to_string())?;
                if !m.file_type().is_file() {
                    return Err("f is not a regular file".into());
                }
                (fs::read(root.join("f")).unwrap() == b"inside")
                    .then_some(())
                    .ok_or("wrong content".into())
            }),
        ),
        c(
            "dir over an existing symlink replaces the link",
            layer(|l| {
                l.symlink("d", &canary_s)
                    .raw(b"d/", DIR, 0o777, b"", b"", None, &[]);
            }),
            ok_and(|_, root| {
                let m = fs::symlink_metadata(root.join("d")).map_err(|e| e.to_string())?;
                m.file_type()
                    .is_dir()
                    .then_some(())
                    .ok_or("d is not a directory".into())
            }),
        ),
        c(
            "symlink metadata is not applied to its target",
            layer(|l| {
                l.raw(b"s", SYM, 0o777, canary_file.as_bytes(), b"", None, &[]);
                l.full(
                    "s2",
                    SYM,
                    0o777,
                    4242,
                    4242,
                    1,
                    "../../../canary/secret",
                    b"",
                    (0, 0),
                );
            }),
            ok_and(|_, _| Ok(())),
        ),
        c(
            "swap: dir, then symlink with the same name, then a file under it",
            layer(|l| {
                l.dir("d/")
                    .file("d/ok", b"fine")
                    .symlink("d", &canary_s)
                    .file("d/secret", b"pwned");
            }),
            err_is(|e| matches!(e, UnpackError::SymlinkAncestor { .. })),
        ),
        c(
            "hardlink to /etc/passwd",
            layer(|l| {
                l.hardlink("h", "/etc/passwd");
            }),
            err_is(|e| matches!(e, UnpackError::Hardlink { .. })),
        ),
        c(
            "hardlink to ../outside",
            layer(|l| {
                l.hardlink("h", "../../../outside");
            }),
            err_is(|e| matches!(e, UnpackError::Hardlink { .. })),
        ),
        c(
            "hardlink through a symlinked ancestor",
            layer(|l| {
                l.symlink("c", &canary_s).hardlink("h", "c/secret");
            }),
            err_is(|e| matches!(e, UnpackError::Hardlink { .. })),
        ),
        c(
            "hardlink to a symlink links the symlink itself",
            layer(|l| {
                l.symlink("s", &canary_file).hardlink("h", "s");
            }),
            ok_and(|_, root| {
                let m = fs::symlink_metadata(root.join("h")).map_err(|e| e.to_string())?;
                m.file_type()
                    .is_symlink()
                    .then_some(())
                    .ok_or("h is not a symlink".into())
            }),
        ),
        c(
            "hardlink to a missing target",
            layer(|l| {
                l.hardlink("h", "nothing/here");
            }),
            err_is(|e| matches!(e, UnpackError::Hardlink { .. })),
        ),
        c(
            "whiteout .wh... (names ..)",
            layer(|l| {
                l.file("a/.wh...", b"");
            }),
            err_is(|e| matches!(e, UnpackError::InvalidWhiteout { .. })),
        ),
        c(
            "whiteout ../.wh.x",
            layer(|l| {
                l.file("../.wh.outside", b"");
            }),
            err_is(|e| matches!(e, UnpackError::Escape { .. })),
        ),
        c(
            "bare .wh.",
            layer(|l| {
                l.file("etc/.wh.", b"");
            }),
            err_is(|e| matches!(e, UnpackError::BareWhiteout { .. })),
        ),
        Case {
            name: "whiteout through a symlinked dir (apply mode deletes)",
            lower: Some(layer(|l| {
                l.symlink("c", &canary_s);
            })),
            layer: layer(|l| {
                l.file("c/.wh.secret", b"");
            }),
            opts: apply(),
            check: err_is(|e| matches!(e, UnpackError::SymlinkAncestor { .. })),
        },
        Case {
            name: "opaque through a symlinked dir (apply mode deletes)",
            lower: Some(layer(|l| {
                l.symlink("c", &canary_s);
            })),
            layer: layer(|l| {
                l.file("c/.wh..wh..opq", b"");
            }),
            opts: apply(),
            check: err_is(|e| matches!(e, UnpackError::SymlinkAncestor { .. })),
        },
        Case {
            name: "whiteout of a symlink removes the link only",
            lower: Some(layer(|l| {
                l.symlink("c", &canary_s);
            })),
            layer: layer(|l| {
                l.file(".wh.c", b"");
            }),
            opts: apply(),
            check: ok_and(|_, root| {
                root.join("c")
                    .symlink_metadata()
                    .is_err()
                    .then_some(())
                    .ok_or("c still there".into())
            }),
        },
        c(
            "huge declared size",
            layer(|l| {
                l.raw(b"big", REG, 0o644, b"", b"", Some(1 << 40), &[]);
            }),
            err_is(|e| matches!(e, UnpackError::TooLarge { .. } | UnpackError::Read(_))),
        ),
        Case {
            name: "total size over the cap",
            lower: None,
            layer: layer(|l| {
                l.file("a", &[1u8; 600]).file("b", &[2u8; 600]);
            }),
            opts: UnpackOptions {
                max_bytes: 1000,
                ..UnpackOptions::default()
            },
            check: err_is(|e| matches!(e, UnpackError::TooLarge { limit: 1000 })),
        },
        Case {
            name: "decompression bomb (trailing zeros)",
            lower: None,
            layer: {
                let mut t = layer(|l| {
                    l.file("a", b"x");
                });
                t.resize(t.len() + (64 << 20), 0);
                gzip(&t)
            },
            opts: UnpackOptions {
                max_bytes: 1 << 20,
                max_entries: 10,
                ..UnpackOptions::default()
            },
            check: err_is(|e| {
                matches!(e, UnpackError::TooLarge { .. } | UnpackError::TrailingData)
            }),
        },
        Case {
            name: "too many entries",
            lower: None,
            layer: layer(|l| {
                for i in 0..11 {
                    l.file(&format!("f{i}"), b"");
                }
            }),
            opts: UnpackOptions {
                max_entries: 10,
                ..UnpackOptions::default()
            },
            check: err_is(|e| matches!(e, UnpackError::TooManyEntries { limit: 10 })),
        },
        c(
            "char device skipped by default",
            layer(|l| {
                l.full("dev/mem", CHR, 0o666, 0, 0, 1, "", b"", (1, 1));
                l.full("dev/sda", BLK, 0o666, 0, 0, 1, "", b"", (8, 0));
            }),
            ok_and(|rep, root| {
                if root.join("dev/mem").symlink_metadata().is_ok()
                    || root.join("dev/sda").symlink_metadata().is_ok()
                {
                    return Err("device created".into());
                }
                (rep.warnings.len() == 2)
                    .then_some(())
                    .ok_or(format!("warnings {:?}", rep.warnings))
            }),
        ),
        c(
            "setuid kept by default",
            layer(|l| {
                l.raw(b"bin/su", REG, 0o4755, b"", b"x", None, &[]);
            }),
            ok_and(|_, root| {
                let m = fs::metadata(root.join("bin/su")).unwrap();
                (m.permissions().mode() & 0o7777 == 0o4755)
                    .then_some(())
                    .ok_or(format!("mode {:o}", m.permissions().mode()))
            }),
        ),
        Case {
            name: "setuid stripped when asked",
            lower: None,
            layer: layer(|l| {
                l.raw(b"bin/su", REG, 0o6755, b"", b"x", None, &[]);
            }),
            opts: UnpackOptions {
                strip_setuid: true,
                ..UnpackOptions::default()
            },
            check: ok_and(|_, root| {
                let m = fs::metadata(root.join("bin/su")).unwrap();
                (m.permissions().mode() & 0o7777 == 0o755)
                    .then_some(())
                    .ok_or(format!("mode {:o}", m.permissions().mode()))
            }),
        },
        c(
            "NUL in a PAX path",
            layer(|l| {
                l.raw(
                    b"a\0/../../../canary/secret",
                    REG,
                    0o644,
                    b"",
                    b"x",
                    None,
                    &[],
                );
            }),
            err_is(|e| matches!(e, UnpackError::InvalidPath { .. })),
        ),
        c(
            "component longer than 255 bytes",
            layer(|l| {
                l.raw("x".repeat(300).as_bytes(), REG, 0o644, b"", b"x", None, &[]);
            }),
            err_is(|e| matches!(e, UnpackError::InvalidPath { .. })),
        ),
        c(
            "path longer than 4096 bytes",
            layer(|l| {
                let p = vec!["y".repeat(200); 25].join("/");
                l.raw(p.as_bytes(), REG, 0o644, b"", b"x", None, &[]);
            }),
            err_is(|e| matches!(e, UnpackError::InvalidPath { .. })),
        ),
        c(
            "long but valid path",
            layer(|l| {
                let p = vec!["z".repeat(250); 8].join("/");
                l.raw(p.as_bytes(), REG, 0o644, b"", b"deep", None, &[]);
            }),
            ok_and(|_, root| {
                let p = vec!["z".repeat(250); 8].join("/");
                (fs::read(root.join(p)).map_err(|e| e.to_string())? == b"deep")
                    .then_some(())
                    .ok_or("wrong content".into())
            }),
        ),
        c(
            "forged overlay xattr refused",
            layer(|l| {
                l.raw(
                    b"d/",
                    DIR,
                    0o755,
                    b"",
                    b"",
                    None,
                    &[("SCHILY.xattr.trusted.overlay.redirect", b"/../../canary")],
                );
            }),
            ok_and(|rep, _| {
                rep.warnings
                    .iter()
                    .any(|w| w.contains("trusted.overlay.redirect"))
                    .then_some(())
                    .ok_or(format!("warnings {:?}", rep.warnings))
            }),
        ),
    ]
}

fn make_canary(base: &Path) {
    fs::create_dir_all(base.join("canary/etc")).unwrap();
    fs::create_dir_all(base.join("canary/sub")).unwrap();
    fs::write(base.join("canary/secret"), b"the canary").unwrap();
    fs::write(
        base.join("canary/etc/passwd"),
        b"root:x:0:0::/root:/bin/sh\n",
    )
    .unwrap();
    fs::write(base.join("canary/sub/file"), b"nested").unwrap();
    fs::set_permissions(
        base.join("canary/secret"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("secret", base.join("canary/link")).unwrap();
    fs::write(base.join("outside"), b"outside the root").unwrap();
    fs::create_dir_all(base.join("a/b/root")).unwrap();
}

fn host_state() -> String {
    let m = fs::metadata("/etc/passwd").unwrap();
    format!(
        "{} {:o} {} {} {}",
        podium_image::Digest::of_bytes(&fs::read("/etc/passwd").unwrap()),
        m.mode(),
        m.nlink(),
        m.uid(),
        Path::new(HOST_ESCAPE).symlink_metadata().is_ok()
    )
}

/// The tree minus the root; the root's parent without its mtime (the harness recreates
/// the root for every case, which changes it).
fn outside_root(
    mut t: std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    t.retain(|k, _| k != "a/b/root" && !k.starts_with("a/b/root/"));
    if let Some(v) = t.get_mut("a/b") {
        *v = v.split(" mtime ").next().unwrap().to_string();
    }
    t
}

#[test]
fn hostile_corpus_never_escapes() {
    let base = tempfile::tempdir().unwrap();
    let base = base.path();
    make_canary(base);
    let canary_before = tree(base);
    let host_before = host_state();
    let root = base.join("a/b/root");
    let mut failures = Vec::new();
    let all = cases(&base.join("canary"));
    let n = all.len();
    for case in all {
        if root.exists() {
            fs::remove_dir_all(&root).unwrap();
        }
        fs::create_dir(&root).unwrap();
        if let Some(lower) = &case.lower {
            unpack_layer(&root, &lower[..], &apply()).unwrap();
        }
        let result = unpack_layer(&root, &case.layer[..], &case.opts);
        if let Err(msg) = (case.check)(&result, &root) {
            failures.push(format!("{}: {msg}", case.name));
        }
        // The canary, minus the root itself, is byte-for-byte unchanged.
        let after = outside_root(tree(base));
        let before = outside_root(canary_before.clone());
        if after != before {
            failures.push(format!(
                "{}: CANARY CHANGED\nbefore {before:#?}\nafter {after:#?}",
                case.name
            ));
        }
        if host_state() != host_before {
            failures.push(format!("{}: HOST /etc CHANGED", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Device nodes are created only when allowed (mknod needs root; CI runs as root).
#[test]
fn devices_when_allowed() {
    if !is_root() {
        eprintln!("skipped: needs root for mknod");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let l = layer(|l| {
        l.full("dev/null", CHR, 0o666, 0, 0, 1, "", b"", (1, 3));
    });
    let opts = UnpackOptions {
        allow_devices: true,
        ..UnpackOptions::default()
    };
    let rep = unpack_layer(dir.path(), &l[..], &opts).unwrap();
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    let m = fs::symlink_metadata(dir.path().join("dev/null")).unwrap();
    assert_eq!(m.mode() & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(m.rdev(), libc::makedev(1, 3));
    assert_eq!(m.mode() & 0o777, 0o666);
}
