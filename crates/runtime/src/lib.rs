//! podium-runtime: the container runtime below the node agent. Pure OCI spec generation
//! ([`spec`]), pod sandboxes with pinned namespaces ([`sandbox`]), and containers run by
//! a per-container shim process ([`shim`] is the shim itself, [`client`] the agent's side)
//! that survives agent restarts. [`runtime::ContainerRuntime`] is the narrow interface the
//! agent uses; [`fake::RecordingRuntime`] implements it for the agent's unit tests.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cgroup;
pub mod client;
pub mod fake;
pub mod log;
pub mod pause;
pub mod runtime;
pub mod sandbox;
pub mod shim;
pub mod spec;
pub mod state;

pub use client::{
    start_container, ContainerState, ShimCommand, ShimError, ShimHandle, StartOptions,
};
pub use runtime::{
    write_bundle, ContainerInfo, ContainerRequest, ContainerRuntime, LinuxRuntime, RuntimeError,
    RuntimeOptions, Status,
};
pub use sandbox::{Sandbox, SandboxConfig, SandboxError};
pub use shim::{shim_main, Backend};
pub use spec::{
    ContainerConfig, MountSpec, NamespaceMode, Namespaces, Resources, RlimitSpec, UserSpec,
};
pub use state::ExitStatus;
