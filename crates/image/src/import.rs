//! Loading images without a registry: `docker save` archives, OCI archives (a tar of
//! an OCI image layout) and OCI layout directories.
//!
//! Every blob goes through [`crate::store::ContentStore::ingest`] with its digest (from
//! the layout's descriptors, or computed for a `docker save` layer), so nothing enters
//! the store unverified; layers are then unpacked into snapshots (the diffIDs of the
//! config are checked) and the image is recorded in the metadata store.
//!
//! Archives are read without trusting their names: regular files are copied to numbered
//! files in a private temporary directory and looked up by their normalised in-archive
//! path; symlinks (older `docker save` de-duplicates layers with them) are resolved
//! lexically inside the archive, so no archive entry can reach outside it.
//!
//! A `docker save` archive that also has `index.json` (Docker 25+) is read through its
//! `manifest.json`, which carries the `RepoTags`. OCI images are named by their
//! `io.containerd.image.name` annotation, else `org.opencontainers.image.ref.name`
//! (a full reference, or a tag appended to the `name` argument).

use crate::client::{MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX};
use crate::digest::{Digest, HashingReader};
use crate::manifest::{parse_config, Descriptor, Document, ManifestError};
use crate::metadata::{now, ImageRecord, LayerRecord};
use crate::pull::{ImageService, PullError};
use crate::reference::Reference;
use crate::store::StoreError;
use crate::unpack::{detect_compression, Compression};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "{0}: neither a docker save archive nor an OCI layout (no manifest.json or index.json)"
    )]
    Format(String),
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
    #[error("{what}: {source}")]
    Manifest { what: String, source: ManifestError },
    #[error("blob {digest}: {source}")]
    Store { digest: Digest, source: StoreError },
    #[error(transparent)]
    Image(#[from] PullError),
}

fn io_err(path: impl Into<String>) -> impl FnOnce(io::Error) -> ImportError {
    let path = path.into();
    move |source| ImportError::Io { path, source }
}

fn invalid(path: &str, detail: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        path: path.to_string(),
        detail: detail.into(),
    }
}

/// Files of an archive or layout directory, by normalised relative path.
enum Source {
    Dir(PathBuf),
    Tar {
        tmp: PathBuf,
        files: HashMap<String, PathBuf>,
        links: HashMap<String, String>,
    },
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Source::Tar { tmp, .. } = self {
            let _ = fs::remove_dir_all(tmp);
        }
    }
}

/// `a/./b/../c` → `a/c`; `None` when it climbs out.
fn normalise(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

impl Source {
    fn open_tar(path: &Path, scratch: &Path) -> Result<Source, ImportError> {
        let shown = path.display().to_string();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = scratch.join(format!("import-{}-{n}", std::process::id()));
        fs::create_dir_all(&tmp).map_err(io_err(tmp.display().to_string()))?;
        let mut src = Source::Tar {
            tmp: tmp.clone(),
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let f = File::open(path).map_err(io_err(shown.clone()))?;
        let mut ar = tar::Archive::new(f);
        let Source::Tar { files, links, .. } = &mut src else {
            return Err(invalid(&shown, "internal"));
        };
        let mut i = 0u64;
        for entry in ar.entries().map_err(io_err(shown.clone()))? {
            let mut e = entry.map_err(io_err(shown.clone()))?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let Some(norm) = normalise(&name) else {
                continue;
            };
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dest = tmp.join(i.to_string());
                    i += 1;
                    let mut out =
                        File::create(&dest).map_err(io_err(dest.display().to_string()))?;
                    io::copy(&mut e, &mut out).map_err(io_err(shown.clone()))?;
                    files.insert(norm, dest);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = e
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let resolved = if e.header().entry_type() == tar::EntryType::Link
                        || target.starts_with('/')
                    {
                        normalise(&target)
                    } else {
                        let dir = norm.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        normalise(&format!("{dir}/{target}"))
                    };
                    if let Some(r) = resolved {
                        links.insert(norm, r);
                    }
                }
                _ => {}
            }
        }
        Ok(src)
    }

    fn path_of(&self, name: &str) -> Result<PathBuf, ImportError> {
        let norm = normalise(name).ok_or_else(|| invalid(name, "path escapes the archive"))?;
        match self {
            Source::Dir(d) => Ok(d.join(norm)),
            Source::Tar { files, links, .. } => {
                let mut cur = norm;
                for _ in 0..16 {
                    if let Some(p) = files.get(&cur) {
                        return Ok(p.clone());
                    }
                    match links.get(&cur) {
                        Some(t) => cur = t.clone(),
                        None => break,
                    }
                }
                Err(ImportError::Io {
                    path: name.to_string(),
                    source: io::Error::new(io::ErrorKind::NotFound, "not in the archive"),
                })
            }
        }
    }

    fn has(&self, name: &str) -> bool {
        self.path_of(name).is_ok_and(|p| p.is_file())
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, ImportError> {
        let p = self.path_of(name)?;
        fs::read(&p).map_err(io_err(name))
    }
}

/// Imports every image in `path` (an archive file or an OCI layout directory).
/// `name` names images that carry no name of their own (or only a tag).
pub fn import_path(
    svc: &ImageService,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImportError> {
    let src = if path.is_dir() {
        Source::Dir(path.to_path_buf())
    } else {
        Source::open_tar(path, svc.root())?
    };
    if src.has("manifest.json") {
        import_docker(svc, &src, name)
    } else if src.has("index.json") {
        import_oci(svc, &src, name)
    } else {
        Err(ImportError::Format(path.display().to_string()))
    }
}

/// Ingests the file `name` as blob `digest` (verified by the store).
fn ingest_file(
    svc: &ImageService,
    src: &Source,
    name: &str,
    digest: &Digest,
    size: Option<u64>,
) -> Result<(), ImportError> {
    let p = src.path_of(name)?;
    let mut fetcher = move |_off: u64| File::open(&p).map(|f| (f, 0u64));
    svc.store()
        .ingest(digest, size, &mut fetcher)
        .map(|_| ())
        .map_err(|source| ImportError::Store {
            digest: digest.clone(),
            source,
        })
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn import_oci(
    svc: &ImageService,
    src: &Source,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImportError> {
    let bytes = src.read("index.json")?;
    let mf = |what: &str| {
        let what = what.to_string();
        move |source| ImportError::Manifest { what, source }
    };
    let Document::Index(index) =
        Document::parse(&bytes, MEDIA_OCI_INDEX).map_err(mf("index.json"))?
    else {
        return Err(invalid("index.json", "not an image index"));
    };
    let mut out = Vec::new();
    for desc in &index.manifests {
        let ann = desc.annotations.clone().unwrap_or_default();
        let ref_name = ann
            .get("io.containerd.image.name")
            .or_else(|| ann.get("org.opencontainers.image.ref.name"))
            .cloned();
        let tag = match (ref_name, name) {
            (Some(r), _)
                if Reference::parse(&r).is_ok() && (r.contains('/') || r.contains(':')) =>
            {
                Some(r)
            }
            (Some(t), Some(n)) => Some(format!("{n}:{t}")),
            (Some(r), None) => Some(r),
            (None, n) => n.map(str::to_string),
        };
        let tag = match tag {
            Some(t) => Some(
                Reference::parse(&t)
                    .map_err(|e| invalid("index.json", e.to_string()))?
                    .to_string(),
            ),
            None => None,
        };
        let (manifest_desc, index_digest) = resolve_oci(svc, src, desc)?;
        let mdigest = manifest_desc.digest("manifest").map_err(mf("index.json"))?;
        let rec = import_manifest(svc, src, &mdigest, tag.as_deref())?;
        let rec = ImageRecord {
            index_digest: index_digest.or(rec.index_digest),
            ..rec
        };
        out.push(rec);
    }
    Ok(out)
}

/// A descriptor of index.json → the platform manifest's descriptor (through nested
/// indexes), ingesting the indexes on the way.
fn resolve_oci(
    svc: &ImageService,
    src: &Source,
    desc: &Descriptor,
) -> Result<(Descriptor, Option<Digest>), ImportError> {
    let mut cur = desc.clone();
    let mut index_digest = None;
    for _ in 0..4 {
        let d = cur
            .digest("descriptor")
            .map_err(|source| ImportError::Manifest {
                what: "index.json".into(),
                source,
            })?;
        ingest_file(svc, src, &blob_name(&d), &d, Some(cur.size))?;
        let bytes = svc
            .store()
            .read_blob(&d)
            .map_err(|source| ImportError::Store {
                digest: d.clone(),
                source,
            })?;
        match Document::parse(&bytes, &cur.media_type).map_err(|source| ImportError::Manifest {
            what: d.to_string(),
            source,
        })? {
            Document::Manifest(_) => return Ok((cur, index_digest)),
            Document::Index(i) => {
                index_digest.get_or_insert(d.clone());
                cur = i
                    .select_platform()
                    .map_err(|source| ImportError::Manifest {
                        what: d.to_string(),
                        source,
                    })?
                    .clone();
            }
        }
    }
    Err(invalid("index.json", "indexes nested too deeply"))
}

/// A manifest already in the store → config and layers ingested, snapshots, record.
fn import_manifest(
    svc: &ImageService,
    src: &Source,
    mdigest: &Digest,
    tag: Option<&str>,
) -> Result<ImageRecord, ImportError> {
    let mbytes = svc
        .store()
        .read_blob(mdigest)
        .map_err(|source| ImportError::Store {
            digest: mdigest.clone(),
            source,
        })?;
    let mf = |source| ImportError::Manifest {
        what: mdigest.to_string(),
        source,
    };
    let Document::Manifest(m) = Document::parse(&mbytes, "").map_err(mf)? else {
        return Err(invalid(&mdigest.to_string(), "expected a manifest"));
    };
    let cdigest = m.config.digest("config").map_err(mf)?;
    ingest_file(
        svc,
        src,
        &blob_name(&cdigest),
        &cdigest,
        Some(m.config.size),
    )?;
    let cbytes = svc
        .store()
        .read_blob(&cdigest)
        .map_err(|source| ImportError::Store {
            digest: cdigest.clone(),
            source,
        })?;
    let (config, diff_ids) = parse_config(&cbytes).map_err(mf)?;
    if diff_ids.len() != m.layers.len() {
        return Err(mf(ManifestError::LayerCount {
            diff_ids: diff_ids.len(),
            layers: m.layers.len(),
        }));
    }
    let mut layers = Vec::new();
    for (l, diff_id) in m.layers.iter().zip(diff_ids) {
        let d = l.digest("layer").map_err(mf)?;
        ingest_file(svc, src, &blob_name(&d), &d, Some(l.size))?;
        layers.push(LayerRecord {
            digest: d,
            size: l.size,
            media_type: l.media_type.clone(),
            diff_id,
        });
    }
    let size = m.config.size + layers.iter().map(|l| l.size).sum::<u64>();
    let t = now();
    let rec = ImageRecord {
        id: cdigest,
        manifest_digest: mdigest.clone(),
        index_digest: None,
        tags: vec![],
        repo_digests: vec![],
        config,
        layers,
        size,
        created: t,
        last_used: t,
    };
    let shown = tag.unwrap_or("<unnamed>").to_string();
    Ok(svc.register_local(&shown, rec, tag)?)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker(
    svc: &ImageService,
    src: &Source,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImportError> {
    let entries: Vec<DockerSaveEntry> = serde_json::from_slice(&src.read("manifest.json")?)
        .map_err(|e| invalid("manifest.json", e.to_string()))?;
    let mut out = Vec::new();
    for e in entries {
        let cbytes = src.read(&e.config)?;
        let cdigest = Digest::of_bytes(&cbytes);
        svc.store()
            .write_bytes(&cdigest, &cbytes)
            .map_err(|source| ImportError::Store {
                digest: cdigest.clone(),
                source,
            })?;
        let mut descs = Vec::new();
        for l in &e.layers {
            let p = src.path_of(l)?;
            let f = File::open(&p).map_err(io_err(l.as_str()))?;
            let mut head = [0u8; 4];
            let mut hr = HashingReader::new(f);
            let n = read_full(&mut hr, &mut head).map_err(io_err(l.as_str()))?;
            io::copy(&mut hr, &mut io::sink()).map_err(io_err(l.as_str()))?;
            let size = hr.len();
            let (digest, _) = hr.finish();
            ingest_file(svc, src, l, &digest, Some(size))?;
            let media = match detect_compression(&head[..n]) {
                Compression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
            };
            descs.push(
                serde_json::json!({"mediaType": media, "size": size, "digest": digest.to_string()}),
            );
        }
        // A registry-style manifest, so the image has a manifest digest like any other.
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": cbytes.len(), "digest": cdigest.to_string()},
            "layers": descs,
        });
        let mbytes =
            serde_json::to_vec(&manifest).map_err(|e| invalid("manifest", e.to_string()))?;
        let mdigest = Digest::of_bytes(&mbytes);
        svc.store()
            .write_bytes(&mdigest, &mbytes)
            .map_err(|source| ImportError::Store {
                digest: mdigest.clone(),
                source,
            })?;
        let mut tags: Vec<String> = Vec::new();
        for t in e.repo_tags.unwrap_or_default() {
            tags.push(
                Reference::parse(&t)
                    .map_err(|err| invalid("manifest.json", err.to_string()))?
                    .to_string(),
            );
        }
        if tags.is_empty() {
            if let Some(n) = name {
                tags.push(
                    Reference::parse(n)
                        .map_err(|err| invalid(n, err.to_string()))?
                        .to_string(),
                );
            }
        }
        // Blobs are all present now; the manifest path does the rest.
        let dir_src = Source::Dir(svc.store().root().to_path_buf());
        let mut rec = import_manifest(svc, &dir_src, &mdigest, tags.first().map(String::as_str))?;
        for t in tags.iter().skip(1) {
            rec = svc
                .metadata()
                .put(rec, Some(t), None)
                .map_err(|e| invalid(t, e.to_string()))?;
        }
        out.push(rec);
    }
    Ok(out)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
