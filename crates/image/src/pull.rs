//! The image service: [`ImageService::ensure`] is what the node agent calls for each
//! container — it applies the imagePullPolicy, pulls through the registry client when
//! needed, and answers with an [`ImageHandle`] (ID, repo digest, config, diffIDs) whose
//! root filesystem [`ImageService::rootfs`] turns into an overlayfs mount spec.
//!
//! Pull policy, as the seed and kubelet say:
//! - `Always`: resolve the tag at the registry every time (a manifest HEAD). When the
//!   digest is unchanged, the manifest, config and layers are already in the content
//!   store, so no blob is downloaded.
//! - `IfNotPresent`: use the local image when its metadata and snapshots are there;
//!   otherwise pull.
//! - `Never`: the local image or [`PullError::NeverPull`] (`ErrImageNeverPull`).
//!
//! A pull: endpoints from `registries.yaml` (mirrors first, then the registry itself);
//! for each, the candidate credentials in kubelet's order (anonymous only when there are
//! none); a not-found or network failure moves to the next endpoint, an unauthorized
//! answer to the next credential. Resolve tag → digest (HEAD, else GET), fetch the
//! manifest by digest (an index picks linux/amd64), the config, then the layers
//! concurrently into the [`ContentStore`] — verified by digest and size, resumed with
//! Range requests, and de-duplicated by the store's per-digest in-flight lock so
//! concurrent pulls share one download — then unpacked bottom-up into snapshots and
//! recorded in the [`MetadataStore`].
//!
//! Layout under `<data-dir>/images/`: `content/` (the store), `snapshots/`,
//! `index.json` (metadata).

use crate::client::{BodyReader, ClientError, Session};
use crate::credentials::Credential;
use crate::digest::Digest;
use crate::manifest::{parse_config, Document, ImageConfig, Manifest, ManifestError};
use crate::metadata::{now, ImageRecord, LayerRecord, MetadataError, MetadataStore};
use crate::reference::{PullPolicy, Reference, ReferenceError};
use crate::registries::{Endpoint, RegistriesConfig, RegistriesError};
use crate::snapshot::{chain_ids, OverlayMount, SnapshotError, Snapshotter};
use crate::store::{ContentStore, Ingested, StoreError};
use crate::unpack::UnpackOptions;
use futures::StreamExt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Layers downloaded at once per pull.
const LAYER_CONCURRENCY: usize = 3;

/// Why an image could not be made available. Messages name the image and, for registry
/// failures, the registry and its answer; never a password.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("invalid image name {image:?}: {source}")]
    InvalidName {
        image: String,
        source: ReferenceError,
    },
    #[error("container image {image:?} is not present with pull policy of Never")]
    NeverPull { image: String },
    #[error("failed to pull image {image:?}: {registry}: not found: {answer}")]
    NotFound {
        image: String,
        registry: String,
        answer: String,
    },
    #[error("failed to pull image {image:?}: {registry}: unauthorized: {answer}")]
    Unauthorized {
        image: String,
        registry: String,
        answer: String,
    },
    #[error("failed to pull image {image:?}: {registry}: {detail}")]
    Network {
        image: String,
        registry: String,
        detail: String,
    },
    #[error("failed to pull image {image:?}: {what} {expected} has digest {actual}")]
    DigestMismatch {
        image: String,
        what: &'static str,
        expected: Digest,
        actual: Digest,
    },
    #[error("failed to pull image {image:?}: {registry}: {detail}")]
    Registry {
        image: String,
        registry: String,
        detail: String,
    },
    #[error("failed to pull image {image:?}: {source}")]
    Manifest {
        image: String,
        source: ManifestError,
    },
    #[error("image {image:?}: {detail}")]
    Local { image: String, detail: String },
    #[error(transparent)]
    Config(#[from] RegistriesError),
}

impl PullError {
    /// kubelet's container waiting reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            PullError::InvalidName { .. } => "InvalidImageName",
            PullError::NeverPull { .. } => "ErrImageNeverPull",
            _ => "ErrImagePull",
        }
    }

    /// Retrying later may help (network, registry trouble, missing credentials).
    pub fn retryable(&self) -> bool {
        !matches!(self, PullError::InvalidName { .. } | PullError::Config(_))
    }

    fn from_client(image: &str, ep: &Endpoint, e: ClientError) -> PullError {
        let image = image.to_string();
        let registry = ep.host.clone();
        match e {
            ClientError::Status {
                status: 401 | 403,
                answer,
                ..
            } => PullError::Unauthorized {
                image,
                registry,
                answer,
            },
            ClientError::Status {
                status: 404,
                answer,
                ..
            } => PullError::NotFound {
                image,
                registry,
                answer,
            },
            ClientError::Network { detail, .. } => PullError::Network {
                image,
                registry,
                detail,
            },
            other => PullError::Registry {
                image,
                registry,
                detail: other.to_string(),
            },
        }
    }

    fn local(image: &str, e: impl std::fmt::Display) -> PullError {
        PullError::Local {
            image: image.to_string(),
            detail: e.to_string(),
        }
    }
}

/// A local image, ready for containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageHandle {
    /// The reference as asked for, normalised.
    pub reference: Reference,
    /// The image ID: the config digest.
    pub id: Digest,
    /// Container status `imageID`: `docker.io/library/busybox@sha256:...` (the digest
    /// the registry resolved), or `sha256:<id>` for an image with no repo digest.
    pub image_ref: String,
    pub manifest_digest: Digest,
    pub config: ImageConfig,
    /// Layers' uncompressed digests, bottom to top.
    pub diff_ids: Vec<Digest>,
    /// Sum of the layer and config blob sizes.
    pub size: u64,
}

impl ImageHandle {
    fn from_record(reference: Reference, r: &ImageRecord) -> ImageHandle {
        let name = reference.name();
        let prefix = format!("{name}@");
        let image_ref = r
            .repo_digests
            .iter()
            .find(|d| d.starts_with(&prefix))
            .or_else(|| r.repo_digests.first())
            .cloned()
            .unwrap_or_else(|| r.id.to_string());
        ImageHandle {
            reference,
            id: r.id.clone(),
            image_ref,
            manifest_digest: r.manifest_digest.clone(),
            config: r.config.clone(),
            diff_ids: r.diff_ids(),
            size: r.size,
        }
    }
}

/// What a registry pull did (for the `Pulled` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullStats {
    pub layers_fetched: usize,
    pub bytes_fetched: u64,
    pub duration: Duration,
}

/// [`ImageService::ensure`]'s answer: `pulled` is `None` when the local image was used
/// without contacting a registry (kubelet: "already present on machine").
#[derive(Debug, Clone)]
pub struct Ensured {
    pub handle: ImageHandle,
    pub pulled: Option<PullStats>,
}

/// One layer's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    pub digest: Digest,
    pub done: u64,
    pub total: u64,
    pub state: LayerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    /// Already in the content store.
    Present,
    Downloading,
    Downloaded,
    Unpacked,
}

pub type ProgressFn = Arc<dyn Fn(&LayerProgress) + Send + Sync>;

/// The image service of one data dir.
pub struct ImageService {
    root: PathBuf,
    registries: RegistriesConfig,
    store: Arc<ContentStore>,
    snapshots: Arc<Snapshotter>,
    meta: Arc<MetadataStore>,
    unpack: UnpackOptions,
}

impl std::fmt::Debug for ImageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageService")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl ImageService {
    /// Opens `<data_dir>/images/` with `<data_dir>/registries.yaml` (if any).
    pub fn open(data_dir: &Path) -> Result<ImageService, PullError> {
        let registries = RegistriesConfig::load(data_dir)?;
        ImageService::with_registries(data_dir, registries)
    }

    /// Opens with an explicit registry configuration.
    pub fn with_registries(
        data_dir: &Path,
        registries: RegistriesConfig,
    ) -> Result<ImageService, PullError> {
        let root = data_dir.join("images");
        let l = |e: &dyn std::fmt::Display| PullError::local("<image store>", e);
        let store = ContentStore::open(root.join("content")).map_err(|e| l(&e))?;
        let snapshots = Snapshotter::open(&root).map_err(|e| l(&e))?;
        let meta = MetadataStore::open(&root).map_err(|e| l(&e))?;
        Ok(ImageService {
            root,
            registries,
            store: Arc::new(store),
            snapshots: Arc::new(snapshots),
            meta: Arc::new(meta),
            unpack: UnpackOptions::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn store(&self) -> &ContentStore {
        &self.store
    }
    pub fn snapshots(&self) -> &Snapshotter {
        &self.snapshots
    }
    pub fn metadata(&self) -> &MetadataStore {
        &self.meta
    }
    pub fn registries(&self) -> &RegistriesConfig {
        &self.registries
    }

    /// Makes `image` available under `policy`. `credentials` are the candidates from
    /// the pod's pull secrets in kubelet's order ([`crate::credentials::lookup_all`]).
    pub async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        credentials: &[Credential],
        progress: Option<ProgressFn>,
    ) -> Result<Ensured, PullError> {
        let reference = Reference::parse(image).map_err(|source| PullError::InvalidName {
            image: image.to_string(),
            source,
        })?;
        match policy {
            PullPolicy::Never => match self.local(&reference) {
                Some(h) => Ok(Ensured {
                    handle: h,
                    pulled: None,
                }),
                None => Err(PullError::NeverPull {
                    image: image.to_string(),
                }),
            },
            PullPolicy::IfNotPresent => {
                if let Some(h) = self.local(&reference) {
                    return Ok(Ensured {
                        handle: h,
                        pulled: None,
                    });
                }
                self.pull(&reference, credentials, progress).await
            }
            PullPolicy::Always => self.pull(&reference, credentials, progress).await,
        }
    }

    /// The local image for `reference` when its metadata and every snapshot are
    /// present (snapshots are re-applied from stored blobs if only they are missing).
    pub fn local(&self, reference: &Reference) -> Option<ImageHandle> {
        let r = self.meta.lookup(reference)?;
        let ids = chain_ids(&r.diff_ids());
        if !ids.iter().all(|c| self.snapshots.exists(c)) {
            self.apply_snapshots(&reference.to_string(), &r.layers)
                .ok()?;
        }
        let _ = self.meta.touch(&r.id);
        Some(ImageHandle::from_record(reference.clone(), &r))
    }

    /// The overlayfs mount for a container of `handle`, with upper/work under
    /// `container_dir`.
    pub fn rootfs(
        &self,
        handle: &ImageHandle,
        container_dir: &Path,
    ) -> Result<OverlayMount, SnapshotError> {
        self.snapshots.mount_spec(&handle.diff_ids, container_dir)
    }

    /// Pulls `reference` from its endpoints (always contacting a registry).
    pub async fn pull(
        &self,
        reference: &Reference,
        credentials: &[Credential],
        progress: Option<ProgressFn>,
    ) -> Result<Ensured, PullError> {
        let start = Instant::now();
        let image = reference.to_string();
        let creds: Vec<Option<Credential>> = if credentials.is_empty() {
            vec![None]
        } else {
            credentials.iter().cloned().map(Some).collect()
        };
        let mut first_err: Option<PullError> = None;
        let mut last_net: Option<PullError> = None;
        'endpoints: for ep in self
            .registries
            .endpoints(reference.registry(), reference.repository())
        {
            for cred in &creds {
                let session = match Session::new(&self.registries, ep.clone(), cred.clone(), false)
                {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        first_err.get_or_insert(PullError::from_client(&image, &ep, e));
                        continue 'endpoints;
                    }
                };
                match self.pull_from(reference, session, progress.clone()).await {
                    Ok((record, mut stats)) => {
                        stats.duration = start.elapsed();
                        return Ok(Ensured {
                            handle: ImageHandle::from_record(reference.clone(), &record),
                            pulled: Some(stats),
                        });
                    }
                    Err(e @ PullError::Unauthorized { .. }) => {
                        first_err.get_or_insert(e);
                    }
                    Err(e @ (PullError::Network { .. } | PullError::NotFound { .. })) => {
                        if matches!(e, PullError::Network { .. }) {
                            last_net = Some(e);
                        } else {
                            first_err.get_or_insert(e);
                        }
                        continue 'endpoints;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(first_err
            .or(last_net)
            .unwrap_or_else(|| PullError::Registry {
                image,
                registry: reference.registry().to_string(),
                detail: "no endpoint to pull from".into(),
            }))
    }

    async fn pull_from(
        &self,
        reference: &Reference,
        session: Arc<Session>,
        progress: Option<ProgressFn>,
    ) -> Result<(ImageRecord, PullStats), PullError> {
        let image = reference.to_string();
        let ep = session.endpoint().clone();
        let cerr = |e| PullError::from_client(&image, &ep, e);
        // Resolve the reference to the digest the registry serves.
        let top = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.clone(),
            (None, tag) => {
                let tag = tag.unwrap_or("latest");
                match session.head_manifest(tag).await {
                    Ok(Some((d, _, _))) => d,
                    Ok(None) | Err(ClientError::Status { status: 405, .. }) => {
                        let (body, _, _) = session.get_manifest(tag).await.map_err(cerr)?;
                        let d = Digest::of_bytes(&body);
                        self.store
                            .write_bytes(&d, &body)
                            .map_err(|e| PullError::local(&image, e))?;
                        d
                    }
                    // A HEAD answer has no body: GET for the registry's own words.
                    Err(ClientError::Status { .. }) => {
                        let (body, _, _) = session.get_manifest(tag).await.map_err(cerr)?;
                        let d = Digest::of_bytes(&body);
                        self.store
                            .write_bytes(&d, &body)
                            .map_err(|e| PullError::local(&image, e))?;
                        d
                    }
                    Err(e) => return Err(cerr(e)),
                }
            }
        };
        let (top_doc_bytes, top_media) = self.manifest_bytes(&session, &image, &top).await?;
        let doc =
            Document::parse(&top_doc_bytes, &top_media).map_err(|source| PullError::Manifest {
                image: image.clone(),
                source,
            })?;
        let (manifest_digest, manifest, index_digest) = match doc {
            Document::Manifest(m) => (top.clone(), m, None),
            Document::Index(idx) => {
                let desc = idx
                    .select_platform()
                    .map_err(|source| PullError::Manifest {
                        image: image.clone(),
                        source,
                    })?;
                let d = desc.digest("index").map_err(|source| PullError::Manifest {
                    image: image.clone(),
                    source,
                })?;
                let (b, media) = self.manifest_bytes(&session, &image, &d).await?;
                match Document::parse(&b, &media) {
                    Ok(Document::Manifest(m)) => (d, m, Some(top.clone())),
                    Ok(Document::Index(_)) => {
                        return Err(PullError::Manifest {
                            image,
                            source: ManifestError::MediaType("nested index".into()),
                        })
                    }
                    Err(source) => return Err(PullError::Manifest { image, source }),
                }
            }
        };
        let (record, stats) = self
            .fetch_image(&image, &session, &manifest, &manifest_digest, progress)
            .await?;
        let record = ImageRecord {
            index_digest,
            ..record
        };
        let tag = if reference.digest().is_none() {
            Some(image.clone())
        } else {
            None
        };
        let repo_digest = format!("{}@{}", reference.name(), top);
        let record = self
            .meta
            .put(record, tag.as_deref(), Some(&repo_digest))
            .map_err(|e| PullError::local(&image, e))?;
        Ok((record, stats))
    }

    /// A manifest by digest, from the store or the registry (verified, then stored).
    async fn manifest_bytes(
        &self,
        session: &Session,
        image: &str,
        digest: &Digest,
    ) -> Result<(Vec<u8>, String), PullError> {
        if self.store.contains(digest) {
            if let Ok(b) = self.store.read_blob(digest) {
                return Ok((b, String::new()));
            }
        }
        let (body, media, _) = session
            .get_manifest(&digest.to_string())
            .await
            .map_err(|e| PullError::from_client(image, session.endpoint(), e))?;
        let actual = Digest::of_bytes(&body);
        if &actual != digest {
            return Err(PullError::DigestMismatch {
                image: image.to_string(),
                what: "manifest",
                expected: digest.clone(),
                actual,
            });
        }
        self.store
            .write_bytes(digest, &body)
            .map_err(|e| PullError::local(image, e))?;
        Ok((body.to_vec(), media))
    }

    /// Config and layers of `manifest` into the store, then snapshots.
    async fn fetch_image(
        &self,
        image: &str,
        session: &Arc<Session>,
        manifest: &Manifest,
        manifest_digest: &Digest,
        progress: Option<ProgressFn>,
    ) -> Result<(ImageRecord, PullStats), PullError> {
        let mf = |source| PullError::Manifest {
            image: image.to_string(),
            source,
        };
        let config_digest = manifest.config.digest("config").map_err(mf)?;
        // Through the store's in-flight lock, like layers: concurrent pulls share it.
        fetch_blob(
            self.store.clone(),
            session.clone(),
            tokio::runtime::Handle::current(),
            config_digest.clone(),
            manifest.config.size,
            None,
            image.to_string(),
        )
        .await?;
        let config_bytes = self
            .store
            .read_blob(&config_digest)
            .map_err(|e| PullError::local(image, e))?;
        let (config, diff_ids) = parse_config(&config_bytes).map_err(mf)?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(mf(ManifestError::LayerCount {
                diff_ids: diff_ids.len(),
                layers: manifest.layers.len(),
            }));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (desc, diff_id) in manifest.layers.iter().zip(&diff_ids) {
            layers.push(LayerRecord {
                digest: desc.digest("layer").map_err(mf)?,
                size: desc.size,
                media_type: desc.media_type.clone(),
                diff_id: diff_id.clone(),
            });
        }
        let handle = tokio::runtime::Handle::current();
        let results: Vec<Result<Option<u64>, PullError>> =
            futures::stream::iter(layers.iter().cloned())
                .map(|l| {
                    let store = self.store.clone();
                    let session = session.clone();
                    let handle = handle.clone();
                    let progress = progress.clone();
                    let image = image.to_string();
                    async move {
                        fetch_blob(store, session, handle, l.digest, l.size, progress, image).await
                    }
                })
                .buffered(LAYER_CONCURRENCY)
                .collect()
                .await;
        let mut stats = PullStats {
            layers_fetched: 0,
            bytes_fetched: 0,
            duration: Duration::ZERO,
        };
        for r in results {
            if let Some(n) = r? {
                stats.layers_fetched += 1;
                stats.bytes_fetched += n;
            }
        }
        self.apply_snapshots_async(image, &layers, progress).await?;
        let size = manifest.config.size + layers.iter().map(|l| l.size).sum::<u64>();
        let t = now();
        Ok((
            ImageRecord {
                id: config_digest,
                manifest_digest: manifest_digest.clone(),
                index_digest: None,
                tags: vec![],
                repo_digests: vec![],
                config,
                layers,
                size,
                created: t,
                last_used: t,
            },
            stats,
        ))
    }

    async fn apply_snapshots_async(
        &self,
        image: &str,
        layers: &[LayerRecord],
        progress: Option<ProgressFn>,
    ) -> Result<(), PullError> {
        let store = self.store.clone();
        let snaps = self.snapshots.clone();
        let opts = self.unpack.clone();
        let layers = layers.to_vec();
        let img = image.to_string();
        tokio::task::spawn_blocking(move || {
            apply_chain(&store, &snaps, &opts, &img, &layers, progress.as_ref())
        })
        .await
        .map_err(|e| PullError::local(image, e))?
    }

    fn apply_snapshots(&self, image: &str, layers: &[LayerRecord]) -> Result<(), PullError> {
        apply_chain(
            &self.store,
            &self.snapshots,
            &self.unpack,
            image,
            layers,
            None,
        )
    }

    /// Records an image built or imported locally (see [`crate::import`]): blobs must
    /// already be in the store; snapshots are applied here.
    pub fn register_local(
        &self,
        image: &str,
        record: ImageRecord,
        tag: Option<&str>,
    ) -> Result<ImageRecord, PullError> {
        self.apply_snapshots(image, &record.layers)?;
        self.meta
            .put(record, tag, None)
            .map_err(|e: MetadataError| PullError::local(image, e))
    }
}

/// Unpacks `layers` bottom-up into snapshots (present ones are skipped).
pub(crate) fn apply_chain(
    store: &ContentStore,
    snaps: &Snapshotter,
    opts: &UnpackOptions,
    image: &str,
    layers: &[LayerRecord],
    progress: Option<&ProgressFn>,
) -> Result<(), PullError> {
    let mut parent: Option<Digest> = None;
    for l in layers {
        let (id, _) = snaps
            .apply_layer(
                parent.as_ref(),
                &l.diff_id,
                || store.open_blob(&l.digest).map_err(io::Error::other),
                opts,
            )
            .map_err(|e| PullError::local(image, e))?;
        if let Some(p) = progress {
            p(&LayerProgress {
                digest: l.digest.clone(),
                done: l.size,
                total: l.size,
                state: LayerState::Unpacked,
            });
        }
        parent = Some(id);
    }
    Ok(())
}

/// Downloads one blob into the store (verified; shared with concurrent pulls of the
/// same digest); `Some(bytes)` when it was fetched now.
async fn fetch_blob(
    store: Arc<ContentStore>,
    session: Arc<Session>,
    handle: tokio::runtime::Handle,
    digest: Digest,
    total: u64,
    progress: Option<ProgressFn>,
    image: String,
) -> Result<Option<u64>, PullError> {
    let ep = session.endpoint().clone();
    let blob = digest.clone();
    let last_err: Arc<std::sync::Mutex<Option<ClientError>>> = Arc::default();
    let last_err2 = last_err.clone();
    let prog = progress.clone();
    let res = tokio::task::spawn_blocking(move || {
        let done = Arc::new(AtomicU64::new(0));
        let mut fetcher = |offset: u64| -> io::Result<(BodyReader, u64)> {
            let s = handle
                .block_on(session.get_blob(&digest, offset))
                .map_err(|e| {
                    let msg = e.to_string();
                    if let Ok(mut g) = last_err2.lock() {
                        *g = Some(e);
                    }
                    io::Error::other(msg)
                })?;
            done.store(s.start, Ordering::Relaxed);
            let done = done.clone();
            let prog = prog.clone();
            let d = digest.clone();
            let on_bytes = Box::new(move |n: u64| {
                let v = done.fetch_add(n, Ordering::Relaxed) + n;
                if let Some(p) = &prog {
                    p(&LayerProgress {
                        digest: d.clone(),
                        done: v,
                        total,
                        state: LayerState::Downloading,
                    });
                }
            });
            Ok((BodyReader::new(handle.clone(), s.body, on_bytes), s.start))
        };
        store.ingest(&digest, Some(total), &mut fetcher)
    })
    .await
    .map_err(|e| PullError::local(&image, e))?;
    let state = match &res {
        Ok(Ingested::Present) => LayerState::Present,
        _ => LayerState::Downloaded,
    };
    match res {
        Ok(i) => {
            if let Some(p) = &progress {
                p(&LayerProgress {
                    digest: blob.clone(),
                    done: total,
                    total,
                    state,
                });
            }
            Ok(match i {
                Ingested::Present => None,
                Ingested::Written { fetched, .. } => Some(fetched),
            })
        }
        Err(StoreError::Fetch { source, .. }) => {
            let e = last_err.lock().ok().and_then(|mut g| g.take());
            Err(match e {
                Some(e) => PullError::from_client(&image, &ep, e),
                None => PullError::Network {
                    image,
                    registry: ep.host.clone(),
                    detail: format!("downloading blob {blob}: {source}"),
                },
            })
        }
        Err(StoreError::DigestMismatch { expected, actual }) => Err(PullError::DigestMismatch {
            image,
            what: "blob",
            expected,
            actual,
        }),
        Err(e) => Err(PullError::local(&image, e)),
    }
}
