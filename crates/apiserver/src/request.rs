//! Parsing of an HTTP request line into a typed [`Route`]: pure functions, no I/O.
//! The handlers then execute the typed request; nothing below looks at raw paths again.

use std::collections::HashMap;

use podium_api::resources::{self, ResourceInfo};
use podium_api::ApiError;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    Health(HealthCheck),
    /// `/api`: the core API versions.
    CoreVersions,
    /// `/apis`: the API groups.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: the resource list.
    ResourceList {
        group: String,
        version: String,
    },
    /// `/openapi/v3` (index) or `/openapi/v3/<path>`.
    OpenApiV3(Option<String>),
    Resource(Box<ResourceRequest>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheck {
    Healthz,
    Livez,
    Readyz,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

/// A request on a served resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRequest {
    pub resource: &'static ResourceInfo,
    /// The namespace in the path; None for cluster-scoped and all-namespace requests.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub verb: Verb,
    pub query: Query,
}

/// The query parameters Podium understands; unknown ones are ignored as Kubernetes does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub label_selector: String,
    pub field_selector: String,
    pub watch: bool,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    pub send_initial_events: Option<bool>,
    pub field_validation: Option<String>,
    pub field_manager: Option<String>,
    pub force: bool,
    pub dry_run: bool,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub include_object: Option<String>,
    /// `pods/log` parameters.
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<i64>,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub limit_bytes: Option<i64>,
}

/// Decodes `%XX` and `+` in a query component.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a query string into decoded pairs (the last value of a repeated key wins).
pub fn parse_query_pairs(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// Go's strconv.ParseBool, which is how Kubernetes reads boolean parameters.
pub fn parse_go_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(false),
        other => Err(ApiError::BadRequest(format!(
            "invalid value {other:?} for query parameter {name}: must be a boolean"
        ))),
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ApiError> {
    v.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "invalid value {v:?} for query parameter {name}: must be an integer"
        ))
    })
}

pub fn parse_query(query: &str) -> Result<Query, ApiError> {
    let pairs = parse_query_pairs(query);
    let mut q = Query::default();
    for (k, v) in &pairs {
        let v = v.as_str();
        match k.as_str() {
            "labelSelector" => q.label_selector = v.to_string(),
            "fieldSelector" => q.field_selector = v.to_string(),
            "watch" => q.watch = parse_go_bool(k, v)?,
            "resourceVersion" => q.resource_version = Some(v.to_string()),
            "resourceVersionMatch" => q.resource_version_match = Some(v.to_string()),
            "limit" => {
                let n: i64 = parse_num(k, v)?;
                q.limit = (n > 0).then_some(n as usize);
            }
            "continue" => q.continue_token = (!v.is_empty()).then(|| v.to_string()),
            "timeoutSeconds" => q.timeout_seconds = Some(parse_num(k, v)?),
            "allowWatchBookmarks" => q.allow_watch_bookmarks = parse_go_bool(k, v)?,
            "sendInitialEvents" => q.send_initial_events = Some(parse_go_bool(k, v)?),
            "fieldValidation" => q.field_validation = Some(v.to_string()),
            "fieldManager" => q.field_manager = Some(v.to_string()),
            "force" => q.force = parse_go_bool(k, v)?,
            "dryRun" => q.dry_run = !v.is_empty(),
            "gracePeriodSeconds" => q.grace_period_seconds = Some(parse_num(k, v)?),
            "propagationPolicy" => q.propagation_policy = Some(v.to_string()),
            "includeObject" => q.include_object = Some(v.to_string()),
            "container" => q.container = Some(v.to_string()),
            "follow" => q.follow = parse_go_bool(k, v)?,
            "previous" => q.previous = parse_go_bool(k, v)?,
            "tailLines" => q.tail_lines = Some(parse_num(k, v)?),
            "timestamps" => q.timestamps = parse_go_bool(k, v)?,
            "sinceSeconds" => q.since_seconds = Some(parse_num(k, v)?),
            "limitBytes" => q.limit_bytes = Some(parse_num(k, v)?),
            _ => {}
        }
    }
    Ok(q)
}

/// Parses method, path and query into a route.
pub fn parse(method: &http::Method, path: &str, query: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let route = match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz", ..] => Route::Health(HealthCheck::Healthz),
        ["livez", ..] => Route::Health(HealthCheck::Livez),
        ["readyz", ..] => Route::Health(HealthCheck::Readyz),
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["openapi", "v3"] => Route::OpenApiV3(None),
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(Some(rest.join("/"))),
        ["api", "v1"] => Route::ResourceList {
            group: String::new(),
            version: "v1".into(),
        },
        ["apis", group] if resources::group_versions().iter().any(|(g, _)| g == group) => {
            Route::Group(group.to_string())
        }
        ["apis", group, version] if resources::group_versions().contains(&(group, version)) => {
            Route::ResourceList {
                group: group.to_string(),
                version: version.to_string(),
            }
        }
        ["api", "v1", rest @ ..] => {
            Route::Resource(Box::new(parse_resource(method, "", "v1", rest, query)?))
        }
        ["apis", group, version, rest @ ..] => Route::Resource(Box::new(parse_resource(
            method, group, version, rest, query,
        )?)),
        _ => return Err(ApiError::UnknownPath),
    };
    Ok(route)
}

fn parse_resource(
    method: &http::Method,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &str,
) -> Result<ResourceRequest, ApiError> {
    let (legacy_watch, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    // Namespaced paths: namespaces/<ns>/<resource>[/<name>[/<sub>]]; but
    // namespaces/<ns>[/status|finalize] is the namespace object itself.
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !is_namespace_subresource(plural) || !tail.is_empty() =>
        {
            let (name, sub) = match tail {
                [] => (None, None),
                [name] => (Some(*name), None),
                [name, sub] => (Some(*name), Some(*sub)),
                _ => return Err(ApiError::UnknownPath),
            };
            (Some(*ns), *plural, name, sub)
        }
        [plural] => (None, *plural, None, None),
        [plural, name] => (None, *plural, Some(*name), None),
        [plural, name, sub] => (None, *plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::UnknownPath),
    };
    let resource = resources::find(group, version, plural).ok_or(ApiError::UnknownPath)?;
    // A namespace in the path of a cluster-scoped resource is not a valid path.
    if namespace.is_some() && !resource.namespaced() {
        return Err(ApiError::UnknownPath);
    }
    if let Some(s) = sub {
        if !resource.has_subresource(s) {
            return Err(ApiError::UnknownPath);
        }
    }
    let query = parse_query(query)?;
    let watch = legacy_watch || query.watch;
    let verb = match (method.as_str(), name.is_some(), sub) {
        ("GET", _, _) if watch => Verb::Watch,
        ("GET", true, _) => Verb::Get,
        ("GET", false, _) => Verb::List,
        ("POST", false, None) => Verb::Create,
        ("POST", true, Some(_)) => Verb::Create,
        ("PUT", true, _) => Verb::Update,
        ("PATCH", true, _) => Verb::Patch,
        ("DELETE", true, None) => Verb::Delete,
        ("DELETE", false, None) => Verb::DeleteCollection,
        _ => return Err(ApiError::MethodNotAllowed),
    };
    Ok(ResourceRequest {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
        verb,
        query,
    })
}

fn is_namespace_subresource(s: &str) -> bool {
    s == "status" || s == "finalize"
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn res(method: Method, path: &str, query: &str) -> ResourceRequest {
        match parse(&method, path, query).unwrap() {
            Route::Resource(r) => *r,
            other => panic!("not a resource route: {other:?}"),
        }
    }

    #[test]
    fn namespaced_paths() {
        let r = res(Method::GET, "/api/v1/namespaces/default/pods", "");
        assert_eq!(r.resource.plural, "pods");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.verb, Verb::List);
        let r = res(
            Method::GET,
            "/api/v1/namespaces/default/pods/web/log",
            "follow=true&container=c",
        );
        assert_eq!(r.subresource.as_deref(), Some("log"));
        assert!(r.query.follow);
        assert_eq!(r.query.container.as_deref(), Some("c"));
        let r = res(
            Method::POST,
            "/api/v1/namespaces/default/pods/web/binding",
            "",
        );
        assert_eq!(r.verb, Verb::Create);
    }

    #[test]
    fn namespace_object_paths() {
        let r = res(Method::GET, "/api/v1/namespaces/kube-system", "");
        assert_eq!(r.resource.plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        assert_eq!(r.namespace, None);
        let r = res(Method::PUT, "/api/v1/namespaces/x/finalize", "");
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
        assert_eq!(r.verb, Verb::Update);
    }

    #[test]
    fn watch_forms() {
        for q in ["watch=true", "watch=1", "watch=True"] {
            assert_eq!(res(Method::GET, "/api/v1/pods", q).verb, Verb::Watch);
        }
        assert_eq!(
            res(Method::GET, "/api/v1/watch/namespaces/a/pods", "").verb,
            Verb::Watch
        );
        assert!(parse(&Method::GET, "/api/v1/pods", "watch=yes").is_err());
    }

    #[test]
    fn groups_and_errors() {
        let r = res(
            Method::GET,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
            "",
        );
        assert_eq!(r.resource.kind, "Lease");
        assert_eq!(
            parse(&Method::GET, "/api/v1/widgets", ""),
            Err(ApiError::UnknownPath)
        );
        assert_eq!(
            parse(&Method::GET, "/api/v1/namespaces/a/nodes", ""),
            Err(ApiError::UnknownPath)
        );
        assert_eq!(
            parse(&Method::PUT, "/api/v1/pods", ""),
            Err(ApiError::MethodNotAllowed)
        );
        assert_eq!(parse(&Method::GET, "/version", "").unwrap(), Route::Version);
    }

    #[test]
    fn query_decoding() {
        let q = parse_query(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%29&limit=500&fieldValidation=Strict",
        )
        .unwrap();
        assert_eq!(q.label_selector, "app=web,tier in (a)");
        assert_eq!(q.limit, Some(500));
        assert_eq!(q.field_validation.as_deref(), Some("Strict"));
    }
}
