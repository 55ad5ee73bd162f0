//! A container's environment and argv, exactly as kubelet (`makeEnvironmentVariables`,
//! `ExpandContainerCommandAndArgs`) and containerd's CRI plugin build them:
//!
//! 1. service environment variables (`<SVC>_SERVICE_HOST`, Docker link variables) for the
//!    Services of the pod's namespace when `enableServiceLinks`, and for `default/kubernetes`
//!    always;
//! 2. `envFrom` ConfigMaps/Secrets (prefix; invalid names skipped with a Warning);
//! 3. `env` in order: values with `$(VAR)` expansion against what is defined so far,
//!    `valueFrom` (configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef).
//!
//! A later definition replaces an earlier one in place. The runtime's final list (see
//! [`final_env`]) is containerd's: default PATH, HOSTNAME, the image's ENV, then the list
//! above overriding it. Kubelet keeps these in Go maps (random order); we keep definition
//! order, which is deterministic and otherwise identical.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use podium_api::admission::names::env_var_name;
use podium_api::quantity::Quantity;
use serde_json::Value;

use crate::facts::{
    arr_at, at, bool_at, find_container, namespace_of, str_at, strings_at, ImageFacts,
    NodeAllocatable, NodeFacts, Resolved, Warning,
};

/// containerd's default PATH, kept unless the image sets its own.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why the environment cannot be built; the texts are kubelet's (they become the
/// CreateContainerConfigError message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyMissing {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyMissing {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("secret {namespace}/{name} key {key} is not valid base64")]
    SecretNotBase64 {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("invalid quantity {value:?} in {field}")]
    BadQuantity { field: String, value: String },
}

/// An ordered environment where setting an existing name replaces its value in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvList {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl EnvList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Defines `name`, replacing an earlier value in place.
    pub fn set(&mut self, name: &str, value: String) {
        match self.index.get(name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.to_string(), self.vars.len());
                self.vars.push((name.to_string(), value));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.vars[i].1.as_str())
    }

    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    pub fn into_vars(self) -> Vec<(String, String)> {
        self.vars
    }
}

/// Kubernetes' `$(VAR)` expansion (third_party/forked/golang/expansion): `$(NAME)` becomes
/// the value `lookup` gives, or stays `$(NAME)` when unresolvable; `$$` becomes `$`; a `$`
/// before anything else, an unterminated `$(`, or a trailing `$` stay as written.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let b = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < b.len() {
        if b[cursor] == b'$' && cursor + 1 < b.len() {
            out.extend_from_slice(&b[checkpoint..cursor]);
            let advance = match b[cursor + 1] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match b[cursor + 2..].iter().position(|&c| c == b')') {
                    Some(len) => {
                        // '(' and ')' are ASCII, so these are char boundaries.
                        let name = &input[cursor + 2..cursor + 2 + len];
                        match lookup(name) {
                            Some(v) => out.extend_from_slice(v.as_bytes()),
                            None => {
                                out.extend_from_slice(b"$(");
                                out.extend_from_slice(name.as_bytes());
                                out.push(b')');
                            }
                        }
                        len + 2
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                // Copied as bytes: the rest of a multi-byte char follows from `checkpoint`.
                other => {
                    out.push(b'$');
                    out.push(other);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < b.len() {
        out.extend_from_slice(&b[checkpoint..]);
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Expansion against an [`EnvList`].
pub fn expand_with(input: &str, env: &EnvList) -> String {
    expand(input, &|name| env.get(name).map(str::to_string))
}

/// kubelet's `makeEnvVariableName`: upper case, `-` → `_`.
fn env_name_of(service_name: &str) -> String {
    service_name.replace('-', "_").to_uppercase()
}

/// A service's cluster IP, if it has one (not headless).
fn cluster_ip(svc: &Value) -> Option<&str> {
    match str_at(svc, &["spec", "clusterIP"]) {
        "" | "None" => None,
        ip => Some(ip),
    }
}

/// The variables of one Service (kubelet's `envvars.FromServices` for one service):
/// `_SERVICE_HOST`, `_SERVICE_PORT`, `_SERVICE_PORT_<NAME>` for named ports, and the Docker
/// link variables `_PORT`, `_PORT_<port>_<PROTO>{,_PROTO,_PORT,_ADDR}`.
pub fn service_env_vars(svc: &Value) -> Vec<(String, String)> {
    let (Some(ip), ports) = (cluster_ip(svc), arr_at(svc, &["spec", "ports"])) else {
        return Vec::new();
    };
    let Some(first) = ports.first() else {
        return Vec::new();
    };
    let prefix = env_name_of(str_at(svc, &["metadata", "name"]));
    let port_of = |p: &Value| at(p, &["port"]).and_then(Value::as_i64).unwrap_or(0);
    let mut out = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.to_string()),
        (format!("{prefix}_SERVICE_PORT"), port_of(first).to_string()),
    ];
    for p in ports {
        let name = str_at(p, &["name"]);
        if !name.is_empty() {
            out.push((
                format!("{prefix}_SERVICE_PORT_{}", env_name_of(name)),
                port_of(p).to_string(),
            ));
        }
    }
    // net.JoinHostPort brackets IPv6 addresses.
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    for (i, p) in ports.iter().enumerate() {
        let proto = match str_at(p, &["protocol"]) {
            "" => "TCP",
            other => other,
        };
        let lower = proto.to_lowercase();
        let port = port_of(p);
        let url = format!("{lower}://{host}:{port}");
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let pp = format!("{prefix}_PORT_{port}_{}", proto.to_uppercase());
        out.push((pp.clone(), url));
        out.push((format!("{pp}_PROTO"), lower));
        out.push((format!("{pp}_PORT"), port.to_string()));
        out.push((format!("{pp}_ADDR"), ip.to_string()));
    }
    out
}

/// kubelet's `getServiceEnvVarMap`: the `kubernetes` Service of `default` always, the
/// Services of `namespace` when `enable_service_links` (a namespace's own `kubernetes`
/// Service wins over the default one). Services are taken in name order.
pub fn service_env(
    services: &[Value],
    namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<&str, &Value> = BTreeMap::new();
    for svc in services {
        if cluster_ip(svc).is_none() {
            continue;
        }
        let name = str_at(svc, &["metadata", "name"]);
        let ns = match str_at(svc, &["metadata", "namespace"]) {
            "" => "default",
            ns => ns,
        };
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, svc);
        }
    }
    chosen.values().flat_map(|s| service_env_vars(s)).collect()
}

/// The environment kubelet computes for a container, with the Warnings it records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerEnv {
    /// Kubelet's variables in definition order (service variables first); the image's ENV
    /// and HOSTNAME are not in here (see [`final_env`]).
    pub env: EnvList,
    pub warnings: Vec<Warning>,
}

fn optional(r: &Value) -> bool {
    bool_at(r, &["optional"]).unwrap_or(false)
}

/// ConfigMap `data` as strings.
fn configmap_data(cm: &Value) -> BTreeMap<String, String> {
    at(cm, &["data"])
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes one Secret `data` value (base64 as stored); bytes that are not UTF-8 are
/// replaced (an env value is a string).
fn secret_value(secret: &Value, key: &str) -> Option<Result<String, ()>> {
    let raw = at(secret, &["data", key])?.as_str().unwrap_or_default();
    Some(
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|_| ()),
    )
}

/// Builds kubelet's environment for `container` (a container object of `pod`).
pub fn container_env(
    pod: &Value,
    container: &Value,
    facts: &NodeFacts,
    resolved: &Resolved,
) -> Result<ContainerEnv, EnvError> {
    let ns = namespace_of(pod);
    let links = bool_at(pod, &["spec", "enableServiceLinks"]).unwrap_or(true);
    let mut env = EnvList::new();
    for (k, v) in service_env(&resolved.services, ns, links) {
        env.set(&k, v);
    }
    let mut warnings = Vec::new();

    for from in arr_at(container, &["envFrom"]) {
        let prefix = str_at(from, &["prefix"]);
        let (kind, name, data) = if let Some(r) = at(from, &["configMapRef"]) {
            let name = str_at(r, &["name"]);
            match resolved.configmaps.get(name) {
                Some(cm) => ("configMap", name, configmap_data(cm)),
                None if optional(r) => continue,
                None => return Err(EnvError::ConfigMapNotFound(name.to_string())),
            }
        } else if let Some(r) = at(from, &["secretRef"]) {
            let name = str_at(r, &["name"]);
            let Some(secret) = resolved.secrets.get(name) else {
                if optional(r) {
                    continue;
                }
                return Err(EnvError::SecretNotFound(name.to_string()));
            };
            let mut data = BTreeMap::new();
            if let Some(m) = at(secret, &["data"]).and_then(Value::as_object) {
                for k in m.keys() {
                    match secret_value(secret, k) {
                        Some(Ok(v)) => {
                            data.insert(k.clone(), v);
                        }
                        _ => {
                            return Err(EnvError::SecretNotBase64 {
                                key: k.clone(),
                                namespace: ns.to_string(),
                                name: name.to_string(),
                            })
                        }
                    }
                }
            }
            ("secret", name, data)
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (k, v) in data {
            let k = format!("{prefix}{k}");
            if k.is_empty() || !env_var_name(&k).is_empty() {
                invalid.push(k);
                continue;
            }
            env.set(&k, v);
        }
        if !invalid.is_empty() {
            invalid.sort();
            warnings.push(Warning {
                reason: "InvalidEnvironmentVariableNames".to_string(),
                message: format!(
                    "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                    invalid.join(", ")
                ),
            });
        }
    }

    for var in arr_at(container, &["env"]) {
        let name = str_at(var, &["name"]);
        let value = str_at(var, &["value"]);
        let value_from = at(var, &["valueFrom"]);
        let resolved_value = if !value.is_empty() {
            expand_with(value, &env)
        } else if let Some(from) = value_from {
            if let Some(f) = at(from, &["fieldRef"]) {
                field_ref_value(
                    pod,
                    str_at(f, &["fieldPath"]),
                    &facts.pod_ips,
                    &facts.host_ips,
                )?
            } else if let Some(r) = at(from, &["resourceFieldRef"]) {
                resource_field_ref_value(pod, container, r, &facts.allocatable)?
            } else if let Some(r) = at(from, &["configMapKeyRef"]) {
                let (cm_name, key) = (str_at(r, &["name"]), str_at(r, &["key"]));
                let Some(cm) = resolved.configmaps.get(cm_name) else {
                    if optional(r) {
                        continue;
                    }
                    return Err(EnvError::ConfigMapNotFound(cm_name.to_string()));
                };
                match at(cm, &["data", key]).and_then(Value::as_str) {
                    Some(v) => v.to_string(),
                    None if optional(r) => continue,
                    None => {
                        return Err(EnvError::ConfigMapKeyMissing {
                            key: key.to_string(),
                            namespace: ns.to_string(),
                            name: cm_name.to_string(),
                        })
                    }
                }
            } else if let Some(r) = at(from, &["secretKeyRef"]) {
                let (s_name, key) = (str_at(r, &["name"]), str_at(r, &["key"]));
                let Some(secret) = resolved.secrets.get(s_name) else {
                    if optional(r) {
                        continue;
                    }
                    return Err(EnvError::SecretNotFound(s_name.to_string()));
                };
                match secret_value(secret, key) {
                    Some(Ok(v)) => v,
                    Some(Err(())) => {
                        return Err(EnvError::SecretNotBase64 {
                            key: key.to_string(),
                            namespace: ns.to_string(),
                            name: s_name.to_string(),
                        })
                    }
                    None if optional(r) => continue,
                    None => {
                        return Err(EnvError::SecretKeyMissing {
                            key: key.to_string(),
                            namespace: ns.to_string(),
                            name: s_name.to_string(),
                        })
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(name, resolved_value);
    }
    Ok(ContainerEnv { env, warnings })
}

/// kubelet's `fieldpath.FormatMap`: sorted `key="value"` lines (Go `%q` quoting).
pub fn format_map(m: &serde_json::Map<String, Value>) -> String {
    let sorted: BTreeMap<&String, &str> = m
        .iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
        .collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote` for the characters labels and annotations hold.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `metadata.labels['key']` → (`metadata.labels`, `key`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    Some((base, key))
}

/// The value of a Downward API `fieldRef` (kubelet's `podFieldSelectorRuntimeValue`).
pub fn field_ref_value(
    pod: &Value,
    field_path: &str,
    pod_ips: &[String],
    host_ips: &[String],
) -> Result<String, EnvError> {
    let meta = |k: &str| at(pod, &["metadata", k]).and_then(Value::as_object);
    Ok(match field_path {
        "spec.nodeName" => str_at(pod, &["spec", "nodeName"]).to_string(),
        "spec.serviceAccountName" => str_at(pod, &["spec", "serviceAccountName"]).to_string(),
        "status.hostIP" => host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => host_ips.join(","),
        "status.podIP" => pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => pod_ips.join(","),
        "metadata.name" => str_at(pod, &["metadata", "name"]).to_string(),
        "metadata.namespace" => namespace_of(pod).to_string(),
        "metadata.uid" => str_at(pod, &["metadata", "uid"]).to_string(),
        "metadata.labels" | "metadata.annotations" => {
            let key = field_path.trim_start_matches("metadata.");
            meta(key).map(format_map).unwrap_or_default()
        }
        other => match split_subscript(other) {
            Some((base @ ("metadata.labels" | "metadata.annotations"), key)) => {
                let map = base.trim_start_matches("metadata.");
                meta(map)
                    .and_then(|m| m.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            }
            _ => return Err(EnvError::UnsupportedFieldPath(other.to_string())),
        },
    })
}

fn quantity(v: &Value, field: &str) -> Result<Quantity, EnvError> {
    Quantity::from_json(v).map_err(|_| EnvError::BadQuantity {
        field: field.to_string(),
        value: v.to_string(),
    })
}

/// Integer ceil of a / b for b > 0 (Go's `math.Ceil(float64(a)/float64(b))`).
fn ceil_div(a: i128, b: i128) -> i128 {
    if b <= 0 {
        return 0;
    }
    let q = a / b;
    if a % b != 0 && a > 0 {
        q + 1
    } else {
        q
    }
}

/// The value of a Downward API `resourceFieldRef` for `container` (kubelet's
/// `containerResourceRuntimeValue` on a pod whose missing limits default to the node's
/// allocatable): cpu rounded up to the divisor in millicores, memory, ephemeral-storage and
/// hugepages rounded up to the divisor in bytes. `containerName` picks another container.
pub fn resource_field_ref_value(
    pod: &Value,
    container: &Value,
    selector: &Value,
    allocatable: &NodeAllocatable,
) -> Result<String, EnvError> {
    let target = match str_at(selector, &["containerName"]) {
        "" => container,
        name => {
            find_container(pod, name).ok_or_else(|| EnvError::ContainerNotFound(name.into()))?
        }
    };
    let resource = str_at(selector, &["resource"]);
    let divisor = match at(selector, &["divisor"]) {
        Some(d) => quantity(d, "divisor")?,
        None => Quantity::default(),
    };
    let divisor = if divisor.is_zero() {
        Quantity::from_units(1)
    } else {
        divisor
    };
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| EnvError::UnsupportedResource(resource.to_string()))?;
    let is_cpu = name == "cpu";
    let supported =
        is_cpu || name == "memory" || name == "ephemeral-storage" || name.starts_with("hugepages-");
    if !supported || (kind != "limits" && kind != "requests") {
        return Err(EnvError::UnsupportedResource(resource.to_string()));
    }
    let field = format!("resources.{kind}.{name}");
    let declared = at(target, &["resources", kind, name])
        .map(|v| quantity(v, &field))
        .transpose()?;
    let value = match (kind, declared) {
        // MergeContainerResourceLimits: absent or zero limits become node allocatable.
        ("limits", d) if d.is_none_or(|q| q.is_zero()) => {
            allocatable.get(name).or(d).unwrap_or_default()
        }
        (_, d) => d.unwrap_or_default(),
    };
    let out = if is_cpu {
        ceil_div(i128::from(value.millis()), i128::from(divisor.millis()))
    } else {
        ceil_div(i128::from(value.value()), i128::from(divisor.value()))
    };
    Ok(out.to_string())
}

/// The process argv: containerd's merge of the image's ENTRYPOINT/CMD with the container's
/// command/args after kubelet's `$(VAR)` expansion against `env`: `command` replaces the
/// ENTRYPOINT and drops CMD; `args` alone replaces CMD. Empty = "no command specified".
pub fn command_and_args(container: &Value, image: &ImageFacts, env: &EnvList) -> Vec<String> {
    let command: Vec<String> = strings_at(container, &["command"])
        .iter()
        .map(|c| expand_with(c, env))
        .collect();
    let mut args: Vec<String> = strings_at(container, &["args"])
        .iter()
        .map(|a| expand_with(a, env))
        .collect();
    let mut argv = command;
    if argv.is_empty() {
        if args.is_empty() {
            args = image.cmd.clone();
        }
        // An ENTRYPOINT of [""] means "none" (docker's way to reset it).
        if !(image.entrypoint.len() == 1 && image.entrypoint[0].is_empty()) {
            argv = image.entrypoint.clone();
        }
    }
    argv.extend(args);
    argv
}

/// containerd's final process environment: the default PATH, `HOSTNAME`, the image's ENV,
/// then kubelet's variables; each later definition replaces an earlier one in place.
/// Image entries without `=` are ignored.
pub fn final_env(
    hostname: &str,
    image_env: &[String],
    container: &EnvList,
) -> Vec<(String, String)> {
    let mut env = EnvList::new();
    env.set("PATH", DEFAULT_PATH.to_string());
    env.set("HOSTNAME", hostname.to_string());
    for e in image_env {
        if let Some((k, v)) = e.split_once('=') {
            if !k.is_empty() {
                env.set(k, v.to_string());
            }
        }
    }
    for (k, v) in container.vars() {
        env.set(k, v.clone());
    }
    env.into_vars()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup_in(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> {
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let l = lookup_in(&[("VAR_A", "A"), ("VAR_B", "B"), ("EMPTY", "")]);
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_B)", "A-B"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$(EMPTY)x", "x"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(", "$("),
            ("$", "$"),
            ("a$", "a$"),
            ("$VAR_A", "$VAR_A"),
            ("$()", "$()"),
            ("$(VAR_A)$", "A$"),
            ("f$(VAR_A)$$", "fA$"),
            ("é$é$(VAR_A)", "é$éA"),
            ("$(VAR_A)$(VAR_A)", "AA"),
            ("$(VAR_A)(", "A("),
            ("no refs", "no refs"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &l), want, "input {input:?}");
        }
    }

    fn svc(ns: &str, name: &str, ip: &str, ports: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": ns},
               "spec": {"clusterIP": ip, "ports": ports}})
    }

    fn kubernetes_svc() -> Value {
        svc(
            "default",
            "kubernetes",
            "10.0.0.1",
            json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
        )
    }

    #[test]
    fn kubernetes_service_variables_match_the_seed() {
        let vars: BTreeMap<_, _> = service_env_vars(&kubernetes_svc()).into_iter().collect();
        let want: BTreeMap<String, String> = [
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.0.0.1"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.0.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.0.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(vars, want);
    }

    #[test]
    fn service_variables_names_ports_and_ipv6() {
        let s = svc(
            "web",
            "my-svc",
            "fd00::10",
            json!([{"port": 80}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}]),
        );
        let v = service_env_vars(&s);
        let get = |k: &str| v.iter().find(|(n, _)| n == k).map(|(_, x)| x.as_str());
        assert_eq!(get("MY_SVC_SERVICE_HOST"), Some("fd00::10"));
        assert_eq!(get("MY_SVC_SERVICE_PORT"), Some("80"));
        assert_eq!(get("MY_SVC_SERVICE_PORT_DNS_UDP"), Some("53"));
        assert_eq!(get("MY_SVC_PORT"), Some("tcp://[fd00::10]:80"));
        assert_eq!(get("MY_SVC_PORT_53_UDP"), Some("udp://[fd00::10]:53"));
        assert_eq!(get("MY_SVC_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(get("MY_SVC_PORT_80_TCP_ADDR"), Some("fd00::10"));
        assert_eq!(v[0].0, "MY_SVC_SERVICE_HOST");
        assert_eq!(v[1].0, "MY_SVC_SERVICE_PORT");
        // Headless and port-less services give nothing.
        assert!(service_env_vars(&svc("web", "h", "None", json!([{"port": 80}]))).is_empty());
        assert!(service_env_vars(&svc("web", "e", "10.0.0.9", json!([]))).is_empty());
    }

    #[test]
    fn service_links_rule() {
        let services = vec![
            kubernetes_svc(),
            svc("web", "db", "10.0.0.5", json!([{"port": 5432}])),
            svc("other", "cache", "10.0.0.6", json!([{"port": 6379}])),
        ];
        let names = |vars: Vec<(String, String)>| -> Vec<String> {
            vars.into_iter()
                .map(|(k, _)| k)
                .filter(|k| k.ends_with("_SERVICE_HOST"))
                .collect()
        };
        assert_eq!(
            names(service_env(&services, "web", true)),
            vec!["DB_SERVICE_HOST", "KUBERNETES_SERVICE_HOST"]
        );
        assert_eq!(
            names(service_env(&services, "web", false)),
            vec!["KUBERNETES_SERVICE_HOST"]
        );
        // The namespace's own `kubernetes` service wins over default's.
        let mut with_own = services.clone();
        with_own.push(svc("web", "kubernetes", "10.9.9.9", json!([{"port": 1}])));
        let vars = service_env(&with_own, "web", true);
        assert!(vars
            .iter()
            .any(|(k, v)| k == "KUBERNETES_SERVICE_HOST" && v == "10.9.9.9"));
    }

    fn facts() -> NodeFacts {
        NodeFacts {
            node_name: "node-1".into(),
            hostname: "node-1".into(),
            host_ips: vec!["192.168.1.10".into(), "fd00::1".into()],
            pod_ips: vec!["10.244.1.5".into(), "fd01::5".into()],
            cluster_dns: vec!["10.0.0.10".into()],
            cluster_domain: "cluster.local".into(),
            allocatable: NodeAllocatable {
                cpu: Quantity::parse("2").unwrap(),
                memory: Quantity::parse("4Gi").unwrap(),
                ephemeral_storage: Quantity::parse("10Gi").unwrap(),
                pods: 110,
            },
            ..Default::default()
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn resolved() -> Resolved {
        let mut r = Resolved {
            services: vec![kubernetes_svc()],
            ..Default::default()
        };
        r.configmaps.insert(
            "cfg".into(),
            json!({"data": {"LOG_LEVEL": "debug", "bad key": "x", "1ok": "y", "a=b": "z"}}),
        );
        r.secrets.insert(
            "creds".into(),
            json!({"data": {"USER": b64("admin"), "PASS": b64("s3cr3t")}}),
        );
        r
    }

    fn pod_with(container: Value) -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u-1",
                         "labels": {"app": "web", "tier": "front"},
                         "annotations": {"note": "say \"hi\"\n"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "default",
                     "enableServiceLinks": true, "containers": [container]}
        })
    }

    fn env_of(container: Value) -> Result<ContainerEnv, EnvError> {
        let pod = pod_with(container);
        let c = pod["spec"]["containers"][0].clone();
        container_env(&pod, &c, &facts(), &resolved())
    }

    #[test]
    fn order_envfrom_prefix_and_overrides() {
        let out = env_of(json!({"name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                        {"secretRef": {"name": "creds"}},
                        {"configMapRef": {"name": "absent", "optional": true}}],
            "env": [{"name": "USER", "value": "override-$(PASS)"},
                    {"name": "KUBERNETES_SERVICE_HOST", "value": "mine"},
                    {"name": "EMPTY"}]}))
        .unwrap();
        let vars = out.env.vars();
        // Service variables first, then envFrom (sorted keys), then env.
        assert_eq!(vars[0].0, "KUBERNETES_SERVICE_HOST");
        assert_eq!(vars[0].1, "mine");
        let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("KUBERNETES_PORT_443_TCP_ADDR") < pos("CFG_1ok"));
        assert!(pos("CFG_1ok") < pos("CFG_LOG_LEVEL"));
        assert!(pos("CFG_LOG_LEVEL") < pos("PASS"));
        assert!(pos("PASS") < pos("USER"));
        assert!(pos("USER") < pos("EMPTY"));
        assert_eq!(out.env.get("USER"), Some("override-s3cr3t"));
        assert_eq!(out.env.get("CFG_LOG_LEVEL"), Some("debug"));
        assert_eq!(out.env.get("EMPTY"), Some(""));
        // "CFG_bad key" is valid under the relaxed rule; "CFG_a=b" is not.
        assert_eq!(out.env.get("CFG_bad key"), Some("x"));
        assert_eq!(out.env.get("CFG_a=b"), None);
        assert_eq!(
            out.warnings,
            vec![Warning {
                reason: "InvalidEnvironmentVariableNames".into(),
                message: "Keys [CFG_a=b] from the EnvFrom configMap default/cfg were skipped since they are considered invalid environment variable names.".into()
            }]
        );
    }

    #[test]
    fn expansion_sees_only_earlier_variables() {
        let out = env_of(json!({"name": "c", "env": [
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-$(C)-$(KUBERNETES_SERVICE_PORT)-$$(A)"},
            {"name": "C", "value": "c"},
            {"name": "A", "value": "$(A)$(A)"}]}))
        .unwrap();
        assert_eq!(out.env.get("B"), Some("a-$(C)-443-$(A)"));
        assert_eq!(out.env.get("A"), Some("aa"));
    }

    #[test]
    fn missing_sources_and_keys() {
        let err = |c: Value| env_of(c).unwrap_err().to_string();
        assert_eq!(
            err(json!({"name": "c", "envFrom": [{"configMapRef": {"name": "nope"}}]})),
            "configmap \"nope\" not found"
        );
        assert_eq!(
            err(json!({"name": "c", "envFrom": [{"secretRef": {"name": "nope"}}]})),
            "secret \"nope\" not found"
        );
        assert_eq!(
            err(json!({"name": "c", "env": [{"name": "X", "valueFrom":
                {"configMapKeyRef": {"name": "cfg", "key": "MISSING"}}}]})),
            "couldn't find key MISSING in ConfigMap default/cfg"
        );
        assert_eq!(
            err(json!({"name": "c", "env": [{"name": "X", "valueFrom":
                {"secretKeyRef": {"name": "creds", "key": "MISSING"}}}]})),
            "couldn't find key MISSING in Secret default/creds"
        );
        let ok = env_of(json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "M", "optional": true}}},
            {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
            {"name": "Z", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "USER"}}},
            {"name": "W", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LOG_LEVEL"}}}]}))
        .unwrap();
        assert_eq!(ok.env.get("X"), None);
        assert_eq!(ok.env.get("Y"), None);
        assert_eq!(ok.env.get("Z"), Some("admin"));
        assert_eq!(ok.env.get("W"), Some("debug"));
    }

    #[test]
    fn field_refs() {
        let pod = pod_with(json!({"name": "c"}));
        let f = facts();
        let v = |p: &str| field_ref_value(&pod, p, &f.pod_ips, &f.host_ips).unwrap();
        assert_eq!(v("metadata.name"), "p");
        assert_eq!(v("metadata.namespace"), "default");
        assert_eq!(v("metadata.uid"), "u-1");
        assert_eq!(v("metadata.labels['app']"), "web");
        assert_eq!(v("metadata.labels['missing']"), "");
        assert_eq!(v("metadata.annotations['note']"), "say \"hi\"\n");
        assert_eq!(v("metadata.labels"), "app=\"web\"\ntier=\"front\"");
        assert_eq!(v("metadata.annotations"), "note=\"say \\\"hi\\\"\\n\"");
        assert_eq!(v("spec.nodeName"), "node-1");
        assert_eq!(v("spec.serviceAccountName"), "default");
        assert_eq!(v("status.podIP"), "10.244.1.5");
        assert_eq!(v("status.podIPs"), "10.244.1.5,fd01::5");
        assert_eq!(v("status.hostIP"), "192.168.1.10");
        assert_eq!(v("status.hostIPs"), "192.168.1.10,fd00::1");
        assert_eq!(
            field_ref_value(&pod, "spec.bogus", &[], &[])
                .unwrap_err()
                .to_string(),
            "unsupported fieldPath: spec.bogus"
        );
    }

    #[test]
    fn resource_field_refs_with_divisors_and_defaults() {
        let c = json!({"name": "c", "resources": {
            "requests": {"cpu": "125m", "memory": "32Mi"},
            "limits": {"cpu": "1250m", "memory": "64Mi"}}});
        let pod = pod_with(c.clone());
        let f = facts();
        let v = |res: &str, div: Option<&str>| {
            let mut sel = json!({"resource": res});
            if let Some(d) = div {
                sel["divisor"] = json!(d);
            }
            resource_field_ref_value(&pod, &c, &sel, &f.allocatable).unwrap()
        };
        assert_eq!(v("requests.cpu", None), "1");
        assert_eq!(v("requests.cpu", Some("1m")), "125");
        assert_eq!(v("limits.cpu", None), "2");
        assert_eq!(v("limits.cpu", Some("100m")), "13");
        assert_eq!(v("requests.memory", None), "33554432");
        assert_eq!(v("limits.memory", Some("1Mi")), "64");
        assert_eq!(v("limits.memory", Some("1M")), "68");
        // No ephemeral-storage limit: node allocatable; no request: 0.
        assert_eq!(v("limits.ephemeral-storage", Some("1Gi")), "10");
        assert_eq!(v("requests.ephemeral-storage", None), "0");
        assert!(matches!(
            resource_field_ref_value(&pod, &c, &json!({"resource": "limits.gpu"}), &f.allocatable),
            Err(EnvError::UnsupportedResource(_))
        ));
        // Another container by name; a missing one is an error.
        let other = json!({"resource": "limits.cpu", "containerName": "c", "divisor": "1m"});
        assert_eq!(
            resource_field_ref_value(&pod, &json!({}), &other, &f.allocatable).unwrap(),
            "1250"
        );
        let gone = json!({"resource": "limits.cpu", "containerName": "x"});
        assert_eq!(
            resource_field_ref_value(&pod, &c, &gone, &f.allocatable)
                .unwrap_err()
                .to_string(),
            "container x not found"
        );
        // Without any limits, cpu and memory limits are the node's allocatable.
        let bare = json!({"name": "c"});
        let sel = json!({"resource": "limits.memory", "divisor": "1Mi"});
        assert_eq!(
            resource_field_ref_value(&pod, &bare, &sel, &f.allocatable).unwrap(),
            "4096"
        );
    }

    #[test]
    fn command_args_versus_image() {
        let image = ImageFacts {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["--default".into()],
            ..Default::default()
        };
        let mut env = EnvList::new();
        env.set("NAME", "world".into());
        let argv = |c: Value| command_and_args(&c, &image, &env);
        assert_eq!(argv(json!({})), vec!["/entry", "--default"]);
        assert_eq!(
            argv(json!({"args": ["hello", "$(NAME)"]})),
            vec!["/entry", "hello", "world"]
        );
        assert_eq!(argv(json!({"command": ["/bin/echo"]})), vec!["/bin/echo"]);
        assert_eq!(
            argv(json!({"command": ["/bin/echo", "$(NAME)"], "args": ["$$(NAME)", "$(NOPE)"]})),
            vec!["/bin/echo", "world", "$(NAME)", "$(NOPE)"]
        );
        let reset = ImageFacts {
            entrypoint: vec!["".into()],
            cmd: vec!["sh".into()],
            ..Default::default()
        };
        assert_eq!(command_and_args(&json!({}), &reset, &env), vec!["sh"]);
        assert!(command_and_args(&json!({}), &ImageFacts::default(), &env).is_empty());
    }

    #[test]
    fn final_env_layers() {
        let mut c = EnvList::new();
        c.set("FOO", "container".into());
        c.set("NEW", "1".into());
        let env = final_env(
            "web-0",
            &[
                "PATH=/app/bin".into(),
                "FOO=image".into(),
                "LANG=C".into(),
                "JUNK".into(),
            ],
            &c,
        );
        let want: Vec<(String, String)> = [
            ("PATH", "/app/bin"),
            ("HOSTNAME", "web-0"),
            ("FOO", "container"),
            ("LANG", "C"),
            ("NEW", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, want);
        let bare = final_env("h", &[], &EnvList::new());
        assert_eq!(bare[0], ("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
}
