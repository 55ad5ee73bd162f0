//! Podium's image layer, below the registry client:
//!
//! - [`reference`]: image references normalised as Docker/Kubernetes do, and the
//!   imagePullPolicy default.
//! - [`digest`]: sha256 digests and hashing readers/writers.
//! - [`store`]: the content store, blobs by digest, verified before they become visible.
//! - [`unpack`]: the safe layer unpacker (the security boundary against hostile layers).
//! - [`snapshot`]: layer snapshots by chain ID and overlayfs mounts for containers.
//! - [`registries`]: k3s-format `registries.yaml` (mirrors, per-host auth and TLS).
//! - [`credentials`]: image pull secrets matched to a registry as kubelet does.
//! - [`client`]: the registry HTTP client (auth, manifests, ranged blobs, minimal push).
//! - [`manifest`]: manifests, indexes (linux/amd64 choice) and [`ImageConfig`].
//! - [`metadata`]: which images the node has (name → manifest → config + diffIDs).
//! - [`pull`]: [`ImageService`], the node agent's entry point (`ensure` + `rootfs`).
//! - [`import`]: `docker save` archives, OCI archives and OCI layout directories.
//! - [`gc`]: image garbage collection between kubelet's high/low disk thresholds.
//! - [`cli`]: `podium image pull|ls|rm|inspect|import`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cli;
pub mod client;
pub mod credentials;
pub mod digest;
pub mod gc;
pub mod import;
pub mod manifest;
pub mod metadata;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use credentials::{lookup_all, Credential, Keyring};
pub use digest::{Digest, DigestError};
pub use manifest::ImageConfig;
pub use pull::{
    Ensured, ImageHandle, ImageService, LayerProgress, LayerState, ProgressFn, PullError, PullStats,
};
pub use reference::{PullPolicy, Reference, ReferenceError};
pub use registries::RegistriesConfig;
pub use snapshot::{chain_id, chain_ids, OverlayMount, SnapshotError, Snapshotter};
pub use store::{ContentStore, Fetcher, Ingested, StoreError};
pub use unpack::{
    unpack_layer, Compression, UnpackError, UnpackOptions, UnpackReport, WhiteoutMode,
};
