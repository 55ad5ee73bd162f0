//! `ApiError`: every failure the API surface can report, with its HTTP code and the
//! Kubernetes `Status` object kubectl and client libraries parse.

use serde_json::{json, Value};

use crate::field::FieldError;

/// Identifies the object an error is about, as `Status.details` does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// API group, "" for core.
    pub group: String,
    /// Plural resource name (`pods`) for NotFound/AlreadyExists/Conflict, as Kubernetes uses.
    pub resource: String,
    pub name: String,
}

impl Target {
    pub fn new(group: &str, resource: &str, name: &str) -> Self {
        Target {
            group: group.to_string(),
            resource: resource.to_string(),
            name: name.to_string(),
        }
    }
    /// `pods "x"` or `leases.coordination.k8s.io "x"`.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            format!("{} {:?}", self.resource, self.name)
        } else {
            format!("{}.{} {:?}", self.resource, self.group, self.name)
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{} not found", .0.qualified())]
    NotFound(Target),
    #[error("{} already exists", .0.qualified())]
    AlreadyExists(Target),
    #[error("Operation cannot be fulfilled on {}: {message}", .target.qualified())]
    Conflict { target: Target, message: String },
    /// 422. `kind` is the Kind (`Pod`), as Kubernetes puts in details.kind for Invalid.
    #[error("{kind} {name:?} is invalid: {}", render_causes(.causes))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    /// 422 without field causes: a well-formed request whose result cannot be accepted
    /// (a JSON patch whose operation fails).
    #[error("{0}")]
    Unprocessable(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("the server could not find the requested resource")]
    UnknownPath,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 410: a watch or list from a compacted resourceVersion.
    #[error("{0}")]
    Expired(String),
    #[error("the request body is too large: limit is {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Timeout(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
}

fn render_causes(causes: &[FieldError]) -> String {
    match causes {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl ApiError {
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        ApiError::NotFound(Target::new(group, resource, name))
    }
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        ApiError::AlreadyExists(Target::new(group, resource, name))
    }
    pub fn conflict(group: &str, resource: &str, name: &str) -> Self {
        ApiError::Conflict {
            target: Target::new(group, resource, name),
            message: "the object has been modified; please apply your changes to the latest version and try again".into(),
        }
    }
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        ApiError::Invalid {
            group: group.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            causes,
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound(_) | ApiError::UnknownPath => 404,
            ApiError::AlreadyExists(_) | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::MethodNotAllowed => 405,
            ApiError::NotAcceptable(_) => 406,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Expired(_) => 410,
            ApiError::TooLarge { .. } => 413,
            ApiError::Timeout(_) => 504,
            ApiError::Internal(_) => 500,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) | ApiError::UnknownPath => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Expired(_) => "Expired",
            ApiError::TooLarge { .. } => "RequestEntityTooLarge",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object (kind Status, apiVersion v1) for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound(t)
            | ApiError::AlreadyExists(t)
            | ApiError::Conflict { target: t, .. } => {
                let mut d = json!({"name": t.name, "kind": t.resource});
                if !t.group.is_empty() {
                    d["group"] = json!(t.group);
                }
                Some(d)
            }
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| {
                        json!({
                            "reason": c.kind.reason(),
                            "message": c.message(),
                            "field": c.field.as_str(),
                        })
                    })
                    .collect();
                let mut d = json!({"name": name, "kind": kind, "causes": causes});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

/// A success `Status`, as returned by some deletes.
pub fn success_status(details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::{FieldError, FieldPath};

    #[test]
    fn not_found_reads_like_kubernetes() {
        let e = ApiError::not_found("", "pods", "x");
        assert_eq!(e.to_string(), "pods \"x\" not found");
        let s = e.to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["details"]["kind"], "pods");
        let e = ApiError::not_found("coordination.k8s.io", "leases", "n");
        assert_eq!(e.to_string(), "leases.coordination.k8s.io \"n\" not found");
    }

    #[test]
    fn invalid_carries_causes() {
        let f = FieldPath::root("spec")
            .child("containers")
            .index(0)
            .child("image");
        let e = ApiError::invalid("", "Pod", "x", vec![FieldError::required(f, "")]);
        assert_eq!(
            e.to_string(),
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(
            s["details"]["causes"][0]["field"],
            "spec.containers[0].image"
        );
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
    }
}
