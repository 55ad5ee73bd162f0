//! What the content volumes hold: the file payloads of configMap, secret, downwardAPI and
//! projected volumes, built as kubelet's `MakePayload` / `CollectData` build them, and
//! the AtomicWriter's path validation. Pure: the objects come from [`Resolved`].

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use super::SetUpError;
use crate::env::{field_ref_value, resource_field_ref_value};
use crate::facts::{arr_at, at, bool_at, i64_at, str_at, NodeFacts, Resolved};

/// Kubernetes' default file mode of content volumes (`0644`).
pub const DEFAULT_MODE: u32 = 0o644;
const MAX_PATH_LENGTH: usize = 4096;
const MAX_FILE_NAME_LENGTH: usize = 255;

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Files by cleaned relative path.
pub type Payload = BTreeMap<String, FileProjection>;

/// kubelet's AtomicWriter `validatePath` (its messages), returning the cleaned path.
pub fn validate_path(target: &str) -> Result<String, SetUpError> {
    let bad = |m: String| Err(SetUpError::InvalidPath(m));
    if target.is_empty() {
        return bad(format!("invalid path: must not be empty: {target:?}"));
    }
    if target.starts_with('/') {
        return bad(format!("invalid path: must be relative path: {target}"));
    }
    if target.len() > MAX_PATH_LENGTH {
        return bad(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    let items: Vec<&str> = target.split('/').collect();
    for item in &items {
        if *item == ".." {
            return bad(format!("invalid path: must not contain '..': {target}"));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return bad(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return bad(format!("invalid path: must not start with '..': {target}"));
    }
    // path.Clean for a relative path without `..`: drop empty and `.` segments.
    let clean: Vec<&str> = items
        .into_iter()
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if clean.is_empty() {
        return bad(format!("invalid path: must not be empty: {target:?}"));
    }
    Ok(clean.join("/"))
}

/// A mode field (`defaultMode`, item `mode`): only the permission bits count.
fn mode_at(v: &Value, key: &str) -> Option<u32> {
    i64_at(v, &[key]).and_then(|m| u32::try_from(m & 0o7777).ok())
}

/// The `defaultMode` of a volume source, 0644 when unset.
pub fn default_mode(source: &Value) -> u32 {
    mode_at(source, "defaultMode").unwrap_or(DEFAULT_MODE)
}

fn optional(source: &Value) -> bool {
    bool_at(source, &["optional"]).unwrap_or(false)
}

/// A value of a ConfigMap/Secret as stored: text (`data` of a ConfigMap) or base64
/// (`binaryData`, Secret `data`), decoded only when used.
enum Raw<'a> {
    Text(&'a str),
    Base64(&'a str),
}

/// kubelet's `MakePayload` over the object's keys: all keys without items; with items
/// only those, missing keys skipped when optional and an error otherwise.
fn make_payload(
    kind: &'static str,
    name: &str,
    data: &BTreeMap<String, Raw<'_>>,
    items: &[Value],
    default_mode: u32,
    optional: bool,
    missing_key: impl Fn(String) -> SetUpError,
) -> Result<Payload, SetUpError> {
    let bytes = |key: &str, raw: &Raw<'_>| match raw {
        Raw::Text(s) => Ok(s.as_bytes().to_vec()),
        Raw::Base64(s) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| SetUpError::NotBase64 {
                kind,
                name: name.to_string(),
                key: key.to_string(),
            }),
    };
    let mut payload = Payload::new();
    if items.is_empty() {
        for (k, raw) in data {
            let path = validate_path(k)?;
            payload.insert(
                path,
                FileProjection {
                    data: bytes(k, raw)?,
                    mode: default_mode,
                },
            );
        }
        return Ok(payload);
    }
    for item in items {
        let key = str_at(item, &["key"]);
        let Some(raw) = data.get(key) else {
            if optional {
                continue;
            }
            return Err(missing_key(key.to_string()));
        };
        let path = validate_path(str_at(item, &["path"]))?;
        payload.insert(
            path,
            FileProjection {
                data: bytes(key, raw)?,
                mode: mode_at(item, "mode").unwrap_or(default_mode),
            },
        );
    }
    Ok(payload)
}

fn raw_map<'a>(
    obj: &'a Value,
    field: &str,
    wrap: fn(&'a str) -> Raw<'a>,
    into: &mut BTreeMap<String, Raw<'a>>,
) {
    if let Some(m) = at(obj, &[field]).and_then(Value::as_object) {
        for (k, v) in m {
            into.insert(k.clone(), wrap(v.as_str().unwrap_or_default()));
        }
    }
}

/// A configMap source (`configMap` volume or projection): `data` and `binaryData`.
pub fn configmap_payload(
    source: &Value,
    resolved: &Resolved,
    default_mode: u32,
) -> Result<Payload, SetUpError> {
    let name = str_at(source, &["name"]);
    let optional = optional(source);
    let mut data = BTreeMap::new();
    match resolved.configmaps.get(name) {
        None if optional => {}
        None => return Err(SetUpError::ConfigMapNotFound(name.to_string())),
        Some(cm) => {
            raw_map(cm, "data", Raw::Text, &mut data);
            raw_map(cm, "binaryData", Raw::Base64, &mut data);
        }
    }
    make_payload(
        "configmap",
        name,
        &data,
        arr_at(source, &["items"]),
        default_mode,
        optional,
        SetUpError::ConfigMapKeyMissing,
    )
}

/// A secret source (`secret` volume with `secretName`, or a projection with `name`).
pub fn secret_payload(
    source: &Value,
    name: &str,
    resolved: &Resolved,
    default_mode: u32,
) -> Result<Payload, SetUpError> {
    let optional = optional(source);
    let mut data = BTreeMap::new();
    match resolved.secrets.get(name) {
        None if optional => {}
        None => return Err(SetUpError::SecretNotFound(name.to_string())),
        Some(secret) => raw_map(secret, "data", Raw::Base64, &mut data),
    }
    make_payload(
        "secret",
        name,
        &data,
        arr_at(source, &["items"]),
        default_mode,
        optional,
        SetUpError::SecretKeyMissing,
    )
}

/// kubelet's downwardAPI `CollectData`: every item's value; errors are aggregated.
pub fn downward_api_payload(
    items: &[Value],
    pod: &Value,
    facts: &NodeFacts,
    default_mode: u32,
) -> Result<Payload, SetUpError> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let path = validate_path(str_at(item, &["path"]))?;
        let mode = mode_at(item, "mode").unwrap_or(default_mode);
        let value = if let Some(fr) = at(item, &["fieldRef"]) {
            field_ref_value(
                pod,
                str_at(fr, &["fieldPath"]),
                &facts.pod_ips,
                &facts.host_ips,
            )
        } else if let Some(rf) = at(item, &["resourceFieldRef"]) {
            resource_field_ref_value(pod, &Value::Null, rf, &facts.allocatable)
        } else {
            Ok(String::new())
        };
        match value {
            Ok(v) => {
                payload.insert(
                    path,
                    FileProjection {
                        data: v.into_bytes(),
                        mode,
                    },
                );
            }
            Err(e) => errors.push(SetUpError::DownwardApi(e)),
        }
    }
    match errors.len() {
        0 => Ok(payload),
        1 => Err(errors.remove(0)),
        _ => Err(SetUpError::Multiple(errors)),
    }
}

/// A projected volume: its sources merged (later sources win a path), the volume's
/// `defaultMode` for all; errors of the sources aggregated as kubelet does.
pub fn projected_payload(
    source: &Value,
    pod: &Value,
    resolved: &Resolved,
    facts: &NodeFacts,
) -> Result<Payload, SetUpError> {
    let mode = default_mode(source);
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for s in arr_at(source, &["sources"]) {
        let part = if let Some(cm) = at(s, &["configMap"]) {
            configmap_payload(cm, resolved, mode)
        } else if let Some(sec) = at(s, &["secret"]) {
            secret_payload(sec, str_at(sec, &["name"]), resolved, mode)
        } else if let Some(d) = at(s, &["downwardAPI"]) {
            downward_api_payload(arr_at(d, &["items"]), pod, facts, mode)
        } else {
            let kind = s
                .as_object()
                .and_then(|m| m.keys().next().cloned())
                .unwrap_or_default();
            Err(SetUpError::Unsupported(format!("projected source {kind}")))
        };
        match part {
            Ok(p) => payload.extend(p),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(payload),
        1 => Err(errors.remove(0)),
        _ => Err(SetUpError::Multiple(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_are_validated_and_cleaned_as_kubelet_does() {
        assert_eq!(validate_path("a/./b//c").unwrap(), "a/b/c");
        assert_eq!(
            validate_path("..a").unwrap_err().to_string(),
            "invalid path: must not start with '..': ..a"
        );
        assert_eq!(
            validate_path("/etc/x").unwrap_err().to_string(),
            "invalid path: must be relative path: /etc/x"
        );
        assert_eq!(
            validate_path("a/../../x").unwrap_err().to_string(),
            "invalid path: must not contain '..': a/../../x"
        );
        assert!(validate_path("").is_err());
        assert!(validate_path(".").is_err());
        assert!(validate_path(&"x".repeat(256)).is_err());
        // `..` inside a name is fine past the first segment.
        assert_eq!(validate_path("a/..b").unwrap(), "a/..b");
    }

    #[test]
    fn configmap_items_modes_binary_and_missing_keys() {
        let mut r = Resolved::default();
        r.configmaps.insert(
            "cm".into(),
            json!({"data": {"a": "A", "b": "B"}, "binaryData": {"bin": "AAEC"}}),
        );
        let all = configmap_payload(&json!({"name": "cm"}), &r, 0o600).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["a", "b", "bin"]);
        assert_eq!(all["bin"].data, vec![0, 1, 2]);
        assert!(all.values().all(|f| f.mode == 0o600));

        let src = json!({"name": "cm", "items": [{"key": "a", "path": "x/y", "mode": 0o400}, {"key": "b", "path": "b2"}]});
        let p = configmap_payload(&src, &r, 0o644).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["b2", "x/y"]);
        assert_eq!(p["x/y"].mode, 0o400);
        assert_eq!(p["b2"].mode, 0o644);

        let missing = json!({"name": "cm", "items": [{"key": "zz", "path": "z"}]});
        assert_eq!(
            configmap_payload(&missing, &r, 0o644)
                .unwrap_err()
                .to_string(),
            "configmap references non-existent config key: zz"
        );
        let opt = json!({"name": "cm", "optional": true, "items": [{"key": "zz", "path": "z"}]});
        assert!(configmap_payload(&opt, &r, 0o644).unwrap().is_empty());
        assert_eq!(
            configmap_payload(&json!({"name": "nope"}), &r, 0o644)
                .unwrap_err()
                .to_string(),
            "configmap \"nope\" not found"
        );
        assert!(
            configmap_payload(&json!({"name": "nope", "optional": true}), &r, 0o644)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn secrets_are_decoded_and_bad_base64_is_an_error() {
        let mut r = Resolved::default();
        r.secrets
            .insert("s".into(), json!({"data": {"u": "YWRtaW4=", "bad": "!!"}}));
        let src = json!({"secretName": "s", "items": [{"key": "u", "path": "user"}]});
        let p = secret_payload(&src, "s", &r, 0o644).unwrap();
        assert_eq!(p["user"].data, b"admin");
        assert!(secret_payload(&json!({}), "s", &r, 0o644).is_err());
        let missing = json!({"items": [{"key": "k", "path": "k"}]});
        assert_eq!(
            secret_payload(&missing, "s", &r, 0o644)
                .unwrap_err()
                .to_string(),
            "references non-existent secret key: k"
        );
        assert_eq!(
            secret_payload(&json!({}), "gone", &r, 0o644)
                .unwrap_err()
                .to_string(),
            "secret \"gone\" not found"
        );
    }

    #[test]
    fn projected_aggregates_errors() {
        let r = Resolved::default();
        let src = json!({"sources": [{"configMap": {"name": "a"}}, {"secret": {"name": "b"}}]});
        let e = projected_payload(&src, &json!({}), &r, &NodeFacts::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "[configmap \"a\" not found, secret \"b\" not found]"
        );
    }
}
