//! Control loops that run inside the server: bootstrap objects, the namespace lifecycle
//! (deleting a namespace deletes its contents, then the namespace), and the per-namespace
//! `default` ServiceAccount and `kube-root-ca.crt` ConfigMap.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;

use podium_api::resources::{self, ResourceInfo, RESOURCES};
use podium_api::{meta, ApiError};
use podium_store::{Filter, WatchEvent};

use crate::registry::{DeleteOptions, ListParams, Registry, WriteOptions};

/// Namespaces every cluster has.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

fn res(group: &str, plural: &str) -> Result<&'static ResourceInfo, ApiError> {
    resources::find(group, "v1", plural).ok_or(ApiError::UnknownPath)
}

async fn create_if_missing(
    reg: &Registry,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    obj: Value,
) -> Result<(), ApiError> {
    match reg.create(r, ns, obj, &WriteOptions::default()).await {
        Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What bootstrap needs to know about the server.
pub struct BootstrapInfo {
    /// The address other nodes and pods reach the API server at.
    pub advertise_address: String,
    pub port: u16,
    pub ca_cert_pem: String,
}

/// Creates the system namespaces and the `kubernetes` Service and Endpoints.
pub async fn bootstrap(reg: &Registry, info: &BootstrapInfo) -> Result<(), ApiError> {
    let nsr = res("", "namespaces")?;
    for ns in SYSTEM_NAMESPACES {
        create_if_missing(reg, nsr, None, json!({"metadata": {"name": ns}})).await?;
    }
    let svc = json!({
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": info.port}]},
    });
    create_if_missing(reg, res("", "services")?, Some("default"), svc).await?;
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": info.advertise_address}],
                     "ports": [{"name": "https", "port": info.port, "protocol": "TCP"}]}],
    });
    let epr = res("", "endpoints")?;
    match reg.get(epr, Some("default"), "kubernetes").await {
        Ok(current) if current.get("subsets") == endpoints.get("subsets") => {}
        Ok(_) => {
            reg.modify(epr, Some("default"), "kubernetes", None, |old| {
                let mut new = old.clone();
                new["subsets"] = endpoints["subsets"].clone();
                Ok(Some(new))
            })
            .await?;
        }
        Err(ApiError::NotFound(_)) => {
            create_if_missing(reg, epr, Some("default"), endpoints.clone()).await?
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Makes one namespace what it should be: its defaults while active; emptied, finalized
/// and removed while terminating. Returns true when work remains (retry later).
async fn reconcile_namespace(
    reg: &Registry,
    ns: &Value,
    ca_cert_pem: &str,
) -> Result<bool, ApiError> {
    let name = meta::name(ns).to_string();
    if ns.pointer("/metadata/deletionTimestamp").is_none() {
        let sa = json!({"metadata": {"name": "default", "namespace": name}});
        create_if_missing(reg, res("", "serviceaccounts")?, Some(&name), sa).await?;
        let cm = json!({"metadata": {"name": "kube-root-ca.crt", "namespace": name},
                        "data": {"ca.crt": ca_cert_pem}});
        create_if_missing(reg, res("", "configmaps")?, Some(&name), cm).await?;
        return Ok(false);
    }
    // Terminating: delete everything inside, then drop the finalizer and the namespace.
    let mut remaining = 0usize;
    for r in RESOURCES.iter().filter(|r| r.namespaced()) {
        let listed = reg.list(r, Some(&name), &ListParams::default()).await?;
        for item in &listed.items {
            remaining += 1;
            match reg
                .delete(r, Some(&name), meta::name(item), &DeleteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::NotFound(_)) => {}
                Err(e) => tracing::warn!(
                    "namespace {name}: deleting {} {}: {e}",
                    r.plural,
                    meta::name(item)
                ),
            }
        }
    }
    if remaining > 0 {
        // Check again: graceful deletions finish later.
        let left: usize = {
            let mut n = 0;
            for r in RESOURCES.iter().filter(|r| r.namespaced()) {
                n += reg
                    .list(r, Some(&name), &ListParams::default())
                    .await?
                    .items
                    .len();
            }
            n
        };
        if left > 0 {
            return Ok(true);
        }
    }
    let nsr = res("", "namespaces")?;
    match reg
        .modify(nsr, None, &name, Some("finalize"), |old| {
            let mut new = old.clone();
            new["spec"]["finalizers"] = json!([]);
            Ok(Some(new))
        })
        .await
    {
        Ok(_) | Err(ApiError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs the namespace controller until `shutdown`.
pub async fn run_namespace_controller(
    reg: Arc<Registry>,
    ca_cert_pem: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let nsr = match res("", "namespaces") {
        Ok(r) => r,
        Err(_) => return,
    };
    loop {
        // List, reconcile everything, then follow changes; resync every few seconds while
        // some namespace is still terminating.
        let listed = match reg.list(nsr, None, &ListParams::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("namespace controller: list failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut pending = false;
        for ns in &listed.items {
            match reconcile_namespace(&reg, ns, &ca_cert_pem).await {
                Ok(p) => pending |= p,
                Err(e) => {
                    tracing::warn!("namespace controller: {}: {e}", meta::name(ns));
                    pending = true;
                }
            }
        }
        let mut stream = match reg
            .store()
            .watch("/registry/namespaces/", listed.revision, Filter::default())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("namespace controller: watch failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let resync = if pending {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(30)
        };
        let deadline = tokio::time::sleep(resync);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = &mut deadline => break,
                ev = stream.next() => match ev {
                    Some(Ok(WatchEvent::Added(ns))) | Some(Ok(WatchEvent::Modified(ns))) => {
                        if let Err(e) = reconcile_namespace(&reg, &ns, &ca_cert_pem).await {
                            tracing::warn!("namespace controller: {}: {e}", meta::name(&ns));
                        }
                        if ns.pointer("/metadata/deletionTimestamp").is_some() {
                            // Terminating namespaces need a quick resync.
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
            }
        }
    }
}
