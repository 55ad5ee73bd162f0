//! Podium's API model: everything about Kubernetes objects that needs no I/O.
//!
//! - [`resources`]: the table of served kinds (group, version, plural, kind, scope, verbs).
//! - [`error`]: `ApiError`, the one error type of the API surface, rendered as a `Status`.
//! - [`field`]: field paths and field errors, as Kubernetes' validation reports them.
//! - [`meta`]: object metadata helpers on `serde_json::Value` objects.
//! - [`admission`]: defaulting, validation, strict unknown-field detection and the one
//!   table of Pod fields Podium does not implement yet; [`quantity`]: resource quantities.
//! - [`patch`]: JSON, merge, strategic merge patches and server-side apply.
//! - [`protobuf`]: decoding of Kubernetes protobuf request bodies.
//! - [`table`]: server-side printing (`as=Table`) for `kubectl get`.
//!
//! The API server stores and serves objects as JSON values; typed `k8s-openapi` structs
//! are used at the edge to validate and default the kinds we understand.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admission;
pub mod error;
pub mod field;
pub mod meta;
pub mod patch;
pub mod protobuf;
pub mod quantity;
pub mod resources;
pub mod table;

pub use error::ApiError;
pub use field::{FieldError, FieldErrorKind, FieldPath};
pub use resources::{ResourceInfo, Scope};
