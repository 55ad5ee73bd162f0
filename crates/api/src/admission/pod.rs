//! Pods: defaulting as Kubernetes' `SetDefaults_*` and admission do it, the initial
//! status (phase Pending and the QoS class), validation as kube-apiserver's
//! `ValidatePodCreate` words it, and the rules of a Pod update (the spec is immutable
//! except container images, activeDeadlineSeconds and added tolerations).
//!
//! Nothing here defaults a field that [`super::unsupported`] refuses, so
//! `kubectl get -o yaml | kubectl replace -f -` round-trips.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::meta::validate_labels;
use super::names::{self, invalid_all};
use super::{get, get_arr, get_bool, get_i64, get_obj, get_str, obj_mut, set_default};
use crate::field::{FieldError, FieldPath};
use crate::quantity::{Quantity, QUANTITY_REGEX_MESSAGE};

static NULL: Value = Value::Null;

pub const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
pub const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
pub const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
pub const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
pub const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
pub const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];
const IP_MESSAGE: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const ID_MESSAGE: &str = "must be between 0 and 2147483647, inclusive";
const MODE_MESSAGE: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;

/// Every volume source key of `Volume` (for "exactly one volume type").
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];
const PROJECTION_SOURCES: &[&str] = &[
    "secret",
    "downwardAPI",
    "configMap",
    "serviceAccountToken",
    "clusterTrustBundle",
    "podCertificate",
];
const PROBE_HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "grpc"];
const LIFECYCLE_HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "sleep"];
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
/// Field paths the downward API can convert at all (others are "not supported" labels).
const CONVERTIBLE_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELD_REFS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];
const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

// ---------------------------------------------------------------------------------------
// Defaulting

/// Defaults a new Pod and sets its initial status.
pub fn default_pod(obj: &mut Value) {
    default_pod_spec(obj);
    let qos = qos_class(obj);
    if let Some(map) = obj.as_object_mut() {
        // Kubernetes discards a client's status on create.
        map.insert(
            "status".to_string(),
            json!({"phase": "Pending", "qosClass": qos}),
        );
    }
}

/// Defaults a Pod's spec without touching its status (for updates, where the client sends
/// back what it read, or a manifest without defaults).
pub fn default_pod_spec(obj: &mut Value) {
    let Some(spec) = obj_mut(obj, "spec") else {
        return;
    };
    let mut spec_v = Value::Object(std::mem::take(spec));
    default_spec(&mut spec_v);
    if let (Some(map), Value::Object(done)) = (obj.as_object_mut(), spec_v) {
        map.insert("spec".to_string(), Value::Object(done));
    }
}

fn default_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "enableServiceLinks", json!(true));
    // What the priority admission plugin sets when no priority class is named.
    if get_str(spec, "priorityClassName").is_none() {
        set_default(spec, "priority", json!(0));
    }
    // serviceAccount is the deprecated twin of serviceAccountName.
    let sa = get_str(spec, "serviceAccountName")
        .filter(|s| !s.is_empty())
        .or_else(|| get_str(spec, "serviceAccount").filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_string();
    if let Some(map) = spec.as_object_mut() {
        map.insert("serviceAccountName".to_string(), json!(sa));
        map.insert("serviceAccount".to_string(), json!(sa));
    }
    let host_network = get_bool(spec, "hostNetwork");
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut() {
                default_container(c, host_network);
            }
        }
    }
    if let Some(Value::Array(vols)) = spec.get_mut("volumes") {
        for v in vols.iter_mut() {
            default_volume(v);
        }
    }
}

/// Kubernetes' rule (and the seed's): `:latest` or no tag (and no digest) pulls Always.
pub fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, t)| t);
    match (tag, digest) {
        (Some("latest"), _) | (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

fn default_container(c: &mut Value, host_network: bool) {
    if !c.is_object() {
        return;
    }
    let image = get_str(c, "image").unwrap_or("").to_string();
    set_default(c, "imagePullPolicy", json!(default_pull_policy(&image)));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) {
        for key in ["limits", "requests"] {
            if let Some(Value::Object(m)) = res.get_mut(key) {
                stringify_quantities(m);
            }
        }
        // Requests default to limits, per resource.
        if let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() {
            if !limits.is_empty() {
                let requests = res
                    .entry("requests".to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(req) = requests.as_object_mut() {
                    for (k, v) in limits {
                        req.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut() {
            set_default(p, "protocol", json!("TCP"));
            if host_network {
                if let Some(cp) = get_i64(p, "containerPort") {
                    set_default(p, "hostPort", json!(cp));
                }
            }
        }
    }
    if let Some(Value::Array(env)) = c.get_mut("env") {
        for e in env.iter_mut() {
            if let Some(from) = e.get_mut("valueFrom") {
                if let Some(f) = from.get_mut("fieldRef") {
                    set_default(f, "apiVersion", json!("v1"));
                }
                if let Some(r) = from.get_mut("resourceFieldRef") {
                    set_default(r, "divisor", json!("0"));
                }
            }
        }
    }
}

/// YAML `cpu: 1` arrives as a number; Kubernetes stores quantities as strings.
fn stringify_quantities(m: &mut Map<String, Value>) {
    for v in m.values_mut() {
        if let Value::Number(n) = v {
            *v = Value::String(n.to_string());
        }
    }
}

fn default_items(items: Option<&mut Value>) {
    if let Some(Value::Array(items)) = items {
        for it in items.iter_mut() {
            if let Some(f) = it.get_mut("fieldRef") {
                set_default(f, "apiVersion", json!("v1"));
            }
            if let Some(r) = it.get_mut("resourceFieldRef") {
                set_default(r, "divisor", json!("0"));
            }
        }
    }
}

fn default_volume(v: &mut Value) {
    for src in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(src).filter(|s| s.is_object()) {
            set_default(s, "defaultMode", json!(420));
            if src == "downwardAPI" {
                default_items(s.get_mut("items"));
            }
            if src == "projected" {
                if let Some(Value::Array(sources)) = s.get_mut("sources") {
                    for p in sources.iter_mut() {
                        if let Some(d) = p.get_mut("downwardAPI") {
                            default_items(d.get_mut("items"));
                        }
                    }
                }
            }
        }
    }
    if let Some(h) = v.get_mut("hostPath").filter(|h| h.is_object()) {
        set_default(h, "type", json!(""));
    }
}

/// The QoS class, computed as Kubernetes' `ComputePodQOS`: sums of positive cpu and memory
/// requests and limits over all containers.
pub fn qos_class(pod: &Value) -> &'static str {
    let spec = get(pod, "spec").unwrap_or(&NULL);
    let mut requests: HashMap<&str, Quantity> = HashMap::new();
    let mut limits: HashMap<&str, Quantity> = HashMap::new();
    let mut guaranteed = true;
    for c in get_arr(spec, "containers")
        .iter()
        .chain(get_arr(spec, "initContainers"))
    {
        let res = get(c, "resources").unwrap_or(&NULL);
        for (key, sums) in [("requests", &mut requests), ("limits", &mut limits)] {
            let mut found = HashSet::new();
            for name in ["cpu", "memory"] {
                let q = get(res, key)
                    .and_then(|m| get(m, name))
                    .and_then(|v| Quantity::from_json(v).ok());
                if let Some(q) = q.filter(|q| q.nanos() > 0) {
                    found.insert(name);
                    let e = sums.entry(name).or_default();
                    *e = e.add(&q);
                }
            }
            if key == "limits" && found.len() < 2 {
                guaranteed = false;
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.iter().all(|(k, r)| limits.get(k) == Some(r))
        && requests.len() == limits.len()
    {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

// ---------------------------------------------------------------------------------------
// Validation

/// Validates a Pod's spec (metadata is validated by [`super::meta`]).
pub fn validate_pod(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sp = FieldPath::root("spec");
    let spec = get(obj, "spec").unwrap_or(&NULL);

    let volumes = validate_volumes(spec, &sp.child("volumes"), &mut errs);
    let host_network = get_bool(spec, "hostNetwork");
    let mut names = HashSet::new();
    let containers = get_arr(spec, "containers");
    let container_names: HashSet<String> = containers
        .iter()
        .chain(get_arr(spec, "initContainers"))
        .filter_map(|c| get_str(c, "name").map(str::to_string))
        .collect();
    let ctx = ContainerCtx {
        volumes: &volumes,
        host_network,
        container_names: &container_names,
    };
    for (i, c) in get_arr(spec, "initContainers").iter().enumerate() {
        validate_container(
            c,
            &sp.child("initContainers").index(i),
            true,
            &ctx,
            &mut names,
            &mut errs,
        );
    }
    if containers.is_empty() {
        errs.push(FieldError::required(sp.child("containers"), ""));
    }
    for (i, c) in containers.iter().enumerate() {
        validate_container(
            c,
            &sp.child("containers").index(i),
            false,
            &ctx,
            &mut names,
            &mut errs,
        );
    }
    // Host ports may not collide between app containers.
    let mut host_ports = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, p) in get_arr(c, "ports").iter().enumerate() {
            let hp = get_i64(p, "hostPort").unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{}",
                get_str(p, "hostIP").unwrap_or(""),
                hp,
                get_str(p, "protocol").unwrap_or("TCP")
            );
            if !host_ports.insert(key) {
                let shown = format!("{}/{}", hp, get_str(p, "protocol").unwrap_or("TCP"));
                errs.push(FieldError::duplicate(
                    sp.child("containers")
                        .index(i)
                        .child("ports")
                        .index(j)
                        .child("hostPort"),
                    shown,
                ));
            }
        }
    }

    match get_str(spec, "restartPolicy") {
        None | Some("") => errs.push(FieldError::required(sp.child("restartPolicy"), "")),
        Some(p) if !RESTART_POLICIES.contains(&p) => errs.push(FieldError::not_supported(
            sp.child("restartPolicy"),
            p,
            RESTART_POLICIES,
        )),
        _ => {}
    }
    validate_dns(spec, &sp, &mut errs);

    if let Some(sel) = get_obj(spec, "nodeSelector") {
        errs.extend(validate_labels(sel, &sp.child("nodeSelector")));
    }
    for (field, rule) in [
        (
            "serviceAccountName",
            names::dns1123_subdomain as fn(&str) -> Vec<String>,
        ),
        ("nodeName", names::dns1123_subdomain),
        ("hostname", names::dns1123_label),
        ("subdomain", names::dns1123_label),
    ] {
        if let Some(v) = get_str(spec, field).filter(|v| !v.is_empty()) {
            errs.extend(invalid_all(&sp.child(field), v, rule(v)));
        }
    }
    if let Some(v) = get(spec, "activeDeadlineSeconds") {
        let n = v.as_i64().unwrap_or(0);
        if !(1..=i64::from(i32::MAX)).contains(&n) {
            errs.push(FieldError::invalid(
                sp.child("activeDeadlineSeconds"),
                v.clone(),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    if let Some(n) = get_i64(spec, "terminationGracePeriodSeconds") {
        if n < 0 {
            errs.push(FieldError::invalid(
                sp.child("terminationGracePeriodSeconds"),
                n,
                "must be greater than or equal to 0",
            ));
        }
    }
    for (i, ha) in get_arr(spec, "hostAliases").iter().enumerate() {
        let p = sp.child("hostAliases").index(i);
        let ip = get_str(ha, "ip").unwrap_or("");
        if !names::is_ip(ip) {
            errs.push(FieldError::invalid(p.child("ip"), ip, IP_MESSAGE));
        }
        for (j, h) in get_arr(ha, "hostnames").iter().enumerate() {
            let h = h.as_str().unwrap_or("");
            errs.extend(invalid_all(
                &p.child("hostnames").index(j),
                h,
                names::dns1123_subdomain(h),
            ));
        }
    }
    if let Some(sc) = get(spec, "securityContext") {
        let p = sp.child("securityContext");
        validate_ids(sc, &p, &["runAsUser", "runAsGroup", "fsGroup"], &mut errs);
        for (i, g) in get_arr(sc, "supplementalGroups").iter().enumerate() {
            let n = g.as_i64().unwrap_or(-1);
            if !(0..=i64::from(i32::MAX)).contains(&n) {
                errs.push(FieldError::invalid(
                    p.child("supplementalGroups").index(i),
                    g.clone(),
                    ID_MESSAGE,
                ));
            }
        }
    }
    if get_bool(spec, "shareProcessNamespace") && get_bool(spec, "hostPID") {
        errs.push(FieldError::invalid(
            sp.child("securityContext").child("shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    validate_tolerations(
        get_arr(spec, "tolerations"),
        &sp.child("tolerations"),
        &mut errs,
    );
    errs
}

fn validate_ids(sc: &Value, p: &FieldPath, fields: &[&str], errs: &mut Vec<FieldError>) {
    for f in fields {
        if let Some(v) = get(sc, f) {
            let n = v.as_i64().unwrap_or(-1);
            if !(0..=i64::from(i32::MAX)).contains(&n) {
                errs.push(FieldError::invalid(p.child(f), v.clone(), ID_MESSAGE));
            }
        }
    }
}

fn validate_dns(spec: &Value, sp: &FieldPath, errs: &mut Vec<FieldError>) {
    let policy = get_str(spec, "dnsPolicy").unwrap_or("");
    if policy.is_empty() {
        errs.push(FieldError::required(sp.child("dnsPolicy"), ""));
    } else if !DNS_POLICIES.contains(&policy) {
        errs.push(FieldError::not_supported(
            sp.child("dnsPolicy"),
            policy,
            DNS_POLICIES,
        ));
    }
    let cp = sp.child("dnsConfig");
    let config = get(spec, "dnsConfig");
    if policy == "None" {
        match config {
            None => errs.push(FieldError::required(
                cp.clone(),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            )),
            Some(c) if get_arr(c, "nameservers").is_empty() => errs.push(FieldError::required(
                cp.child("nameservers"),
                "must provide at least one DNS nameserver when DNS policy is None",
            )),
            _ => {}
        }
    }
    let Some(config) = config else { return };
    let ns = get_arr(config, "nameservers");
    if ns.len() > MAX_DNS_NAMESERVERS {
        errs.push(FieldError::invalid(
            cp.child("nameservers"),
            Value::Array(ns.to_vec()),
            format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, n) in ns.iter().enumerate() {
        let s = n.as_str().unwrap_or("");
        if !names::is_ip(s) {
            errs.push(FieldError::invalid(
                cp.child("nameservers").index(i),
                s,
                IP_MESSAGE,
            ));
        }
    }
    let searches = get_arr(config, "searches");
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        errs.push(FieldError::invalid(
            cp.child("searches"),
            Value::Array(searches.to_vec()),
            format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    let total: usize = searches
        .iter()
        .map(|s| s.as_str().map(str::len).unwrap_or(0))
        .sum::<usize>()
        + searches.len().saturating_sub(1);
    if total > MAX_DNS_SEARCH_LIST_CHARS {
        errs.push(FieldError::invalid(
            cp.child("searches"),
            Value::Array(searches.to_vec()),
            format!("must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list"),
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        let s = s.as_str().unwrap_or("");
        // A trailing dot (fully qualified) is allowed.
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        errs.extend(invalid_all(
            &cp.child("searches").index(i),
            s,
            names::dns1123_subdomain(trimmed),
        ));
    }
    for (i, o) in get_arr(config, "options").iter().enumerate() {
        if get_str(o, "name").unwrap_or("").is_empty() {
            errs.push(FieldError::required(
                cp.child("options").index(i).child("name"),
                "",
            ));
        }
    }
}

fn validate_tolerations(tols: &[Value], p: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, t) in tols.iter().enumerate() {
        let tp = p.index(i);
        let key = get_str(t, "key").unwrap_or("");
        let op = get_str(t, "operator").unwrap_or("");
        let value = get_str(t, "value").unwrap_or("");
        let effect = get_str(t, "effect").unwrap_or("");
        if !key.is_empty() {
            errs.extend(invalid_all(
                &tp.child("key"),
                key,
                names::qualified_name(key),
            ));
        } else if op != "Exists" {
            errs.push(FieldError::invalid(
                tp.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        match op {
            "" | "Equal" => errs.extend(invalid_all(
                &tp.child("value"),
                value,
                names::label_value(value),
            )),
            "Exists" if !value.is_empty() => errs.push(FieldError::invalid(
                tp.child("operator"),
                value,
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            other => errs.push(FieldError::not_supported(
                tp.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                tp.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            errs.push(FieldError::not_supported(
                tp.child("effect"),
                effect,
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            ));
        }
    }
}

/// Validates volumes; returns their names.
fn validate_volumes(spec: &Value, vp: &FieldPath, errs: &mut Vec<FieldError>) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (i, v) in get_arr(spec, "volumes").iter().enumerate() {
        let p = vp.index(i);
        let name = get_str(v, "name").unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            let msgs = names::dns1123_label(name);
            if !msgs.is_empty() {
                errs.extend(invalid_all(&p.child("name"), name, msgs));
            } else if !seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            }
        }
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|s| get(v, s).is_some())
            .collect();
        match sources.as_slice() {
            [] => errs.push(FieldError::required(
                p.clone(),
                "must specify a volume type",
            )),
            [one] => validate_volume_source(v, one, &p.child(one), errs),
            [_, rest @ ..] => {
                for s in rest {
                    errs.push(FieldError::forbidden(
                        p.child(s),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
    }
    seen
}

fn validate_mode(v: &Value, key: &str, p: &FieldPath, errs: &mut Vec<FieldError>) {
    if let Some(m) = get(v, key) {
        let n = m.as_i64().unwrap_or(-1);
        if !(0..=0o777).contains(&n) {
            errs.push(FieldError::invalid(p.child(key), m.clone(), MODE_MESSAGE));
        }
    }
}

/// A path inside a volume: relative, no `..` element, not starting with `..`.
fn validate_item_path(path: &str, p: &FieldPath, errs: &mut Vec<FieldError>) {
    if path.is_empty() {
        errs.push(FieldError::required(p.clone(), ""));
        return;
    }
    errs.extend(names::local_descending_path(path, p));
    if path.starts_with("..") && !path.split('/').any(|x| x == "..") {
        errs.push(FieldError::invalid(
            p.clone(),
            path,
            "must not start with '..'",
        ));
    }
}

fn validate_key_items(src: &Value, p: &FieldPath, errs: &mut Vec<FieldError>) {
    for (j, it) in get_arr(src, "items").iter().enumerate() {
        let ip = p.child("items").index(j);
        let key = get_str(it, "key").unwrap_or("");
        if key.is_empty() {
            errs.push(FieldError::required(ip.child("key"), ""));
        } else {
            errs.extend(invalid_all(
                &ip.child("key"),
                key,
                names::config_map_key(key),
            ));
        }
        validate_item_path(get_str(it, "path").unwrap_or(""), &ip.child("path"), errs);
        validate_mode(it, "mode", &ip, errs);
    }
}

fn validate_downward_items(
    src: &Value,
    p: &FieldPath,
    container_names: Option<&HashSet<String>>,
    errs: &mut Vec<FieldError>,
) {
    for (j, it) in get_arr(src, "items").iter().enumerate() {
        let ip = p.child("items").index(j);
        validate_item_path(get_str(it, "path").unwrap_or(""), &ip.child("path"), errs);
        validate_mode(it, "mode", &ip, errs);
        let field_ref = get(it, "fieldRef");
        let res_ref = get(it, "resourceFieldRef");
        match (field_ref, res_ref) {
            (Some(f), None) => {
                validate_field_ref(f, &ip.child("fieldRef"), VOLUME_FIELD_PATHS, errs)
            }
            (None, Some(r)) => validate_resource_field_ref(
                r,
                &ip.child("resourceFieldRef"),
                true,
                container_names,
                errs,
            ),
            (Some(_), Some(_)) => errs.push(FieldError::invalid(
                ip,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            )),
            (None, None) => errs.push(FieldError::required(
                ip,
                "one of fieldRef and resourceFieldRef is required",
            )),
        }
    }
}

fn validate_volume_source(v: &Value, kind: &str, p: &FieldPath, errs: &mut Vec<FieldError>) {
    let src = get(v, kind).unwrap_or(&NULL);
    match kind {
        "hostPath" => {
            let path = get_str(src, "path").unwrap_or("");
            if path.is_empty() {
                errs.push(FieldError::required(p.child("path"), ""));
            } else if path.split('/').any(|x| x == "..") {
                errs.push(FieldError::invalid(
                    p.child("path"),
                    path,
                    "must not contain '..'",
                ));
            }
            if let Some(t) = get_str(src, "type") {
                if !HOST_PATH_TYPES.contains(&t) {
                    errs.push(FieldError::not_supported(
                        p.child("type"),
                        t,
                        HOST_PATH_TYPES,
                    ));
                }
            }
        }
        "emptyDir" => {
            if let Some(q) = get(src, "sizeLimit") {
                validate_quantity(q, &p.child("sizeLimit"), errs);
            }
        }
        "configMap" => {
            if get_str(src, "name").unwrap_or("").is_empty() {
                errs.push(FieldError::required(p.child("name"), ""));
            }
            validate_mode(src, "defaultMode", p, errs);
            validate_key_items(src, p, errs);
        }
        "secret" => {
            if get_str(src, "secretName").unwrap_or("").is_empty() {
                errs.push(FieldError::required(p.child("secretName"), ""));
            }
            validate_mode(src, "defaultMode", p, errs);
            validate_key_items(src, p, errs);
        }
        "downwardAPI" => {
            validate_mode(src, "defaultMode", p, errs);
            validate_downward_items(src, p, None, errs);
        }
        "projected" => {
            validate_mode(src, "defaultMode", p, errs);
            for (j, s) in get_arr(src, "sources").iter().enumerate() {
                let sp = p.child("sources").index(j);
                let kinds: Vec<&str> = PROJECTION_SOURCES
                    .iter()
                    .copied()
                    .filter(|k| get(s, k).is_some())
                    .collect();
                match kinds.as_slice() {
                    [] => errs.push(FieldError::required(sp, "must specify exactly 1 of: secret, configMap, downwardAPI, serviceAccountToken, clusterTrustBundle, podCertificate")),
                    [one] => {
                        let inner = get(s, one).unwrap_or(&NULL);
                        let ip = sp.child(one);
                        match *one {
                            "configMap" | "secret" => {
                                if get_str(inner, "name").unwrap_or("").is_empty() {
                                    errs.push(FieldError::required(ip.child("name"), ""));
                                }
                                validate_key_items(inner, &ip, errs);
                            }
                            "downwardAPI" => validate_downward_items(inner, &ip, None, errs),
                            _ => {}
                        }
                    }
                    [_, rest @ ..] => {
                        for k in rest {
                            errs.push(FieldError::forbidden(sp.child(k), "may not specify more than 1 volume type per source"));
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn validate_quantity(q: &Value, p: &FieldPath, errs: &mut Vec<FieldError>) -> Option<Quantity> {
    let shown = match q {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match Quantity::from_json(q) {
        Err(_) => {
            errs.push(FieldError::invalid(
                p.clone(),
                shown,
                QUANTITY_REGEX_MESSAGE,
            ));
            None
        }
        Ok(v) if v.is_negative() => {
            errs.push(FieldError::invalid(
                p.clone(),
                shown,
                "must be greater than or equal to 0",
            ));
            None
        }
        Ok(v) => Some(v),
    }
}

fn validate_field_ref(f: &Value, p: &FieldPath, allowed: &[&str], errs: &mut Vec<FieldError>) {
    let api_version = get_str(f, "apiVersion").unwrap_or("v1");
    if api_version != "v1" {
        errs.push(FieldError::invalid(
            p.child("fieldPath"),
            get_str(f, "fieldPath").unwrap_or(""),
            format!("error converting fieldPath: unsupported version: {api_version}"),
        ));
        return;
    }
    let path = get_str(f, "fieldPath").unwrap_or("");
    if path.is_empty() {
        errs.push(FieldError::required(p.child("fieldPath"), ""));
        return;
    }
    // Subscripted labels and annotations: metadata.labels['key'].
    if let Some((base, rest)) = path.split_once('[') {
        let sub = rest
            .strip_suffix(']')
            .and_then(|s| s.strip_prefix('\''))
            .and_then(|s| s.strip_suffix('\''));
        match (base, sub) {
            ("metadata.labels", Some(k)) => {
                errs.extend(invalid_all(p, k, names::qualified_name(k)))
            }
            ("metadata.annotations", Some(k)) => {
                errs.extend(invalid_all(p, k, names::qualified_name(&k.to_lowercase())))
            }
            _ => errs.push(FieldError::invalid(
                p.child("fieldPath"),
                path,
                format!("error converting fieldPath: field label not supported: {path}"),
            )),
        }
        return;
    }
    if allowed.contains(&path) {
        return;
    }
    if CONVERTIBLE_FIELD_PATHS.contains(&path) {
        let mut list: Vec<&str> = allowed.to_vec();
        list.sort_unstable();
        errs.push(FieldError::not_supported(p.child("fieldPath"), path, &list));
    } else {
        errs.push(FieldError::invalid(
            p.child("fieldPath"),
            path,
            format!("error converting fieldPath: field label not supported: {path}"),
        ));
    }
}

fn validate_resource_field_ref(
    r: &Value,
    p: &FieldPath,
    volume: bool,
    container_names: Option<&HashSet<String>>,
    errs: &mut Vec<FieldError>,
) {
    let container = get_str(r, "containerName").unwrap_or("");
    if volume && container.is_empty() {
        errs.push(FieldError::required(p.child("containerName"), ""));
    } else if let Some(names) = container_names {
        if !container.is_empty() && !names.contains(container) {
            errs.push(FieldError::invalid(
                p.child("containerName"),
                container,
                "must be the name of a container in the pod",
            ));
        }
    }
    let resource = get_str(r, "resource").unwrap_or("");
    if resource.is_empty() {
        errs.push(FieldError::required(p.child("resource"), ""));
    } else if !RESOURCE_FIELD_REFS.contains(&resource)
        && !resource.starts_with("limits.hugepages-")
        && !resource.starts_with("requests.hugepages-")
    {
        errs.push(FieldError::not_supported(
            p.child("resource"),
            resource,
            RESOURCE_FIELD_REFS,
        ));
    }
    if let Some(d) = get(r, "divisor") {
        validate_quantity(d, &p.child("divisor"), errs);
    }
}

fn validate_key_selector(s: &Value, p: &FieldPath, errs: &mut Vec<FieldError>) {
    if get_str(s, "name").unwrap_or("").is_empty() {
        errs.push(FieldError::required(p.child("name"), ""));
    }
    let key = get_str(s, "key").unwrap_or("");
    if key.is_empty() {
        errs.push(FieldError::required(p.child("key"), ""));
    } else {
        errs.extend(invalid_all(
            &p.child("key"),
            key,
            names::config_map_key(key),
        ));
    }
}

struct ContainerCtx<'a> {
    volumes: &'a HashSet<String>,
    host_network: bool,
    container_names: &'a HashSet<String>,
}

fn validate_handlers(v: &Value, p: &FieldPath, handlers: &[&str], errs: &mut Vec<FieldError>) {
    let set: Vec<&str> = handlers
        .iter()
        .copied()
        .filter(|h| get(v, h).is_some())
        .collect();
    match set.as_slice() {
        [] => errs.push(FieldError::required(
            p.clone(),
            "must specify a handler type",
        )),
        [_] => {}
        [_, rest @ ..] => {
            for h in rest {
                errs.push(FieldError::forbidden(
                    p.child(h),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
}

fn validate_container(
    c: &Value,
    p: &FieldPath,
    init: bool,
    ctx: &ContainerCtx<'_>,
    names_seen: &mut HashSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let name = get_str(c, "name").unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(p.child("name"), ""));
    } else {
        let msgs = names::dns1123_label(name);
        if !msgs.is_empty() {
            errs.extend(invalid_all(&p.child("name"), name, msgs));
        } else if !names_seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(p.child("name"), name));
        }
    }
    let image = get_str(c, "image").unwrap_or("");
    if image.is_empty() {
        errs.push(FieldError::required(p.child("image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            p.child("image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    if let Some(rp) = get_str(c, "restartPolicy") {
        if !init {
            errs.push(FieldError::forbidden(
                p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        } else if rp != "Always" {
            errs.push(FieldError::not_supported(
                p.child("restartPolicy"),
                rp,
                &["Always"],
            ));
        }
    }
    match get_str(c, "imagePullPolicy").unwrap_or("") {
        "" => errs.push(FieldError::required(p.child("imagePullPolicy"), "")),
        v if !PULL_POLICIES.contains(&v) => errs.push(FieldError::not_supported(
            p.child("imagePullPolicy"),
            v,
            PULL_POLICIES,
        )),
        _ => {}
    }
    match get_str(c, "terminationMessagePolicy").unwrap_or("") {
        "" => errs.push(FieldError::required(
            p.child("terminationMessagePolicy"),
            "",
        )),
        v if !TERMINATION_MESSAGE_POLICIES.contains(&v) => errs.push(FieldError::not_supported(
            p.child("terminationMessagePolicy"),
            v,
            TERMINATION_MESSAGE_POLICIES,
        )),
        _ => {}
    }

    // Ports.
    let mut port_names = HashSet::new();
    for (j, port) in get_arr(c, "ports").iter().enumerate() {
        let pp = p.child("ports").index(j);
        let cp = get_i64(port, "containerPort").unwrap_or(0);
        if cp == 0 {
            errs.push(FieldError::required(pp.child("containerPort"), ""));
        } else {
            errs.extend(
                names::port_number(cp)
                    .into_iter()
                    .map(|m| FieldError::invalid(pp.child("containerPort"), cp, m)),
            );
        }
        let hp = get_i64(port, "hostPort").unwrap_or(0);
        if hp != 0 {
            errs.extend(
                names::port_number(hp)
                    .into_iter()
                    .map(|m| FieldError::invalid(pp.child("hostPort"), hp, m)),
            );
        }
        if ctx.host_network && hp != 0 && hp != cp {
            errs.push(FieldError::invalid(
                pp.child("hostPort"),
                hp,
                "must match `containerPort` when `hostNetwork` is true",
            ));
        }
        match get_str(port, "protocol").unwrap_or("") {
            "" => errs.push(FieldError::required(pp.child("protocol"), "")),
            v if !PROTOCOLS.contains(&v) => errs.push(FieldError::not_supported(
                pp.child("protocol"),
                v,
                PROTOCOLS,
            )),
            _ => {}
        }
        if let Some(n) = get_str(port, "name").filter(|n| !n.is_empty()) {
            let msgs = names::port_name(n);
            if !msgs.is_empty() {
                errs.extend(invalid_all(&pp.child("name"), n, msgs));
            } else if !port_names.insert(n.to_string()) {
                errs.push(FieldError::duplicate(pp.child("name"), n));
            }
        }
        if let Some(ip) = get_str(port, "hostIP").filter(|s| !s.is_empty()) {
            if !names::is_ip(ip) {
                errs.push(FieldError::invalid(pp.child("hostIP"), ip, IP_MESSAGE));
            }
        }
    }

    // Environment.
    for (j, e) in get_arr(c, "env").iter().enumerate() {
        let ep = p.child("env").index(j);
        let n = get_str(e, "name").unwrap_or("");
        if n.is_empty() {
            errs.push(FieldError::required(ep.child("name"), ""));
        } else {
            errs.extend(invalid_all(&ep.child("name"), n, names::env_var_name(n)));
        }
        if let Some(from) = get(e, "valueFrom") {
            let fp = ep.child("valueFrom");
            let sources: Vec<&str> = [
                "fieldRef",
                "resourceFieldRef",
                "configMapKeyRef",
                "secretKeyRef",
                "fileKeyRef",
            ]
            .into_iter()
            .filter(|k| get(from, k).is_some())
            .collect();
            if sources.is_empty() {
                errs.push(FieldError::invalid(fp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
            } else if !get_str(e, "value").unwrap_or("").is_empty() {
                errs.push(FieldError::invalid(
                    fp,
                    "",
                    "may not be specified when `value` is not empty",
                ));
            } else if sources.len() > 1 {
                errs.push(FieldError::invalid(
                    fp,
                    "",
                    "may not have more than one field specified at a time",
                ));
            } else {
                let inner = get(from, sources[0]).unwrap_or(&NULL);
                let ip = fp.child(sources[0]);
                match sources[0] {
                    "fieldRef" => validate_field_ref(inner, &ip, ENV_FIELD_PATHS, errs),
                    "resourceFieldRef" => validate_resource_field_ref(
                        inner,
                        &ip,
                        false,
                        Some(ctx.container_names),
                        errs,
                    ),
                    "configMapKeyRef" | "secretKeyRef" => validate_key_selector(inner, &ip, errs),
                    _ => {}
                }
            }
        }
    }
    for (j, e) in get_arr(c, "envFrom").iter().enumerate() {
        let ep = p.child("envFrom").index(j);
        if let Some(prefix) = get_str(e, "prefix").filter(|s| !s.is_empty()) {
            errs.extend(invalid_all(
                &ep.child("prefix"),
                prefix,
                names::env_var_name(prefix),
            ));
        }
        let sources: Vec<&str> = ["configMapRef", "secretRef"]
            .into_iter()
            .filter(|k| get(e, k).is_some())
            .collect();
        match sources.as_slice() {
            [] => errs.push(FieldError::invalid(
                ep,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            [one] => {
                let n = get(e, one).and_then(|r| get_str(r, "name")).unwrap_or("");
                if n.is_empty() {
                    errs.push(FieldError::required(ep.child(one).child("name"), ""));
                } else {
                    errs.extend(invalid_all(
                        &ep.child(one).child("name"),
                        n,
                        names::dns1123_subdomain(n),
                    ));
                }
            }
            _ => errs.push(FieldError::invalid(
                ep,
                "",
                "may not have more than one field specified at a time",
            )),
        }
    }

    // Volume mounts.
    let mut mount_paths = HashSet::new();
    for (j, m) in get_arr(c, "volumeMounts").iter().enumerate() {
        let mp = p.child("volumeMounts").index(j);
        let n = get_str(m, "name").unwrap_or("");
        if n.is_empty() {
            errs.push(FieldError::required(mp.child("name"), ""));
        } else if !ctx.volumes.contains(n) {
            errs.push(FieldError::not_found(mp.child("name"), n));
        }
        let path = get_str(m, "mountPath").unwrap_or("");
        if path.is_empty() {
            errs.push(FieldError::required(mp.child("mountPath"), ""));
        } else if !mount_paths.insert(path.to_string()) {
            errs.push(FieldError::invalid(
                mp.child("mountPath"),
                path,
                "must be unique",
            ));
        }
        if let Some(sub) = get_str(m, "subPath").filter(|s| !s.is_empty()) {
            errs.extend(names::local_descending_path(sub, &mp.child("subPath")));
        }
    }

    // Resources.
    if let Some(res) = get(c, "resources") {
        let rp = p.child("resources");
        let mut parsed: HashMap<&str, HashMap<String, (Quantity, String)>> = HashMap::new();
        for key in ["limits", "requests"] {
            let Some(m) = get_obj(res, key) else { continue };
            for (rname, q) in m {
                let qp = rp.child(key).key(rname);
                validate_resource_name(rname, &qp, errs);
                if let Some(v) = validate_quantity(q, &qp, errs) {
                    let shown = q
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| q.to_string());
                    parsed
                        .entry(key)
                        .or_default()
                        .insert(rname.clone(), (v, shown));
                }
            }
        }
        if let (Some(req), Some(lim)) = (parsed.get("requests"), parsed.get("limits")) {
            let mut names_sorted: Vec<&String> = req.keys().collect();
            names_sorted.sort();
            for rname in names_sorted {
                if let (Some((rq, rs)), Some((lq, ls))) = (req.get(rname), lim.get(rname)) {
                    if rq > lq {
                        errs.push(FieldError::invalid(
                            rp.child("requests").key(rname),
                            rs.as_str(),
                            format!("must be less than or equal to {rname} limit of {ls}"),
                        ));
                    }
                }
            }
        }
    }

    // Security context.
    if let Some(sc) = get(c, "securityContext") {
        let sp = p.child("securityContext");
        validate_ids(sc, &sp, &["runAsUser", "runAsGroup"], errs);
        let ape_false = get(sc, "allowPrivilegeEscalation").and_then(Value::as_bool) == Some(false);
        if ape_false && get_bool(sc, "privileged") {
            errs.push(FieldError::invalid(
                sp.clone(),
                sc.clone(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        let adds_sys_admin = get(sc, "capabilities")
            .map(|caps| get_arr(caps, "add"))
            .unwrap_or(&[])
            .iter()
            .any(|a| matches!(a.as_str(), Some("SYS_ADMIN") | Some("CAP_SYS_ADMIN")));
        if ape_false && adds_sys_admin {
            errs.push(FieldError::invalid(sp, sc.clone(), "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"));
        }
    }

    // Probes and hooks (refused as unsupported for now, but still checked for shape).
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(pr) = get(c, probe) {
            validate_handlers(pr, &p.child(probe), PROBE_HANDLERS, errs);
        }
    }
    if let Some(lc) = get(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = get(lc, hook) {
                validate_handlers(
                    h,
                    &p.child("lifecycle").child(hook),
                    LIFECYCLE_HANDLERS,
                    errs,
                );
            }
        }
    }
}

fn validate_resource_name(name: &str, p: &FieldPath, errs: &mut Vec<FieldError>) {
    let msgs = names::qualified_name(name);
    if !msgs.is_empty() {
        errs.extend(invalid_all(p, name, msgs));
        return;
    }
    if !name.contains('/') {
        if !STANDARD_CONTAINER_RESOURCES.contains(&name) && !name.starts_with("hugepages-") {
            errs.push(FieldError::invalid(
                p.clone(),
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if name.starts_with("kubernetes.io/") || name.contains(".kubernetes.io/") {
        errs.push(FieldError::invalid(
            p.clone(),
            name,
            "must be a standard resource for containers",
        ));
    } else if name.starts_with("requests.") {
        errs.push(FieldError::invalid(
            p.clone(),
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Update

const UPDATABLE: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// The update rules of a Pod: the spec is immutable except images, a lowered (or newly set)
/// activeDeadlineSeconds and added tolerations. Both objects are compared after defaulting.
pub fn validate_pod_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sp = FieldPath::root("spec");
    let mut old_d = old.clone();
    let mut new_d = new.clone();
    default_pod_spec(&mut old_d);
    default_pod_spec(&mut new_d);
    let old_spec = get(&old_d, "spec").cloned().unwrap_or(Value::Null);
    let new_spec = get(&new_d, "spec").cloned().unwrap_or(Value::Null);

    // activeDeadlineSeconds may be set or lowered, never raised or removed.
    match (
        get_i64(&old_spec, "activeDeadlineSeconds"),
        get(&new_spec, "activeDeadlineSeconds"),
    ) {
        (Some(_), None) => errs.push(FieldError::invalid(
            sp.child("activeDeadlineSeconds"),
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (Some(o), Some(n)) if n.as_i64().is_some_and(|n| n > o) => errs.push(FieldError::invalid(
            sp.child("activeDeadlineSeconds"),
            n.clone(),
            "must be less than or equal to previous value",
        )),
        _ => {}
    }
    // Existing tolerations stay; new ones may be added.
    let new_tols = get_arr(&new_spec, "tolerations");
    if get_arr(&old_spec, "tolerations")
        .iter()
        .any(|t| !new_tols.contains(t))
    {
        errs.push(FieldError::forbidden(
            sp.child("tolerations"),
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }

    // Munge the mutable fields of the new spec into the old one and compare the rest.
    let mut munged = old_spec.clone();
    if let (Some(m), Some(n)) = (munged.as_object_mut(), new_spec.as_object()) {
        for list in ["containers", "initContainers"] {
            if let (Some(Value::Array(mc)), Some(Value::Array(nc))) = (m.get_mut(list), n.get(list))
            {
                if mc.len() == nc.len() {
                    for (a, b) in mc.iter_mut().zip(nc) {
                        if let (Some(am), Some(img)) = (a.as_object_mut(), b.get("image")) {
                            am.insert("image".to_string(), img.clone());
                        }
                    }
                }
            }
        }
        for key in ["activeDeadlineSeconds", "tolerations"] {
            match n.get(key) {
                Some(v) => m.insert(key.to_string(), v.clone()),
                None => m.remove(key),
            };
        }
        if get_i64(&old_spec, "terminationGracePeriodSeconds").is_some_and(|o| o < 0)
            && get_i64(&new_spec, "terminationGracePeriodSeconds") == Some(1)
        {
            m.insert("terminationGracePeriodSeconds".to_string(), json!(1));
        }
    }
    if munged != new_spec {
        let mut changes = Vec::new();
        diff_paths(&munged, &new_spec, &sp, &mut changes);
        errs.push(FieldError::forbidden(
            sp,
            format!(
                "pod updates may not change fields other than {UPDATABLE}\n  changed: {}",
                changes.join(", ")
            ),
        ));
    }
    errs
}

fn diff_paths(a: &Value, b: &Value, p: &FieldPath, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.dedup();
            let mut seen = HashSet::new();
            for k in keys {
                if seen.insert(k) {
                    diff_paths(
                        x.get(k).unwrap_or(&NULL),
                        y.get(k).unwrap_or(&NULL),
                        &p.child(k),
                        out,
                    );
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_paths(u, v, &p.index(i), out);
            }
        }
        _ if a != b => out.push(p.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn defaulted(spec: Value) -> Value {
        let mut p = pod(spec);
        default_pod(&mut p);
        p
    }

    fn errors(spec: Value) -> Vec<String> {
        validate_pod(&defaulted(spec))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn defaults_like_kubernetes() {
        let p = defaulted(
            json!({"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": 1, "memory": "64Mi"}}}],
            "volumes": [{"name": "v", "configMap": {"name": "x"}}, {"name": "h", "hostPath": {"path": "/x"}}, {"name": "e", "emptyDir": {}}]}),
        );
        let s = &p["spec"];
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["schedulerName"], "default-scheduler");
        assert_eq!(s["terminationGracePeriodSeconds"], 30);
        assert_eq!(s["serviceAccountName"], "default");
        assert_eq!(s["serviceAccount"], "default");
        assert_eq!(s["securityContext"], json!({}));
        assert_eq!(s["enableServiceLinks"], true);
        let c = &s["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "1", "memory": "64Mi"})
        );
        assert_eq!(s["volumes"][0]["configMap"]["defaultMode"], 420);
        assert_eq!(s["volumes"][1]["hostPath"]["type"], "");
        assert_eq!(s["volumes"][2]["emptyDir"], json!({}));
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": "Guaranteed"})
        );
        assert!(validate_pod(&p).is_empty());
        // Defaulting is idempotent.
        let mut again = p.clone();
        default_pod(&mut again);
        assert_eq!(again, p);
    }

    #[test]
    fn pull_policy_rule() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(
            default_pull_policy("localhost:5000/nginx:1"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
        assert_eq!(default_pull_policy("nginx:latest@sha256:abc"), "Always");
    }

    #[test]
    fn qos_classes() {
        let q = |res: Value| {
            qos_class(&defaulted(
                json!({"containers": [{"name": "c", "image": "x", "resources": res}]}),
            ))
        };
        assert_eq!(q(json!({})), "BestEffort");
        assert_eq!(q(json!({"requests": {"cpu": "100m"}})), "Burstable");
        assert_eq!(
            q(json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
            "Guaranteed"
        );
        assert_eq!(
            q(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})),
            "Burstable"
        );
        assert_eq!(q(json!({"limits": {"cpu": "1"}})), "Burstable");
        assert_eq!(q(json!({"requests": {"cpu": "0"}})), "BestEffort");
    }

    #[test]
    fn container_rules() {
        assert_eq!(
            errors(json!({"containers": []})),
            vec!["spec.containers: Required value"]
        );
        assert_eq!(
            errors(json!({"containers": [{"name": "c"}]})),
            vec!["spec.containers[0].image: Required value"]
        );
        assert_eq!(
            errors(
                json!({"initContainers": [{"name": "c", "image": "x"}], "containers": [{"name": "c", "image": "x"}]})
            ),
            vec!["spec.containers[0].name: Duplicate value: \"c\""]
        );
        assert_eq!(
            errors(json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]})),
            vec!["spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1"]
        );
        assert_eq!(
            errors(json!({"containers": [{"name": "c", "image": "x", "restartPolicy": "Always"}]})),
            vec!["spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"]
        );
        assert_eq!(
            errors(json!({"restartPolicy": "Sometimes", "containers": [{"name": "c", "image": "x"}]})),
            vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""]
        );
        assert_eq!(
            errors(
                json!({"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]})
            ),
            vec!["spec.containers[0].volumeMounts[0].name: Not found: \"nope\""]
        );
        assert_eq!(
            errors(json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A", "valueFrom": {}}]}]})),
            vec!["spec.containers[0].env[0].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"]
        );
    }

    #[test]
    fn dns_rules() {
        assert_eq!(
            errors(json!({"dnsPolicy": "None", "containers": [{"name": "c", "image": "x"}]})),
            vec![
                "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"
            ]
        );
        let e = errors(
            json!({"dnsConfig": {"nameservers": ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"]}, "containers": [{"name": "c", "image": "x"}]}),
        );
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("spec.dnsConfig.nameservers: Invalid value"),
            "{e:?}"
        );
    }

    #[test]
    fn updates() {
        let old = defaulted(
            json!({"containers": [{"name": "c", "image": "x:1"}], "activeDeadlineSeconds": 100}),
        );
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("x:2");
        new["spec"]["activeDeadlineSeconds"] = json!(50);
        assert!(validate_pod_update(&old, &new).is_empty());
        new["spec"]["activeDeadlineSeconds"] = json!(500);
        assert_eq!(validate_pod_update(&old, &new)[0].to_string(), "spec.activeDeadlineSeconds: Invalid value: 500: must be less than or equal to previous value");
        let mut changed = old.clone();
        changed["spec"]["restartPolicy"] = json!("Never");
        let errs = validate_pod_update(&old, &changed);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"));
        assert!(errs[0].detail.contains("spec.restartPolicy"));
        // A manifest without defaults is the same spec.
        let bare = pod(
            json!({"containers": [{"name": "c", "image": "x:1"}], "activeDeadlineSeconds": 100}),
        );
        assert!(validate_pod_update(&old, &bare).is_empty());
    }
}
