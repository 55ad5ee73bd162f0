//! Field paths and field errors, rendered exactly as Kubernetes' validation does
//! (`spec.containers[0].image: Required value`), so kubectl prints the familiar lines.

use std::fmt;

use serde_json::Value;

/// A path to a field, such as `spec.containers[0].image` or `metadata.labels[app]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root(name: &str) -> Self {
        FieldPath(name.to_string())
    }
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{}", self.0, name))
        }
    }
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{}]", self.0, i))
    }
    pub fn key(&self, k: &str) -> Self {
        FieldPath(format!("{}[{}]", self.0, k))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of field error Kubernetes reports; each has a fixed wording and `reason`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldErrorKind {
    Required,
    Invalid(Value),
    NotSupported {
        value: Value,
        supported: Vec<String>,
    },
    Duplicate(Value),
    Forbidden,
    TooLong {
        max: usize,
    },
    TooMany {
        max: usize,
    },
    NotFound(Value),
    TypeInvalid(Value),
    /// A field the kind does not have (strict field validation).
    Unknown,
}

impl FieldErrorKind {
    /// The `reason` of a `StatusCause`.
    pub fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::NotSupported { .. } => "FieldValueNotSupported",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong { .. } => "FieldValueTooLong",
            FieldErrorKind::TooMany { .. } => "FieldValueTooMany",
            FieldErrorKind::NotFound(_) => "FieldValueNotFound",
            FieldErrorKind::TypeInvalid(_) => "FieldValueTypeInvalid",
            FieldErrorKind::Unknown => "FieldValueInvalid",
        }
    }
}

/// One validation failure at one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: FieldPath,
    pub kind: FieldErrorKind,
    pub detail: String,
}

/// Go's `%#v`-like rendering of a value in an error message: strings quoted.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

impl FieldError {
    pub fn new(field: FieldPath, kind: FieldErrorKind, detail: impl Into<String>) -> Self {
        FieldError {
            field,
            kind,
            detail: detail.into(),
        }
    }
    pub fn required(field: FieldPath, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Required, detail)
    }
    pub fn invalid(field: FieldPath, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Invalid(value.into()), detail)
    }
    pub fn not_supported(field: FieldPath, value: impl Into<Value>, supported: &[&str]) -> Self {
        Self::new(
            field,
            FieldErrorKind::NotSupported {
                value: value.into(),
                supported: supported.iter().map(|s| s.to_string()).collect(),
            },
            "",
        )
    }
    pub fn duplicate(field: FieldPath, value: impl Into<Value>) -> Self {
        Self::new(field, FieldErrorKind::Duplicate(value.into()), "")
    }
    pub fn forbidden(field: FieldPath, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Forbidden, detail)
    }
    pub fn not_found(field: FieldPath, value: impl Into<Value>) -> Self {
        Self::new(field, FieldErrorKind::NotFound(value.into()), "")
    }

    /// The message without the field, as in a `StatusCause`: `Required value`,
    /// `Invalid value: "Foo": must be ...`.
    pub fn message(&self) -> String {
        let (head, value) = match &self.kind {
            FieldErrorKind::Required => ("Required value".to_string(), None),
            FieldErrorKind::Invalid(v) => ("Invalid value".to_string(), Some(v)),
            FieldErrorKind::NotSupported { value, supported } => {
                let mut s = format!("Unsupported value: {}", render_value(value));
                if !supported.is_empty() {
                    let list: Vec<String> = supported.iter().map(|x| format!("{x:?}")).collect();
                    s.push_str(&format!(": supported values: {}", list.join(", ")));
                }
                if !self.detail.is_empty() {
                    s.push_str(": ");
                    s.push_str(&self.detail);
                }
                return s;
            }
            FieldErrorKind::Duplicate(v) => ("Duplicate value".to_string(), Some(v)),
            FieldErrorKind::Forbidden => ("Forbidden".to_string(), None),
            FieldErrorKind::TooLong { max } => {
                let s = format!("Too long: may not be more than {max} bytes");
                return s;
            }
            FieldErrorKind::TooMany { max } => {
                return format!("Too many: must have at most {max} items");
            }
            FieldErrorKind::NotFound(v) => ("Not found".to_string(), Some(v)),
            FieldErrorKind::TypeInvalid(v) => ("Invalid value".to_string(), Some(v)),
            FieldErrorKind::Unknown => ("Unknown field".to_string(), None),
        };
        let mut s = head;
        if let Some(v) = value {
            s.push_str(": ");
            s.push_str(&render_value(v));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_kubernetes() {
        let p = FieldPath::root("spec")
            .child("containers")
            .index(0)
            .child("image");
        assert_eq!(p.as_str(), "spec.containers[0].image");
        assert_eq!(
            FieldPath::root("metadata")
                .child("labels")
                .key("a/b")
                .as_str(),
            "metadata.labels[a/b]"
        );
    }

    #[test]
    fn messages_render_like_kubernetes() {
        let e = FieldError::required(
            FieldPath::root("spec")
                .child("containers")
                .index(0)
                .child("image"),
            "",
        );
        assert_eq!(e.to_string(), "spec.containers[0].image: Required value");
        let e = FieldError::not_supported(
            FieldPath::root("spec").child("restartPolicy"),
            "Sometimes",
            &["Always", "OnFailure", "Never"],
        );
        assert_eq!(
            e.to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        let e = FieldError::invalid(FieldPath::root("metadata").child("name"), "Foo", "bad");
        assert_eq!(e.to_string(), "metadata.name: Invalid value: \"Foo\": bad");
    }
}
