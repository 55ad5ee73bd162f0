//! Patching of stored objects: JSON patch (RFC 6902), JSON merge patch (RFC 7386),
//! Kubernetes' strategic merge patch, and server-side apply.
//!
//! Strategic merge patch needs to know, for every list, whether it is merged by a key or
//! replaced. Kubernetes reads that from the `patchStrategy`/`patchMergeKey` struct tags of
//! k8s.io/api; [`LIST_RULES`] is the one table of those tags for the kinds Podium serves.
//! Lists not in the table are replaced, as Kubernetes does for untagged (atomic) lists.
//!
//! Server-side apply is implemented as create-or-update: the applied configuration is
//! merged into the live object with the strategic-merge rules (fields absent from the
//! applied configuration are kept, not removed), and the manager's `Apply` entry in
//! `metadata.managedFields` is recorded in the FieldsV1 format. Conflicts between managers
//! are not detected, so `force` has no effect.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// The four patch flavours, named by the request's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// Parses a Content-Type header value; parameters (`; charset=utf-8`) are ignored.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied. Messages never quote values from the body (it may
/// carry secret data), only paths and field names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body is not well-formed for its patch type (400).
    #[error("invalid patch body: {0}")]
    InvalidBody(String),
    /// An RFC 6902 operation failed, including a failed `test` (422, as Kubernetes
    /// answers for operations that cannot be applied).
    #[error("the JSON patch could not be applied: {0}")]
    JsonPatch(String),
    /// A strategic-merge directive or merge key is wrong (400).
    #[error("invalid strategic merge patch: {0}")]
    InvalidDirective(String),
    /// The patched document is no longer an object (422).
    #[error("the patched document is not a JSON object")]
    NotAnObject,
}

impl PatchError {
    /// True when the patch was well-formed but could not be applied or its result is
    /// invalid (422, not 400).
    pub fn is_invalid_result(&self) -> bool {
        matches!(self, PatchError::NotAnObject | PatchError::JsonPatch(_))
    }
}

/// How a list field is combined by strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// No patch strategy (atomic): the patch's list replaces the original.
    Replace,
    /// `patchStrategy:"merge"` on a list of scalars: set union, original order first.
    MergePrimitive,
    /// `patchStrategy:"merge"` with `patchMergeKey`: items matched by this key are merged.
    MergeByKey(&'static str),
}

/// One row of the patch-strategy table.
#[derive(Debug, Clone, Copy)]
pub struct ListRule {
    /// Kind the rule applies to; `*` for every kind (ObjectMeta lists).
    pub kind: &'static str,
    /// Dotted JSON path of the list, without indices: `spec.containers.ports`.
    /// Container sub-lists are listed once under `spec.containers`; they apply to
    /// `spec.initContainers` and `spec.ephemeralContainers` as well.
    pub path: &'static str,
    pub strategy: ListStrategy,
    /// The list's key fields as server-side apply names items (`k:{...}`), sorted; these
    /// are the OpenAPI `x-kubernetes-list-map-keys`, which can be wider than the merge key.
    pub ssa_keys: &'static [&'static str],
}

const fn rule(
    kind: &'static str,
    path: &'static str,
    strategy: ListStrategy,
    ssa_keys: &'static [&'static str],
) -> ListRule {
    ListRule {
        kind,
        path,
        strategy,
        ssa_keys,
    }
}

use ListStrategy::{MergeByKey, MergePrimitive, Replace};

/// The patch strategies of the lists of the kinds we serve, from the k8s.io/api struct tags.
pub const LIST_RULES: &[ListRule] = &[
    // ObjectMeta (every kind).
    rule("*", "metadata.ownerReferences", MergeByKey("uid"), &["uid"]),
    rule("*", "metadata.finalizers", MergePrimitive, &[]),
    // Pod spec.
    rule("Pod", "spec.containers", MergeByKey("name"), &["name"]),
    rule("Pod", "spec.initContainers", MergeByKey("name"), &["name"]),
    rule(
        "Pod",
        "spec.ephemeralContainers",
        MergeByKey("name"),
        &["name"],
    ),
    rule(
        "Pod",
        "spec.containers.ports",
        MergeByKey("containerPort"),
        &["containerPort", "protocol"],
    ),
    rule("Pod", "spec.containers.env", MergeByKey("name"), &["name"]),
    rule(
        "Pod",
        "spec.containers.volumeMounts",
        MergeByKey("mountPath"),
        &["mountPath"],
    ),
    rule(
        "Pod",
        "spec.containers.volumeDevices",
        MergeByKey("devicePath"),
        &["devicePath"],
    ),
    rule("Pod", "spec.containers.envFrom", Replace, &[]),
    rule("Pod", "spec.containers.resizePolicy", Replace, &[]),
    rule("Pod", "spec.volumes", MergeByKey("name"), &["name"]),
    rule(
        "Pod",
        "spec.imagePullSecrets",
        MergeByKey("name"),
        &["name"],
    ),
    rule("Pod", "spec.hostAliases", MergeByKey("ip"), &["ip"]),
    rule("Pod", "spec.tolerations", Replace, &[]),
    rule("Pod", "spec.readinessGates", Replace, &[]),
    rule(
        "Pod",
        "spec.topologySpreadConstraints",
        MergeByKey("topologyKey"),
        &["topologyKey", "whenUnsatisfiable"],
    ),
    rule("Pod", "spec.schedulingGates", MergeByKey("name"), &["name"]),
    rule("Pod", "spec.resourceClaims", MergeByKey("name"), &["name"]),
    // Pod status.
    rule("Pod", "status.conditions", MergeByKey("type"), &["type"]),
    rule("Pod", "status.podIPs", MergeByKey("ip"), &["ip"]),
    rule("Pod", "status.hostIPs", MergeByKey("ip"), &["ip"]),
    rule("Pod", "status.containerStatuses", Replace, &[]),
    rule("Pod", "status.initContainerStatuses", Replace, &[]),
    rule("Pod", "status.ephemeralContainerStatuses", Replace, &[]),
    // Node.
    rule("Node", "spec.podCIDRs", MergePrimitive, &[]),
    rule("Node", "spec.taints", Replace, &[]),
    rule("Node", "status.conditions", MergeByKey("type"), &["type"]),
    rule("Node", "status.addresses", MergeByKey("type"), &["type"]),
    rule("Node", "status.images", Replace, &[]),
    rule("Node", "status.volumesAttached", Replace, &[]),
    // Service.
    rule(
        "Service",
        "spec.ports",
        MergeByKey("port"),
        &["port", "protocol"],
    ),
    rule(
        "Service",
        "status.conditions",
        MergeByKey("type"),
        &["type"],
    ),
    // Namespace.
    rule("Namespace", "spec.finalizers", Replace, &[]),
    rule(
        "Namespace",
        "status.conditions",
        MergeByKey("type"),
        &["type"],
    ),
    // ServiceAccount.
    rule("ServiceAccount", "secrets", MergeByKey("name"), &["name"]),
    rule("ServiceAccount", "imagePullSecrets", Replace, &[]),
    // Endpoints and EndpointSlice lists are atomic.
    rule("Endpoints", "subsets", Replace, &[]),
    rule("EndpointSlice", "endpoints", Replace, &[]),
    rule("EndpointSlice", "ports", Replace, &[]),
];

/// Finds the table row of a list; container sub-lists of init and ephemeral containers
/// share the rows of `spec.containers`.
pub fn list_rule(kind: &str, path: &str) -> Option<&'static ListRule> {
    let normalized;
    let path = if kind == "Pod" {
        match path
            .strip_prefix("spec.initContainers.")
            .or_else(|| path.strip_prefix("spec.ephemeralContainers."))
        {
            Some(rest) => {
                normalized = format!("spec.containers.{rest}");
                normalized.as_str()
            }
            None => path,
        }
    } else {
        path
    };
    LIST_RULES
        .iter()
        .find(|r| (r.kind == kind || r.kind == "*") && r.path == path)
}

/// The strategy of the list at `path` (dotted, no indices) in objects of `kind`.
pub fn list_strategy(kind: &str, path: &str) -> ListStrategy {
    list_rule(kind, path).map(|r| r.strategy).unwrap_or(Replace)
}

/// Applies a patch body of the given type to `original` and returns the patched object.
///
/// `PatchType::Apply` merges the applied configuration like [`server_side_apply`] but
/// records no field manager; the server should call [`server_side_apply`] instead.
pub fn apply_patch(
    kind: &str,
    original: &Value,
    patch_type: PatchType,
    body: &[u8],
) -> Result<Value, PatchError> {
    let result = match patch_type {
        PatchType::Json => {
            let ops = parse_json(body)?;
            let ops: json_patch::Patch = serde_json::from_value(ops).map_err(|_| {
                PatchError::InvalidBody(
                    "a JSON patch is a list of operations, each with \"op\" (add, remove, \
                     replace, move, copy or test), \"path\" and \"value\" or \"from\""
                        .into(),
                )
            })?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &ops.0)
                .map_err(|e| PatchError::JsonPatch(e.to_string()))?;
            doc
        }
        PatchType::Merge => {
            let patch = parse_json(body)?;
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &patch);
            doc
        }
        PatchType::StrategicMerge => strategic_merge(kind, original, &parse_json(body)?)?,
        PatchType::Apply => strategic_merge(kind, original, &parse_apply_body(body)?)?,
    };
    if result.is_object() {
        Ok(result)
    } else {
        Err(PatchError::NotAnObject)
    }
}

/// Parses a JSON body. serde_json's syntax errors name a position, never content.
fn parse_json(body: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(body).map_err(|e| PatchError::InvalidBody(e.to_string()))
}

/// Parses a server-side apply body (YAML, or JSON which is YAML) into an object.
pub fn parse_apply_body(body: &[u8]) -> Result<Value, PatchError> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => serde_norway::from_slice(body).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            PatchError::InvalidBody(format!("the apply configuration is not valid YAML{at}"))
        })?,
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(PatchError::InvalidBody(
            "the apply configuration must be an object".into(),
        ))
    }
}

/// Applies a strategic merge patch (already parsed) to `original`.
pub fn strategic_merge(kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::InvalidBody(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let original = original.as_object().cloned().unwrap_or_default();
    match merge_map(kind, "", original, patch)? {
        Some(m) => Ok(Value::Object(m)),
        None => Err(PatchError::InvalidDirective(
            "\"$patch\": \"delete\" cannot delete the whole object".into(),
        )),
    }
}

const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "<root>"
    } else {
        path
    }
}

/// Merges `patch` into the map `original` found at `path`. `None` means the map is deleted
/// (`$patch: delete`).
fn merge_map(
    kind: &str,
    path: &str,
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    if let Some(directive) = patch.get("$patch") {
        match directive.as_str() {
            Some("replace") => {
                let mut rest = patch.clone();
                rest.shift_remove("$patch");
                return merge_map(kind, path, Map::new(), &rest);
            }
            Some("delete") => return Ok(None),
            Some("merge") => {}
            _ => {
                return Err(PatchError::InvalidDirective(format!(
                    "unknown \"$patch\" value at {} (expected replace, delete or merge)",
                    display(path)
                )))
            }
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keys = retain
            .as_array()
            .filter(|a| a.iter().all(Value::is_string))
            .ok_or_else(|| {
                PatchError::InvalidDirective(format!(
                    "\"$retainKeys\" at {} must be a list of field names",
                    display(path)
                ))
            })?;
        original.retain(|k, _| keys.iter().any(|r| r.as_str() == Some(k.as_str())));
    }

    let mut orders: Vec<(&str, &Vec<Value>)> = Vec::new();
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" {
            continue;
        }
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            let order = value.as_array().ok_or_else(|| {
                PatchError::InvalidDirective(format!(
                    "\"{key}\" at {} must be a list",
                    display(path)
                ))
            })?;
            orders.push((field, order));
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let remove = value.as_array().ok_or_else(|| {
                PatchError::InvalidDirective(format!(
                    "\"{key}\" at {} must be a list",
                    display(path)
                ))
            })?;
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            return Err(PatchError::InvalidDirective(format!(
                "unknown directive \"{key}\" at {}",
                display(path)
            )));
        }
        let child = join(path, key);
        match value {
            Value::Null => {
                original.shift_remove(key);
            }
            Value::Object(p) => {
                let base = match original.get_mut(key) {
                    Some(Value::Object(m)) => std::mem::take(m),
                    _ => Map::new(),
                };
                match merge_map(kind, &child, base, p)? {
                    Some(m) => {
                        original.insert(key.clone(), Value::Object(m));
                    }
                    None => {
                        original.shift_remove(key);
                    }
                }
            }
            Value::Array(p) => {
                let base = match original.get_mut(key) {
                    Some(Value::Array(a)) => std::mem::take(a),
                    _ => Vec::new(),
                };
                let merged = merge_list(kind, &child, base, p)?;
                original.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                original.insert(key.clone(), scalar.clone());
            }
        }
    }
    for (field, order) in orders {
        let strategy = list_strategy(kind, &join(path, field));
        if let Some(Value::Array(list)) = original.get_mut(field) {
            reorder(list, order, strategy);
        }
    }
    Ok(Some(original))
}

/// The list-level directive of a patch list: an element `{"$patch": "replace"|"merge"}`.
fn list_directive(item: &Value) -> Option<&str> {
    let m = item.as_object()?;
    if m.len() == 1 {
        m.get("$patch")?.as_str()
    } else {
        None
    }
}

/// Strips directives from list items that have no original to merge with.
fn normalize_items(kind: &str, path: &str, items: &[&Value]) -> Result<Vec<Value>, PatchError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Object(m) => {
                if let Some(m) = merge_map(kind, path, Map::new(), m)? {
                    out.push(Value::Object(m));
                }
            }
            Value::Array(a) => out.push(Value::Array(merge_list(kind, path, Vec::new(), a)?)),
            other => out.push((*other).clone()),
        }
    }
    Ok(out)
}

fn merge_list(
    kind: &str,
    path: &str,
    mut original: Vec<Value>,
    patch: &[Value],
) -> Result<Vec<Value>, PatchError> {
    let mut replace = false;
    let mut items: Vec<&Value> = Vec::with_capacity(patch.len());
    for item in patch {
        match list_directive(item) {
            Some("replace") => replace = true,
            Some("merge") => {}
            Some(_) => {
                return Err(PatchError::InvalidDirective(format!(
                    "unknown \"$patch\" list directive in {}",
                    display(path)
                )))
            }
            None => items.push(item),
        }
    }
    let strategy = list_strategy(kind, path);
    if replace || strategy == Replace {
        return normalize_items(kind, path, &items);
    }
    match strategy {
        Replace => normalize_items(kind, path, &items),
        MergePrimitive => {
            for item in normalize_items(kind, path, &items)? {
                if !original.contains(&item) {
                    original.push(item);
                }
            }
            Ok(original)
        }
        MergeByKey(key) => {
            for item in items {
                let Value::Object(p) = item else {
                    return Err(PatchError::InvalidDirective(format!(
                        "{} is merged by \"{key}\": its items must be objects",
                        display(path)
                    )));
                };
                let Some(kv) = p.get(key) else {
                    return Err(PatchError::InvalidDirective(format!(
                        "an item of {} does not contain the merge key \"{key}\"",
                        display(path)
                    )));
                };
                let pos = original.iter().position(|o| o.get(key) == Some(kv));
                if p.get("$patch").and_then(Value::as_str) == Some("delete") {
                    original.retain(|o| o.get(key) != Some(kv));
                    continue;
                }
                match pos {
                    Some(i) => {
                        let base = match &mut original[i] {
                            Value::Object(m) => std::mem::take(m),
                            _ => Map::new(),
                        };
                        match merge_map(kind, path, base, p)? {
                            Some(m) => original[i] = Value::Object(m),
                            None => {
                                original.remove(i);
                            }
                        }
                    }
                    None => {
                        if let Some(m) = merge_map(kind, path, Map::new(), p)? {
                            original.push(Value::Object(m));
                        }
                    }
                }
            }
            Ok(original)
        }
    }
}

/// `$setElementOrder`: items named in `order` first, in that order; the rest after, in
/// their current relative order.
fn reorder(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let matches = |item: &Value, wanted: &Value| match strategy {
        MergeByKey(key) => match (item.get(key), wanted.get(key)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        _ => item == wanted,
    };
    let mut rest: Vec<Option<Value>> = std::mem::take(list).into_iter().map(Some).collect();
    for wanted in order {
        if let Some(slot) = rest
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|item| matches(item, wanted)))
        {
            if let Some(item) = slot.take() {
                list.push(item);
            }
        }
    }
    list.extend(rest.into_iter().flatten());
}

/// Server-side apply as create-or-update: with no live object the applied object is the
/// result; otherwise the applied configuration is merged into the live object with the
/// strategic-merge rules. Either way `metadata.managedFields` gets `manager`'s `Apply`
/// entry (replacing an earlier one of the same manager and operation).
pub fn server_side_apply(
    kind: &str,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, PatchError> {
    server_side_apply_at(kind, live, applied, manager, force, Utc::now())
}

/// [`server_side_apply`] with the time to record in the managedFields entry.
pub fn server_side_apply_at(
    kind: &str,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    _force: bool,
    now: DateTime<Utc>,
) -> Result<Value, PatchError> {
    let Value::Object(applied_map) = applied else {
        return Err(PatchError::InvalidBody(
            "the apply configuration must be an object".into(),
        ));
    };
    let mut config = applied_map.clone();
    // The managers of a live object are the server's record; an applier cannot set them.
    if let Some(Value::Object(meta)) = config.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    let config = Value::Object(config);
    let mut result = match live {
        None => strategic_merge(kind, &Value::Object(Map::new()), &config)?,
        Some(live) => strategic_merge(kind, live, &config)?,
    };

    let entry = serde_json::json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": applied.get("apiVersion").cloned().unwrap_or(Value::String(String::new())),
        "time": now.to_rfc3339_opts(SecondsFormat::Secs, true),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(kind, &config),
    });
    let Some(obj) = result.as_object_mut() else {
        return Err(PatchError::NotAnObject);
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Some(meta) = meta.as_object_mut() else {
        return Err(PatchError::NotAnObject);
    };
    let mut entries = match live.and_then(|l| l.pointer("/metadata/managedFields")) {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let same = |e: &Value| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Apply")
    };
    match entries.iter().position(same) {
        Some(i) => {
            entries[i] = entry;
            let mut seen = false;
            // Drop any duplicate entries of the same manager beyond the replaced one.
            entries.retain(|e| {
                if same(e) {
                    let keep = !seen;
                    seen = true;
                    keep
                } else {
                    true
                }
            });
        }
        None => entries.push(entry),
    }
    meta.insert("managedFields".into(), Value::Array(entries));
    Ok(result)
}

/// Metadata fields that identify or are owned by the server, never by a manager.
const UNMANAGED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// The FieldsV1 set of the fields an applied configuration sets:
/// `{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"a\"}":{".":{},...}}}}`.
pub fn fields_v1(kind: &str, applied: &Value) -> Value {
    match applied {
        Value::Object(m) => Value::Object(fields_of_map(kind, "", m)),
        _ => Value::Object(Map::new()),
    }
}

fn fields_of_map(kind: &str, path: &str, m: &Map<String, Value>) -> Map<String, Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (key, value) in m {
        if key.starts_with('$') || value.is_null() {
            continue;
        }
        if path.is_empty() && (key == "apiVersion" || key == "kind") {
            continue;
        }
        if path == "metadata" && UNMANAGED_METADATA.contains(&key.as_str()) {
            continue;
        }
        let child = join(path, key);
        let set = match value {
            Value::Object(o) => fields_of_map(kind, &child, o),
            Value::Array(a) => fields_of_list(kind, &child, a),
            _ => Map::new(),
        };
        if path.is_empty() && key == "metadata" && set.is_empty() {
            continue;
        }
        out.insert(format!("f:{key}"), Value::Object(set));
    }
    out.into_iter().collect()
}

fn fields_of_list(kind: &str, path: &str, items: &[Value]) -> Map<String, Value> {
    let Some(rule) = list_rule(kind, path) else {
        return Map::new(); // atomic: the list is owned as a whole
    };
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    match rule.strategy {
        Replace => {}
        MergePrimitive => {
            for item in items {
                out.insert(format!("v:{item}"), Value::Object(Map::new()));
            }
        }
        MergeByKey(_) => {
            for item in items {
                let Value::Object(m) = item else { continue };
                let mut key = Map::new();
                for k in rule.ssa_keys {
                    match m.get(*k) {
                        Some(v) => {
                            key.insert((*k).to_string(), v.clone());
                        }
                        // Kubernetes names ports by their defaulted protocol.
                        None if *k == "protocol" => {
                            key.insert("protocol".into(), Value::String("TCP".into()));
                        }
                        None => {}
                    }
                }
                let mut set = fields_of_map(kind, path, m);
                set.insert(".".into(), Value::Object(Map::new()));
                let sorted: BTreeMap<String, Value> = set.into_iter().collect();
                out.insert(
                    format!("k:{}", Value::Object(key)),
                    Value::Object(sorted.into_iter().collect()),
                );
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
#[path = "patch/tests.rs"]
mod tests;
