//! Podium's node agent (the kubelet role).
//!
//! - [`lifecycle`]: the container and pod lifecycles as enums with pure transition
//!   functions — restart decisions by restartPolicy, kubelet's crash back-off, and the pod
//!   phase derived from container states. No I/O; everything else builds on it.
//! - [`facts`]: what the agent knows (node, image, resolved objects, host paths), as input.
//! - [`container_config`]: a Pod's container → the runtime's `ContainerConfig`, using
//!   [`env`] (environment, Downward API, service links, command/args), [`etc_files`]
//!   (/etc/hosts, /etc/hostname, /etc/resolv.conf), [`qos`] (QoS class, cgroups,
//!   admission against allocatable) and [`users`] (image /etc/passwd lookups). Pure.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod container_config;
pub mod env;
pub mod etc_files;
pub mod facts;
pub mod lifecycle;
pub mod qos;
pub mod users;
