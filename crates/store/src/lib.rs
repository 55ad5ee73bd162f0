//! Podium's object store: the [`Store`] trait with Kubernetes semantics, and its
//! implementations.
//!
//! Objects are JSON values under string keys (`/registry/pods/default/web`). Every write
//! gets a revision from one counter that only grows across the whole store; the store writes
//! it into the object as `metadata.resourceVersion`. Watches replay the revision log from a
//! revision and then follow live writes; once the log is compacted past a revision, watching
//! from it fails with [`StoreError::Compacted`] (HTTP 410 Gone).
//!
//! - [`sqlite`]: the embedded store (bundled SQLite, WAL, durable before acknowledging).
//! - [`selector`]: label and field selectors, parsed and matched against objects.
//! - [`conformance`]: one test suite every implementation must pass.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod conformance;
pub mod selector;
pub mod sqlite;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;

pub use selector::{FieldSelector, LabelSelector};
pub use sqlite::{SqliteOptions, SqliteStore};

/// A store revision; surfaces as `metadata.resourceVersion` (a decimal string).
pub type Revision = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// A resourceVersion or uid precondition did not hold.
    #[error("conflict on {key}: {detail}")]
    Conflict { key: String, detail: String },
    /// The requested revision is older than the oldest one kept.
    #[error("revision {requested} has been compacted (oldest kept: {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// Stored bytes could not be decoded.
    #[error("corrupt value at {key}: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("invalid selector {selector:?}: {detail}")]
    InvalidSelector { selector: String, detail: String },
    #[error("store backend error during {op}: {detail}")]
    Backend { op: &'static str, detail: String },
}

/// Preconditions on an update or delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// The object's current revision must equal this.
    pub resource_version: Option<Revision>,
    /// The object's `metadata.uid` must equal this.
    pub uid: Option<String>,
}

/// Which objects a list or watch selects.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// What a list asks for.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub filter: Filter,
    /// At most this many (matching) items; the result's `continue_after` then says where
    /// to go on. `None` or `Some(0)`: no limit.
    pub limit: Option<usize>,
    /// The key after which the previous page ended (opaque to clients; the API server
    /// encodes it). Each page is read at the store's revision of that moment, not at the
    /// first page's.
    pub continue_after: Option<String>,
}

/// A page of a list, taken at one revision.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<Value>,
    /// The store's revision at the time of the list.
    pub revision: Revision,
    /// Set when `limit` cut the list and matching items remain: the last key returned.
    pub continue_after: Option<String>,
    /// Matching items left after this page, when cut.
    pub remaining: Option<u64>,
}

/// A change seen by a watch. Deleted carries the object as it was, with the revision of
/// the delete as its resourceVersion.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    /// Progress: every change up to this revision has been delivered.
    Bookmark(Revision),
}

pub type WatchStream = BoxStream<'static, Result<WatchEvent, StoreError>>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates `obj` at `key`, setting its resourceVersion. Fails with AlreadyExists.
    async fn create(&self, key: &str, obj: Value) -> Result<Value, StoreError>;

    async fn get(&self, key: &str) -> Result<Value, StoreError>;

    /// Replaces the object at `key`, checking preconditions; returns the stored object.
    async fn update(&self, key: &str, obj: Value, pre: &Preconditions)
        -> Result<Value, StoreError>;

    /// Deletes the object at `key`, checking preconditions; returns the object as it was,
    /// with the delete's revision as its resourceVersion.
    async fn delete(&self, key: &str, pre: &Preconditions) -> Result<Value, StoreError>;

    /// Lists the objects whose keys start with `prefix`, in key order, at the current
    /// revision.
    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StoreError>;

    /// Every change under `prefix` after revision `after`, then live changes, filtered.
    /// An object that starts or stops matching the filter is reported as Added/Deleted
    /// (Deleted carrying the new state). Fails with Compacted when `after` is older than
    /// the compacted revision (`after == compacted` is fine). A stream that cannot
    /// deliver every change (its history was compacted while it lagged) yields one
    /// `Err` and ends; the client must re-list. The stream ends when the store closes.
    /// Bookmarks are the API server's business; stores do not produce them.
    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
        filter: Filter,
    ) -> Result<WatchStream, StoreError>;

    /// The newest revision written.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Forgets the change log up to and including `revision`; the current state is kept.
    /// Compacting to an already compacted revision is a no-op; to a revision newer than
    /// the current one is an error.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
}
