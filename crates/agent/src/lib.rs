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
//! - [`volumes`]: the pod's volumes on the host (emptyDir incl. tmpfs, hostPath,
//!   configMap, secret, downwardAPI, projected via kubelet's AtomicWriter), fsGroup
//!   ownership, symlink-safe subPath staging mounts, and teardown of all of it.
//!
//! The running agent (kubelet's loop), over narrow interfaces so the logic is tested with
//! fakes:
//! - [`api`]: the agent's view of the API ([`api::NodeApi`]; in-process and fake).
//! - [`images`]: image pulls and container root filesystems ([`images::Images`]).
//! - [`paths`]: the host layout and per-instance names; [`index`]: the per-pod index file
//!   that lets a restarted agent adopt running containers.
//! - [`podstate`]: the pod worker's state machine, container start order (init containers,
//!   sidecars), phase — pure; [`worker`]: one task per pod carrying it out.
//! - [`status`]: pod status rendering and the single status writer.
//! - [`scheduler`]: binding unscheduled pods to this node (nodeSelector, node affinity).
//! - [`logs`]: the CRI log format and `kubectl logs` options; [`pod_logs`]: serving them.
//! - [`manager`]: the top level — pod watch, workers, scheduling, startup sweep.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod api;
pub mod container_config;
pub mod env;
pub mod etc_files;
pub mod facts;
pub mod images;
pub mod index;
pub mod lifecycle;
pub mod logs;
pub mod manager;
pub mod paths;
pub mod pod_logs;
pub mod podstate;
pub mod qos;
pub mod scheduler;
pub mod status;
pub mod users;
pub mod volumes;
pub mod worker;
