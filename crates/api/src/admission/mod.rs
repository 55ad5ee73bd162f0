//! Admission of objects on their way into the store: strict unknown-field detection,
//! type (decode) errors, kind-specific defaulting, validation on create and update, and
//! the one list of Pod fields Podium does not implement yet.
//!
//! Everything here is a pure function over `serde_json::Value` objects, called by the API
//! server in this order: [`decode_errors`] (answer 400), [`unknown_fields`] (per
//! `?fieldValidation=`), [`default_on_create`], [`validate_create`] / [`validate_update`],
//! [`unsupported_fields`] (answer 422 with every error collected).
//!
//! - [`names`]: name and identifier syntax, worded as Kubernetes words it.
//! - [`meta`]: `metadata` rules shared by every kind.
//! - [`strict`]: unknown fields and decode errors through a `k8s-openapi` round trip.
//! - [`pod`]: Pod defaulting, initial status, validation and update rules.
//! - [`other_kinds`]: defaulting and validation of the other served kinds.
//! - [`unsupported`]: the table of Pod fields refused as "not supported by Podium yet".

pub mod meta;
pub mod names;
pub mod other_kinds;
pub mod pod;
pub mod strict;
pub mod unsupported;

use serde_json::{Map, Value};

use crate::field::FieldError;
use crate::resources::ResourceInfo;

pub use strict::{decode_errors, prune_unknown_fields, unknown_fields};
pub use unsupported::unsupported_fields;

/// The `?fieldValidation=` query parameter: what to do with unknown or duplicate fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop unknown fields and answer with a `Warning` header per field.
    Warn,
    /// Refuse the request (400) naming every unknown field. kubectl sends this.
    #[default]
    Strict,
}

/// A `fieldValidation` value that is none of `Ignore`, `Warn`, `Strict`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fieldValidation parameter unsupported: {0:?} (supported values: \"Ignore\", \"Warn\", \"Strict\")")]
pub struct FieldValidationError(pub String);

impl FieldValidation {
    /// Parses the query value; an empty value means the default, `Strict`.
    pub fn parse(s: &str) -> Result<FieldValidation, FieldValidationError> {
        match s {
            "" | "Strict" => Ok(FieldValidation::Strict),
            "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            other => Err(FieldValidationError(other.to_string())),
        }
    }
}

impl std::str::FromStr for FieldValidation {
    type Err = FieldValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldValidation::parse(s)
    }
}

/// Kind-specific defaulting on create, including a Pod's and a Namespace's initial status.
pub fn default_on_create(resource: &ResourceInfo, obj: &mut Value) {
    match resource.kind {
        "Pod" => pod::default_pod(obj),
        _ => other_kinds::default_other(resource, obj),
    }
}

/// Defaulting of a replacement (PUT or patched object): the same field defaults as on
/// create, without touching status. Call it before [`validate_update`].
pub fn default_on_update(resource: &ResourceInfo, obj: &mut Value) {
    match resource.kind {
        "Pod" => pod::default_pod_spec(obj),
        _ => other_kinds::default_other(resource, obj),
    }
}

/// Validation of a new object: metadata rules plus the kind's own rules.
pub fn validate_create(resource: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::validate_object_meta(resource, obj);
    match resource.kind {
        "Pod" => errs.extend(pod::validate_pod(obj)),
        _ => errs.extend(other_kinds::validate_other(resource, obj)),
    }
    errs
}

/// Validation of a replacement: the new object (defaulted as by [`default_on_update`]) as on
/// create, plus immutability rules: metadata name, namespace and uid for every kind; for a
/// Pod, the spec except images, activeDeadlineSeconds and added tolerations.
pub fn validate_update(resource: &ResourceInfo, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = meta::validate_object_meta_update(old, new);
    // A replacement may omit defaulted fields (a manifest re-applied); Kubernetes defaults
    // it before validating, so do the same on a copy.
    let mut defaulted = new.clone();
    default_on_update(resource, &mut defaulted);
    errs.extend(validate_create(resource, &defaulted));
    match resource.kind {
        "Pod" => errs.extend(pod::validate_pod_update(old, new)),
        _ => errs.extend(other_kinds::validate_other_update(resource, old, new)),
    }
    errs
}

// Small accessors shared by the submodules; they tolerate any JSON shape, since decode
// errors are reported separately.

pub(crate) fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()
        .and_then(|m| m.get(key))
        .filter(|x| !x.is_null())
}

pub(crate) fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key).and_then(Value::as_str)
}

pub(crate) fn get_i64(v: &Value, key: &str) -> Option<i64> {
    get(v, key).and_then(Value::as_i64)
}

pub(crate) fn get_bool(v: &Value, key: &str) -> bool {
    get(v, key).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn get_arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    get(v, key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn get_obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    get(v, key).and_then(Value::as_object)
}

/// The object at `key` of `v`, created (or replacing a non-object) if needed; `None` if
/// `v` itself is not an object.
pub(crate) fn obj_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let map = v.as_object_mut()?;
    let entry = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

/// Sets `key` on an object unless it already holds a non-null value.
pub(crate) fn set_default(v: &mut Value, key: &str, value: Value) {
    if let Some(map) = v.as_object_mut() {
        match map.get(key) {
            Some(existing) if !existing.is_null() => {}
            _ => {
                map.insert(key.to_string(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_validation_parses() {
        assert_eq!(FieldValidation::parse("").unwrap(), FieldValidation::Strict);
        assert_eq!(
            FieldValidation::parse("Warn").unwrap(),
            FieldValidation::Warn
        );
        assert_eq!(
            "Ignore".parse::<FieldValidation>().unwrap(),
            FieldValidation::Ignore
        );
        assert!(FieldValidation::parse("strict").is_err());
    }
}
