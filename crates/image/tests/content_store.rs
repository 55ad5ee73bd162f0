//! Content store: layout, verification (digest and size) before a blob becomes
//! visible, concurrent writers sharing one fetch, interrupted writes resumed or
//! restarted, and cleanup on open.
#![allow(clippy::unwrap_used)]

use podium_image::store::{ContentStore, Ingested, StoreError};
use podium_image::Digest;
use std::fs;
use std::io::{self, Cursor, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn data() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

fn no_ingest_files(store: &ContentStore) -> bool {
    fs::read_dir(store.root().join("ingest")).unwrap().count() == 0
}

#[test]
fn write_read_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let d = data();
    let dg = Digest::of_bytes(&d);
    assert!(!store.contains(&dg));
    assert_eq!(
        store.write_bytes(&dg, &d).unwrap(),
        Ingested::Written {
            fetched: d.len() as u64,
            resumed_from: 0
        }
    );
    assert_eq!(
        store.blob_path(&dg),
        dir.path().join("blobs/sha256").join(dg.hex())
    );
    assert!(store.contains(&dg));
    assert_eq!(store.size(&dg).unwrap(), d.len() as u64);
    assert_eq!(store.read_blob(&dg).unwrap(), d);
    assert_eq!(store.write_bytes(&dg, &d).unwrap(), Ingested::Present);
    assert_eq!(store.list().unwrap(), vec![dg.clone()]);
    store.verify(&dg).unwrap();
    store.delete(&dg).unwrap();
    assert!(!store.contains(&dg));
    assert!(matches!(store.read_blob(&dg), Err(StoreError::NotFound(_))));
    assert!(no_ingest_files(&store));
}

#[test]
fn verification_failures_leave_no_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let d = data();
    let dg = Digest::of_bytes(&d);
    // Wrong content.
    let mut bad = d.clone();
    bad[1000] ^= 1;
    assert!(matches!(
        store.write_bytes(&dg, &bad),
        Err(StoreError::DigestMismatch { .. })
    ));
    // Too long: cut off at the declared size.
    let mut longer = d.clone();
    longer.push(0);
    let mut f = move |_| Ok::<_, io::Error>((Cursor::new(longer.clone()), 0));
    assert!(matches!(
        store.ingest(&dg, Some(d.len() as u64), &mut f),
        Err(StoreError::SizeMismatch { .. })
    ));
    // Too short.
    let shorter = d[..100].to_vec();
    let mut f = move |_| Ok::<_, io::Error>((Cursor::new(shorter.clone()), 0));
    assert!(matches!(
        store.ingest(&dg, Some(d.len() as u64), &mut f),
        Err(StoreError::SizeMismatch { actual: 100, .. })
    ));
    assert!(!store.contains(&dg));
    assert!(store.list().unwrap().is_empty());
    assert!(no_ingest_files(&store));
    // A corrupted blob on disk is caught by verify and removed.
    store.write_bytes(&dg, &d).unwrap();
    fs::write(store.blob_path(&dg), b"tampered").unwrap();
    assert!(matches!(
        store.read_blob(&dg),
        Err(StoreError::DigestMismatch { .. })
    ));
    assert!(store.verify(&dg).is_err());
    assert!(!store.contains(&dg));
}

/// Yields `n` bytes, then fails like a dropped connection.
struct Breaks {
    data: Cursor<Vec<u8>>,
    n: usize,
}

impl Read for Breaks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.n == 0 {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        }
        let k = buf.len().min(self.n);
        let r = self.data.read(&mut buf[..k])?;
        self.n -= r;
        Ok(r)
    }
}

#[test]
fn interrupted_write_resumes_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let d = data();
    let dg = Digest::of_bytes(&d);
    {
        let store = ContentStore::open(dir.path()).unwrap();
        let dd = d.clone();
        let mut f = move |_| {
            Ok::<_, io::Error>((
                Breaks {
                    data: Cursor::new(dd.clone()),
                    n: 70_000,
                },
                0,
            ))
        };
        assert!(matches!(
            store.ingest(&dg, Some(d.len() as u64), &mut f),
            Err(StoreError::Fetch { .. })
        ));
        assert!(!store.contains(&dg));
        assert_eq!(fs::metadata(store.ingest_path(&dg)).unwrap().len(), 70_000);
    }
    // A new process opens the store; the partial file survives and is resumed.
    let store = ContentStore::open(dir.path()).unwrap();
    let offsets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let o2 = offsets.clone();
    let dd = d.clone();
    let mut f = move |off: u64| {
        o2.lock().unwrap().push(off);
        Ok::<_, io::Error>((Cursor::new(dd[off as usize..].to_vec()), off))
    };
    assert_eq!(
        store.ingest(&dg, Some(d.len() as u64), &mut f).unwrap(),
        Ingested::Written {
            fetched: d.len() as u64 - 70_000,
            resumed_from: 70_000
        }
    );
    assert_eq!(*offsets.lock().unwrap(), vec![70_000]);
    assert_eq!(store.read_blob(&dg).unwrap(), d);
    assert!(no_ingest_files(&store));
}

#[test]
fn source_that_cannot_resume_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let d = data();
    let dg = Digest::of_bytes(&d);
    fs::write(store.ingest_path(&dg), &d[..5000]).unwrap();
    let dd = d.clone();
    // Ignores the offset and starts from 0, as a registry without Range support does.
    let mut f = move |_| Ok::<_, io::Error>((Cursor::new(dd.clone()), 0));
    assert_eq!(
        store.ingest(&dg, Some(d.len() as u64), &mut f).unwrap(),
        Ingested::Written {
            fetched: d.len() as u64,
            resumed_from: 0
        }
    );
    assert_eq!(store.read_blob(&dg).unwrap(), d);
}

#[test]
fn corrupt_partial_is_discarded_then_retried() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let d = data();
    let dg = Digest::of_bytes(&d);
    fs::write(store.ingest_path(&dg), vec![0xEEu8; 5000]).unwrap();
    let dd = d.clone();
    let mut f = move |off: u64| Ok::<_, io::Error>((Cursor::new(dd[off as usize..].to_vec()), off));
    assert!(matches!(
        store.ingest(&dg, Some(d.len() as u64), &mut f),
        Err(StoreError::DigestMismatch { .. })
    ));
    assert!(!store.contains(&dg));
    assert!(no_ingest_files(&store));
    store.ingest(&dg, Some(d.len() as u64), &mut f).unwrap();
    assert_eq!(store.read_blob(&dg).unwrap(), d);
}

#[test]
fn open_cleans_unresumable_ingest_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = data();
    let dg = Digest::of_bytes(&d);
    {
        let store = ContentStore::open(dir.path()).unwrap();
        store.write_bytes(&dg, &d).unwrap();
        fs::write(dir.path().join("ingest/junk.tmp"), b"x").unwrap();
        fs::create_dir(dir.path().join("ingest/somedir")).unwrap();
        // A partial for a blob that is already complete is useless.
        fs::write(store.ingest_path(&dg), b"partial").unwrap();
        let other = Digest::of_bytes(b"other");
        fs::write(store.ingest_path(&other), b"oth").unwrap();
    }
    let store = ContentStore::open(dir.path()).unwrap();
    let mut left: Vec<String> = fs::read_dir(dir.path().join("ingest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec![Digest::of_bytes(b"other").hex().to_string()]);
    assert!(store.contains(&dg));
}

#[test]
fn concurrent_writers_share_one_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let d = Arc::new(data());
    let dg = Digest::of_bytes(&d);
    let calls = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, d, dg, calls) = (store.clone(), d.clone(), dg.clone(), calls.clone());
            std::thread::spawn(move || {
                let len = d.len() as u64;
                let mut f = move |_| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Slow enough that the others arrive while this one writes.
                    std::thread::sleep(Duration::from_millis(200));
                    Ok::<_, io::Error>((Cursor::new(d.to_vec()), 0))
                };
                store.ingest(&dg, Some(len), &mut f).unwrap()
            })
        })
        .collect();
    let results: Vec<Ingested> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Ingested::Written { .. }))
            .count(),
        1
    );
    assert_eq!(
        results.iter().filter(|r| **r == Ingested::Present).count(),
        7
    );
    assert_eq!(store.read_blob(&dg).unwrap(), *d);
}
