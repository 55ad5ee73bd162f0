//! The registry: the one place where objects are created, read, changed and deleted with
//! Kubernetes semantics — server-set metadata, defaulting, validation, preconditions,
//! graceful deletion and finalizers. HTTP handlers and in-process components (controllers,
//! the node agent, the event recorder) all write through it, so every write gets the same
//! checks and nothing unvalidated reaches the store.

use std::net::Ipv4Addr;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde_json::{json, Value};

use podium_api::admission::{self, FieldValidation};
use podium_api::patch::{self, PatchType};
use podium_api::resources::{self, ResourceInfo};
use podium_api::{meta, ApiError, FieldError, FieldPath};
use podium_store::{
    FieldSelector, Filter, LabelSelector, ListOptions, Preconditions, Store, StoreError,
};

use crate::keys::{list_prefix, object_key};

/// Cluster-wide settings the registry needs (service IPs, DNS domain).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The service network, e.g. 10.43.0.0/16; its first address is the `kubernetes` service.
    pub service_cidr: String,
    pub cluster_domain: String,
}

/// How a write treats its input.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub field_validation: FieldValidation,
    pub field_manager: Option<String>,
    pub dry_run: bool,
    pub force: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            field_validation: FieldValidation::Strict,
            field_manager: None,
            dry_run: false,
            force: false,
        }
    }
}

/// A written object and the warnings to send back (`Warning:` headers).
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    /// True when the write created the object (201 rather than 200).
    pub created: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub preconditions: Preconditions,
    pub propagation_policy: Option<String>,
    pub dry_run: bool,
}

/// Which objects a list selects and how it pages.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: Option<usize>,
    pub continue_after: Option<String>,
}

/// A list result: items and the revision they were read at.
#[derive(Debug, Clone)]
pub struct Listed {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_after: Option<String>,
    pub remaining: Option<u64>,
}

pub struct Registry {
    store: Arc<dyn Store>,
    settings: ClusterSettings,
}

/// Maps a store error to the API error about `r`/`name`.
pub fn store_error(r: &ResourceInfo, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound { .. } => ApiError::not_found(r.group, r.plural, name),
        StoreError::AlreadyExists { .. } => ApiError::already_exists(r.group, r.plural, name),
        StoreError::Conflict { .. } => ApiError::conflict(r.group, r.plural, name),
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::Expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::InvalidSelector { selector, detail } => ApiError::BadRequest(format!(
            "unable to parse requirement {selector:?}: {detail}"
        )),
        other => ApiError::Internal(other.to_string()),
    }
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses a resourceVersion string; Kubernetes answers 400 for non-numeric ones.
pub fn parse_resource_version(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>()
        .map_err(|_| ApiError::BadRequest(format!("invalid resource version {rv:?}")))
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated_name(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let suffix: String = (0..5)
        .map(|_| NAME_CHARS[rng.gen_range(0..NAME_CHARS.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

fn unknown_field_error(path: &str) -> FieldError {
    FieldError::new(
        FieldPath::root(path),
        podium_api::FieldErrorKind::Unknown,
        "",
    )
}

/// Checks `kind`/`apiVersion` of a body against the resource, filling them when absent.
fn check_type(r: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    };
    let api_version = r.api_version();
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if k != r.kind => {
            return Err(ApiError::BadRequest(format!(
                "the kind of the body ({k}) does not match the resource ({})",
                r.kind
            )))
        }
        _ => {}
    }
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != api_version => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )))
        }
        _ => {}
    }
    map.insert("kind".into(), json!(r.kind));
    map.insert("apiVersion".into(), json!(api_version));
    Ok(())
}

/// Rejects `errors` as a 422 about `obj`.
fn reject(r: &ResourceInfo, obj: &Value, errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        return Ok(());
    }
    let name = match meta::name(obj) {
        "" => meta::generate_name(obj),
        n => n,
    };
    Err(ApiError::invalid(r.group, r.kind, name, errors))
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, settings: ClusterSettings) -> Self {
        Registry { store, settings }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    pub async fn get(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.store
            .get(&object_key(r, ns, name))
            .await
            .map_err(|e| store_error(r, name, e))
    }

    pub async fn list(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        p: &ListParams,
    ) -> Result<Listed, ApiError> {
        let filter = parse_filter(r, &p.label_selector, &p.field_selector)?;
        let res = self
            .store
            .list(
                &list_prefix(r, ns),
                &ListOptions {
                    filter,
                    limit: p.limit,
                    continue_after: p.continue_after.clone(),
                },
            )
            .await
            .map_err(|e| store_error(r, "", e))?;
        Ok(Listed {
            items: res.items,
            revision: res.revision,
            continue_after: res.continue_after,
            remaining: res.remaining,
        })
    }

    async fn check_namespace_writable(&self, ns: &str) -> Result<(), ApiError> {
        let nsr = namespaces();
        let obj = self
            .store
            .get(&object_key(nsr, None, ns))
            .await
            .map_err(|e| store_error(nsr, ns, e))?;
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::Forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )));
        }
        Ok(())
    }

    /// Creates an object (POST).
    pub async fn create(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        check_type(r, &mut obj)?;
        let warnings = self.check_fields(r, &mut obj, opts)?;
        // The namespace comes from the URL; a different one in the body is an error.
        if r.namespaced() {
            let Some(ns) = ns else {
                return Err(ApiError::BadRequest(
                    "a namespace is required to create this resource".into(),
                ));
            };
            match meta::namespace(&obj) {
                "" => meta::set(&mut obj, "namespace", json!(ns)),
                body_ns if body_ns != ns => {
                    return Err(ApiError::BadRequest(format!(
                        "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
                    )))
                }
                _ => {}
            }
        } else {
            meta::metadata_mut(&mut obj).remove("namespace");
        }
        let generated = meta::name(&obj).is_empty() && !meta::generate_name(&obj).is_empty();
        if generated {
            let n = generated_name(meta::generate_name(&obj));
            meta::set(&mut obj, "name", json!(n));
        }
        {
            let m = meta::metadata_mut(&mut obj);
            for f in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                m.remove(f);
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        }
        admission::default_on_create(r, &mut obj);
        let mut errors = admission::validate_create(r, &obj);
        if generated {
            blame_generate_name(&mut errors, &obj);
        }
        if errors.is_empty() {
            errors = admission::unsupported_fields(r, &obj);
        }
        reject(r, &obj, errors)?;
        if let Some(ns) = ns.filter(|_| r.namespaced()) {
            self.check_namespace_writable(ns).await?;
        }
        if r.kind == "Service" {
            self.allocate_cluster_ip(ns.unwrap_or("default"), &mut obj)
                .await?;
        }
        let name = meta::name(&obj).to_string();
        if opts.dry_run {
            return Ok(Written {
                object: obj,
                warnings,
                created: true,
            });
        }
        let stored = self
            .store
            .create(&object_key(r, ns, &name), obj)
            .await
            .map_err(|e| store_error(r, &name, e))?;
        Ok(Written {
            object: stored,
            warnings,
            created: true,
        })
    }

    /// Rejects values of the wrong type (always) and unknown fields (by the field
    /// validation mode); returns the warnings to send for unknown fields under Warn.
    fn check_fields(
        &self,
        r: &ResourceInfo,
        obj: &mut Value,
        opts: &WriteOptions,
    ) -> Result<Vec<String>, ApiError> {
        reject(r, obj, admission::decode_errors(r, obj))?;
        let unknown = admission::unknown_fields(r, obj);
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        if opts.field_validation == FieldValidation::Strict {
            let errors = unknown.iter().map(|p| unknown_field_error(p)).collect();
            reject(r, obj, errors)?;
        }
        // Unknown fields are dropped, never stored.
        admission::prune_unknown_fields(r, obj);
        Ok(match opts.field_validation {
            FieldValidation::Warn => unknown
                .iter()
                .map(|p| format!("unknown field {p:?}"))
                .collect(),
            _ => Vec::new(),
        })
    }

    /// Replaces an object (PUT), on the main resource or a subresource (`status`,
    /// `finalize`).
    pub async fn update(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        mut new: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        check_type(r, &mut new)?;
        match meta::name(&new) {
            "" => meta::set(&mut new, "name", json!(name)),
            n if n != name => {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            _ => {}
        }
        if r.namespaced() {
            if let Some(ns) = ns {
                match meta::namespace(&new) {
                    "" => meta::set(&mut new, "namespace", json!(ns)),
                    b if b != ns => {
                        return Err(ApiError::BadRequest(format!(
                            "the namespace of the provided object ({b}) does not match the namespace sent on the request ({ns})"
                        )))
                    }
                    _ => {}
                }
            }
        }
        let client_rv = match meta::resource_version(&new) {
            "" => None,
            rv => Some(parse_resource_version(rv)?),
        };
        self.write_loop(r, ns, name, sub, client_rv, opts, |_old| Ok(new.clone()))
            .await
    }

    /// Applies a patch (PATCH). An apply patch creates the object when it does not exist.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        patch_type: PatchType,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let manager = opts.field_manager.clone().unwrap_or_default();
        if patch_type == PatchType::Apply {
            if manager.is_empty() {
                return Err(ApiError::BadRequest(
                    "PATCH requests of type apply must specify fieldManager".into(),
                ));
            }
            let applied: Value = serde_norway::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
            match self.get(r, ns, name).await {
                Err(ApiError::NotFound(_)) if sub.is_none() => {
                    let obj =
                        patch::server_side_apply(r.kind, None, &applied, &manager, opts.force)
                            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                    let mut obj = obj;
                    if meta::name(&obj).is_empty() {
                        meta::set(&mut obj, "name", json!(name));
                    }
                    return self.create(r, ns, obj, opts).await;
                }
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            let force = opts.force;
            return self
                .write_loop(r, ns, name, sub, None, opts, move |old| {
                    patch::server_side_apply(r.kind, Some(old), &applied, &manager, force)
                        .map_err(|e| ApiError::BadRequest(e.to_string()))
                })
                .await;
        }
        let body = body.to_vec();
        // A patch that names a resourceVersion is a precondition on it.
        let patched_rv = |old: &Value| -> Result<Value, ApiError> {
            patch::apply_patch(r.kind, old, patch_type, &body).map_err(|e| {
                if e.is_invalid_result() {
                    ApiError::Unprocessable(e.to_string())
                } else {
                    ApiError::BadRequest(e.to_string())
                }
            })
        };
        self.write_loop(r, ns, name, sub, None, opts, patched_rv)
            .await
    }

    /// Read-modify-write with retry on conflict: `change` turns the current object into the
    /// desired one. `client_rv`, when given, is a precondition and is never retried.
    #[allow(clippy::too_many_arguments)]
    async fn write_loop(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        client_rv: Option<i64>,
        opts: &WriteOptions,
        mut change: impl FnMut(&Value) -> Result<Value, ApiError>,
    ) -> Result<Written, ApiError> {
        let key = object_key(r, ns, name);
        for _attempt in 0..16 {
            let old = self
                .store
                .get(&key)
                .await
                .map_err(|e| store_error(r, name, e))?;
            let old_rv = parse_resource_version(meta::resource_version(&old))?;
            if let Some(want) = client_rv {
                if want != old_rv {
                    return Err(ApiError::conflict(r.group, r.plural, name));
                }
            }
            let mut desired = change(&old)?;
            check_type(r, &mut desired)?;
            let warnings = self.check_fields(r, &mut desired, opts)?;
            // A patch may carry a resourceVersion: then it is a precondition too.
            let patch_rv = match meta::resource_version(&desired) {
                "" => None,
                rv => Some(parse_resource_version(rv)?),
            };
            if client_rv.is_none() {
                if let Some(p) = patch_rv {
                    if p != old_rv {
                        return Err(ApiError::conflict(r.group, r.plural, name));
                    }
                }
            }
            let mut merged = merge_for_update(r, sub, &old, desired);
            if sub.is_none() {
                admission::default_on_update(r, &mut merged);
            }
            let errors = if sub.is_some() {
                Vec::new()
            } else {
                let mut e = admission::validate_update(r, &old, &merged);
                if e.is_empty() {
                    e = admission::unsupported_fields(r, &merged);
                }
                e
            };
            reject(r, &merged, errors)?;
            if same_ignoring_rv(&old, &merged) {
                return Ok(Written {
                    object: old,
                    warnings: warnings.clone(),
                    created: false,
                });
            }
            if opts.dry_run {
                return Ok(Written {
                    object: merged,
                    warnings: warnings.clone(),
                    created: false,
                });
            }
            // An object being deleted whose last finalizer was just removed is deleted now.
            if finalized(r, &merged) {
                let pre = Preconditions {
                    resource_version: Some(old_rv),
                    uid: None,
                };
                match self.store.delete(&key, &pre).await {
                    Ok(obj) => {
                        return Ok(Written {
                            object: obj,
                            warnings: warnings.clone(),
                            created: false,
                        })
                    }
                    Err(StoreError::Conflict { .. }) if client_rv.is_none() => continue,
                    Err(e) => return Err(store_error(r, name, e)),
                }
            }
            let pre = Preconditions {
                resource_version: Some(old_rv),
                uid: None,
            };
            match self.store.update(&key, merged, &pre).await {
                Ok(obj) => {
                    return Ok(Written {
                        object: obj,
                        warnings: warnings.clone(),
                        created: false,
                    })
                }
                Err(StoreError::Conflict { .. }) if client_rv.is_none() => continue,
                Err(e) => return Err(store_error(r, name, e)),
            }
        }
        Err(ApiError::conflict(r.group, r.plural, name))
    }

    /// In-process read-modify-write for server components: `change` returns None to leave
    /// the object as it is.
    pub async fn modify(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        mut change: impl FnMut(&Value) -> Result<Option<Value>, ApiError>,
    ) -> Result<Value, ApiError> {
        let opts = WriteOptions::default();
        let w = self
            .write_loop(r, ns, name, sub, None, &opts, |old| {
                Ok(change(old)?.unwrap_or_else(|| old.clone()))
            })
            .await?;
        Ok(w.object)
    }

    /// Deletes an object (DELETE): graceful for pods on a node, pending while finalizers
    /// remain, immediate otherwise. Returns the object as deleted or as marked.
    pub async fn delete(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let key = object_key(r, ns, name);
        for _attempt in 0..16 {
            let old = self
                .store
                .get(&key)
                .await
                .map_err(|e| store_error(r, name, e))?;
            if let Some(uid) = &opts.preconditions.uid {
                if uid != meta::uid(&old) {
                    return Err(ApiError::Conflict {
                        target: podium_api::error::Target::new(r.group, r.plural, name),
                        message: format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            meta::uid(&old)
                        ),
                    });
                }
            }
            let old_rv = parse_resource_version(meta::resource_version(&old))?;
            if let Some(rv) = opts.preconditions.resource_version {
                if rv != old_rv {
                    return Err(ApiError::Conflict {
                        target: podium_api::error::Target::new(r.group, r.plural, name),
                        message: format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {old_rv}"
                        ),
                    });
                }
            }
            let pending = match deletion_plan(r, &old, opts.grace_period_seconds) {
                DeletionPlan::Now => None,
                DeletionPlan::Mark { grace } => Some(mark_deleting(&old, grace)),
            };
            if opts.dry_run {
                return Ok(pending.unwrap_or(old));
            }
            let pre = Preconditions {
                resource_version: Some(old_rv),
                uid: None,
            };
            let res = match pending {
                None => self.store.delete(&key, &pre).await,
                Some(marked) if same_ignoring_rv(&old, &marked) => return Ok(old),
                Some(marked) => self.store.update(&key, marked, &pre).await,
            };
            match res {
                Ok(obj) => return Ok(obj),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(r, name, e)),
            }
        }
        Err(ApiError::conflict(r.group, r.plural, name))
    }

    /// Deletes every object a list selects; returns what was deleted or marked.
    pub async fn delete_collection(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        p: &ListParams,
        opts: &DeleteOptions,
    ) -> Result<Listed, ApiError> {
        let listed = self.list(r, ns, p).await?;
        let mut out = Vec::with_capacity(listed.items.len());
        for item in &listed.items {
            let item_ns = (!meta::namespace(item).is_empty()).then(|| meta::namespace(item));
            match self.delete(r, item_ns, meta::name(item), opts).await {
                Ok(v) => out.push(v),
                Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Listed {
            items: out,
            ..listed
        })
    }

    /// `POST pods/<name>/binding`: assigns the pod to a node, once.
    pub async fn bind(&self, ns: &str, name: &str, binding: &Value) -> Result<Value, ApiError> {
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if node.is_empty() {
            return Err(ApiError::invalid(
                "",
                "Binding",
                name,
                vec![FieldError::required(
                    FieldPath::root("target").child("name"),
                    "",
                )],
            ));
        }
        let pods = pods();
        self.modify(pods, Some(ns), name, Some("binding"), |old| {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError::Conflict {
                    target: podium_api::error::Target::new("", "pods", name),
                    message: format!("pod {name} is being deleted, cannot be assigned to a host"),
                });
            }
            match old.pointer("/spec/nodeName").and_then(Value::as_str) {
                Some(n) if !n.is_empty() => Err(ApiError::Conflict {
                    target: podium_api::error::Target::new("", "pods", name),
                    message: format!("pod {name} is already assigned to node {n:?}"),
                }),
                _ => {
                    let mut new = old.clone();
                    new["spec"]["nodeName"] = json!(node);
                    set_condition(&mut new, "PodScheduled", "True", None, None);
                    Ok(Some(new))
                }
            }
        })
        .await?;
        Ok(podium_api::error::success_status(
            json!({"name": name, "kind": "pods"}),
        ))
    }

    /// Gives a Service its cluster IP: the first address of the service network for the
    /// `kubernetes` service, a free random one otherwise; a requested one must be free.
    async fn allocate_cluster_ip(&self, ns: &str, svc: &mut Value) -> Result<(), ApiError> {
        let (base, prefix) = parse_cidr(&self.settings.service_cidr).ok_or_else(|| {
            ApiError::Internal(format!("bad service CIDR {}", self.settings.service_cidr))
        })?;
        let requested = svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let svc_type = svc
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        if requested == "None" || svc_type == "ExternalName" {
            return Ok(());
        }
        let used: Vec<String> = self
            .store
            .list("/registry/services/", &ListOptions::default())
            .await
            .map_err(|e| store_error(services(), "", e))?
            .items
            .iter()
            .filter_map(|s| {
                s.pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        let size: u32 = if prefix >= 32 {
            1
        } else {
            1u32 << (32 - prefix)
        };
        let field = FieldPath::root("spec").child("clusterIP");
        let ip = if !requested.is_empty() {
            let ip: Ipv4Addr = requested.parse().map_err(|_| {
                ApiError::invalid(
                    "",
                    "Service",
                    meta::name(svc),
                    vec![FieldError::invalid(
                        field.clone(),
                        requested.clone(),
                        "must be a valid IP address",
                    )],
                )
            })?;
            let off = u32::from(ip).wrapping_sub(u32::from(base));
            if off == 0 || off >= size {
                return Err(ApiError::invalid(
                    "",
                    "Service",
                    meta::name(svc),
                    vec![FieldError::invalid(
                        field,
                        requested.clone(),
                        format!(
                            "provided IP is not in the valid range. The range of valid IPs is {}",
                            self.settings.service_cidr
                        ),
                    )],
                ));
            }
            if used.contains(&requested) {
                return Err(ApiError::invalid(
                    "",
                    "Service",
                    meta::name(svc),
                    vec![FieldError::invalid(
                        field,
                        requested.clone(),
                        "provided IP is already allocated",
                    )],
                ));
            }
            ip
        } else if ns == "default" && meta::name(svc) == "kubernetes" {
            Ipv4Addr::from(u32::from(base) + 1)
        } else {
            let mut rng = rand::thread_rng();
            let mut found = None;
            for _ in 0..4096 {
                // Skip the network address, the kubernetes service (.1) and the broadcast.
                let off = rng.gen_range(2..size.saturating_sub(1).max(3));
                let cand = Ipv4Addr::from(u32::from(base) + off);
                if !used.contains(&cand.to_string()) {
                    found = Some(cand);
                    break;
                }
            }
            found.ok_or_else(|| ApiError::Internal("no free service IP left".into()))?
        };
        svc["spec"]["clusterIP"] = json!(ip.to_string());
        svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        Ok(())
    }
}

/// A generated name is only as valid as its prefix: report name errors against
/// `metadata.generateName`, which is what the user wrote.
fn blame_generate_name(errors: &mut [FieldError], obj: &Value) {
    let prefix = meta::generate_name(obj).to_string();
    for e in errors.iter_mut() {
        if e.field.as_str() == "metadata.name" {
            e.field = FieldPath::root("metadata").child("generateName");
            if let podium_api::FieldErrorKind::Invalid(v) = &mut e.kind {
                *v = json!(prefix);
            }
        }
    }
}

/// Parses `a.b.c.d/n`.
pub fn parse_cidr(cidr: &str) -> Option<(Ipv4Addr, u32)> {
    let (ip, prefix) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    if prefix > 32 {
        return None;
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Some((Ipv4Addr::from(u32::from(ip) & mask), prefix))
}

pub fn parse_filter(r: &ResourceInfo, labels: &str, fields: &str) -> Result<Filter, ApiError> {
    let labels = LabelSelector::parse(labels).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let fields = FieldSelector::parse(fields).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    for req in fields.requirements() {
        if !resources::supports_field_label(r, &req.field) {
            return Err(ApiError::BadRequest(format!(
                "field label not supported: {}",
                req.field
            )));
        }
    }
    Ok(Filter { labels, fields })
}

fn namespaces() -> &'static ResourceInfo {
    resources::find("", "v1", "namespaces").expect("namespaces are in the resource table")
}
fn pods() -> &'static ResourceInfo {
    resources::find("", "v1", "pods").expect("pods are in the resource table")
}
fn services() -> &'static ResourceInfo {
    resources::find("", "v1", "services").expect("services are in the resource table")
}

/// Compares two objects ignoring metadata.resourceVersion and managedFields timestamps.
fn same_ignoring_rv(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

/// Builds the object to store from the current one and the desired one: metadata the
/// server owns is kept, and each of main resource and subresource changes only its part.
fn merge_for_update(r: &ResourceInfo, sub: Option<&str>, old: &Value, desired: Value) -> Value {
    match sub {
        Some("status") => {
            let mut out = old.clone();
            match desired.get("status") {
                Some(s) => out["status"] = s.clone(),
                None => {
                    if let Some(m) = out.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            out
        }
        // The binding subresource sets the node and the PodScheduled condition only.
        Some("binding") => {
            let mut out = old.clone();
            out["spec"]["nodeName"] = desired
                .pointer("/spec/nodeName")
                .cloned()
                .unwrap_or(Value::Null);
            if let Some(s) = desired.get("status") {
                out["status"] = s.clone();
            }
            out
        }
        Some("finalize") => {
            let mut out = old.clone();
            out["spec"]["finalizers"] = desired
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or_else(|| json!([]));
            out
        }
        _ => {
            let mut out = desired;
            let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
            let m = meta::metadata_mut(&mut out);
            for f in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(f) {
                    Some(v) => {
                        m.insert(f.to_string(), v.clone());
                    }
                    None => {
                        m.remove(f);
                    }
                }
            }
            m.remove("resourceVersion");
            if r.has_subresource("status") {
                match old.get("status") {
                    Some(s) => out["status"] = s.clone(),
                    None => {
                        if let Some(o) = out.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            out
        }
    }
}

/// True when an object marked for deletion has no finalizers left (and, for namespaces,
/// no spec finalizers), so it can go.
fn finalized(r: &ResourceInfo, obj: &Value) -> bool {
    if obj.pointer("/metadata/deletionTimestamp").is_none() {
        return false;
    }
    let empty = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
    };
    if !empty("/metadata/finalizers") {
        return false;
    }
    match r.kind {
        "Namespace" => empty("/spec/finalizers"),
        // Pods on a node are removed by their node agent once their containers are gone;
        // others (unbound, terminal, or with no grace left) go now.
        "Pod" => matches!(
            deletion_plan(
                r,
                obj,
                obj.pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
            ),
            DeletionPlan::Now
        ),
        _ => true,
    }
}

enum DeletionPlan {
    Now,
    Mark { grace: i64 },
}

fn deletion_plan(r: &ResourceInfo, obj: &Value, grace: Option<i64>) -> DeletionPlan {
    let has_finalizers = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    match r.kind {
        "Pod" => {
            let grace = grace
                .or_else(|| {
                    obj.pointer("/metadata/deletionGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .or_else(|| {
                    obj.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(30)
                .max(0);
            let on_node = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let terminal = matches!(
                obj.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded") | Some("Failed")
            );
            if (grace == 0 || !on_node || terminal) && !has_finalizers {
                DeletionPlan::Now
            } else {
                DeletionPlan::Mark { grace }
            }
        }
        "Namespace" => DeletionPlan::Mark { grace: 0 },
        _ if has_finalizers => DeletionPlan::Mark { grace: 0 },
        _ => DeletionPlan::Now,
    }
}

/// Sets deletionTimestamp (now + grace) and deletionGracePeriodSeconds; a later, shorter
/// grace period may only bring the deadline forward.
fn mark_deleting(obj: &Value, grace: i64) -> Value {
    let mut out = obj.clone();
    let deadline = Utc::now() + chrono::Duration::seconds(grace);
    let current = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    let already = obj.pointer("/metadata/deletionTimestamp").is_some();
    if !already || current.is_some_and(|c| grace < c) {
        let m = meta::metadata_mut(&mut out);
        m.insert(
            "deletionTimestamp".into(),
            json!(deadline.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
    }
    if obj.get("kind").and_then(Value::as_str) == Some("Namespace") {
        out["status"]["phase"] = json!("Terminating");
    }
    out
}

/// Sets (or replaces) a condition of `status.conditions`.
pub fn set_condition(
    obj: &mut Value,
    ty: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let now = now_rfc3339();
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let conds = obj["status"]["conditions"]
        .as_array_mut()
        .expect("conditions ensured above");
    let mut cond =
        json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        cond["reason"] = json!(r);
    }
    if let Some(m) = message {
        cond["message"] = json!(m);
    }
    match conds.iter_mut().find(|c| c["type"] == ty) {
        Some(c) => {
            if c["status"] == status {
                cond["lastTransitionTime"] = c["lastTransitionTime"].clone();
            }
            *c = cond;
        }
        None => conds.push(cond),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            parse_cidr("10.43.0.0/16"),
            Some((Ipv4Addr::new(10, 43, 0, 0), 16))
        );
        assert_eq!(
            parse_cidr("10.43.5.7/16"),
            Some((Ipv4Addr::new(10, 43, 0, 0), 16))
        );
        assert_eq!(parse_cidr("nope"), None);
    }

    #[test]
    fn pod_deletion_plans() {
        let pods = pods();
        let unbound = json!({"spec": {}});
        assert!(matches!(
            deletion_plan(pods, &unbound, None),
            DeletionPlan::Now
        ));
        let bound = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 5}});
        assert!(matches!(
            deletion_plan(pods, &bound, None),
            DeletionPlan::Mark { grace: 5 }
        ));
        assert!(matches!(
            deletion_plan(pods, &bound, Some(0)),
            DeletionPlan::Now
        ));
        let done = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert!(matches!(
            deletion_plan(pods, &done, None),
            DeletionPlan::Now
        ));
    }

    #[test]
    fn update_keeps_server_owned_metadata_and_status() {
        let pods = pods();
        let old = json!({"metadata": {"name": "a", "uid": "u1", "creationTimestamp": "t", "resourceVersion": "5"}, "spec": {"x": 1}, "status": {"phase": "Running"}});
        let desired = json!({"metadata": {"name": "a", "uid": "evil", "labels": {"l": "v"}}, "spec": {"x": 2}, "status": {"phase": "Failed"}});
        let m = merge_for_update(pods, None, &old, desired.clone());
        assert_eq!(m["metadata"]["uid"], "u1");
        assert_eq!(m["metadata"]["labels"]["l"], "v");
        assert_eq!(m["spec"]["x"], 2);
        assert_eq!(m["status"]["phase"], "Running");
        let s = merge_for_update(pods, Some("status"), &old, desired);
        assert_eq!(s["status"]["phase"], "Failed");
        assert_eq!(s["spec"]["x"], 1);
    }

    #[test]
    fn conditions_replace_by_type() {
        let mut o = json!({});
        set_condition(&mut o, "PodScheduled", "True", None, None);
        set_condition(&mut o, "PodScheduled", "False", Some("Unschedulable"), None);
        assert_eq!(o["status"]["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(o["status"]["conditions"][0]["reason"], "Unschedulable");
    }
}
