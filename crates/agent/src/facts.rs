//! The inputs of the pure pod → container translation ([`crate::container_config`]): what
//! the agent knows about its node, the image, the objects a pod refers to and the host paths
//! it prepared. The agent does all reading (API objects, image config, files on disk) and
//! hands the results in here; nothing in the translation layer does I/O.
//!
//! Also the small `serde_json::Value` accessors the translation modules share.

use std::collections::BTreeMap;
use std::path::PathBuf;

use podium_api::quantity::Quantity;
use serde_json::Value;

/// What the node can give to pods (Node `status.allocatable`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeAllocatable {
    pub cpu: Quantity,
    pub memory: Quantity,
    pub ephemeral_storage: Quantity,
    pub pods: i64,
}

impl NodeAllocatable {
    /// The allocatable quantity of a resource by its Kubernetes name, if the node has it.
    pub fn get(&self, resource: &str) -> Option<Quantity> {
        match resource {
            "cpu" => Some(self.cpu),
            "memory" => Some(self.memory),
            "ephemeral-storage" => Some(self.ephemeral_storage),
            "pods" => Some(Quantity::from_units(self.pods)),
            _ => None,
        }
    }
}

/// Facts about the node and the pod's network, known to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeFacts {
    /// The Node object's name (`spec.nodeName` of pods here).
    pub node_name: String,
    /// The node's own hostname: HOSTNAME and /etc/hostname of hostNetwork pods.
    pub hostname: String,
    /// The node's IPs (`status.hostIP(s)`), preferred family first.
    pub host_ips: Vec<String>,
    /// The pod's IPs (`status.podIP(s)`); for hostNetwork pods the host's IPs. Empty while
    /// unknown (kubelet then mounts no managed /etc/hosts).
    pub pod_ips: Vec<String>,
    /// Cluster DNS server addresses (kubelet `--cluster-dns`); empty = none configured.
    pub cluster_dns: Vec<String>,
    /// Cluster domain (kubelet `--cluster-domain`), e.g. `cluster.local`; may be empty.
    pub cluster_domain: String,
    pub allocatable: NodeAllocatable,
    /// Content of the node's /etc/hosts (for hostNetwork pods).
    pub hosts_file: String,
    /// Content of the node's resolv.conf (kubelet `--resolv-conf`); `None` when kubelet is
    /// configured with an empty `--resolv-conf` (then 127.0.0.1 and search `.`).
    pub resolv_conf: Option<String>,
    /// Root of the pod cgroup hierarchy, e.g. `/kubepods`.
    pub cgroup_root: String,
}

/// The parts of an image's config (OCI `config`) that shape a container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageFacts {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` strings, in image order.
    pub env: Vec<String>,
    /// Empty = `/`.
    pub working_dir: String,
    /// `USER`: `uid`, `name`, `uid:gid`, `name:group`, or empty (root).
    pub user: String,
    /// `STOPSIGNAL`, e.g. `SIGQUIT`, `QUIT` or `3`.
    pub stop_signal: Option<String>,
    /// The image root's /etc/passwd and /etc/group text, if present (for named users and
    /// the groups a user belongs to).
    pub passwd: Option<String>,
    pub group: Option<String>,
}

/// The objects a pod refers to, fetched by the agent. A name missing from a map means the
/// object does not exist (NotFound); other fetch errors must not reach here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resolved {
    /// ConfigMaps of the pod's namespace by name (whole objects).
    pub configmaps: BTreeMap<String, Value>,
    /// Secrets of the pod's namespace by name (whole objects, `data` base64 as stored).
    pub secrets: BTreeMap<String, Value>,
    /// Services: those of the pod's namespace and `default/kubernetes` (others are ignored).
    pub services: Vec<Value>,
}

/// Where a volume of the pod lives on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeHost {
    pub path: PathBuf,
    /// The volume plugin mounts read-only whatever the volumeMount says (configMap, secret,
    /// downwardAPI, projected; hostPath never).
    pub readonly: bool,
}

/// Host paths the agent prepared for one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodPaths {
    /// The container's prepared root filesystem.
    pub rootfs: PathBuf,
    /// The container ID (the leaf of its cgroup path).
    pub container_id: String,
    /// Files written from [`crate::etc_files`]; `None` = not mounted.
    pub etc_hosts: Option<PathBuf>,
    pub etc_hostname: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    /// The host file behind the container's terminationMessagePath.
    pub termination_log: Option<PathBuf>,
    /// The pod's shared /dev/shm (unless hostIPC).
    pub shm: Option<PathBuf>,
    /// Volumes by name.
    pub volumes: BTreeMap<String, VolumeHost>,
    /// subPath mounts already resolved safely by the agent, by index of the volumeMount in
    /// the container (see [`crate::container_config::subpath_requests`]).
    pub subpaths: BTreeMap<usize, PathBuf>,
    /// The sandbox's pinned namespaces (ignored where the pod uses the host's).
    pub net_ns: Option<PathBuf>,
    pub ipc_ns: Option<PathBuf>,
    pub uts_ns: Option<PathBuf>,
    /// The shared pid namespace (shareProcessNamespace).
    pub pid_ns: Option<PathBuf>,
}

/// A Warning event the agent should record on the pod (kubelet's reason and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub reason: String,
    pub message: String,
}

/// `v[a][b]...`, if every step exists.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(*k))
}

/// A string at `path`, or `""`.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    at(v, path).and_then(Value::as_bool)
}

pub(crate) fn i64_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(Value::as_i64)
}

/// An array at `path`, or empty.
pub(crate) fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// Strings of an array at `path` (non-strings skipped).
pub(crate) fn strings_at(v: &Value, path: &[&str]) -> Vec<String> {
    arr_at(v, path)
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// The pod's containers followed by its init containers, as Kubernetes' helpers visit them.
pub(crate) fn all_containers(pod: &Value) -> impl Iterator<Item = &Value> {
    arr_at(pod, &["spec", "containers"])
        .iter()
        .chain(arr_at(pod, &["spec", "initContainers"]).iter())
}

/// Finds a container (regular, init or ephemeral) of the pod by name.
pub(crate) fn find_container<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    all_containers(pod)
        .chain(arr_at(pod, &["spec", "ephemeralContainers"]).iter())
        .find(|c| str_at(c, &["name"]) == name)
}

/// kubelet's `format.Pod`: `name_namespace(uid)`.
pub(crate) fn format_pod(pod: &Value) -> String {
    format!(
        "{}_{}({})",
        str_at(pod, &["metadata", "name"]),
        namespace_of(pod),
        str_at(pod, &["metadata", "uid"])
    )
}

/// The pod's namespace (`default` if absent).
pub(crate) fn namespace_of(pod: &Value) -> &str {
    match str_at(pod, &["metadata", "namespace"]) {
        "" => "default",
        ns => ns,
    }
}
