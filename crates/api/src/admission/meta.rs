//! `metadata` rules shared by every kind: name (or generateName) present and well formed
//! for the kind, namespace present exactly for namespaced kinds, label and annotation
//! syntax and size, finalizer names; and on update, name and namespace immutable.

use serde_json::Value;

use super::names;
use super::{get, get_arr, get_obj, get_str};
use crate::field::{FieldError, FieldErrorKind, FieldPath};
use crate::resources::ResourceInfo;

/// Kubernetes' limit on the total size of all annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Finalizers Kubernetes allows without a domain prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// The name rule of a kind, as Kubernetes' `Validate<Kind>Name`.
pub fn name_rule(kind: &str) -> fn(&str) -> Vec<String> {
    match kind {
        "Namespace" => names::dns1123_label,
        "Service" => names::dns1035_label,
        _ => names::dns1123_subdomain,
    }
}

/// Validates `metadata` of a new object.
pub fn validate_object_meta(resource: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let root = FieldPath::root("metadata");
    let empty = Value::Null;
    let meta = get(obj, "metadata").unwrap_or(&empty);
    let rule = name_rule(resource.kind);

    let name = get_str(meta, "name").unwrap_or("");
    let generate_name = get_str(meta, "generateName").unwrap_or("");
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                root.child("name"),
                "name or generateName is required",
            ));
        } else {
            // A prefix: the generated suffix makes a trailing '-' fine.
            let prefix = generate_name.trim_end_matches('-');
            if !prefix.is_empty() {
                errs.extend(names::invalid_all(
                    &root.child("generateName"),
                    generate_name,
                    rule(prefix),
                ));
            }
        }
    } else {
        errs.extend(names::invalid_all(&root.child("name"), name, rule(name)));
    }

    let namespace = get_str(meta, "namespace").unwrap_or("");
    if resource.namespaced() {
        if namespace.is_empty() {
            errs.push(FieldError::required(root.child("namespace"), ""));
        } else {
            errs.extend(names::invalid_all(
                &root.child("namespace"),
                namespace,
                names::dns1123_label(namespace),
            ));
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            root.child("namespace"),
            "not allowed on this type",
        ));
    }

    if let Some(labels) = get_obj(meta, "labels") {
        errs.extend(validate_labels(labels, &root.child("labels")));
    }
    if let Some(annotations) = get_obj(meta, "annotations") {
        errs.extend(validate_annotations(
            annotations,
            &root.child("annotations"),
        ));
    }
    for f in get_arr(meta, "finalizers") {
        let f = f.as_str().unwrap_or("");
        let path = root.child("finalizers");
        let msgs = names::qualified_name(f);
        if !msgs.is_empty() {
            errs.extend(names::invalid_all(&path, f, msgs));
        } else if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
            errs.push(FieldError::invalid(
                path,
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// Label map rules (`ValidateLabels`): errors sit at the map's path, naming key or value.
pub fn validate_labels(
    labels: &serde_json::Map<String, Value>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        errs.extend(names::invalid_all(path, k, names::qualified_name(k)));
        let value = v.as_str().unwrap_or("");
        errs.extend(names::invalid_all(path, value, names::label_value(value)));
    }
    errs
}

/// Annotation rules (`ValidateAnnotations`): lower-cased keys are qualified names; the
/// total size is bounded.
pub fn validate_annotations(
    annotations: &serde_json::Map<String, Value>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations {
        errs.extend(names::invalid_all(
            path,
            k,
            names::qualified_name(&k.to_lowercase()),
        ));
        total += k.len() + v.as_str().map(str::len).unwrap_or(0);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::new(
            path.clone(),
            FieldErrorKind::TooLong {
                max: TOTAL_ANNOTATION_SIZE_LIMIT,
            },
            "",
        ));
    }
    errs
}

/// Update rules every kind shares: name, namespace and (when given) uid are immutable.
pub fn validate_object_meta_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let root = FieldPath::root("metadata");
    let empty = Value::Null;
    let old_meta = get(old, "metadata").unwrap_or(&empty);
    let new_meta = get(new, "metadata").unwrap_or(&empty);
    for field in ["name", "namespace", "uid"] {
        let o = get_str(old_meta, field).unwrap_or("");
        let n = get_str(new_meta, field).unwrap_or("");
        // An absent uid in the request means "keep", as Kubernetes fills it from the old object.
        if field == "uid" && n.is_empty() {
            continue;
        }
        if o != n {
            errs.push(FieldError::invalid(
                root.child(field),
                n,
                "field is immutable",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find_kind;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        find_kind("", "Pod").unwrap()
    }

    #[test]
    fn name_required_unless_generate_name() {
        let errs = validate_object_meta(pods(), &json!({"metadata": {"namespace": "default"}}));
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
        let ok = validate_object_meta(
            pods(),
            &json!({"metadata": {"generateName": "web-", "namespace": "default"}}),
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn name_formats_per_kind() {
        let errs = validate_object_meta(
            pods(),
            &json!({"metadata": {"name": "Foo", "namespace": "default"}}),
        );
        assert_eq!(errs[0].to_string(), "metadata.name: Invalid value: \"Foo\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
        let ns = find_kind("", "Namespace").unwrap();
        assert!(
            validate_object_meta(ns, &json!({"metadata": {"name": "a.b"}}))[0]
                .to_string()
                .contains("RFC 1123 label")
        );
        assert!(validate_object_meta(ns, &json!({"metadata": {"name": "ab"}})).is_empty());
        let svc = find_kind("", "Service").unwrap();
        assert!(
            validate_object_meta(svc, &json!({"metadata": {"name": "1ab", "namespace": "x"}}))[0]
                .to_string()
                .contains("DNS-1035")
        );
        let errs = validate_object_meta(ns, &json!({"metadata": {"name": "ab", "namespace": "x"}}));
        assert_eq!(
            errs[0].to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
    }

    #[test]
    fn labels_and_annotations() {
        let errs = validate_object_meta(
            pods(),
            &json!({"metadata": {"name": "a", "namespace": "d", "labels": {"bad key!": "x", "ok": "-bad"}}}),
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.field.as_str() == "metadata.labels"));
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let errs = validate_object_meta(
            pods(),
            &json!({"metadata": {"name": "a", "namespace": "d", "annotations": {"k": big}}}),
        );
        assert_eq!(
            errs[0].to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
    }

    #[test]
    fn immutable_name() {
        let errs = validate_object_meta_update(
            &json!({"metadata": {"name": "a"}}),
            &json!({"metadata": {"name": "b"}}),
        );
        assert_eq!(
            errs[0].to_string(),
            "metadata.name: Invalid value: \"b\": field is immutable"
        );
    }
}
