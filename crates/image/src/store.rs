//! The content store: blobs (layers, manifests, configs) kept by digest.
//!
//! Layout under the store root:
//! - `blobs/sha256/<hex>`: complete, verified blobs; written once, never modified.
//! - `ingest/<hex>`: a write in progress for that digest. Data is appended here, hashed
//!   as it goes, and checked against the expected digest and size before an atomic
//!   `rename` into `blobs/`. A verification failure deletes it, so no bad blob is ever
//!   visible under `blobs/`.
//!
//! Concurrency: writers of one digest in this process are serialised by a per-digest
//! lock (an in-flight map); the second writer waits, then finds the blob present and
//! never calls its fetcher, so concurrent pulls of one image share one download.
//! (Two processes sharing a data dir are not coordinated; Podium runs one agent per
//! data dir.)
//!
//! Interrupted writes: an `ingest/<hex>` left by a crash is resumed by the next write of
//! that digest: its bytes are re-hashed and the fetcher is asked for the rest from that
//! offset (an HTTP Range request); a fetcher that can only start from 0 says so and the
//! file is truncated. [`ContentStore::open`] removes ingest files that are not named by
//! a digest, and any that already exceed their blob's size cannot be resumed and are
//! restarted on the next write.
//!
//! The registry client (oci-client, to come) plugs in as a [`Fetcher`]: it opens the
//! blob URL with `Range: bytes=<offset>-` and reports where its stream really starts.

use crate::digest::{Digest, Hasher, HashingWriter};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Content store errors. `Io` names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("fetching {digest}: {source}")]
    Fetch { digest: Digest, source: io::Error },
    #[error("blob {expected}: content has digest {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} not found")]
    NotFound(Digest),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Where a blob's bytes come from.
pub trait Fetcher {
    /// Opens the blob's content starting at `offset` (0 for a fresh write). Returns the
    /// reader and the offset it really starts at: `offset`, or 0 when the source cannot
    /// resume (the store then restarts the ingest).
    fn open(&mut self, offset: u64) -> io::Result<(Box<dyn Read + '_>, u64)>;
}

/// A fetcher from any closure `offset -> (reader, real_offset)`.
impl<F, R> Fetcher for F
where
    F: FnMut(u64) -> io::Result<(R, u64)>,
    R: Read + 'static,
{
    fn open(&mut self, offset: u64) -> io::Result<(Box<dyn Read + '_>, u64)> {
        let (r, o) = self(offset)?;
        Ok((Box::new(r), o))
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// The blob was already present; the fetcher was not called.
    Present,
    /// Written now; `fetched` bytes came from the fetcher, `resumed_from` were reused
    /// from an interrupted earlier write.
    Written { fetched: u64, resumed_from: u64 },
}

/// A content-addressed blob store rooted at a directory.
#[derive(Debug)]
pub struct ContentStore {
    root: PathBuf,
    inflight: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
}

impl ContentStore {
    /// Opens (creating if needed) the store at `root`, and cleans `ingest/` of files
    /// that no write could resume.
    pub fn open(root: impl Into<PathBuf>) -> Result<ContentStore, StoreError> {
        let root = root.into();
        let store = ContentStore {
            root,
            inflight: Mutex::new(HashMap::new()),
        };
        for d in [store.blobs_dir(), store.ingest_dir()] {
            fs::create_dir_all(&d).map_err(io_err("create", &d))?;
        }
        let ingest = store.ingest_dir();
        for e in fs::read_dir(&ingest).map_err(io_err("read", &ingest))? {
            let e = e.map_err(io_err("read", &ingest))?;
            let name = e.file_name();
            let keep = name
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
                .is_some_and(|d| !store.contains(&d))
                && e.file_type().is_ok_and(|t| t.is_file());
            if !keep {
                let p = e.path();
                let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                r.map_err(io_err("remove", &p))?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// `<root>/blobs/sha256/<hex>` (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// `<root>/ingest/<hex>`: the partial file of an unfinished write.
    pub fn ingest_path(&self, digest: &Digest) -> PathBuf {
        self.ingest_dir().join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size of a present blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, StoreError> {
        let p = self.blob_path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err("stat", &p)(e)),
        }
    }

    fn lock_for(&self, digest: &Digest) -> Arc<Mutex<()>> {
        let mut map = lock(&self.inflight);
        map.entry(digest.clone()).or_default().clone()
    }

    fn release(&self, digest: &Digest, l: Arc<Mutex<()>>) {
        let mut map = lock(&self.inflight);
        // Two references: ours and the map's. Nobody else waits: drop the entry.
        if Arc::strong_count(&l) == 2 {
            map.remove(digest);
        }
    }

    /// Writes the blob `digest` from `fetcher` unless it is present. `size`, when known
    /// (from a descriptor), is enforced while writing: a source that sends more is cut
    /// off. On any error no blob appears; a fetch error keeps the partial file for a
    /// later resume, a verification error deletes it.
    pub fn ingest(
        &self,
        digest: &Digest,
        size: Option<u64>,
        fetcher: &mut dyn Fetcher,
    ) -> Result<Ingested, StoreError> {
        let l = self.lock_for(digest);
        let result = {
            let _guard = lock(&l);
            self.ingest_locked(digest, size, fetcher)
        };
        self.release(digest, l);
        result
    }

    fn ingest_locked(
        &self,
        digest: &Digest,
        size: Option<u64>,
        fetcher: &mut dyn Fetcher,
    ) -> Result<Ingested, StoreError> {
        if self.contains(digest) {
            return Ok(Ingested::Present);
        }
        let partial = self.ingest_path(digest);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&partial)
            .map_err(io_err("open", &partial))?;
        // Re-hash what an earlier, interrupted write left.
        let mut hasher = Hasher::new();
        let mut existing = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(io_err("read", &partial))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            existing += n as u64;
        }
        if size.is_some_and(|s| existing > s) {
            hasher = Hasher::new();
            existing = 0;
        }
        let (mut reader, start) = fetcher.open(existing).map_err(|source| StoreError::Fetch {
            digest: digest.clone(),
            source,
        })?;
        let resumed_from = if start == existing && existing > 0 {
            existing
        } else {
            hasher = Hasher::new();
            file.set_len(0).map_err(io_err("truncate", &partial))?;
            0
        };
        file.seek(SeekFrom::Start(resumed_from))
            .map_err(io_err("seek", &partial))?;
        let mut w = HashingWriter::with_hasher(&mut file, hasher);
        let mut fetched = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(StoreError::Fetch {
                        digest: digest.clone(),
                        source,
                    })
                }
            };
            if n == 0 {
                break;
            }
            if let Some(s) = size {
                if w.len() + n as u64 > s {
                    // A source sending more than the descriptor says is cut off.
                    let _ = fs::remove_file(&partial);
                    return Err(StoreError::SizeMismatch {
                        digest: digest.clone(),
                        expected: s,
                        actual: resumed_from + fetched + n as u64,
                    });
                }
            }
            w.write_all(&buf[..n]).map_err(io_err("write", &partial))?;
            fetched += n as u64;
        }
        drop(reader);
        let (actual, len, _) = w.finish();
        let fail = if size.is_some_and(|s| s != len) {
            Some(StoreError::SizeMismatch {
                digest: digest.clone(),
                expected: size.unwrap_or_default(),
                actual: len,
            })
        } else if &actual != digest {
            Some(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            })
        } else {
            None
        };
        if let Some(e) = fail {
            drop(file);
            fs::remove_file(&partial).map_err(io_err("remove", &partial))?;
            return Err(e);
        }
        file.sync_all().map_err(io_err("sync", &partial))?;
        drop(file);
        let dest = self.blob_path(digest);
        fs::rename(&partial, &dest).map_err(io_err("rename", &dest))?;
        Ok(Ingested::Written {
            fetched,
            resumed_from,
        })
    }

    /// Writes `data` as the blob `digest` (verified like any other write).
    pub fn write_bytes(&self, digest: &Digest, data: &[u8]) -> Result<Ingested, StoreError> {
        let len = data.len() as u64;
        let data = data.to_vec();
        let mut f = move |_off: u64| Ok::<_, io::Error>((io::Cursor::new(data.clone()), 0));
        self.ingest(digest, Some(len), &mut f)
    }

    /// Opens a present blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::NotFound(digest.clone())
            } else {
                io_err("open", &p)(e)
            }
        })
    }

    /// Reads a whole blob (for manifests and configs), re-verifying its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut data = Vec::new();
        let p = self.blob_path(digest);
        self.open_blob(digest)?
            .read_to_end(&mut data)
            .map_err(io_err("read", &p))?;
        let actual = Digest::of_bytes(&data);
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(data)
    }

    /// Re-hashes a present blob; a corrupt blob is removed and reported.
    pub fn verify(&self, digest: &Digest) -> Result<(), StoreError> {
        let p = self.blob_path(digest);
        let mut f = self.open_blob(digest)?;
        let mut w = HashingWriter::new(io::sink());
        io::copy(&mut f, &mut w).map_err(io_err("read", &p))?;
        let (actual, _, _) = w.finish();
        if &actual != digest {
            let _ = fs::remove_file(&p);
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Removes a blob (absent is fine).
    pub fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        let p = self.blob_path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &p)(e)),
        }
    }

    /// Every present blob, sorted.
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.blobs_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let e = e.map_err(io_err("read", &dir))?;
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking writer cannot leave the map inconsistent: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
