//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! into the JSON object Kubernetes would serve for them.
//!
//! kubectl 1.32's typed clients send protobuf for `create secret`, `create configmap`,
//! `create namespace`, `create serviceaccount`, `create service` and `create token`, and
//! `drain` sends Evictions and DeleteOptions the same way. The body is the 4-byte magic
//! `k8s\0` followed by a `runtime.Unknown` envelope whose `raw` field holds the object's
//! own protobuf. `k8s-pb` gives the prost message types but no serde support, so the
//! conversion to JSON is written by hand, per kind, following the Go JSON field names and
//! `omitempty` rules. Kinds without a conversion are refused with
//! [`ProtobufError::UnsupportedKind`] (415 UnsupportedMediaType).
//!
//! Error messages never contain field values: Secret data must not leak into logs.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat};
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Map, Value};

/// The prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// 400: the body lacks the `k8s\0` prefix.
    #[error("the protobuf body does not start with the Kubernetes magic prefix \"k8s\\x00\"")]
    MissingMagic,
    /// 400: the `runtime.Unknown` envelope does not decode.
    #[error("the protobuf envelope (runtime.Unknown) is malformed: {0}")]
    Envelope(String),
    /// 400: the envelope names no kind.
    #[error("the protobuf envelope has no apiVersion/kind")]
    MissingTypeMeta,
    /// 415: the envelope's raw bytes are compressed or not protobuf.
    #[error("unsupported protobuf envelope encoding: contentEncoding {encoding:?}, contentType {content_type:?}")]
    Encoding {
        encoding: String,
        content_type: String,
    },
    /// 400: the object inside the envelope does not decode as its kind.
    #[error("the protobuf {kind} object is malformed: {message}")]
    Object { kind: String, message: String },
    /// 415: no protobuf conversion for this kind.
    #[error("protobuf request bodies are not supported for {kind} ({api_version}); send application/json")]
    UnsupportedKind { api_version: String, kind: String },
}

impl ProtobufError {
    /// True for the errors the server should answer with 415 UnsupportedMediaType.
    pub fn is_unsupported_media_type(&self) -> bool {
        matches!(
            self,
            ProtobufError::UnsupportedKind { .. } | ProtobufError::Encoding { .. }
        )
    }
}

/// Decodes a protobuf request body into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    // prost's DecodeError describes the wire problem, never the bytes.
    let unknown = Unknown::decode(rest).map_err(|e| ProtobufError::Envelope(e.to_string()))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::MissingTypeMeta);
    }
    let encoding = unknown.content_encoding.unwrap_or_default();
    let content_type = unknown.content_type.unwrap_or_default();
    if !encoding.is_empty() || !(content_type.is_empty() || content_type == CONTENT_TYPE) {
        return Err(ProtobufError::Encoding {
            encoding,
            content_type,
        });
    }
    let raw = unknown.raw.unwrap_or_default();
    let malformed = |e: prost::DecodeError| ProtobufError::Object {
        kind: kind.clone(),
        message: e.to_string(),
    };

    let mut obj = Map::new();
    obj.insert("kind".into(), Value::String(kind.clone()));
    obj.insert("apiVersion".into(), Value::String(api_version.clone()));
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => secret(
            &mut obj,
            core::Secret::decode(raw.as_slice()).map_err(malformed)?,
        ),
        ("v1", "ConfigMap") => config_map(
            &mut obj,
            core::ConfigMap::decode(raw.as_slice()).map_err(malformed)?,
        ),
        ("v1", "Namespace") => namespace(
            &mut obj,
            core::Namespace::decode(raw.as_slice()).map_err(malformed)?,
        ),
        ("v1", "ServiceAccount") => service_account(
            &mut obj,
            core::ServiceAccount::decode(raw.as_slice()).map_err(malformed)?,
        ),
        ("v1", "Service") => service(
            &mut obj,
            core::Service::decode(raw.as_slice()).map_err(malformed)?,
        ),
        ("authentication.k8s.io/v1", "TokenRequest") => token_request(
            &mut obj,
            authn::TokenRequest::decode(raw.as_slice()).map_err(malformed)?,
        ),
        ("policy/v1", "Eviction") => eviction(
            &mut obj,
            k8s_pb::api::policy::v1::Eviction::decode(raw.as_slice()).map_err(malformed)?,
        ),
        // Typed clients encode DeleteOptions with the group version of the resource.
        (_, "DeleteOptions") => delete_options_into(
            &mut obj,
            meta::DeleteOptions::decode(raw.as_slice()).map_err(malformed)?,
        ),
        _ => {
            return Err(ProtobufError::UnsupportedKind { api_version, kind });
        }
    }
    Ok(Value::Object(obj))
}

// ---- helpers following Go's `omitempty` ----

fn put_str(m: &mut Map<String, Value>, key: &str, v: Option<String>) {
    if let Some(v) = v.filter(|s| !s.is_empty()) {
        m.insert(key.into(), Value::String(v));
    }
}

fn put_opt<T: Into<Value>>(m: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(key.into(), v.into());
    }
}

fn put_map(m: &mut Map<String, Value>, key: &str, v: BTreeMap<String, String>) {
    if !v.is_empty() {
        let map = v.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        m.insert(key.into(), Value::Object(map));
    }
}

fn put_bytes_map(m: &mut Map<String, Value>, key: &str, v: BTreeMap<String, Vec<u8>>) {
    if !v.is_empty() {
        let map = v
            .into_iter()
            .map(|(k, v)| (k, Value::String(BASE64.encode(v))))
            .collect();
        m.insert(key.into(), Value::Object(map));
    }
}

fn put_strs(m: &mut Map<String, Value>, key: &str, v: Vec<String>) {
    if !v.is_empty() {
        m.insert(
            key.into(),
            Value::Array(v.into_iter().map(Value::String).collect()),
        );
    }
}

fn put_list(m: &mut Map<String, Value>, key: &str, v: Vec<Value>) {
    if !v.is_empty() {
        m.insert(key.into(), Value::Array(v));
    }
}

/// Go's zero `time.Time` as Unix seconds (0001-01-01T00:00:00Z).
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// metav1.Time marshals as RFC 3339 at second precision. client-go sends the zero time
/// (an unset creationTimestamp) as an empty message; JSON omits it (`null`).
fn time(t: Option<meta::Time>) -> Option<String> {
    let t = t?;
    let seconds = t.seconds.unwrap_or(0);
    if (seconds == 0 && t.nanos.unwrap_or(0) == 0) || seconds == GO_ZERO_TIME {
        return None;
    }
    let dt = DateTime::from_timestamp(seconds, 0)?;
    Some(dt.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn object_meta(m: Option<meta::ObjectMeta>) -> Map<String, Value> {
    let m = m.unwrap_or_default();
    let mut out = Map::new();
    put_str(&mut out, "name", m.name);
    put_str(&mut out, "generateName", m.generate_name);
    put_str(&mut out, "namespace", m.namespace);
    put_str(&mut out, "selfLink", m.self_link);
    put_str(&mut out, "uid", m.uid);
    put_str(&mut out, "resourceVersion", m.resource_version);
    put_opt(&mut out, "generation", m.generation.filter(|g| *g != 0));
    put_opt(&mut out, "creationTimestamp", time(m.creation_timestamp));
    put_opt(&mut out, "deletionTimestamp", time(m.deletion_timestamp));
    put_opt(
        &mut out,
        "deletionGracePeriodSeconds",
        m.deletion_grace_period_seconds,
    );
    put_map(&mut out, "labels", m.labels);
    put_map(&mut out, "annotations", m.annotations);
    let owners = m
        .owner_references
        .into_iter()
        .map(|o| {
            let mut r = Map::new();
            r.insert(
                "apiVersion".into(),
                Value::String(o.api_version.unwrap_or_default()),
            );
            r.insert("kind".into(), Value::String(o.kind.unwrap_or_default()));
            r.insert("name".into(), Value::String(o.name.unwrap_or_default()));
            r.insert("uid".into(), Value::String(o.uid.unwrap_or_default()));
            put_opt(&mut r, "controller", o.controller);
            put_opt(&mut r, "blockOwnerDeletion", o.block_owner_deletion);
            Value::Object(r)
        })
        .collect();
    put_list(&mut out, "ownerReferences", owners);
    put_strs(&mut out, "finalizers", m.finalizers);
    let managed = m
        .managed_fields
        .into_iter()
        .map(|e| {
            let mut r = Map::new();
            put_str(&mut r, "manager", e.manager);
            put_str(&mut r, "operation", e.operation);
            put_str(&mut r, "apiVersion", e.api_version);
            put_opt(&mut r, "time", time(e.time));
            put_str(&mut r, "fieldsType", e.fields_type);
            if let Some(raw) = e.fields_v1.and_then(|f| f.raw) {
                // FieldsV1 carries its JSON verbatim; keep it out if it is not JSON.
                if let Ok(v) = serde_json::from_slice::<Value>(&raw) {
                    r.insert("fieldsV1".into(), v);
                }
            }
            put_str(&mut r, "subresource", e.subresource);
            Value::Object(r)
        })
        .collect();
    put_list(&mut out, "managedFields", managed);
    out
}

// ---- per-kind conversions ----

fn secret(obj: &mut Map<String, Value>, s: core::Secret) {
    obj.insert("metadata".into(), Value::Object(object_meta(s.metadata)));
    put_opt(obj, "immutable", s.immutable);
    put_bytes_map(obj, "data", s.data);
    put_map(obj, "stringData", s.string_data);
    put_str(obj, "type", s.r#type);
}

fn config_map(obj: &mut Map<String, Value>, c: core::ConfigMap) {
    obj.insert("metadata".into(), Value::Object(object_meta(c.metadata)));
    put_opt(obj, "immutable", c.immutable);
    put_map(obj, "data", c.data);
    put_bytes_map(obj, "binaryData", c.binary_data);
}

fn namespace(obj: &mut Map<String, Value>, n: core::Namespace) {
    obj.insert("metadata".into(), Value::Object(object_meta(n.metadata)));
    let mut spec = Map::new();
    put_strs(
        &mut spec,
        "finalizers",
        n.spec.unwrap_or_default().finalizers,
    );
    obj.insert("spec".into(), Value::Object(spec));
    let mut status = Map::new();
    put_str(&mut status, "phase", n.status.unwrap_or_default().phase);
    obj.insert("status".into(), Value::Object(status));
}

fn object_reference(r: core::ObjectReference) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "kind", r.kind);
    put_str(&mut m, "namespace", r.namespace);
    put_str(&mut m, "name", r.name);
    put_str(&mut m, "uid", r.uid);
    put_str(&mut m, "apiVersion", r.api_version);
    put_str(&mut m, "resourceVersion", r.resource_version);
    put_str(&mut m, "fieldPath", r.field_path);
    Value::Object(m)
}

fn service_account(obj: &mut Map<String, Value>, sa: core::ServiceAccount) {
    obj.insert("metadata".into(), Value::Object(object_meta(sa.metadata)));
    put_list(
        obj,
        "secrets",
        sa.secrets.into_iter().map(object_reference).collect(),
    );
    let pulls = sa
        .image_pull_secrets
        .into_iter()
        .map(|r| {
            let mut m = Map::new();
            put_str(&mut m, "name", r.name);
            Value::Object(m)
        })
        .collect();
    put_list(obj, "imagePullSecrets", pulls);
    put_opt(
        obj,
        "automountServiceAccountToken",
        sa.automount_service_account_token,
    );
}

fn int_or_string(v: IntOrString) -> Value {
    // Type 0 is an int, 1 a string (intstr.Type).
    if v.r#type == Some(1) {
        Value::String(v.str_val.unwrap_or_default())
    } else {
        Value::from(v.int_val.unwrap_or(0))
    }
}

fn service(obj: &mut Map<String, Value>, s: core::Service) {
    obj.insert("metadata".into(), Value::Object(object_meta(s.metadata)));
    let spec = s.spec.unwrap_or_default();
    let mut out = Map::new();
    let ports = spec
        .ports
        .into_iter()
        .map(|p| {
            let mut m = Map::new();
            put_str(&mut m, "name", p.name);
            put_str(&mut m, "protocol", p.protocol);
            put_str(&mut m, "appProtocol", p.app_protocol);
            m.insert("port".into(), Value::from(p.port.unwrap_or(0)));
            if let Some(t) = p.target_port {
                m.insert("targetPort".into(), int_or_string(t));
            }
            put_opt(&mut m, "nodePort", p.node_port.filter(|n| *n != 0));
            Value::Object(m)
        })
        .collect();
    put_list(&mut out, "ports", ports);
    put_map(&mut out, "selector", spec.selector);
    put_str(&mut out, "clusterIP", spec.cluster_ip);
    put_strs(&mut out, "clusterIPs", spec.cluster_ips);
    put_str(&mut out, "type", spec.r#type);
    put_strs(&mut out, "externalIPs", spec.external_ips);
    put_str(&mut out, "sessionAffinity", spec.session_affinity);
    put_str(&mut out, "loadBalancerIP", spec.load_balancer_ip);
    put_strs(
        &mut out,
        "loadBalancerSourceRanges",
        spec.load_balancer_source_ranges,
    );
    put_str(&mut out, "externalName", spec.external_name);
    put_str(
        &mut out,
        "externalTrafficPolicy",
        spec.external_traffic_policy,
    );
    put_opt(
        &mut out,
        "healthCheckNodePort",
        spec.health_check_node_port.filter(|n| *n != 0),
    );
    put_opt(
        &mut out,
        "publishNotReadyAddresses",
        spec.publish_not_ready_addresses.filter(|b| *b),
    );
    if let Some(cfg) = spec.session_affinity_config {
        let mut client_ip = Map::new();
        if let Some(c) = cfg.client_ip {
            put_opt(&mut client_ip, "timeoutSeconds", c.timeout_seconds);
        }
        let mut m = Map::new();
        m.insert("clientIP".into(), Value::Object(client_ip));
        out.insert("sessionAffinityConfig".into(), Value::Object(m));
    }
    put_strs(&mut out, "ipFamilies", spec.ip_families);
    put_str(&mut out, "ipFamilyPolicy", spec.ip_family_policy);
    put_opt(
        &mut out,
        "allocateLoadBalancerNodePorts",
        spec.allocate_load_balancer_node_ports,
    );
    put_str(&mut out, "loadBalancerClass", spec.load_balancer_class);
    put_str(
        &mut out,
        "internalTrafficPolicy",
        spec.internal_traffic_policy,
    );
    put_str(&mut out, "trafficDistribution", spec.traffic_distribution);
    obj.insert("spec".into(), Value::Object(out));
    // Status is server-owned; a create request's status is dropped by the server anyway.
    obj.insert("status".into(), Value::Object(Map::new()));
}

fn token_request(obj: &mut Map<String, Value>, t: authn::TokenRequest) {
    obj.insert("metadata".into(), Value::Object(object_meta(t.metadata)));
    let spec = t.spec.unwrap_or_default();
    let mut out = Map::new();
    // `audiences` is not omitempty in Go.
    out.insert(
        "audiences".into(),
        Value::Array(spec.audiences.into_iter().map(Value::String).collect()),
    );
    put_opt(&mut out, "expirationSeconds", spec.expiration_seconds);
    if let Some(b) = spec.bound_object_ref {
        let mut m = Map::new();
        put_str(&mut m, "kind", b.kind);
        put_str(&mut m, "apiVersion", b.api_version);
        put_str(&mut m, "name", b.name);
        put_str(&mut m, "uid", b.u_id);
        out.insert("boundObjectRef".into(), Value::Object(m));
    }
    obj.insert("spec".into(), Value::Object(out));
    // The status (the token) is filled by the server.
    obj.insert("status".into(), Value::Object(Map::new()));
}

fn delete_options_into(m: &mut Map<String, Value>, d: meta::DeleteOptions) {
    put_opt(m, "gracePeriodSeconds", d.grace_period_seconds);
    if let Some(p) = d.preconditions {
        let mut pre = Map::new();
        put_opt(&mut pre, "uid", p.uid);
        put_opt(&mut pre, "resourceVersion", p.resource_version);
        m.insert("preconditions".into(), Value::Object(pre));
    }
    put_opt(m, "orphanDependents", d.orphan_dependents);
    put_str(m, "propagationPolicy", d.propagation_policy);
    put_strs(m, "dryRun", d.dry_run);
    put_opt(
        m,
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        d.ignore_store_read_error_with_cluster_breaking_potential,
    );
}

fn eviction(obj: &mut Map<String, Value>, e: k8s_pb::api::policy::v1::Eviction) {
    obj.insert("metadata".into(), Value::Object(object_meta(e.metadata)));
    if let Some(d) = e.delete_options {
        let mut opts = Map::new();
        delete_options_into(&mut opts, d);
        obj.insert("deleteOptions".into(), Value::Object(opts));
    }
}

#[cfg(test)]
#[path = "protobuf/tests.rs"]
mod tests;
