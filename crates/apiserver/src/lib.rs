//! Podium's Kubernetes REST API server.
//!
//! - [`request`]: pure parsing of paths and queries into typed routes.
//! - [`handlers`]: authentication, body decoding, dispatch and response encoding.
//! - [`registry`]: object semantics on top of the store (the only writer path).
//! - [`watch`]: watch streams.
//! - [`discovery`]: discovery documents, `/version`, OpenAPI v3.
//! - [`controllers`]: bootstrap objects and the namespace lifecycle.
//! - [`events`]: the Event recorder for server components.
//! - [`pki`], [`auth`], [`server`]: certificates and tokens, bearer authentication, the
//!   HTTPS listener.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod controllers;
pub mod discovery;
pub mod events;
pub mod handlers;
pub mod keys;
pub mod pki;
pub mod registry;
pub mod request;
pub mod server;
pub mod watch;

pub use handlers::ApiState;
pub use registry::{ClusterSettings, Registry};
