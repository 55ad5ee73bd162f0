//! OCI runtime-spec generation: a small typed [`ContainerConfig`] in, an
//! `oci_spec::runtime::Spec` out. Pure apart from [`HostLimits::current`], which reads the
//! caller's rlimits so that no container is ever given a limit above the caller's hard limit
//! (this host lacks CAP_SYS_RESOURCE; a higher rlimit makes container creation fail).
//!
//! Defaults are containerd's (DESIGN.md "Security defaults"): its 14 capabilities, masked
//! and read-only /proc paths, no_new_privs unless privilege escalation is allowed.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

/// containerd's default capability set (without the `CAP_` prefix).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Paths hidden from unprivileged containers.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Paths mounted read-only in unprivileged containers.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Every capability the kernel defines (up to CAP_CHECKPOINT_RESTORE), for privileged
/// containers. Names the running kernel does not know are dropped by [`all_capabilities`].
const ALL_CAPABILITY_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Errors of spec generation; all are caller errors (not retryable).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("unknown rlimit {0:?}")]
    UnknownRlimit(String),
    #[error("container args must not be empty")]
    EmptyArgs,
    #[error("{field} must be an absolute path, got {value:?}")]
    NotAbsolute { field: &'static str, value: String },
    #[error("invalid environment variable name {0:?}")]
    InvalidEnv(String),
    #[error("building the OCI spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// How a container gets one kind of namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NamespaceMode {
    /// A new namespace of its own.
    #[default]
    New,
    /// The host's (the runtime's) namespace: no entry in the spec.
    Host,
    /// Join an existing namespace by path (a pinned sandbox namespace).
    Path(PathBuf),
}

/// The namespaces a container shares with its pod or the host. Mount (and cgroup)
/// namespaces are always new.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Namespaces {
    pub net: NamespaceMode,
    pub ipc: NamespaceMode,
    pub uts: NamespaceMode,
    pub pid: NamespaceMode,
}

/// uid, gid and supplementary groups of the container process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserSpec {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// A mount into the container beyond the standard /proc, /dev, /sys set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// A recursive bind mount of a host path.
    Bind {
        source: PathBuf,
        destination: String,
        readonly: bool,
    },
    /// A tmpfs, optionally size-limited (bytes).
    Tmpfs {
        destination: String,
        size_bytes: Option<u64>,
        readonly: bool,
    },
}

/// cgroup resources; `None` leaves the controller unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// cgroup v1 cpu.shares (v2 weight is derived by the runtime).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// Hard memory limit in bytes.
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

/// One requested rlimit, e.g. `("NOFILE", 1024, 4096)`; names with or without `RLIMIT_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlimitSpec {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Everything needed to describe one container to an OCI runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Absolute path of the prepared root filesystem.
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    /// `NAME=value` pairs, in order.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container (absolute).
    pub cwd: String,
    pub user: UserSpec,
    /// Capabilities added to the default set, with or without `CAP_`, any case; `ALL` adds all.
    pub cap_add: Vec<String>,
    /// Capabilities removed from the default set; `ALL` removes all (then adds apply).
    pub cap_drop: Vec<String>,
    /// All capabilities, no masked or read-only paths, all devices allowed.
    pub privileged: bool,
    pub readonly_rootfs: bool,
    /// Set no_new_privs (see [`no_new_privs_for`]).
    pub no_new_privs: bool,
    /// Applied only when the UTS namespace is not the host's.
    pub hostname: Option<String>,
    pub namespaces: Namespaces,
    pub mounts: Vec<MountSpec>,
    /// cgroup path, e.g. `/podium-a/pod123/ctr1` (relative to each hierarchy's root).
    pub cgroup_path: Option<String>,
    pub resources: Resources,
    pub rlimits: Vec<RlimitSpec>,
    pub oom_score_adj: Option<i32>,
    pub sysctls: BTreeMap<String, String>,
}

impl ContainerConfig {
    /// A config with the secure defaults: root user, cwd `/`, no_new_privs, new namespaces.
    pub fn new(rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        ContainerConfig {
            rootfs: rootfs.into(),
            args,
            env: Vec::new(),
            cwd: "/".to_string(),
            user: UserSpec::default(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            privileged: false,
            readonly_rootfs: false,
            no_new_privs: true,
            hostname: None,
            namespaces: Namespaces::default(),
            mounts: Vec::new(),
            cgroup_path: None,
            resources: Resources::default(),
            rlimits: Vec::new(),
            oom_score_adj: None,
            sysctls: BTreeMap::new(),
        }
    }
}

/// DESIGN.md's rule: no_new_privs unless privilege escalation is explicitly allowed
/// (or the container is privileged, which implies it).
pub fn no_new_privs_for(allow_privilege_escalation: Option<bool>, privileged: bool) -> bool {
    !(privileged || allow_privilege_escalation == Some(true))
}

/// The caller's hard rlimits, the ceiling for every container rlimit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostLimits {
    hard: Vec<(PosixRlimitType, u64)>,
    /// The caller's capability bounding set; None = unknown (no limit applied).
    bounding: Option<HashSet<Capability>>,
}

impl HostLimits {
    /// Reads the current process's hard limits with getrlimit(2).
    pub fn current() -> Self {
        let hard = RLIMITS
            .iter()
            .filter_map(|(_, typ, res)| {
                nix::sys::resource::getrlimit(*res)
                    .ok()
                    .map(|(_, hard)| (*typ, hard))
            })
            .collect();
        HostLimits {
            hard,
            bounding: read_bounding_set(),
        }
    }

    /// Only these capabilities are in the caller's bounding set (tests).
    pub fn with_bounding(mut self, caps: HashSet<Capability>) -> Self {
        self.bounding = Some(caps);
        self
    }

    /// Explicit limits (tests); kinds not listed are unbounded.
    pub fn from_pairs(pairs: &[(&str, u64)]) -> Result<Self, SpecError> {
        let hard = pairs
            .iter()
            .map(|(n, v)| rlimit_type(n).map(|t| (t, *v)))
            .collect::<Result<_, _>>()?;
        Ok(HostLimits {
            hard,
            bounding: None,
        })
    }

    fn hard(&self, typ: PosixRlimitType) -> u64 {
        self.hard
            .iter()
            .find(|(t, _)| *t == typ)
            .map_or(u64::MAX, |(_, h)| *h)
    }
}

use nix::sys::resource::Resource as R;
const RLIMITS: &[(&str, PosixRlimitType, R)] = &[
    ("CPU", PosixRlimitType::RlimitCpu, R::RLIMIT_CPU),
    ("FSIZE", PosixRlimitType::RlimitFsize, R::RLIMIT_FSIZE),
    ("DATA", PosixRlimitType::RlimitData, R::RLIMIT_DATA),
    ("STACK", PosixRlimitType::RlimitStack, R::RLIMIT_STACK),
    ("CORE", PosixRlimitType::RlimitCore, R::RLIMIT_CORE),
    ("RSS", PosixRlimitType::RlimitRss, R::RLIMIT_RSS),
    ("NPROC", PosixRlimitType::RlimitNproc, R::RLIMIT_NPROC),
    ("NOFILE", PosixRlimitType::RlimitNofile, R::RLIMIT_NOFILE),
    ("MEMLOCK", PosixRlimitType::RlimitMemlock, R::RLIMIT_MEMLOCK),
    ("AS", PosixRlimitType::RlimitAs, R::RLIMIT_AS),
    ("LOCKS", PosixRlimitType::RlimitLocks, R::RLIMIT_LOCKS),
    (
        "SIGPENDING",
        PosixRlimitType::RlimitSigpending,
        R::RLIMIT_SIGPENDING,
    ),
    (
        "MSGQUEUE",
        PosixRlimitType::RlimitMsgqueue,
        R::RLIMIT_MSGQUEUE,
    ),
    ("NICE", PosixRlimitType::RlimitNice, R::RLIMIT_NICE),
    ("RTPRIO", PosixRlimitType::RlimitRtprio, R::RLIMIT_RTPRIO),
    ("RTTIME", PosixRlimitType::RlimitRttime, R::RLIMIT_RTTIME),
];

fn rlimit_type(name: &str) -> Result<PosixRlimitType, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let short = upper.strip_prefix("RLIMIT_").unwrap_or(&upper);
    RLIMITS
        .iter()
        .find(|(n, _, _)| *n == short)
        .map(|(_, t, _)| *t)
        .ok_or_else(|| SpecError::UnknownRlimit(name.to_string()))
}

/// Clamps a requested limit so that hard <= the host's hard limit and soft <= hard.
pub fn clamp_rlimit(soft: u64, hard: u64, host_hard: u64) -> (u64, u64) {
    let hard = hard.min(host_hard);
    (soft.min(hard), hard)
}

/// Parses a capability name: `NET_ADMIN`, `CAP_NET_ADMIN`, `net_admin`.
pub fn parse_capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let short = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(short).map_err(|_| SpecError::UnknownCapability(name.to_string()))
}

/// All capabilities the running kernel knows (by /proc/sys/kernel/cap_last_cap).
pub fn all_capabilities() -> Capabilities {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(40);
    // ALL_CAPABILITY_NAMES is in kernel number order.
    ALL_CAPABILITY_NAMES
        .iter()
        .take(last + 1)
        .filter_map(|n| Capability::from_str(n).ok())
        .collect()
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

/// The capabilities in this process's bounding set (`CapBnd` of /proc/self/status).
fn read_bounding_set() -> Option<HashSet<Capability>> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))?
        .trim();
    let mask = u64::from_str_radix(hex, 16).ok()?;
    Some(capabilities_in_mask(mask))
}

/// The capabilities whose bits are set in `mask` (bit n = capability number n).
fn capabilities_in_mask(mask: u64) -> HashSet<Capability> {
    ALL_CAPABILITY_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .filter_map(|(_, n)| Capability::from_str(n).ok())
        .collect()
}

/// The effective capability set for a config: privileged → all; otherwise the default set,
/// minus drops, plus adds (Kubernetes applies drop before add).
pub fn effective_capabilities(cfg: &ContainerConfig) -> Result<Capabilities, SpecError> {
    if cfg.privileged {
        return Ok(all_capabilities());
    }
    let mut caps: Capabilities = DEFAULT_CAPABILITIES
        .iter()
        .map(|n| parse_capability(n))
        .collect::<Result<_, _>>()?;
    for d in &cfg.cap_drop {
        if is_all(d) {
            caps.clear();
        } else {
            caps.remove(&parse_capability(d)?);
        }
    }
    for a in &cfg.cap_add {
        if is_all(a) {
            caps.extend(all_capabilities());
        } else {
            caps.insert(parse_capability(a)?);
        }
    }
    Ok(caps)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// The standard mounts of every container (containerd's defaults); /sys is writable only
/// for privileged containers.
fn standard_mounts(privileged: bool) -> Result<Vec<Mount>, SpecError> {
    let sys_ro = if privileged { "rw" } else { "ro" };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_ro],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_ro],
        )?,
    ])
}

fn user_mount(m: &MountSpec) -> Result<Mount, SpecError> {
    match m {
        MountSpec::Bind {
            source,
            destination,
            readonly,
        } => {
            if !source.is_absolute() {
                return Err(SpecError::NotAbsolute {
                    field: "mount source",
                    value: source.display().to_string(),
                });
            }
            let mut opts = vec!["rbind", "rprivate"];
            opts.push(if *readonly { "ro" } else { "rw" });
            Ok(MountBuilder::default()
                .destination(destination.as_str())
                .typ("bind")
                .source(source.clone())
                .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .build()?)
        }
        MountSpec::Tmpfs {
            destination,
            size_bytes,
            readonly,
        } => {
            let mut opts: Vec<String> = ["nosuid", "nodev", "mode=1777"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if let Some(sz) = size_bytes {
                opts.push(format!("size={sz}"));
            }
            if *readonly {
                opts.push("ro".to_string());
            }
            Ok(MountBuilder::default()
                .destination(destination.as_str())
                .typ("tmpfs")
                .source("tmpfs")
                .options(opts)
                .build()?)
        }
    }
}

fn namespace_entries(ns: &Namespaces) -> Result<Vec<oci_spec::runtime::LinuxNamespace>, SpecError> {
    let mut out = vec![
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Cgroup)
            .build()?,
    ];
    for (mode, typ) in [
        (&ns.pid, LinuxNamespaceType::Pid),
        (&ns.net, LinuxNamespaceType::Network),
        (&ns.ipc, LinuxNamespaceType::Ipc),
        (&ns.uts, LinuxNamespaceType::Uts),
    ] {
        match mode {
            NamespaceMode::Host => {}
            NamespaceMode::New => out.push(LinuxNamespaceBuilder::default().typ(typ).build()?),
            NamespaceMode::Path(p) => out.push(
                LinuxNamespaceBuilder::default()
                    .typ(typ)
                    .path(p.clone())
                    .build()?,
            ),
        }
    }
    Ok(out)
}

fn rlimits(cfg: &ContainerConfig, host: &HostLimits) -> Result<Vec<PosixRlimit>, SpecError> {
    cfg.rlimits
        .iter()
        .map(|r| {
            let typ = rlimit_type(&r.name)?;
            let (soft, hard) = clamp_rlimit(r.soft, r.hard, host.hard(typ));
            Ok(PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()?)
        })
        .collect()
}

fn check_env(env: &[(String, String)]) -> Result<Vec<String>, SpecError> {
    env.iter()
        .map(|(k, v)| {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                Err(SpecError::InvalidEnv(k.clone()))
            } else {
                Ok(format!("{k}={v}"))
            }
        })
        .collect()
}

/// Generates the OCI spec with the caller's current rlimits as the ceiling.
pub fn generate(cfg: &ContainerConfig) -> Result<Spec, SpecError> {
    generate_with(cfg, &HostLimits::current())
}

/// Generates the OCI spec for `cfg`, clamping rlimits to `host`.
pub fn generate_with(cfg: &ContainerConfig, host: &HostLimits) -> Result<Spec, SpecError> {
    if cfg.args.is_empty() {
        return Err(SpecError::EmptyArgs);
    }
    if !cfg.rootfs.is_absolute() {
        return Err(SpecError::NotAbsolute {
            field: "rootfs",
            value: cfg.rootfs.display().to_string(),
        });
    }
    if !cfg.cwd.starts_with('/') {
        return Err(SpecError::NotAbsolute {
            field: "cwd",
            value: cfg.cwd.clone(),
        });
    }
    let mut caps = effective_capabilities(cfg)?;
    // "All capabilities" of a privileged container are all the caller has, as Docker and
    // containerd do: asking for one outside the bounding set fails the start (this host
    // lacks CAP_SYS_RESOURCE). Explicitly added ones are kept, so they fail loudly.
    if let (true, Some(bounding)) = (cfg.privileged, &host.bounding) {
        caps.retain(|c| bounding.contains(c));
    }
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        // Like containerd: no inheritable or ambient capabilities, so a non-root user
        // gets none unless a file capability grants them.
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let user = UserBuilder::default()
        .uid(cfg.user.uid)
        .gid(cfg.user.gid)
        .additional_gids(cfg.user.additional_gids.clone())
        .build()?;
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(cfg.args.clone())
        .env(check_env(&cfg.env)?)
        .cwd(cfg.cwd.as_str())
        .capabilities(capabilities)
        .rlimits(rlimits(cfg, host)?)
        .no_new_privileges(cfg.no_new_privs && !cfg.privileged)
        .build()?;
    if let Some(adj) = cfg.oom_score_adj {
        process.set_oom_score_adj(Some(adj));
    }

    let mut mounts = standard_mounts(cfg.privileged)?;
    for m in &cfg.mounts {
        mounts.push(user_mount(m)?);
    }

    let mut resources = LinuxResourcesBuilder::default();
    let r = &cfg.resources;
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(s) = r.cpu_shares {
            cpu = cpu.shares(s);
        }
        if let Some(q) = r.cpu_quota {
            cpu = cpu.quota(q);
        }
        if let Some(p) = r.cpu_period {
            cpu = cpu.period(p);
        }
        resources = resources.cpu(cpu.build()?);
    }
    if let Some(limit) = r.memory_limit {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if let Some(limit) = r.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }
    // Unprivileged: deny all devices in the device cgroup; the runtime then allows its
    // standard set (null, zero, full, random, urandom, tty, ptmx). Privileged: allow all.
    resources = resources.devices(vec![LinuxDeviceCgroupBuilder::default()
        .allow(cfg.privileged)
        .access("rwm")
        .build()?]);

    let mut linux = LinuxBuilder::default()
        .namespaces(namespace_entries(&cfg.namespaces)?)
        .resources(resources.build()?);
    // The builder's defaults are oci-spec's own lists: always set ours (empty if privileged).
    if cfg.privileged {
        linux = linux
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new());
    } else {
        linux = linux
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            );
    }
    if let Some(p) = &cfg.cgroup_path {
        linux = linux.cgroups_path(PathBuf::from(p));
    }
    if !cfg.sysctls.is_empty() {
        linux = linux.sysctl(
            cfg.sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(cfg.rootfs.clone())
                .readonly(cfg.readonly_rootfs)
                .build()?,
        )
        .process(process)
        .mounts(mounts)
        .linux(linux.build()?)
        .build()?;
    if cfg.namespaces.uts != NamespaceMode::Host {
        spec.set_hostname(cfg.hostname.clone());
    } else {
        spec.set_hostname(None);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ContainerConfig {
        ContainerConfig::new("/rootfs", vec!["sh".into()])
    }

    fn caps_of(spec: &Spec) -> Capabilities {
        spec.process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap()
            .effective()
            .clone()
            .unwrap()
    }

    #[test]
    fn default_capabilities_are_containerds() {
        let spec = generate_with(&cfg(), &HostLimits::default()).unwrap();
        let caps = caps_of(&spec);
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&Capability::Kill));
        assert!(caps.contains(&Capability::AuditWrite));
        assert!(!caps.contains(&Capability::NetAdmin));
        assert!(!caps.contains(&Capability::SysAdmin));
        let p = spec.process().as_ref().unwrap();
        let c = p.capabilities().as_ref().unwrap();
        assert_eq!(c.bounding().as_ref().unwrap(), &caps);
        assert_eq!(c.permitted().as_ref().unwrap(), &caps);
        assert!(c.ambient().as_ref().unwrap().is_empty());
        assert_eq!(p.no_new_privileges(), Some(true));
    }

    #[test]
    fn cap_add_drop_with_and_without_prefix() {
        let mut c = cfg();
        c.cap_add = vec!["NET_ADMIN".into(), "cap_sys_time".into()];
        c.cap_drop = vec!["CAP_KILL".into(), "chown".into()];
        let caps = caps_of(&generate_with(&c, &HostLimits::default()).unwrap());
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(caps.contains(&Capability::SysTime));
        assert!(!caps.contains(&Capability::Kill));
        assert!(!caps.contains(&Capability::Chown));
        assert_eq!(caps.len(), 14);
    }

    #[test]
    fn drop_all_then_add() {
        let mut c = cfg();
        c.cap_drop = vec!["ALL".into()];
        c.cap_add = vec!["NET_BIND_SERVICE".into()];
        let caps = caps_of(&generate_with(&c, &HostLimits::default()).unwrap());
        assert_eq!(
            caps.into_iter().collect::<Vec<_>>(),
            vec![Capability::NetBindService]
        );
    }

    #[test]
    fn unknown_capability_is_an_error() {
        let mut c = cfg();
        c.cap_add = vec!["CAP_FLY".into()];
        assert!(matches!(
            generate_with(&c, &HostLimits::default()),
            Err(SpecError::UnknownCapability(n)) if n == "CAP_FLY"
        ));
    }

    #[test]
    fn privileged_gets_the_callers_bounding_set() {
        let mut c = cfg();
        c.privileged = true;
        // Everything but CAP_SYS_RESOURCE (bit 24), as on this project's machines.
        let bounding = capabilities_in_mask(((1u64 << 41) - 1) & !(1u64 << 24));
        assert!(bounding.contains(&Capability::SysAdmin));
        let host = HostLimits::default().with_bounding(bounding);
        let caps = caps_of(&generate_with(&c, &host).unwrap());
        assert!(caps.contains(&Capability::SysAdmin));
        assert!(!caps.contains(&Capability::SysResource));
        // An explicit add outside the bounding set is kept (and fails the start loudly).
        let mut d = cfg();
        d.cap_add = vec!["SYS_RESOURCE".into()];
        let host = HostLimits::default().with_bounding(capabilities_in_mask(0));
        assert!(caps_of(&generate_with(&d, &host).unwrap()).contains(&Capability::SysResource));
    }

    #[test]
    fn masked_and_readonly_paths_unless_privileged() {
        let spec = generate_with(&cfg(), &HostLimits::default()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let masked = linux.masked_paths().as_ref().unwrap();
        assert!(masked.contains(&"/proc/kcore".to_string()));
        assert!(masked.contains(&"/sys/firmware".to_string()));
        assert_eq!(masked.len(), MASKED_PATHS.len());
        let ro = linux.readonly_paths().as_ref().unwrap();
        assert!(ro.contains(&"/proc/sysrq-trigger".to_string()));

        let mut p = cfg();
        p.privileged = true;
        let spec = generate_with(&p, &HostLimits::default()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.masked_paths().as_ref().unwrap().is_empty());
        assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
        let caps = caps_of(&spec);
        assert!(caps.contains(&Capability::SysAdmin));
        assert!(caps.len() > 30);
        assert_eq!(
            spec.process().as_ref().unwrap().no_new_privileges(),
            Some(false)
        );
        let dev = &linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap()[0];
        assert!(dev.allow());
    }

    #[test]
    fn no_new_privs_rule() {
        assert!(no_new_privs_for(None, false));
        assert!(no_new_privs_for(Some(false), false));
        assert!(!no_new_privs_for(Some(true), false));
        assert!(!no_new_privs_for(None, true));
        let mut c = cfg();
        c.no_new_privs = false;
        let spec = generate_with(&c, &HostLimits::default()).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().no_new_privileges(),
            Some(false)
        );
    }

    #[test]
    fn rlimits_never_exceed_host_hard_limit() {
        assert_eq!(clamp_rlimit(1_048_576, 1_048_576, 20000), (20000, 20000));
        assert_eq!(clamp_rlimit(1024, 4096, 20000), (1024, 4096));
        assert_eq!(clamp_rlimit(50000, 10, 20000), (10, 10));
        let mut c = cfg();
        c.rlimits = vec![
            RlimitSpec {
                name: "RLIMIT_NOFILE".into(),
                soft: 1 << 20,
                hard: 1 << 20,
            },
            RlimitSpec {
                name: "nproc".into(),
                soft: 100,
                hard: 200,
            },
        ];
        let host = HostLimits::from_pairs(&[("NOFILE", 20000)]).unwrap();
        let spec = generate_with(&c, &host).unwrap();
        let rl = spec.process().as_ref().unwrap().rlimits().clone().unwrap();
        assert_eq!(rl[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!((rl[0].soft(), rl[0].hard()), (20000, 20000));
        assert_eq!((rl[1].soft(), rl[1].hard()), (100, 200));
        c.rlimits[1].name = "bogus".into();
        assert!(matches!(
            generate_with(&c, &host),
            Err(SpecError::UnknownRlimit(_))
        ));
    }

    #[test]
    fn host_limits_reads_this_process() {
        let host = HostLimits::current();
        let (_, hard) = nix::sys::resource::getrlimit(R::RLIMIT_NOFILE).unwrap();
        assert_eq!(host.hard(PosixRlimitType::RlimitNofile), hard);
    }

    #[test]
    fn namespaces_new_host_and_path() {
        let mut c = cfg();
        c.hostname = Some("web-0".into());
        c.namespaces = Namespaces {
            net: NamespaceMode::Path("/run/x/ns/net".into()),
            ipc: NamespaceMode::Host,
            uts: NamespaceMode::Path("/run/x/ns/uts".into()),
            pid: NamespaceMode::New,
        };
        let spec = generate_with(&c, &HostLimits::default()).unwrap();
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let find = |t| ns.iter().find(|n| n.typ() == t);
        assert_eq!(
            find(LinuxNamespaceType::Network).unwrap().path(),
            &Some(PathBuf::from("/run/x/ns/net"))
        );
        assert!(find(LinuxNamespaceType::Ipc).is_none());
        assert!(find(LinuxNamespaceType::Pid).unwrap().path().is_none());
        assert!(find(LinuxNamespaceType::Mount).is_some());
        assert_eq!(spec.hostname(), &Some("web-0".to_string()));

        c.namespaces.uts = NamespaceMode::Host;
        let spec = generate_with(&c, &HostLimits::default()).unwrap();
        assert_eq!(spec.hostname(), &None);
    }

    #[test]
    fn process_fields_mounts_and_resources() {
        let mut c = cfg();
        c.args = vec!["/bin/echo".into(), "hi".into()];
        c.env = vec![("A".into(), "1".into()), ("B".into(), "x=y".into())];
        c.cwd = "/work".into();
        c.user = UserSpec {
            uid: 1000,
            gid: 2000,
            additional_gids: vec![3000, 4000],
        };
        c.readonly_rootfs = true;
        c.cgroup_path = Some("/podium-t/pod/c".into());
        c.resources = Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50000),
            cpu_period: Some(100000),
            memory_limit: Some(64 << 20),
            pids_limit: Some(100),
        };
        c.mounts = vec![
            MountSpec::Bind {
                source: "/var/data".into(),
                destination: "/data".into(),
                readonly: true,
            },
            MountSpec::Tmpfs {
                destination: "/cache".into(),
                size_bytes: Some(1 << 20),
                readonly: false,
            },
        ];
        let spec = generate_with(&c, &HostLimits::default()).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &c.args);
        assert_eq!(
            p.env().as_ref().unwrap(),
            &vec!["A=1".to_string(), "B=x=y".to_string()]
        );
        assert_eq!(p.cwd(), &PathBuf::from("/work"));
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().gid(), 2000);
        assert_eq!(p.user().additional_gids(), &Some(vec![3000, 4000]));
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.readonly(), Some(true));
        assert_eq!(root.path(), &PathBuf::from("/rootfs"));
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path(),
            &Some(PathBuf::from("/podium-t/pod/c"))
        );
        let res = linux.resources().as_ref().unwrap();
        let cpu = res.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (Some(512), Some(50000), Some(100000))
        );
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.pids().as_ref().unwrap().limit(), 100);
        let mounts = spec.mounts().as_ref().unwrap();
        let data = mounts
            .iter()
            .find(|m| m.destination() == &PathBuf::from("/data"))
            .unwrap();
        assert!(data.options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(data
            .options()
            .as_ref()
            .unwrap()
            .contains(&"rbind".to_string()));
        let cache = mounts
            .iter()
            .find(|m| m.destination() == &PathBuf::from("/cache"))
            .unwrap();
        assert!(cache
            .options()
            .as_ref()
            .unwrap()
            .contains(&"size=1048576".to_string()));
        // The standard set is there and /sys is read-only.
        let sys = mounts
            .iter()
            .find(|m| m.destination() == &PathBuf::from("/sys"))
            .unwrap();
        assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));
        // Round-trips through JSON as a runtime would read it.
        let json = serde_json::to_string(&spec).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn invalid_inputs_are_refused() {
        let mut c = cfg();
        c.args.clear();
        assert!(matches!(
            generate_with(&c, &HostLimits::default()),
            Err(SpecError::EmptyArgs)
        ));
        let mut c = cfg();
        c.rootfs = "rel".into();
        assert!(matches!(
            generate_with(&c, &HostLimits::default()),
            Err(SpecError::NotAbsolute {
                field: "rootfs",
                ..
            })
        ));
        let mut c = cfg();
        c.env = vec![("A=B".into(), "1".into())];
        assert!(matches!(
            generate_with(&c, &HostLimits::default()),
            Err(SpecError::InvalidEnv(_))
        ));
    }
}
