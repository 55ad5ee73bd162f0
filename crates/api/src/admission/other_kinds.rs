//! Defaulting and validation of the served kinds other than Pod: Namespace, Secret,
//! ConfigMap, Service, EndpointSlice, Lease (Node, Event, ServiceAccount and Endpoints need
//! only the shared metadata rules), and their update rules (immutable Secrets and
//! ConfigMaps, Secret type, Service clusterIP).

use serde_json::{json, Value};

use super::meta::validate_labels;
use super::names::{self, invalid_all};
use super::{get, get_arr, get_bool, get_i64, get_obj, get_str, obj_mut, set_default};
use crate::field::{FieldError, FieldErrorKind, FieldPath};
use crate::resources::ResourceInfo;

/// Kubernetes' limit on the total size of a Secret's or ConfigMap's data.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: &[&str] = &["ClientIP", "None"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];

/// Defaults every kind but Pod. Only absent fields are set, so this is also right on update.
pub fn default_other(resource: &ResourceInfo, obj: &mut Value) {
    match resource.kind {
        "Secret" => {
            set_default(obj, "type", json!("Opaque"));
            fold_string_data(obj);
        }
        "Namespace" => {
            if let Some(spec) = obj_mut(obj, "spec") {
                spec.entry("finalizers")
                    .or_insert_with(|| json!(["kubernetes"]));
            }
            if let Some(status) = obj_mut(obj, "status") {
                status.entry("phase").or_insert_with(|| json!("Active"));
            }
        }
        "Service" => {
            let Some(spec) = obj_mut(obj, "spec") else {
                return;
            };
            let mut spec_v = Value::Object(std::mem::take(spec));
            default_service_spec(&mut spec_v);
            if let (Some(map), Value::Object(done)) = (obj.as_object_mut(), spec_v) {
                map.insert("spec".to_string(), Value::Object(done));
            }
        }
        _ => {}
    }
}

/// `stringData` is write-only: Kubernetes merges it into `data` (base64, overriding keys
/// of the same name) and never stores it.
fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(Default::default()));
    if !data.is_object() {
        *data = Value::Object(Default::default());
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

fn default_service_spec(spec: &mut Value) {
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if get_str(spec, "type") != Some("ExternalName") {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut() {
            set_default(p, "protocol", json!("TCP"));
            if let Some(port) = get(p, "port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
}

/// Kind-specific validation of every kind but Pod.
pub fn validate_other(resource: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    match resource.kind {
        "Secret" => validate_data(obj, &["data", "stringData"], true),
        "ConfigMap" => validate_data(obj, &["data", "binaryData"], false),
        "Service" => validate_service(obj),
        "EndpointSlice" => {
            let t = get_str(obj, "addressType").unwrap_or("");
            if t.is_empty() {
                vec![FieldError::required(FieldPath::root("addressType"), "")]
            } else if !ADDRESS_TYPES.contains(&t) {
                vec![FieldError::not_supported(
                    FieldPath::root("addressType"),
                    t,
                    ADDRESS_TYPES,
                )]
            } else {
                Vec::new()
            }
        }
        "Lease" => {
            let mut errs = Vec::new();
            let spec = get(obj, "spec").unwrap_or(&Value::Null);
            if let Some(d) = get_i64(spec, "leaseDurationSeconds") {
                if d <= 0 {
                    errs.push(FieldError::invalid(
                        FieldPath::root("spec").child("leaseDurationSeconds"),
                        d,
                        "must be greater than 0",
                    ));
                }
            }
            errs
        }
        _ => Vec::new(),
    }
}

fn validate_data(obj: &Value, fields: &[&str], secret: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for field in fields {
        let Some(m) = get_obj(obj, field) else {
            continue;
        };
        for (k, v) in m {
            errs.extend(invalid_all(
                &FieldPath::root(field).key(k),
                k,
                names::config_map_key(k),
            ));
            total += v.as_str().map(str::len).unwrap_or(0);
        }
    }
    if !secret {
        if let (Some(data), Some(bin)) = (get_obj(obj, "data"), get_obj(obj, "binaryData")) {
            for k in data.keys().filter(|k| bin.contains_key(*k)) {
                errs.push(FieldError::invalid(
                    FieldPath::root("data").key(k),
                    k.as_str(),
                    "duplicate of key present in binaryData",
                ));
            }
        }
    }
    if total > MAX_DATA_SIZE {
        let field = if secret { "data" } else { "" };
        errs.push(FieldError::new(
            FieldPath::root(field),
            FieldErrorKind::TooLong { max: MAX_DATA_SIZE },
            "",
        ));
    }
    if secret && get_str(obj, "type") == Some("kubernetes.io/dockerconfigjson") {
        let has = get_obj(obj, "data").is_some_and(|d| d.contains_key(".dockerconfigjson"))
            || get_obj(obj, "stringData").is_some_and(|d| d.contains_key(".dockerconfigjson"));
        if !has {
            errs.push(FieldError::required(
                FieldPath::root("data").key(".dockerconfigjson"),
                "",
            ));
        }
    }
    errs
}

fn validate_target_port(v: &Value, p: &FieldPath, errs: &mut Vec<FieldError>) {
    match v {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(0);
            errs.extend(
                names::port_number(n)
                    .into_iter()
                    .map(|m| FieldError::invalid(p.clone(), n, m)),
            );
        }
        Value::String(s) => errs.extend(invalid_all(p, s, names::port_name(s))),
        _ => {}
    }
}

fn validate_service(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sp = FieldPath::root("spec");
    let spec = get(obj, "spec").unwrap_or(&Value::Null);
    let ty = get_str(spec, "type").unwrap_or("ClusterIP");
    if !SERVICE_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(
            sp.child("type"),
            ty,
            SERVICE_TYPES,
        ));
    }
    if let Some(a) = get_str(spec, "sessionAffinity") {
        if !SESSION_AFFINITIES.contains(&a) {
            errs.push(FieldError::not_supported(
                sp.child("sessionAffinity"),
                a,
                SESSION_AFFINITIES,
            ));
        }
    }
    let headless = get_str(spec, "clusterIP") == Some("None");
    let ports = get_arr(spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(sp.child("ports"), ""));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = sp.child("ports").index(i);
        let name = get_str(p, "name").unwrap_or("");
        if name.is_empty() {
            if ports.len() > 1 {
                errs.push(FieldError::required(pp.child("name"), ""));
            }
        } else {
            let msgs = names::dns1123_label(name);
            if !msgs.is_empty() {
                errs.extend(invalid_all(&pp.child("name"), name, msgs));
            } else if !seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(pp.child("name"), name));
            }
        }
        let port = get_i64(p, "port").unwrap_or(0);
        errs.extend(
            names::port_number(port)
                .into_iter()
                .map(|m| FieldError::invalid(pp.child("port"), port, m)),
        );
        match get_str(p, "protocol").unwrap_or("TCP") {
            v if !PROTOCOLS.contains(&v) => errs.push(FieldError::not_supported(
                pp.child("protocol"),
                v,
                PROTOCOLS,
            )),
            _ => {}
        }
        if let Some(t) = get(p, "targetPort") {
            validate_target_port(t, &pp.child("targetPort"), &mut errs);
        }
    }
    if let Some(sel) = get_obj(spec, "selector") {
        errs.extend(validate_labels(sel, &sp.child("selector")));
    }
    errs
}

/// Update rules of the other kinds.
pub fn validate_other_update(resource: &ResourceInfo, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match resource.kind {
        "Secret" | "ConfigMap" => {
            let data_fields: &[&str] = if resource.kind == "Secret" {
                &["data", "stringData"]
            } else {
                &["data", "binaryData"]
            };
            if resource.kind == "Secret"
                && get_str(old, "type").unwrap_or("Opaque")
                    != get_str(new, "type").unwrap_or("Opaque")
            {
                errs.push(FieldError::invalid(
                    FieldPath::root("type"),
                    get_str(new, "type").unwrap_or(""),
                    "field is immutable",
                ));
            }
            if get_bool(old, "immutable") {
                if !get_bool(new, "immutable") {
                    errs.push(FieldError::forbidden(
                        FieldPath::root("immutable"),
                        "field is immutable when `immutable` is set",
                    ));
                }
                for f in data_fields {
                    // stringData is write-only: it is merged into data, so only data counts.
                    if *f == "stringData" {
                        if get(new, f).is_some() {
                            errs.push(FieldError::forbidden(
                                FieldPath::root("data"),
                                "field is immutable when `immutable` is set",
                            ));
                        }
                        continue;
                    }
                    if get(old, f) != get(new, f) {
                        errs.push(FieldError::forbidden(
                            FieldPath::root(f),
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
            }
        }
        "Service" => {
            let o = old
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            let n = new
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !o.is_empty() && !n.is_empty() && o != n {
                errs.push(FieldError::invalid(
                    FieldPath::root("spec").child("clusterIP"),
                    n,
                    "field is immutable",
                ));
            }
        }
        _ => {}
    }
    errs
}

#[cfg(test)]
mod string_data_tests {
    use super::*;

    #[test]
    fn string_data_folds_into_data() {
        let secrets = crate::resources::find("", "v1", "secrets").unwrap();
        let mut s = json!({"data": {"a": "YQ==", "b": "eA=="}, "stringData": {"b": "y", "c": "z"}});
        default_other(secrets, &mut s);
        assert_eq!(s["data"], json!({"a": "YQ==", "b": "eQ==", "c": "eg=="}));
        assert!(s.get("stringData").is_none());
        assert_eq!(s["type"], "Opaque");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find_kind;

    fn kind(k: &str) -> &'static ResourceInfo {
        find_kind("", k).unwrap()
    }

    #[test]
    fn defaults() {
        let mut s = json!({"metadata": {"name": "s"}});
        default_other(kind("Secret"), &mut s);
        assert_eq!(s["type"], "Opaque");
        let mut ns = json!({"metadata": {"name": "n"}});
        default_other(kind("Namespace"), &mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        let mut svc = json!({"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}});
        default_other(kind("Service"), &mut svc);
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["spec"]["sessionAffinity"], "None");
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert!(validate_other(kind("Service"), &svc).is_empty());
    }

    #[test]
    fn validation() {
        let errs = validate_other(
            kind("ConfigMap"),
            &json!({"data": {"bad key": "x", "ok": "y"}}),
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field.as_str(), "data[bad key]");
        let errs = validate_other(
            kind("Service"),
            &json!({"spec": {"ports": [{"port": 80}, {"port": 70000, "name": "b"}]}}),
        );
        let paths: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(paths, vec!["spec.ports[0].name", "spec.ports[1].port"]);
    }

    #[test]
    fn immutable_configmap() {
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        let errs = validate_other_update(kind("ConfigMap"), &old, &new);
        assert_eq!(
            errs[0].to_string(),
            "data: Forbidden: field is immutable when `immutable` is set"
        );
        assert!(validate_other_update(kind("ConfigMap"), &old, &old).is_empty());
    }
}
