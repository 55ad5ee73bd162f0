//! `podium server`: opens the store, sets up certificates and tokens, bootstraps the
//! cluster objects, starts the controllers, this node's registration and the HTTPS API,
//! writes the kubeconfig, and stops cleanly on SIGTERM or SIGINT.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use podium_apiserver::auth::Authenticator;
use podium_apiserver::controllers::{self, BootstrapInfo};
use podium_apiserver::handlers::ApiState;
use podium_apiserver::registry::{parse_cidr, ClusterSettings, Registry};
use podium_apiserver::{pki, server};
use podium_store::sqlite::SqliteStore;
use podium_store::Store;

use crate::config::ServerArgs;
use crate::hostinfo;
use crate::node::NodeAgent;

/// How much change history watches can resume from.
const COMPACT_AFTER: Duration = Duration::from_secs(300);

fn store_path(args: &ServerArgs) -> anyhow::Result<PathBuf> {
    let ep = args.datastore_endpoint.trim();
    if ep.is_empty() {
        return Ok(args.data_dir.join("db").join("state.db"));
    }
    if let Some(p) = ep.strip_prefix("sqlite://") {
        return Ok(PathBuf::from(p));
    }
    bail!("--datastore-endpoint {ep:?}: only the embedded SQLite store (empty, or sqlite:///path) is supported yet; etcd comes later")
}

/// The kubeconfig for the admin: the CA, the server URL and the admin bearer token.
fn kubeconfig(server_url: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server_url}\n  name: podium\ncontexts:\n- context:\n    cluster: podium\n    user: admin\n  name: podium\ncurrent-context: podium\npreferences: {{}}\nusers:\n- name: admin\n  user:\n    token: {token}\n"
    )
}

fn first_service_ip(cidr: &str, offset: u32) -> anyhow::Result<String> {
    let (base, _) = parse_cidr(cidr).with_context(|| format!("invalid --service-cidr {cidr:?}"))?;
    Ok(std::net::Ipv4Addr::from(u32::from(base) + offset).to_string())
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    parse_cidr(&args.cluster_cidr)
        .with_context(|| format!("invalid --cluster-cidr {:?}", args.cluster_cidr))?;
    let kubernetes_ip = first_service_ip(&args.service_cidr, 1)?;
    let cluster_dns = match &args.cluster_dns {
        Some(d) => {
            d.parse::<IpAddr>()
                .with_context(|| format!("invalid --cluster-dns {d:?}"))?;
            d.clone()
        }
        None => first_service_ip(&args.service_cidr, 10)?,
    };
    let bind_ip: IpAddr = args
        .bind_address
        .parse()
        .with_context(|| format!("invalid --bind-address {:?}", args.bind_address))?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let node_name = args.node_name.clone().unwrap_or_else(hostinfo::hostname);
    let host_ips = hostinfo::ipv4_addresses();
    let advertise = match bind_ip {
        ip if !ip.is_unspecified() => ip.to_string(),
        _ => host_ips
            .first()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "127.0.0.1".into()),
    };

    // Store.
    let db = store_path(&args)?;
    if let Some(parent) = db.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&db).with_context(|| format!("opening store {}", db.display()))?,
    );

    // Certificates and tokens.
    let mut names: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        hostinfo::hostname(),
        node_name.clone(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{}", args.cluster_domain),
        kubernetes_ip.clone(),
        advertise.clone(),
    ];
    if !bind_ip.is_unspecified() {
        names.push(bind_ip.to_string());
    }
    names.extend(host_ips.iter().map(|ip| ip.to_string()));
    let pki = pki::load_or_create(&args.data_dir, &names).context("setting up certificates")?;
    let admin_token =
        pki::load_or_create_token(&args.data_dir.join("tls").join("admin.token"), None)?;
    let join_token =
        pki::load_or_create_token(&args.data_dir.join("token"), args.token.as_deref())?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let registry = Arc::new(Registry::new(
        store.clone(),
        ClusterSettings {
            service_cidr: args.service_cidr.clone(),
            cluster_domain: args.cluster_domain.clone(),
        },
    ));
    controllers::bootstrap(
        &registry,
        &BootstrapInfo {
            advertise_address: advertise.clone(),
            port: args.https_listen_port,
            ca_cert_pem: pki.ca_cert_pem.clone(),
        },
    )
    .await
    .context("creating the cluster's bootstrap objects")?;

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(controllers::run_namespace_controller(
        registry.clone(),
        pki.ca_cert_pem.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(compactor(store.clone(), shutdown_rx.clone())));
    let mut pod_logs = None;
    let mut host_release = None;
    if !args.disable_agent {
        let host_ip = if bind_ip.is_loopback() {
            host_ips
                .first()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| advertise.clone())
        } else {
            advertise.clone()
        };
        let pods = start_pod_agent(
            &args,
            &registry,
            &node_name,
            &host_ip,
            &cluster_dns,
            shutdown_rx.clone(),
        )
        .context("starting the node agent")?;
        pod_logs = Some(pods.logs);
        tasks.push(pods.task);
        host_release = Some(pods.release);
        let agent = NodeAgent {
            registry: registry.clone(),
            node_name: node_name.clone(),
            data_dir: args.data_dir.clone(),
            internal_ip: advertise.clone(),
            runs_pods: true,
            max_pods: args.max_pods,
        };
        tasks.push(tokio::spawn(agent.run(shutdown_rx.clone())));
    }

    let addr = SocketAddr::new(bind_ip, args.https_listen_port);
    let listener = server::bind(addr).await?;
    let tls = server::tls_acceptor(&pki.serving_cert_pem, &pki.serving_key_pem)?;
    let client_host = if bind_ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        bind_ip.to_string()
    };
    let client_host = if client_host.contains(':') {
        format!("[{client_host}]")
    } else {
        client_host
    };
    let server_url = format!("https://{client_host}:{}", args.https_listen_port);
    let state = Arc::new(ApiState {
        registry: registry.clone(),
        auth: Authenticator::new(admin_token.clone(), join_token),
        server_address: format!("{advertise}:{}", args.https_listen_port),
        ready: Default::default(),
        shutdown: shutdown_rx.clone(),
        pod_logs,
    });
    let serve = tokio::spawn(server::serve(
        listener,
        tls,
        state.clone(),
        shutdown_rx.clone(),
    ));

    let kc_path = args
        .write_kubeconfig
        .clone()
        .unwrap_or_else(|| args.data_dir.join("kubeconfig.yaml"));
    write_kubeconfig(
        &kc_path,
        &kubeconfig(&server_url, &pki.ca_cert_pem, &admin_token),
    )?;
    state.ready.store(true, Ordering::Relaxed);
    tracing::info!(
        "podium server ready in {:?}: {server_url}, node {node_name}, cluster DNS {cluster_dns}",
        started.elapsed()
    );
    println!("Wrote kubeconfig {}", kc_path.display());

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    state.ready.store(false, Ordering::Relaxed);
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), serve).await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    if let Some(r) = host_release {
        r.release_if_idle();
    }
    tracing::info!("stopped");
    Ok(())
}

struct PodAgent {
    task: tokio::task::JoinHandle<()>,
    logs: Arc<dyn podium_apiserver::handlers::PodLogs>,
    release: HostRelease,
}

/// What this instance holds on the host outside its data dir.
struct HostRelease {
    instance: String,
    run_root: PathBuf,
    runtime: Arc<dyn podium_runtime::ContainerRuntime>,
}

impl HostRelease {
    /// At shutdown: containers keep running (their shims own them), so nothing is touched
    /// while any remains; with none left, the instance's cgroup tree and run directory go.
    fn release_if_idle(&self) {
        match self.runtime.list() {
            Ok(ids) if ids.is_empty() => {}
            Ok(ids) => {
                tracing::info!("{} containers keep running; host resources kept", ids.len());
                return;
            }
            Err(e) => {
                tracing::warn!("listing containers at shutdown: {e}");
                return;
            }
        }
        if let Ok(layout) = podium_runtime::cgroup::CgroupLayout::host() {
            if let Err(e) = layout.remove(&format!("/{}", self.instance)) {
                tracing::warn!("removing cgroups of {}: {e}", self.instance);
            }
        }
        // Only empty directories: a leftover mount or file keeps the run root (and says so).
        if let Err(e) = remove_empty_dirs(&self.run_root) {
            tracing::warn!("removing {}: {e}", self.run_root.display());
        }
    }
}

/// Removes a tree of empty directories bottom-up; never removes files or crosses mounts
/// (rmdir fails on a mount point or a non-empty directory).
fn remove_empty_dirs(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_empty_dirs(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

/// Starts the pod side of the node agent: runtime, images, workers, status writer.
fn start_pod_agent(
    args: &ServerArgs,
    registry: &Arc<Registry>,
    node_name: &str,
    host_ip: &str,
    cluster_dns: &str,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<PodAgent> {
    use podium_agent::facts::{NodeAllocatable, NodeFacts};
    use podium_api::quantity::Quantity;
    use podium_runtime::log::Rotation;
    use podium_runtime::{LinuxRuntime, RuntimeOptions, ShimCommand};

    let instance = podium_agent::paths::instance_name(&args.data_dir);
    let layout =
        podium_agent::paths::Layout::new(&instance, &args.data_dir, Path::new("/run/podium"));
    std::fs::create_dir_all(&layout.run_root)
        .with_context(|| format!("creating {}", layout.run_root.display()))?;
    let runtime: Arc<dyn podium_runtime::ContainerRuntime> =
        Arc::new(LinuxRuntime::new(RuntimeOptions {
            instance: instance.clone(),
            root: layout.run_root.clone(),
            shim: ShimCommand::current_exe().context("locating the podium binary")?,
            backend: args.container_runtime.clone(),
            start_timeout: Duration::from_secs(20),
            log_rotation: Some(Rotation {
                max_size: args.container_log_max_size,
                max_files: args.container_log_max_files,
            }),
        }));
    let images = Arc::new(
        podium_image::ImageService::open(&args.data_dir).context("opening the image store")?,
    );
    let (disk_total, _) = hostinfo::disk_bytes(&args.data_dir);
    let allocatable = NodeAllocatable {
        cpu: Quantity::from_units(i64::try_from(hostinfo::cpu_count()).unwrap_or(1)),
        memory: Quantity::parse(&format!("{}Ki", hostinfo::memory_total_kib())).unwrap_or_default(),
        ephemeral_storage: Quantity::parse(&format!("{}Ki", disk_total / 1024)).unwrap_or_default(),
        pods: i64::from(args.max_pods),
    };
    let facts = NodeFacts {
        node_name: node_name.to_string(),
        hostname: hostinfo::hostname(),
        host_ips: vec![host_ip.to_string()],
        pod_ips: Vec::new(),
        cluster_dns: vec![cluster_dns.to_string()],
        cluster_domain: args.cluster_domain.clone(),
        allocatable,
        hosts_file: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        resolv_conf: std::fs::read_to_string("/etc/resolv.conf").ok(),
        cgroup_root: layout.cgroup_root(),
    };
    let api: Arc<dyn podium_agent::api::NodeApi> = Arc::new(podium_agent::api::RegistryApi::new(
        registry.clone(),
        node_name,
    ));
    let deps = Arc::new(podium_agent::worker::Deps {
        api,
        runtime: runtime.clone(),
        images: Arc::new(podium_agent::images::NodeImages::new(images)),
        status: podium_agent::status::StatusWriter::new(),
        volumes: podium_agent::volumes::VolumeManager::new(
            layout.pods_root.clone(),
            &layout.instance,
        ),
        layout: layout.clone(),
        facts,
        admitted: Default::default(),
        sync_frequency: args.sync_frequency,
        pod_pids_limit: (args.pod_max_pids > 0).then_some(args.pod_max_pids),
    });
    tracing::info!(
        "node agent: instance {instance}, run root {}, container runtime {}",
        layout.run_root.display(),
        args.container_runtime.as_arg()
    );
    let agent = podium_agent::manager::Agent::new(deps);
    Ok(PodAgent {
        task: tokio::spawn(agent.run(shutdown)),
        release: HostRelease {
            instance: instance.clone(),
            run_root: layout.run_root.clone(),
            runtime: runtime.clone(),
        },
        logs: Arc::new(podium_agent::pod_logs::NodeLogs { layout, runtime }),
    })
}

fn write_kubeconfig(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    pki::write_private(path, text.as_bytes())
        .with_context(|| format!("writing kubeconfig {}", path.display()))
}

/// Forgets change history older than COMPACT_AFTER, as kube-apiserver compacts etcd.
async fn compactor(store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) {
    let mut seen: std::collections::VecDeque<(std::time::Instant, i64)> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let Ok(rev) = store.current_revision().await else {
            continue;
        };
        let now = std::time::Instant::now();
        seen.push_back((now, rev));
        let mut target = None;
        while let Some((t, r)) = seen.front().copied() {
            if now.duration_since(t) >= COMPACT_AFTER {
                target = Some(r);
                seen.pop_front();
            } else {
                break;
            }
        }
        if let Some(r) = target {
            if let Err(e) = store.compact(r).await {
                tracing::warn!("compacting the store to revision {r}: {e}");
            }
        }
    }
}
