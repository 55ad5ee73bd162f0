//! Pod + node facts → the runtime's [`ContainerConfig`] for one container: what kubelet's
//! `generateContainerConfig` and containerd's CRI plugin decide together. argv and env
//! ([`crate::env`]), working directory, user and groups ([`crate::users`]), runAsNonRoot,
//! capabilities, privileged, read-only root, no_new_privs (DESIGN.md's default), the
//! namespaces of the pod sandbox or the host, mounts (volumes with subPath, the managed
//! /etc files of [`crate::etc_files`], the termination log, the pod's /dev/shm), and the
//! cgroup path and values of [`crate::qos`]. Pure: every fact comes in as an argument.
//!
//! Errors carry kubelet's message texts; [`ConfigError::reason`] says whether kubelet would
//! report CreateContainerConfigError or (for what containerd refuses) CreateContainerError.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use podium_runtime::spec::{no_new_privs_for, parse_capability};
use podium_runtime::{ContainerConfig, MountSpec, NamespaceMode, Namespaces};
use serde_json::Value;

use crate::env::{self, EnvError, EnvList};
use crate::etc_files::{self, EtcError};
use crate::facts::{
    arr_at, at, bool_at, find_container, format_pod, i64_at, str_at, strings_at, ImageFacts,
    NodeFacts, PodPaths, Resolved, Warning,
};
use crate::qos;
use crate::users::{self, UserDb, UserError};

/// Why a container cannot be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Hostname(#[from] EtcError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("container {0:?} not found in pod")]
    ContainerNotFound(String),
    #[error("container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})")]
    RunAsUserIsRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})")]
    ImageRunsAsRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})")]
    NonNumericImageUser {
        user: String,
        pod: String,
        container: String,
    },
    #[error("invalid {field} {value}")]
    BadId { field: &'static str, value: i64 },
    #[error("no command specified")]
    NoCommand,
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    VolumeNotFound { volume: String, container: String },
    #[error("missing value for {0}")]
    SubPathExprMissing(String),
    #[error("error SubPath `{0}` must not be an absolute path")]
    SubPathAbsolute(String),
    #[error("unable to provision SubPath `{0}`: must not contain '..'")]
    SubPathBacksteps(String),
    #[error("pod sandbox has no {0} namespace")]
    MissingNamespace(&'static str),
}

impl ConfigError {
    /// The container waiting reason kubelet reports for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ConfigError::User(_) | ConfigError::NoCommand | ConfigError::UnknownCapability(_) => {
                "CreateContainerError"
            }
            _ => "CreateContainerConfigError",
        }
    }
}

/// A built container configuration and the Warning events to record on the pod (envFrom
/// keys skipped; DNS warnings come with [`etc_files::resolv_conf`], once per pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub config: ContainerConfig,
    pub warnings: Vec<Warning>,
}

/// The security context fields that apply to a container: container-level values over
/// pod-level ones (kubelet's `DetermineEffectiveSecurityContext`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EffectiveSecurity {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub privileged: bool,
    pub read_only_root_filesystem: bool,
    pub allow_privilege_escalation: Option<bool>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
}

/// Merges the pod's and the container's securityContext.
pub fn effective_security(pod: &Value, container: &Value) -> EffectiveSecurity {
    let psc = at(pod, &["spec", "securityContext"]).unwrap_or(&Value::Null);
    let csc = at(container, &["securityContext"]).unwrap_or(&Value::Null);
    let int = |k: &str| i64_at(csc, &[k]).or_else(|| i64_at(psc, &[k]));
    EffectiveSecurity {
        run_as_user: int("runAsUser"),
        run_as_group: int("runAsGroup"),
        run_as_non_root: bool_at(csc, &["runAsNonRoot"])
            .or_else(|| bool_at(psc, &["runAsNonRoot"])),
        privileged: bool_at(csc, &["privileged"]) == Some(true),
        read_only_root_filesystem: bool_at(csc, &["readOnlyRootFilesystem"]) == Some(true),
        allow_privilege_escalation: bool_at(csc, &["allowPrivilegeEscalation"]),
        cap_add: strings_at(csc, &["capabilities", "add"]),
        cap_drop: strings_at(csc, &["capabilities", "drop"]),
    }
}

/// kubelet's `verifyRunAsNonRoot` with the image user split by [`users::image_user`].
pub fn verify_run_as_non_root(
    pod: &Value,
    container_name: &str,
    sc: &EffectiveSecurity,
    image_uid: Option<i64>,
    image_username: Option<&str>,
) -> Result<(), ConfigError> {
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    let (pod_s, container) = (format_pod(pod), container_name.to_string());
    if let Some(uid) = sc.run_as_user {
        if uid == 0 {
            return Err(ConfigError::RunAsUserIsRoot {
                pod: pod_s,
                container,
            });
        }
        return Ok(());
    }
    // getImageUser: an image without USER runs as uid 0.
    let uid = match (image_uid, image_username) {
        (None, None) => Some(0),
        (u, _) => u,
    };
    match (uid, image_username) {
        (Some(0), _) => Err(ConfigError::ImageRunsAsRoot {
            pod: pod_s,
            container,
        }),
        (None, Some(user)) => Err(ConfigError::NonNumericImageUser {
            user: user.to_string(),
            pod: pod_s,
            container,
        }),
        _ => Ok(()),
    }
}

fn id(field: &'static str, v: i64) -> Result<u32, ConfigError> {
    u32::try_from(v).map_err(|_| ConfigError::BadId { field, value: v })
}

/// The process user (containerd's resolution of kubelet's RunAsUser/RunAsUsername/
/// RunAsGroup, fsGroup and supplementalGroups).
pub fn container_user(
    pod: &Value,
    sc: &EffectiveSecurity,
    image: &ImageFacts,
) -> Result<podium_runtime::UserSpec, ConfigError> {
    let (image_uid, image_name) = users::image_user(&image.user);
    let (uid, username) = match sc.run_as_user {
        Some(u) => (Some(u), None),
        None => match (image_uid, image_name) {
            (None, None) => (Some(0), None),
            (u, n) => (u, n),
        },
    };
    let mut userstr = match (&username, uid) {
        (Some(n), _) => n.clone(),
        (None, Some(u)) => id("runAsUser", u)?.to_string(),
        (None, None) => "0".to_string(),
    };
    if let Some(g) = sc.run_as_group {
        userstr = format!("{userstr}:{}", id("runAsGroup", g)?);
    }
    let for_groups = match (&username, uid) {
        (Some(n), _) => n.clone(),
        (None, u) => id("runAsUser", u.unwrap_or(0))?.to_string(),
    };
    let psc = at(pod, &["spec", "securityContext"]).unwrap_or(&Value::Null);
    let mut supplemental = Vec::new();
    if let Some(fs) = i64_at(psc, &["fsGroup"]) {
        supplemental.push(id("fsGroup", fs)?);
    }
    for g in arr_at(psc, &["supplementalGroups"]) {
        if let Some(g) = g.as_i64() {
            supplemental.push(id("supplementalGroups", g)?);
        }
    }
    let db = UserDb::parse(image.passwd.as_deref(), image.group.as_deref());
    Ok(users::process_user(
        &userstr,
        &for_groups,
        &supplemental,
        &db,
    )?)
}

/// A subPath the agent must resolve safely before [`build`]: the volumeMount's index in the
/// container, its volume and the (expanded) path inside the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubPathRequest {
    pub index: usize,
    pub volume: String,
    pub sub_path: String,
}

/// kubelet's `ExpandContainerVolumeMounts`: `$(VAR)` in subPathExpr, every variable must be
/// defined and non-empty.
fn expand_subpath_expr(expr: &str, env: &EnvList) -> Result<String, ConfigError> {
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let out = env::expand(expr, &|k| match env.get(k) {
        Some(v) if !v.is_empty() => Some(v.to_string()),
        _ => {
            missing.borrow_mut().insert(k.to_string());
            Some(String::new())
        }
    });
    let missing = missing.into_inner();
    if !missing.is_empty() {
        return Err(ConfigError::SubPathExprMissing(
            missing.into_iter().collect::<Vec<_>>().join(", "),
        ));
    }
    Ok(out)
}

/// The subPaths of a container's volumeMounts, validated as kubelet does (relative, no
/// `..`). `env` is kubelet's environment ([`env::container_env`]).
pub fn subpath_requests(
    container: &Value,
    env: &EnvList,
) -> Result<Vec<SubPathRequest>, ConfigError> {
    let mut out = Vec::new();
    for (index, vm) in arr_at(container, &["volumeMounts"]).iter().enumerate() {
        let expr = str_at(vm, &["subPathExpr"]);
        let sub = if !expr.is_empty() {
            expand_subpath_expr(expr, env)?
        } else {
            str_at(vm, &["subPath"]).to_string()
        };
        if sub.is_empty() {
            continue;
        }
        if sub.starts_with('/') {
            return Err(ConfigError::SubPathAbsolute(sub));
        }
        if Path::new(&sub)
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(ConfigError::SubPathBacksteps(sub));
        }
        out.push(SubPathRequest {
            index,
            volume: str_at(vm, &["name"]).to_string(),
            sub_path: sub,
        });
    }
    Ok(out)
}

/// Parses a STOPSIGNAL (`SIGQUIT`, `QUIT`, `3`); SIGTERM when absent or unknown.
pub fn stop_signal(image: &ImageFacts) -> i32 {
    const SIGNALS: &[(&str, i32)] = &[
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("KILL", 9),
        ("USR1", 10),
        ("USR2", 12),
        ("TERM", 15),
        ("STOP", 19),
        ("WINCH", 28),
        ("PWR", 30),
        ("RTMIN+3", 37),
    ];
    let Some(s) = image.stop_signal.as_deref().map(str::trim) else {
        return 15;
    };
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) { n } else { 15 };
    }
    let upper = s.to_ascii_uppercase();
    let short = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == short)
        .map_or(15, |(_, v)| *v)
}

fn namespace(
    host: bool,
    path: &Option<PathBuf>,
    what: &'static str,
) -> Result<NamespaceMode, ConfigError> {
    if host {
        return Ok(NamespaceMode::Host);
    }
    path.clone()
        .map(NamespaceMode::Path)
        .ok_or(ConfigError::MissingNamespace(what))
}

/// The namespaces of a pod's container: the host's for hostNetwork (net and UTS), hostIPC,
/// hostPID; else the sandbox's; pid shared only with shareProcessNamespace.
pub fn pod_namespaces(pod: &Value, paths: &PodPaths) -> Result<Namespaces, ConfigError> {
    let flag = |k: &str| bool_at(pod, &["spec", k]) == Some(true);
    let host_net = flag("hostNetwork");
    let pid = if flag("hostPID") {
        NamespaceMode::Host
    } else if flag("shareProcessNamespace") {
        namespace(false, &paths.pid_ns, "pid")?
    } else {
        NamespaceMode::New
    };
    Ok(Namespaces {
        net: namespace(host_net, &paths.net_ns, "network")?,
        ipc: namespace(flag("hostIPC"), &paths.ipc_ns, "ipc")?,
        uts: namespace(host_net, &paths.uts_ns, "uts")?,
        pid,
    })
}

fn mount_dest(m: &MountSpec) -> &str {
    match m {
        MountSpec::Bind { destination, .. } | MountSpec::Tmpfs { destination, .. } => destination,
    }
}

/// The container's mounts: volumeMounts, kubelet's /etc/hosts and termination log,
/// containerd's /etc/hostname, /etc/resolv.conf and /dev/shm (each skipped when a
/// volumeMount targets the same path), ordered parents first as containerd sorts them.
fn mounts(
    container: &Value,
    container_name: &str,
    env: &EnvList,
    paths: &PodPaths,
    readonly_rootfs: bool,
) -> Result<Vec<MountSpec>, ConfigError> {
    let subpaths: BTreeMap<usize, SubPathRequest> = subpath_requests(container, env)?
        .into_iter()
        .map(|r| (r.index, r))
        .collect();
    let mut out = Vec::new();
    for (index, vm) in arr_at(container, &["volumeMounts"]).iter().enumerate() {
        let name = str_at(vm, &["name"]);
        let vol = paths
            .volumes
            .get(name)
            .ok_or_else(|| ConfigError::VolumeNotFound {
                volume: name.to_string(),
                container: container_name.to_string(),
            })?;
        let source = match (paths.subpaths.get(&index), subpaths.get(&index)) {
            (Some(resolved), _) => resolved.clone(),
            (None, Some(req)) => vol.path.join(&req.sub_path),
            (None, None) => vol.path.clone(),
        };
        out.push(MountSpec::Bind {
            source,
            destination: str_at(vm, &["mountPath"]).to_string(),
            readonly: bool_at(vm, &["readOnly"]) == Some(true) || vol.readonly,
        });
    }
    let taken = |out: &[MountSpec], d: &str| out.iter().any(|m| mount_dest(m) == d);
    let add = |out: &mut Vec<MountSpec>, src: &Option<PathBuf>, dest: &str, ro: bool| {
        if let Some(source) = src {
            if !taken(out, dest) {
                out.push(MountSpec::Bind {
                    source: source.clone(),
                    destination: dest.to_string(),
                    readonly: ro,
                });
            }
        }
    };
    add(&mut out, &paths.etc_hosts, "/etc/hosts", false);
    let tmp = str_at(container, &["terminationMessagePath"]);
    if !tmp.is_empty() {
        add(&mut out, &paths.termination_log, tmp, false);
    }
    add(
        &mut out,
        &paths.etc_hostname,
        "/etc/hostname",
        readonly_rootfs,
    );
    add(
        &mut out,
        &paths.resolv_conf,
        "/etc/resolv.conf",
        readonly_rootfs,
    );
    add(&mut out, &paths.shm, "/dev/shm", false);
    let depth = |m: &MountSpec| Path::new(mount_dest(m)).components().count();
    out.sort_by_key(depth);
    Ok(out)
}

/// Builds the runtime configuration of container `container_name` of `pod`.
pub fn build(
    pod: &Value,
    container_name: &str,
    facts: &NodeFacts,
    image: &ImageFacts,
    resolved: &Resolved,
    paths: &PodPaths,
) -> Result<Built, ConfigError> {
    let container = find_container(pod, container_name)
        .ok_or_else(|| ConfigError::ContainerNotFound(container_name.to_string()))?;
    let sc = effective_security(pod, container);
    let (image_uid, image_name) = users::image_user(&image.user);
    verify_run_as_non_root(pod, container_name, &sc, image_uid, image_name.as_deref())?;

    let hostname = etc_files::container_hostname(pod, facts)?;
    let env::ContainerEnv {
        env: kenv,
        warnings,
    } = env::container_env(pod, container, facts, resolved)?;
    let args = env::command_and_args(container, image, &kenv);
    if args.is_empty() {
        return Err(ConfigError::NoCommand);
    }
    let mut cfg = ContainerConfig::new(paths.rootfs.clone(), args);
    cfg.env = env::final_env(&hostname, &image.env, &kenv);
    cfg.cwd = match (
        str_at(container, &["workingDir"]),
        image.working_dir.as_str(),
    ) {
        ("", "") => "/".to_string(),
        ("", w) | (w, _) => w.to_string(),
    };
    cfg.user = container_user(pod, &sc, image)?;

    for cap in sc.cap_add.iter().chain(&sc.cap_drop) {
        if !cap.trim().eq_ignore_ascii_case("ALL") && parse_capability(cap).is_err() {
            return Err(ConfigError::UnknownCapability(cap.clone()));
        }
    }
    cfg.cap_add = sc.cap_add.clone();
    cfg.cap_drop = sc.cap_drop.clone();
    cfg.privileged = sc.privileged;
    cfg.readonly_rootfs = sc.read_only_root_filesystem;
    cfg.no_new_privs = no_new_privs_for(sc.allow_privilege_escalation, sc.privileged);

    cfg.namespaces = pod_namespaces(pod, paths)?;
    if cfg.namespaces.uts != NamespaceMode::Host {
        cfg.hostname = Some(hostname);
    }
    cfg.mounts = mounts(container, container_name, &kenv, paths, cfg.readonly_rootfs)?;

    let qos = qos::qos_class(pod);
    cfg.cgroup_path = Some(qos::container_cgroup(
        &facts.cgroup_root,
        qos,
        str_at(pod, &["metadata", "uid"]),
        &paths.container_id,
    ));
    cfg.resources = qos::container_resources(container);
    for s in arr_at(pod, &["spec", "securityContext", "sysctls"]) {
        cfg.sysctls.insert(
            str_at(s, &["name"]).to_string(),
            str_at(s, &["value"]).to_string(),
        );
    }
    Ok(Built {
        config: cfg,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{NodeAllocatable, VolumeHost};
    use oci_spec::runtime::Capability;
    use podium_api::quantity::Quantity;
    use podium_runtime::Resources;
    use serde_json::json;

    fn facts() -> NodeFacts {
        NodeFacts {
            node_name: "node-1".into(),
            hostname: "node-1".into(),
            host_ips: vec!["192.168.1.10".into()],
            pod_ips: vec!["10.244.1.5".into()],
            cluster_dns: vec!["10.0.0.10".into()],
            cluster_domain: "cluster.local".into(),
            allocatable: NodeAllocatable {
                cpu: Quantity::parse("2").unwrap(),
                memory: Quantity::parse("4Gi").unwrap(),
                ephemeral_storage: Quantity::parse("10Gi").unwrap(),
                pods: 110,
            },
            hosts_file: "127.0.0.1 localhost\n".into(),
            resolv_conf: Some("nameserver 1.1.1.1\n".into()),
            cgroup_root: "/kubepods".into(),
        }
    }

    fn busybox() -> ImageFacts {
        ImageFacts {
            cmd: vec!["sh".into()],
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            ..Default::default()
        }
    }

    fn resolved() -> Resolved {
        Resolved {
            services: vec![
                json!({"metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"clusterIP": "10.0.0.1",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}),
            ],
            ..Default::default()
        }
    }

    fn paths() -> PodPaths {
        PodPaths {
            rootfs: "/run/podium/c1/rootfs".into(),
            container_id: "c1".into(),
            etc_hosts: Some("/run/podium/p/hosts".into()),
            etc_hostname: Some("/run/podium/p/hostname".into()),
            resolv_conf: Some("/run/podium/p/resolv.conf".into()),
            termination_log: Some("/run/podium/p/c1/termination-log".into()),
            shm: Some("/run/podium/p/shm".into()),
            net_ns: Some("/run/podium/p/ns/net".into()),
            ipc_ns: Some("/run/podium/p/ns/ipc".into()),
            uts_ns: Some("/run/podium/p/ns/uts".into()),
            ..Default::default()
        }
    }

    /// A pod as stored after defaulting.
    fn stored(name: &str, spec: Value) -> Value {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": "0d6b-uid"},
            "spec": spec});
        let s = &mut pod["spec"];
        for (k, v) in [
            ("nodeName", json!("node-1")),
            ("serviceAccountName", json!("default")),
            ("enableServiceLinks", json!(true)),
            ("dnsPolicy", json!("ClusterFirst")),
            ("securityContext", json!({})),
        ] {
            if s.get(k).is_none() {
                s[k] = v;
            }
        }
        for c in s["containers"].as_array_mut().unwrap() {
            c["terminationMessagePath"] = json!("/dev/termination-log");
        }
        pod
    }

    fn get<'a>(cfg: &'a ContainerConfig, k: &str) -> Option<&'a str> {
        cfg.env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn seed_downward_api_pod() {
        let env_ref = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
        let res_ref = |name: &str, r: &str| json!({"name": name, "valueFrom": {"resourceFieldRef": {"containerName": "test-container", "resource": r}}});
        let pod = stored(
            "test",
            json!({"restartPolicy": "Never", "containers": [{
                "name": "test-container", "image": "gcr.io/google_containers/busybox",
                "command": ["sh", "-c"], "args": ["env"],
                "resources": {"requests": {"memory": "32Mi", "cpu": "125m"},
                              "limits": {"memory": "64Mi", "cpu": "250m"}},
                "env": [env_ref("MY_NODE_NAME", "spec.nodeName"),
                        env_ref("MY_POD_NAME", "metadata.name"),
                        env_ref("MY_POD_NAMESPACE", "metadata.namespace"),
                        env_ref("MY_POD_IP", "status.podIP"),
                        env_ref("MY_POD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
                        res_ref("MY_CPU_REQUEST", "requests.cpu"),
                        res_ref("MY_CPU_LIMIT", "limits.cpu"),
                        res_ref("MY_MEM_REQUEST", "requests.memory"),
                        res_ref("MY_MEM_LIMIT", "limits.memory")]}]}),
        );
        let built = build(
            &pod,
            "test-container",
            &facts(),
            &busybox(),
            &resolved(),
            &paths(),
        )
        .unwrap();
        let cfg = &built.config;
        assert_eq!(cfg.args, vec!["sh", "-c", "env"]);
        let want = [
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("HOSTNAME", "test"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.0.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.0.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.0.0.1"),
            ("MY_NODE_NAME", "node-1"),
            ("MY_POD_NAME", "test"),
            ("MY_POD_NAMESPACE", "default"),
            ("MY_POD_IP", "10.244.1.5"),
            ("MY_POD_SERVICE_ACCOUNT", "default"),
            ("MY_CPU_REQUEST", "1"),
            ("MY_CPU_LIMIT", "1"),
            ("MY_MEM_REQUEST", "33554432"),
            ("MY_MEM_LIMIT", "67108864"),
        ];
        let got: Vec<(&str, &str)> = cfg
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(cfg.hostname.as_deref(), Some("test"));
        assert_eq!(
            cfg.cgroup_path.as_deref(),
            Some("/kubepods/burstable/pod0d6b-uid/c1")
        );
        assert_eq!(
            cfg.resources,
            Resources {
                cpu_shares: Some(128),
                cpu_quota: Some(25_000),
                cpu_period: Some(100_000),
                memory_limit: Some(64 << 20),
                pids_limit: None
            }
        );
        assert!(built.warnings.is_empty());
        // The runtime accepts it.
        podium_runtime::spec::generate_with(cfg, &podium_runtime::spec::HostLimits::default())
            .unwrap();
    }

    #[test]
    fn seed_hello_world_capabilities() {
        let pod = stored(
            "hello-world",
            json!({"containers": [{"name": "friendly-container", "image": "alpine:3.4",
                "command": ["/bin/echo", "hello", "world"],
                "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["KILL"]}}}]}),
        );
        let cfg = build(
            &pod,
            "friendly-container",
            &facts(),
            &ImageFacts::default(),
            &resolved(),
            &paths(),
        )
        .unwrap()
        .config;
        assert_eq!(cfg.args, vec!["/bin/echo", "hello", "world"]);
        assert_eq!(cfg.cap_add, vec!["NET_ADMIN"]);
        assert_eq!(cfg.cap_drop, vec!["KILL"]);
        assert!(!cfg.privileged);
        assert!(cfg.no_new_privs);
        let caps = podium_runtime::spec::effective_capabilities(&cfg).unwrap();
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(!caps.contains(&Capability::Kill));
        assert!(caps.contains(&Capability::Chown));
        assert_eq!(caps.len(), 14);
        assert_eq!(
            cfg.cgroup_path.as_deref(),
            Some("/kubepods/besteffort/pod0d6b-uid/c1")
        );
        // With the CAP_ prefix too; unknown names are refused.
        let mut p2 = pod.clone();
        p2["spec"]["containers"][0]["securityContext"]["capabilities"] =
            json!({"add": ["CAP_NET_ADMIN"], "drop": ["CAP_KILL"]});
        let cfg2 = build(
            &p2,
            "friendly-container",
            &facts(),
            &ImageFacts::default(),
            &resolved(),
            &paths(),
        )
        .unwrap()
        .config;
        assert_eq!(
            podium_runtime::spec::effective_capabilities(&cfg2).unwrap(),
            caps
        );
        p2["spec"]["containers"][0]["securityContext"]["capabilities"] = json!({"add": ["FLY"]});
        let err = build(
            &p2,
            "friendly-container",
            &facts(),
            &ImageFacts::default(),
            &resolved(),
            &paths(),
        )
        .unwrap_err();
        assert_eq!(err, ConfigError::UnknownCapability("FLY".into()));
        assert_eq!(err.reason(), "CreateContainerError");
    }

    #[test]
    fn seed_busybox2_hostname_and_subdomain() {
        let pod = stored(
            "busybox2",
            json!({"hostname": "busybox-2", "subdomain": "default-subdomain",
                   "containers": [{"name": "busybox", "image": "busybox", "command": ["sleep", "3600"]}]}),
        );
        let cfg = build(&pod, "busybox", &facts(), &busybox(), &resolved(), &paths())
            .unwrap()
            .config;
        assert_eq!(cfg.hostname.as_deref(), Some("busybox-2"));
        assert_eq!(get(&cfg, "HOSTNAME"), Some("busybox-2"));
        assert_eq!(cfg.args, vec!["sleep", "3600"]);
        assert_eq!(
            cfg.namespaces,
            Namespaces {
                net: NamespaceMode::Path("/run/podium/p/ns/net".into()),
                ipc: NamespaceMode::Path("/run/podium/p/ns/ipc".into()),
                uts: NamespaceMode::Path("/run/podium/p/ns/uts".into()),
                pid: NamespaceMode::New,
            }
        );
        let dests: Vec<&str> = cfg.mounts.iter().map(mount_dest).collect();
        assert_eq!(
            dests,
            vec![
                "/etc/hosts",
                "/dev/termination-log",
                "/etc/hostname",
                "/etc/resolv.conf",
                "/dev/shm"
            ]
        );
    }

    #[test]
    fn seed_busybox1_host_namespaces() {
        let pod = stored(
            "busybox1",
            json!({"hostIPC": true, "hostPID": true, "hostNetwork": true,
                   "containers": [{"name": "busybox", "image": "busybox", "command": ["sleep", "3600"]}]}),
        );
        let mut p = paths();
        p.net_ns = None;
        p.uts_ns = None;
        p.ipc_ns = None;
        let cfg = build(&pod, "busybox", &facts(), &busybox(), &resolved(), &p)
            .unwrap()
            .config;
        assert_eq!(
            cfg.namespaces,
            Namespaces {
                net: NamespaceMode::Host,
                ipc: NamespaceMode::Host,
                uts: NamespaceMode::Host,
                pid: NamespaceMode::Host,
            }
        );
        assert_eq!(cfg.hostname, None);
        assert_eq!(get(&cfg, "HOSTNAME"), Some("node-1"));
        // shareProcessNamespace needs the sandbox's pid namespace.
        let share = stored(
            "s",
            json!({"shareProcessNamespace": true,
            "containers": [{"name": "a", "command": ["x"]}]}),
        );
        assert_eq!(
            build(&share, "a", &facts(), &busybox(), &resolved(), &paths()).unwrap_err(),
            ConfigError::MissingNamespace("pid")
        );
        let mut p = paths();
        p.pid_ns = Some("/run/podium/p/ns/pid".into());
        let cfg = build(&share, "a", &facts(), &busybox(), &resolved(), &p)
            .unwrap()
            .config;
        assert_eq!(
            cfg.namespaces.pid,
            NamespaceMode::Path("/run/podium/p/ns/pid".into())
        );
    }

    #[test]
    fn users_groups_and_run_as_non_root() {
        let image = ImageFacts {
            cmd: vec!["app".into()],
            user: "bob".into(),
            passwd: Some("root:x:0:0::/:/bin/sh\nbob:x:1000:1000::/:/bin/sh\n".into()),
            group: Some("bob:x:1000:\nwheel:x:10:bob\n".into()),
            ..Default::default()
        };
        let pod = |psc: Value, csc: Value| {
            stored(
                "u",
                json!({"securityContext": psc,
                "containers": [{"name": "a", "securityContext": csc}]}),
            )
        };
        let b = |p: &Value, img: &ImageFacts| build(p, "a", &facts(), img, &resolved(), &paths());
        let cfg = b(&pod(json!({}), json!({})), &image).unwrap().config;
        assert_eq!((cfg.user.uid, cfg.user.gid), (1000, 1000));
        assert_eq!(cfg.user.additional_gids, vec![1000, 10]);
        // Pod-level runAsUser / runAsGroup, fsGroup and supplementalGroups; container wins.
        let p = pod(
            json!({"runAsUser": 2000, "runAsGroup": 3000, "fsGroup": 4000, "supplementalGroups": [5000, 4000]}),
            json!({"runAsUser": 1000}),
        );
        let cfg = b(&p, &image).unwrap().config;
        assert_eq!((cfg.user.uid, cfg.user.gid), (1000, 3000));
        assert_eq!(cfg.user.additional_gids, vec![3000, 10, 4000, 5000]);
        // runAsNonRoot.
        let root_img = ImageFacts {
            cmd: vec!["x".into()],
            ..Default::default()
        };
        let e = b(&pod(json!({"runAsNonRoot": true}), json!({})), &root_img).unwrap_err();
        assert_eq!(
            e.to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"u_default(0d6b-uid)\", container: a)"
        );
        assert_eq!(e.reason(), "CreateContainerConfigError");
        let e = b(
            &pod(json!({"runAsNonRoot": true}), json!({"runAsUser": 0})),
            &root_img,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "container's runAsUser breaks non-root policy (pod: \"u_default(0d6b-uid)\", container: a)"
        );
        let e = b(&pod(json!({}), json!({"runAsNonRoot": true})), &image).unwrap_err();
        assert_eq!(
            e.to_string(),
            "container has runAsNonRoot and image has non-numeric user (bob), cannot verify user is non-root (pod: \"u_default(0d6b-uid)\", container: a)"
        );
        let ok = b(
            &pod(json!({"runAsNonRoot": true, "runAsUser": 1000}), json!({})),
            &root_img,
        )
        .unwrap();
        assert_eq!(ok.config.user.uid, 1000);
        let numeric = ImageFacts {
            user: "1000:1000".into(),
            ..root_img.clone()
        };
        assert!(b(&pod(json!({"runAsNonRoot": true}), json!({})), &numeric).is_ok());
        // A named image user missing from /etc/passwd: containerd refuses.
        let ghost = ImageFacts {
            user: "ghost".into(),
            ..root_img
        };
        assert_eq!(
            b(&pod(json!({}), json!({})), &ghost).unwrap_err().reason(),
            "CreateContainerError"
        );
    }

    #[test]
    fn security_flags_cwd_and_sysctls() {
        let pod = stored(
            "s",
            json!({
            "securityContext": {"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
            "containers": [{"name": "a", "workingDir": "/srv",
                "securityContext": {"privileged": true, "readOnlyRootFilesystem": true}},
                {"name": "b", "securityContext": {"allowPrivilegeEscalation": true}},
                {"name": "c", "securityContext": {"allowPrivilegeEscalation": false}}]}),
        );
        let img = ImageFacts {
            cmd: vec!["x".into()],
            working_dir: "/app".into(),
            ..Default::default()
        };
        let b = |n: &str| {
            build(&pod, n, &facts(), &img, &resolved(), &paths())
                .unwrap()
                .config
        };
        let a = b("a");
        assert!(a.privileged && a.readonly_rootfs && !a.no_new_privs);
        assert_eq!(a.cwd, "/srv");
        assert_eq!(
            a.sysctls.get("net.core.somaxconn").map(String::as_str),
            Some("1024")
        );
        // Read-only root: containerd's /etc/hostname and resolv.conf are read-only too.
        let ro: Vec<(&str, bool)> = a
            .mounts
            .iter()
            .map(|m| match m {
                MountSpec::Bind {
                    destination,
                    readonly,
                    ..
                } => (destination.as_str(), *readonly),
                MountSpec::Tmpfs {
                    destination,
                    readonly,
                    ..
                } => (destination.as_str(), *readonly),
            })
            .collect();
        assert!(ro.contains(&("/etc/hostname", true)));
        assert!(ro.contains(&("/etc/hosts", false)));
        let bb = b("b");
        assert!(!bb.no_new_privs);
        assert_eq!(bb.cwd, "/app");
        assert!(b("c").no_new_privs);
        let none = ImageFacts {
            cmd: vec!["x".into()],
            ..Default::default()
        };
        assert_eq!(
            build(&pod, "b", &facts(), &none, &resolved(), &paths())
                .unwrap()
                .config
                .cwd,
            "/"
        );
        assert_eq!(
            build(&pod, "zz", &facts(), &none, &resolved(), &paths()).unwrap_err(),
            ConfigError::ContainerNotFound("zz".into())
        );
        assert_eq!(
            build(
                &pod,
                "b",
                &facts(),
                &ImageFacts::default(),
                &resolved(),
                &paths()
            )
            .unwrap_err(),
            ConfigError::NoCommand
        );
    }

    #[test]
    fn volume_mounts_subpaths_and_readonly() {
        let pod = stored(
            "v",
            json!({"containers": [{"name": "a", "command": ["x"],
            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "data", "mountPath": "/data/logs", "subPathExpr": "logs/$(POD)"},
                {"name": "cfg", "mountPath": "/etc/app"},
                {"name": "data", "mountPath": "/cache", "subPath": "cache", "readOnly": true},
                {"name": "hosts", "mountPath": "/etc/hosts"}]}]}),
        );
        let mut p = paths();
        p.volumes.insert(
            "data".into(),
            VolumeHost {
                path: "/var/lib/podium/v/data".into(),
                readonly: false,
            },
        );
        p.volumes.insert(
            "cfg".into(),
            VolumeHost {
                path: "/var/lib/podium/v/cfg".into(),
                readonly: true,
            },
        );
        p.volumes.insert(
            "hosts".into(),
            VolumeHost {
                path: "/var/lib/podium/v/myhosts".into(),
                readonly: false,
            },
        );
        p.subpaths.insert(3, "/proc/self/fd/9".into());
        let cfg = build(&pod, "a", &facts(), &busybox(), &resolved(), &p)
            .unwrap()
            .config;
        let find = |d: &str| {
            cfg.mounts
                .iter()
                .find_map(|m| match m {
                    MountSpec::Bind {
                        source,
                        destination,
                        readonly,
                    } if destination == d => {
                        Some((source.to_str().unwrap().to_string(), *readonly))
                    }
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(find("/data"), ("/var/lib/podium/v/data".into(), false));
        assert_eq!(
            find("/data/logs"),
            ("/var/lib/podium/v/data/logs/v".into(), false)
        );
        assert_eq!(find("/etc/app"), ("/var/lib/podium/v/cfg".into(), true));
        assert_eq!(find("/cache"), ("/proc/self/fd/9".into(), true));
        // The user's /etc/hosts volume replaces the managed one.
        assert_eq!(
            find("/etc/hosts"),
            ("/var/lib/podium/v/myhosts".into(), false)
        );
        assert_eq!(
            cfg.mounts
                .iter()
                .filter(|m| mount_dest(m) == "/etc/hosts")
                .count(),
            1
        );
        // Parents before children.
        let pos = |d: &str| cfg.mounts.iter().position(|m| mount_dest(m) == d).unwrap();
        assert!(pos("/data") < pos("/data/logs"));

        let env = env::container_env(&pod, &pod["spec"]["containers"][0], &facts(), &resolved())
            .unwrap()
            .env;
        let reqs = subpath_requests(&pod["spec"]["containers"][0], &env).unwrap();
        assert_eq!(
            reqs,
            vec![
                SubPathRequest {
                    index: 1,
                    volume: "data".into(),
                    sub_path: "logs/v".into()
                },
                SubPathRequest {
                    index: 3,
                    volume: "data".into(),
                    sub_path: "cache".into()
                }
            ]
        );
        let bad = |vm: Value| {
            let pod = stored(
                "v",
                json!({"containers": [{"name": "a", "command": ["x"], "volumeMounts": [vm]}]}),
            );
            build(&pod, "a", &facts(), &busybox(), &resolved(), &p)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(json!({"name": "data", "mountPath": "/d", "subPath": "../etc"})),
            "unable to provision SubPath `../etc`: must not contain '..'"
        );
        assert_eq!(
            bad(json!({"name": "data", "mountPath": "/d", "subPath": "/etc"})),
            "error SubPath `/etc` must not be an absolute path"
        );
        assert_eq!(
            bad(json!({"name": "data", "mountPath": "/d", "subPathExpr": "$(NOPE)/$(ALSO)"})),
            "missing value for ALSO, NOPE"
        );
        assert_eq!(
            bad(json!({"name": "nope", "mountPath": "/d"})),
            "cannot find volume \"nope\" to mount into container \"a\""
        );
    }

    #[test]
    fn config_errors_from_env() {
        let pod = stored(
            "e",
            json!({"containers": [{"name": "a", "command": ["x"],
            "envFrom": [{"configMapRef": {"name": "special-config"}}]}]}),
        );
        let e = build(&pod, "a", &facts(), &busybox(), &resolved(), &paths()).unwrap_err();
        assert_eq!(e.to_string(), "configmap \"special-config\" not found");
        assert_eq!(e.reason(), "CreateContainerConfigError");
    }

    #[test]
    fn stop_signals() {
        let s = |v: Option<&str>| {
            stop_signal(&ImageFacts {
                stop_signal: v.map(String::from),
                ..Default::default()
            })
        };
        assert_eq!(s(None), 15);
        assert_eq!(s(Some("SIGQUIT")), 3);
        assert_eq!(s(Some("quit")), 3);
        assert_eq!(s(Some("9")), 9);
        assert_eq!(s(Some("SIGRTMIN+3")), 37);
        assert_eq!(s(Some("BOGUS")), 15);
    }
}
