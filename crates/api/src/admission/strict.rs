//! Strict decoding: which fields of a request body the kind does not have (unknown
//! fields, for `fieldValidation=Strict`), and which fields have the wrong JSON type
//! (decode errors, a 400 in Kubernetes).
//!
//! k8s-openapi ignores unknown fields, so the check is a round trip: deserialize into the
//! typed struct, serialize back, and every non-null input path missing from the result is
//! unknown. Map-typed fields (labels, data, nodeSelector, ...) round-trip all their keys,
//! so their keys are never reported.

use k8s_openapi::api;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::field::{FieldError, FieldErrorKind, FieldPath};
use crate::resources::ResourceInfo;

/// A decode failure at one path.
struct DecodeFailure {
    segments: Vec<Seg>,
    message: String,
}

#[derive(Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Fields whose value is a map: their keys print as `[key]` in paths.
const MAP_FIELDS: &[&str] = &[
    "labels",
    "annotations",
    "data",
    "stringData",
    "binaryData",
    "nodeSelector",
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "selector",
    "matchLabels",
    "overhead",
    "hard",
    "used",
];

fn render(segments: &[Seg]) -> FieldPath {
    let mut path = FieldPath::default();
    let mut parent_is_map = false;
    for s in segments {
        match s {
            Seg::Key(k) if parent_is_map => {
                path = path.key(k);
                parent_is_map = false;
            }
            Seg::Key(k) => {
                path = path.child(k);
                parent_is_map = MAP_FIELDS.contains(&k.as_str());
            }
            Seg::Index(i) => {
                path = path.index(*i);
                parent_is_map = false;
            }
        }
    }
    path
}

fn round_trip_as<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, DecodeFailure> {
    let decoded: T = serde_path_to_error::deserialize(obj).map_err(|e| {
        let segments = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        DecodeFailure {
            segments,
            message: e.into_inner().to_string(),
        }
    })?;
    serde_json::to_value(&decoded).map_err(|e| DecodeFailure {
        segments: Vec::new(),
        message: e.to_string(),
    })
}

/// Round-trips `obj` (without apiVersion/kind, which the typed decoders insist on and the
/// server checks itself) through the kind's typed struct. `None` for kinds not typed here.
fn round_trip(resource: &ResourceInfo, obj: &Value) -> Option<Result<Value, DecodeFailure>> {
    let mut body = obj.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    } else {
        return Some(Err(DecodeFailure {
            segments: Vec::new(),
            message: format!("expected a JSON object for a {}", resource.kind),
        }));
    }
    let body = &body;
    Some(match resource.kind {
        "Namespace" => round_trip_as::<api::core::v1::Namespace>(body),
        "Pod" => round_trip_as::<api::core::v1::Pod>(body),
        "Node" => round_trip_as::<api::core::v1::Node>(body),
        "Secret" => round_trip_as::<api::core::v1::Secret>(body),
        "ConfigMap" => round_trip_as::<api::core::v1::ConfigMap>(body),
        "Event" => round_trip_as::<api::core::v1::Event>(body),
        "ServiceAccount" => round_trip_as::<api::core::v1::ServiceAccount>(body),
        "Service" => round_trip_as::<api::core::v1::Service>(body),
        "Endpoints" => round_trip_as::<api::core::v1::Endpoints>(body),
        "Lease" => round_trip_as::<api::coordination::v1::Lease>(body),
        "EndpointSlice" => round_trip_as::<api::discovery::v1::EndpointSlice>(body),
        _ => return None,
    })
}

fn value_at<'a>(v: &'a Value, segments: &[Seg]) -> Option<&'a Value> {
    segments.iter().try_fold(v, |cur, s| match s {
        Seg::Key(k) => cur.get(k.as_str()),
        Seg::Index(i) => cur.get(*i),
    })
}

/// Removes the value at `segments` (the key from its object, or the element from its
/// list) so decoding can go on past it. False if there was nothing to remove.
fn remove_at(v: &mut Value, segments: &[Seg]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut cur = v;
    for s in parents {
        let next = match s {
            Seg::Key(k) => cur.get_mut(k.as_str()),
            Seg::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (cur, last) {
        (Value::Object(m), Seg::Key(k)) => m.shift_remove(k.as_str()).is_some(),
        (Value::Array(a), Seg::Index(i)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Fields of the wrong JSON type (a string where an integer is expected, an object where a
/// list is), as `FieldValueTypeInvalid` errors. The API server answers these with 400
/// BadRequest, before strict field checks, defaulting and validation. Every failure is
/// reported: each offending value is set aside and decoding retried.
pub fn decode_errors(resource: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut body = obj.clone();
    for _ in 0..32 {
        match round_trip(resource, &body) {
            None | Some(Ok(_)) => break,
            Some(Err(failure)) => {
                let value = value_at(&body, &failure.segments)
                    .cloned()
                    .unwrap_or(Value::Null);
                errs.push(FieldError::new(
                    render(&failure.segments),
                    FieldErrorKind::TypeInvalid(value),
                    failure.message,
                ));
                if failure.segments.is_empty() || !remove_at(&mut body, &failure.segments) {
                    break;
                }
            }
        }
    }
    errs
}

/// Paths present in `obj` that the kind does not have, in Kubernetes' notation
/// (`spec.containers[0].imagee`). Null input values are ignored; fields of the wrong type
/// are left to [`decode_errors`].
pub fn unknown_fields(resource: &ResourceInfo, obj: &Value) -> Vec<String> {
    let mut body = obj.clone();
    let mut out = Vec::new();
    for _ in 0..32 {
        match round_trip(resource, &body) {
            None => return out,
            Some(Ok(typed)) => {
                if let (Some(input), Some(output)) = (body.as_object(), typed.as_object()) {
                    for (k, v) in input {
                        if k == "apiVersion" || k == "kind" || v.is_null() {
                            continue;
                        }
                        let path = FieldPath::root(k);
                        match output.get(k) {
                            None => out.push(path.to_string()),
                            Some(o) => diff(v, o, &path, &mut out),
                        }
                    }
                }
                return out;
            }
            Some(Err(failure)) => {
                if failure.segments.is_empty() || !remove_at(&mut body, &failure.segments) {
                    return out;
                }
            }
        }
    }
    out
}

/// Removes the fields [`unknown_fields`] reports, as Kubernetes' decoder drops them under
/// `fieldValidation=Warn|Ignore`: nothing the kind does not have is ever stored.
pub fn prune_unknown_fields(resource: &ResourceInfo, obj: &mut Value) {
    if let Some(Ok(typed)) = round_trip(resource, obj) {
        if let (Some(input), Some(output)) = (obj.as_object_mut(), typed.as_object()) {
            input.retain(|k, v| {
                k == "apiVersion" || k == "kind" || v.is_null() || output.contains_key(k)
            });
            for (k, v) in input.iter_mut() {
                if let Some(o) = output.get(k) {
                    prune(v, o);
                }
            }
        }
    }
}

fn prune(input: &mut Value, output: &Value) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            i.retain(|k, v| v.is_null() || o.contains_key(k));
            for (k, v) in i.iter_mut() {
                if let Some(ov) = o.get(k) {
                    prune(v, ov);
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (v, ov) in i.iter_mut().zip(o.iter()) {
                prune(v, ov);
            }
        }
        _ => {}
    }
}

fn diff(input: &Value, output: &Value, path: &FieldPath, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                let child = path.child(k);
                match o.get(k) {
                    None => out.push(child.to_string()),
                    Some(ov) => diff(v, ov, &child, out),
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (idx, (v, ov)) in i.iter().zip(o.iter()).enumerate() {
                diff(v, ov, &path.index(idx), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find_kind;
    use serde_json::json;

    fn kind(k: &str) -> &'static ResourceInfo {
        find_kind("", k).unwrap()
    }

    #[test]
    fn prunes_unknown_fields_only() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {"bogus": 1, "containers": [{"name": "c", "image": "i", "imagee": "j"}]}});
        prune_unknown_fields(kind("Pod"), &mut pod);
        assert!(unknown_fields(kind("Pod"), &pod).is_empty());
        assert_eq!(pod["metadata"]["labels"]["x"], "y");
        assert_eq!(pod["spec"]["containers"][0]["image"], "i");
        assert!(pod["spec"].get("bogus").is_none());
    }

    #[test]
    fn reports_unknown_fields_with_paths() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "labels": {"any.key/x": "v"}, "lables": {"x": "y"}},
            "spec": {
                "containers": [
                    {"name": "c", "image": "busybox"},
                    {"name": "d", "imagee": "busybox", "resources": {"limits": {"cpu": 1}}}
                ],
                "nodeSelector": {"whatever": "x"},
                "bogus": null,
                "volumes": [{"name": "v", "emptyDir": {"sizeLimitt": "1Gi"}}]
            },
            "extra": 1
        });
        let got = unknown_fields(kind("Pod"), &pod);
        assert_eq!(
            got,
            vec![
                "metadata.lables",
                "spec.containers[1].imagee",
                "spec.volumes[0].emptyDir.sizeLimitt",
                "extra"
            ]
        );
    }

    #[test]
    fn known_objects_have_no_unknown_fields() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "Yg=="}, "stringData": {"b": "c"}});
        assert!(unknown_fields(kind("Secret"), &secret).is_empty());
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {"holderIdentity": "n", "leaseDurationSeconds": 40, "holder": 1}});
        let leases = find_kind("coordination.k8s.io", "Lease").unwrap();
        assert_eq!(unknown_fields(leases, &lease), vec!["spec.holder"]);
    }

    #[test]
    fn decode_errors_name_the_field() {
        let pod = json!({
            "metadata": {"name": "a", "labels": {"version": 1}},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": "eighty"}], "imagee": 1}]}
        });
        let errs = decode_errors(kind("Pod"), &pod);
        let paths: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "metadata.labels[version]",
                "spec.containers[0].ports[0].containerPort"
            ]
        );
        assert_eq!(errs[1].kind.reason(), "FieldValueTypeInvalid");
        assert!(errs[1].to_string().starts_with("spec.containers[0].ports[0].containerPort: Invalid value: \"eighty\": invalid type"), "{}", errs[1]);
        // Unknown fields are still found past the type errors.
        assert_eq!(
            unknown_fields(kind("Pod"), &pod),
            vec!["spec.containers[0].imagee"]
        );
        assert!(decode_errors(kind("Pod"), &json!({"spec": {"containers": []}})).is_empty());
        assert_eq!(decode_errors(kind("Pod"), &json!([1])).len(), 1);
    }
}
