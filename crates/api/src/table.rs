//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! Columns and cells follow Kubernetes' own printers (pkg/printers/internalversion) for the
//! kinds we serve; other kinds get NAME and AGE. Like the Kubernetes API server, every
//! column is always produced, the `priority: 1` ones included; `kubectl get -o wide`
//! decides which to show. Ages use [`human_duration`], apimachinery's
//! `duration.HumanDuration`.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};

/// What each row carries in `object` (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` (the default): kubectl needs it for `-A` and `--show-labels`.
    #[default]
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value; `None` for unknown values.
    pub fn from_query(value: &str) -> Option<IncludeObject> {
        match value {
            "None" => Some(IncludeObject::None),
            "Metadata" | "" => Some(IncludeObject::Metadata),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

/// Builds the Table of `objects` (all of `kind`). `list_meta` is the list's metadata
/// (`resourceVersion`, `continue`).
pub fn table(
    kind: &str,
    objects: &[Value],
    include_object: IncludeObject,
    now: DateTime<Utc>,
    list_meta: Value,
) -> Value {
    let columns: Vec<Value> = columns(kind)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let (cells, conditions) = cells(kind, obj, now);
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            if !conditions.is_empty() {
                row.insert("conditions".into(), Value::Array(conditions));
            }
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert(
                        "object".into(),
                        json!({
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                        }),
                    );
                }
                IncludeObject::Object => {
                    row.insert("object".into(), obj.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// A column definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `date`.
    pub kind: &'static str,
    /// `name` for the NAME column, else empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 always shown, 1 only with `-o wide`.
    pub priority: u8,
}

const fn col(name: &'static str, description: &'static str, priority: u8) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        description,
        priority,
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.",
    0,
);

const POD_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "The aggregate readiness state of this pod for accepting traffic.", 0),
    col("Status", "The aggregate status of the containers in this pod.", 0),
    col("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
    AGE,
    col("IP", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
    col("Node", "NodeName indicates in which node this pod is scheduled.", 1),
    col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.", 1),
    col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
];

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "The status of the node", 0),
    col("Roles", "The roles of the node", 0),
    AGE,
    col("Version", "Kubelet Version reported by the node.", 0),
    col("Internal-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
    col("External-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
    col("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
    col("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
    col("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
];

const NAMESPACE_COLUMNS: &[Column] = &[NAME, col("Status", "The status of the namespace", 0), AGE];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "The type of the secret", 0),
    col("Data", "The number of entries in the secret", 0),
    AGE,
];

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    col("Data", "The number of entries in the configmap", 0),
    AGE,
];

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col("Secrets", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.", 0),
    AGE,
];

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "type determines how the Service is exposed.", 0),
    col("Cluster-IP", "clusterIP is the IP address of the service and is usually assigned randomly.", 0),
    col("External-IP", "List of IP addresses for which nodes in the cluster will also accept traffic for this service.", 0),
    col("Port(s)", "The ports that are exposed by this service.", 0),
    AGE,
    col("Selector", "Route service traffic to pods with label keys and values matching this selector.", 1),
];

const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "The time at which the most recent occurrence of this event was recorded.", 0),
    col("Type", "Type of this event (Normal, Warning), new types could be added in the future.", 0),
    col("Reason", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.", 0),
    col("Object", "The object that this event is about.", 0),
    col("Subobject", "The sub-object (such as a container) this event is about.", 1),
    col("Source", "The component reporting this event.", 1),
    col("Message", "A human-readable description of the status of this operation.", 0),
    col("First Seen", "The time at which the event was first recorded.", 1),
    col("Count", "The number of times this event has occurred.", 1),
    Column { priority: 1, ..NAME },
];

const LEASE_COLUMNS: &[Column] = &[NAME, col("Holder", "The holder of the lease.", 0), AGE];

const ENDPOINTS_COLUMNS: &[Column] = &[NAME, col("Endpoints", "Endpoints of the service", 0), AGE];

const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

/// The column definitions of a kind's table.
pub fn columns(kind: &str) -> &'static [Column] {
    match kind {
        "Pod" => POD_COLUMNS,
        "Node" => NODE_COLUMNS,
        "Namespace" => NAMESPACE_COLUMNS,
        "Secret" => SECRET_COLUMNS,
        "ConfigMap" => CONFIG_MAP_COLUMNS,
        "ServiceAccount" => SERVICE_ACCOUNT_COLUMNS,
        "Service" => SERVICE_COLUMNS,
        "Event" => EVENT_COLUMNS,
        "Lease" => LEASE_COLUMNS,
        "Endpoints" => ENDPOINTS_COLUMNS,
        _ => DEFAULT_COLUMNS,
    }
}

/// The cells of one row (aligned with [`columns`]) and the row's conditions.
pub fn cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> (Vec<Value>, Vec<Value>) {
    let name = s(obj, "/metadata/name");
    let age = || Value::String(age_of(obj.pointer("/metadata/creationTimestamp"), now));
    match kind {
        "Pod" => return pod_row(obj, now),
        "Node" => return (node_cells(obj, now), Vec::new()),
        "Event" => return (event_cells(obj, now), Vec::new()),
        _ => {}
    }
    let cells = match kind {
        "Namespace" => vec![json!(name), json!(s(obj, "/status/phase")), age()],
        "Secret" => vec![
            json!(name),
            json!(s(obj, "/type")),
            json!(len(obj, "/data")),
            age(),
        ],
        "ConfigMap" => vec![
            json!(name),
            json!(len(obj, "/data") + len(obj, "/binaryData")),
            age(),
        ],
        "ServiceAccount" => vec![json!(name), json!(len(obj, "/secrets")), age()],
        "Service" => service_cells(obj, now),
        "Lease" => vec![json!(name), json!(s(obj, "/spec/holderIdentity")), age()],
        "Endpoints" => vec![json!(name), json!(format_endpoints(obj)), age()],
        _ => vec![json!(name), age()],
    };
    (cells, Vec::new())
}

fn s<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn arr<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Number of entries of a map or list field.
fn len(obj: &Value, pointer: &str) -> i64 {
    let n = match obj.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.into()
    }
}

fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let text = v?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `translateTimestampSince`: `<unknown>` for an unset time, else the human age.
fn age_of(timestamp: Option<&Value>, now: DateTime<Utc>) -> String {
    match parse_time(timestamp) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

/// apimachinery's `duration.HumanDuration`: `45s`, `3m2s`, `10m`, `5h3m`, `2d5h`, `8d`,
/// `2y30d`, `9y`; negative by more than a second is `<invalid>`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

// ---- Pod ----

fn condition_true(obj: &Value, kind: &str) -> bool {
    arr(obj, "/status/conditions").iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(kind)
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

/// Kubelet's terminated reason when the runtime gave none: containerd reports
/// `Completed` for exit 0 and `Error` otherwise.
fn terminated_reason(t: &Value, prefix: &str) -> String {
    match t.get("reason").and_then(Value::as_str) {
        Some(r) if !r.is_empty() => format!("{prefix}{r}"),
        _ => {
            let code = t.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
            let signal = t.get("signal").and_then(Value::as_i64).unwrap_or(0);
            if !prefix.is_empty() {
                if signal != 0 {
                    format!("{prefix}Signal:{signal}")
                } else {
                    format!("{prefix}ExitCode:{code}")
                }
            } else if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            }
        }
    }
}

fn last_termination(status: &Value) -> Option<DateTime<Utc>> {
    parse_time(status.pointer("/lastState/terminated/finishedAt"))
}

/// kubectl's printPod, over the JSON form.
fn pod_row(pod: &Value, now: DateTime<Utc>) -> (Vec<Value>, Vec<Value>) {
    let init_specs = arr(pod, "/spec/initContainers");
    let is_sidecar = |name: &str| {
        init_specs.iter().any(|c| {
            c.get("name").and_then(Value::as_str) == Some(name)
                && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
        })
    };
    let mut total = arr(pod, "/spec/containers").len();
    total += init_specs
        .iter()
        .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
        .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;

    let phase = s(pod, "/status/phase");
    let mut reason = phase.to_string();
    let status_reason = s(pod, "/status/reason");
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }
    for c in arr(pod, "/status/conditions") {
        if c.get("type").and_then(Value::as_str) == Some("PodScheduled")
            && c.get("reason").and_then(Value::as_str) == Some("SchedulingGated")
        {
            reason = "SchedulingGated".into();
        }
    }
    let conditions = match phase {
        "Succeeded" => vec![
            json!({"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}),
        ],
        "Failed" => vec![
            json!({"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}),
        ],
        _ => Vec::new(),
    };

    let mut initializing = false;
    for (i, cs) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        let cname = cs.get("name").and_then(Value::as_str).unwrap_or("");
        restarts += cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        let finished = last_termination(cs);
        if finished > last_restart {
            last_restart = finished;
        }
        if is_sidecar(cname) {
            sidecar_restarts += cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            if finished > last_sidecar_restart {
                last_sidecar_restart = finished;
            }
        }
        let terminated = cs.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting_reason = cs
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        if terminated
            .and_then(|t| t.get("exitCode"))
            .and_then(Value::as_i64)
            == Some(0)
        {
            continue;
        }
        if is_sidecar(cname) && cs.get("started").and_then(Value::as_bool) == Some(true) {
            if cs.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = terminated_reason(t, "Init:");
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            let finished = last_termination(cs);
            if finished > last_restart {
                last_restart = finished;
            }
            let waiting_reason = cs
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .unwrap_or("");
            let terminated = cs.pointer("/state/terminated").filter(|t| t.is_object());
            let running = cs.pointer("/state/running").is_some_and(Value::is_object);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if cs.get("ready").and_then(Value::as_bool) == Some(true) && running {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    // A terminal phase with no container to tell the reason prints as kubelet's reasons.
    if reason == "Succeeded" {
        reason = "Completed".into();
    } else if reason == "Failed" {
        reason = "Error".into();
    }
    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        if status_reason == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    let ip = arr(pod, "/status/podIPs")
        .first()
        .and_then(|p| p.get("ip"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let gates = arr(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let satisfied = gates
            .iter()
            .filter(|g| {
                let t = g.get("conditionType").and_then(Value::as_str).unwrap_or("");
                condition_true(pod, t)
            })
            .count();
        format!("{satisfied}/{}", gates.len())
    };
    let cells = vec![
        json!(s(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(age_of(pod.pointer("/metadata/creationTimestamp"), now)),
        json!(or_none(ip)),
        json!(or_none(s(pod, "/spec/nodeName"))),
        json!(or_none(s(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ];
    (cells, conditions)
}

// ---- Node ----

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = arr(node, "/status/conditions")
        .iter()
        .rev() // the last of duplicate types wins, as in Go's map
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
    {
        if c.get("status").and_then(Value::as_str) == Some("True") {
            status.push("Ready".into());
        } else {
            status.push("NotReady".into());
        }
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.insert(v.to_string());
                }
            }
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");
    let address = |kind: &str| {
        arr(node, "/status/addresses")
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|a| a.get("address"))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let unknown = |v: &str| {
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        json!(s(node, "/metadata/name")),
        json!(status.join(",")),
        json!(or_none(&roles)),
        json!(age_of(node.pointer("/metadata/creationTimestamp"), now)),
        json!(s(node, "/status/nodeInfo/kubeletVersion")),
        json!(or_none(address("InternalIP"))),
        json!(or_none(address("ExternalIP"))),
        json!(unknown(s(node, "/status/nodeInfo/osImage"))),
        json!(unknown(s(node, "/status/nodeInfo/kernelVersion"))),
        json!(unknown(s(node, "/status/nodeInfo/containerRuntimeVersion"))),
    ]
}

// ---- Service ----

fn strings(obj: &Value, pointer: &str) -> Vec<String> {
    arr(obj, pointer)
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn service_cells(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let kind = match s(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let external_ips = strings(svc, "/spec/externalIPs");
    let external = match kind {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let mut all = external_ips;
            for ing in arr(svc, "/status/loadBalancer/ingress") {
                for key in ["ip", "hostname"] {
                    if let Some(v) = ing
                        .get(key)
                        .and_then(Value::as_str)
                        .filter(|v| !v.is_empty())
                    {
                        all.push(v.to_string());
                    }
                }
            }
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                Some(node_port) => format!("{port}:{node_port}/{protocol}"),
                None => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let selector = svc
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            pairs.sort();
            pairs.join(",")
        })
        .unwrap_or_default();
    vec![
        json!(s(svc, "/metadata/name")),
        json!(kind),
        json!(or_none(s(svc, "/spec/clusterIP"))),
        json!(external),
        json!(or_none(&ports.join(","))),
        json!(age_of(svc.pointer("/metadata/creationTimestamp"), now)),
        json!(or_none(&selector)),
    ]
}

// ---- Event ----

fn event_cells(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let first = match ev.pointer("/firstTimestamp").filter(|v| !v.is_null()) {
        Some(t) => age_of(Some(t), now),
        None => age_of(ev.pointer("/eventTime"), now),
    };
    let mut last = match ev.pointer("/lastTimestamp").filter(|v| !v.is_null()) {
        Some(t) => age_of(Some(t), now),
        None => first.clone(),
    };
    let mut count = ev.get("count").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = ev.get("series").filter(|v| v.is_object()) {
        last = age_of(series.get("lastObservedTime"), now);
        count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = s(ev, "/involvedObject/kind").to_lowercase();
    let name = s(ev, "/involvedObject/name");
    let target = if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    };
    let component = match s(ev, "/source/component") {
        "" => s(ev, "/reportingComponent"),
        c => c,
    };
    let host = match s(ev, "/source/host") {
        "" => s(ev, "/reportingInstance"),
        h => h,
    };
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(s(ev, "/type")),
        json!(s(ev, "/reason")),
        json!(target),
        json!(s(ev, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(ev, "/message").trim()),
        json!(first),
        json!(count),
        json!(s(ev, "/metadata/name")),
    ]
}

// ---- Endpoints ----

fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// kubectl's formatEndpoints: up to three `ip:port`, then ` + N more...`.
fn format_endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let subsets = arr(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        let ip = |a: &Value| {
            a.get("ip")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(ip(a));
            }
            continue;
        }
        for p in ports {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(host_port(&ip(a), port));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count.saturating_sub(MAX))
    } else {
        or_none(&joined)
    }
}

#[cfg(test)]
#[path = "table/tests.rs"]
mod tests;
