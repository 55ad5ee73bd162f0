//! Podium's image layer, below the registry client:
//!
//! - [`reference`]: image references normalised as Docker/Kubernetes do, and the
//!   imagePullPolicy default.
//! - [`digest`]: sha256 digests and hashing readers/writers.
//! - [`store`]: the content store, blobs by digest, verified before they become visible.
//! - [`unpack`]: the safe layer unpacker (the security boundary against hostile layers).
//! - [`snapshot`]: layer snapshots by chain ID and overlayfs mounts for containers.
//!
//! Not here yet (they build on these pieces): pulling through `oci-client` with
//! credentials and `registries.yaml` mirrors/TLS (a `Fetcher` for [`store`], manifest and
//! index resolution to linux/amd64, then [`snapshot::Snapshotter::apply_layer`] per
//! layer), image metadata (name → manifest digest), garbage collection, and the
//! `podium image` CLI.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod digest;
pub mod reference;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use digest::{Digest, DigestError};
pub use reference::{default_pull_policy, PullPolicy, Reference, ReferenceError};
pub use snapshot::{chain_id, chain_ids, OverlayMount, SnapshotError, Snapshotter};
pub use store::{ContentStore, Fetcher, Ingested, StoreError};
pub use unpack::{
    unpack_layer, Compression, UnpackError, UnpackOptions, UnpackReport, WhiteoutMode,
};
