//! Request handling: authenticate, parse the route, decode the body by its media type,
//! call the registry, and encode the answer (JSON, Table, aggregated discovery, watch
//! stream). Every failure leaves as a Kubernetes `Status`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use podium_api::admission::FieldValidation;
use podium_api::patch::PatchType;
use podium_api::{meta, table, ApiError, ResourceInfo};
use podium_store::Preconditions;

use crate::auth::{Authenticator, Identity};
use crate::discovery;
use crate::registry::{self, DeleteOptions, ListParams, Listed, Registry, WriteOptions, Written};
use crate::request::{self, HealthCheck, ResourceRequest, Route, Verb};
use crate::watch;

/// Request bodies larger than this get 413, as kube-apiserver's 3 MiB limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// What the handlers share.
pub struct ApiState {
    pub registry: Arc<Registry>,
    pub auth: Authenticator,
    /// host:port clients reach the server at (legacy discovery reports it).
    pub server_address: String,
    pub ready: AtomicBool,
    /// Turns true at shutdown: open watches end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Container logs (`pods/<name>/log`), served by the node agent when one runs here.
    pub pod_logs: Option<Arc<dyn PodLogs>>,
}

/// What `pods/<name>/log` asks for (the container is already chosen and validated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRequest {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<i64>,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub limit_bytes: Option<i64>,
}

/// A log body: chunks of text, ending when the log (or the followed container) ends.
pub type LogStream = futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>;

/// The node agent's side of `pods/<name>/log`.
#[async_trait::async_trait]
pub trait PodLogs: Send + Sync {
    /// The log of `req.container` of `pod`; errors are the API's answers (400 for a
    /// container that is waiting or has no previous instance).
    async fn logs(&self, pod: &Value, req: &LogRequest) -> Result<LogStream, ApiError>;
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json_response(code: StatusCode, content_type: &str, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, "application/json", &e.to_status())
}

fn text_response(code: StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(full(text.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The entry point for every request.
pub async fn handle(state: Arc<ApiState>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = match dispatch(&state, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(
        "{method} {path} -> {} in {:?}",
        resp.status().as_u16(),
        started.elapsed()
    );
    resp
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn read_body(req: Request<Incoming>) -> Result<(HeaderMap, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > MAX_BODY {
            return Err(ApiError::TooLarge { limit: MAX_BODY });
        }
    }
    let collected = Limited::new(body, MAX_BODY).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            ApiError::TooLarge { limit: MAX_BODY }
        } else {
            ApiError::BadRequest(format!("reading the request body: {e}"))
        }
    })?;
    Ok((parts.headers, collected.to_bytes()))
}

async fn dispatch(state: &ApiState, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let accept = header_str(req.headers(), header::ACCEPT).to_string();
    let identity = state
        .auth
        .authenticate(
            req.headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
        .ok_or(ApiError::Unauthorized)?;
    let route = request::parse(&method, &path, &query);
    // Health and version are public, as kube-apiserver's system:public-info-viewer.
    let public = matches!(route, Ok(Route::Version) | Ok(Route::Health(_)));
    if identity == Identity::Anonymous && !public {
        return Err(ApiError::Unauthorized);
    }
    let route = route?;
    let ok = |v: Value| Ok(json_response(StatusCode::OK, "application/json", &v));
    match route {
        Route::Version => ok(discovery::version()),
        Route::Health(check) => {
            let ready = state.ready.load(Ordering::Relaxed);
            match check {
                HealthCheck::Readyz if !ready => Ok(text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "readyz check failed",
                )),
                _ => Ok(text_response(StatusCode::OK, "ok")),
            }
        }
        Route::CoreVersions | Route::Groups if discovery::wants_aggregated(&accept) => {
            let doc = discovery::aggregated(matches!(route, Route::CoreVersions));
            Ok(json_response(
                StatusCode::OK,
                discovery::AGGREGATED_V2,
                &doc,
            ))
        }
        Route::CoreVersions => ok(discovery::core_versions(&state.server_address)),
        Route::Groups => ok(discovery::group_list()),
        Route::Group(g) => ok(discovery::group(&g)),
        Route::ResourceList { group, version } => ok(discovery::resource_list(&group, &version)),
        Route::OpenApiV3(None) => ok(discovery::openapi_index()),
        Route::OpenApiV3(Some(p)) => match discovery::openapi_group_version(&p) {
            Some(doc) => ok(doc),
            None => Err(ApiError::UnknownPath),
        },
        Route::Resource(rr) => resource(state, *rr, req, &accept).await,
    }
}

/// How the client wants objects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Object,
    Table,
}

fn shape(accept: &str) -> Shape {
    if accept.split(',').any(|p| p.contains("as=Table")) {
        Shape::Table
    } else {
        Shape::Object
    }
}

const TABLE_CT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn include_object(q: &request::Query) -> table::IncludeObject {
    table::IncludeObject::from_query(q.include_object.as_deref().unwrap_or("")).unwrap_or_default()
}

fn field_validation(q: &request::Query) -> FieldValidation {
    match q.field_validation.as_deref() {
        Some("Ignore") => FieldValidation::Ignore,
        Some("Warn") => FieldValidation::Warn,
        // Kubernetes' default for requests that do not say is Warn; kubectl says Strict.
        Some("Strict") => FieldValidation::Strict,
        _ => FieldValidation::Warn,
    }
}

/// Decodes a body by Content-Type: JSON, YAML or Kubernetes protobuf.
fn decode_object(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    match ct {
        "application/vnd.kubernetes.protobuf" => podium_api::protobuf::decode(body).map_err(|e| {
            if e.is_unsupported_media_type() {
                ApiError::UnsupportedMediaType(e.to_string())
            } else {
                ApiError::BadRequest(format!("decoding protobuf body: {e}"))
            }
        }),        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_norway::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}"))),
        "" | "application/json" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding JSON: {e}"))),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other})"
        ))),
    }
}

fn list_kind(r: &ResourceInfo) -> String {
    format!("{}List", r.kind)
}

fn list_meta(listed: &Listed) -> Value {
    let mut m = json!({"resourceVersion": listed.revision.to_string()});
    if let Some(after) = &listed.continue_after {
        m["continue"] = json!(encode_continue(listed.revision, after));
        if let Some(rem) = listed.remaining {
            m["remainingItemCount"] = json!(rem);
        }
    }
    m
}

fn encode_continue(rev: i64, after: &str) -> String {
    use base64::Engine;
    let v = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": after});
    base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
}

fn decode_continue(token: &str) -> Result<String, ApiError> {
    use base64::Engine;
    let bad = || ApiError::BadRequest("continue key is not valid".into());
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    v.get("start")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(bad)
}

fn object_reply(
    code: StatusCode,
    r: &ResourceInfo,
    obj: Value,
    sh: Shape,
    q: &request::Query,
) -> Response<Body> {
    match sh {
        Shape::Table => {
            let rv = meta::resource_version(&obj).to_string();
            let t = table::table(
                r.kind,
                &[obj],
                include_object(q),
                chrono::Utc::now(),
                json!({"resourceVersion": rv}),
            );
            json_response(code, TABLE_CT, &t)
        }
        Shape::Object => json_response(code, "application/json", &obj),
    }
}

fn written_reply(w: Written, r: &ResourceInfo, sh: Shape, q: &request::Query) -> Response<Body> {
    let code = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = object_reply(code, r, w.object, sh, q);
    for warning in w.warnings {
        let text = format!("299 - {}", serde_json::Value::String(warning));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn write_options(q: &request::Query) -> WriteOptions {
    WriteOptions {
        field_validation: field_validation(q),
        field_manager: q.field_manager.clone(),
        dry_run: q.dry_run,
        force: q.force,
    }
}

fn delete_options(q: &request::Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions {
        grace_period_seconds: q.grace_period_seconds,
        propagation_policy: q.propagation_policy.clone(),
        dry_run: q.dry_run,
        preconditions: Preconditions::default(),
    };
    if body.iter().any(|b| !b.is_ascii_whitespace()) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding DeleteOptions: {e}")))?;
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            opts.grace_period_seconds = Some(g);
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation_policy = Some(p.to_string());
        }
        if let Some(uid) = v.pointer("/preconditions/uid").and_then(Value::as_str) {
            opts.preconditions.uid = Some(uid.to_string());
        }
        if let Some(rv) = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            opts.preconditions.resource_version = Some(registry::parse_resource_version(rv)?);
        }
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            opts.dry_run = true;
        }
    }
    if let Some(p) = &opts.propagation_policy {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::BadRequest(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    }
    Ok(opts)
}

async fn resource(
    state: &ApiState,
    rr: ResourceRequest,
    req: Request<Incoming>,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let reg = &state.registry;
    let r = rr.resource;
    let ns = rr.namespace.as_deref();
    let sh = shape(accept);
    let q = &rr.query;
    match rr.verb {
        Verb::Get => {
            let name = rr.name.as_deref().unwrap_or("");
            if rr.subresource.as_deref() == Some("log") {
                return pod_log(state, ns.unwrap_or(""), name, q).await;
            }
            let obj = reg.get(r, ns, name).await?;
            Ok(object_reply(StatusCode::OK, r, obj, sh, q))
        }
        Verb::List => {
            let listed = reg.list(r, ns, &list_params(q)?).await?;
            let lm = list_meta(&listed);
            match sh {
                Shape::Table => {
                    let t = table::table(
                        r.kind,
                        &listed.items,
                        include_object(q),
                        chrono::Utc::now(),
                        lm,
                    );
                    Ok(json_response(StatusCode::OK, TABLE_CT, &t))
                }
                Shape::Object => {
                    let mut list = json!({
                        "kind": list_kind(r),
                        "apiVersion": r.api_version(),
                        "metadata": lm,
                        "items": Value::Null,
                    });
                    // Moved in, not copied: lists can be large.
                    list["items"] = Value::Array(listed.items);
                    Ok(json_response(StatusCode::OK, "application/json", &list))
                }
            }
        }
        Verb::Watch => {
            let mut q = rr.query.clone();
            if let Some(name) = &rr.name {
                // A watch on one object is a watch on the collection by name.
                let sel = format!("metadata.name={name}");
                q.field_selector = if q.field_selector.is_empty() {
                    sel
                } else {
                    format!("{},{sel}", q.field_selector)
                };
            }
            let table = (sh == Shape::Table).then(|| include_object(&q));
            watch::start(state, r, ns, &q, table).await
        }
        Verb::Create => {
            let (headers, body) = read_body(req).await?;
            let obj = decode_object(header_str(&headers, header::CONTENT_TYPE), &body)?;
            match rr.subresource.as_deref() {
                Some("binding") => {
                    let name = rr.name.as_deref().unwrap_or("");
                    let status = reg.bind(ns.unwrap_or(""), name, &obj).await?;
                    Ok(json_response(
                        StatusCode::CREATED,
                        "application/json",
                        &status,
                    ))
                }
                Some(_) => Err(ApiError::MethodNotAllowed),
                None => {
                    let w = reg.create(r, ns, obj, &write_options(q)).await?;
                    Ok(written_reply(w, r, sh, q))
                }
            }
        }
        Verb::Update => {
            let name = rr.name.as_deref().unwrap_or("");
            let (headers, body) = read_body(req).await?;
            let obj = decode_object(header_str(&headers, header::CONTENT_TYPE), &body)?;
            let w = reg
                .update(
                    r,
                    ns,
                    name,
                    rr.subresource.as_deref(),
                    obj,
                    &write_options(q),
                )
                .await?;
            Ok(written_reply(w, r, sh, q))
        }
        Verb::Patch => {
            let name = rr.name.as_deref().unwrap_or("");
            let (headers, body) = read_body(req).await?;
            let ct = header_str(&headers, header::CONTENT_TYPE);
            let pt = PatchType::from_content_type(ct).ok_or_else(|| {
                ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {ct})"
                ))
            })?;
            let w = reg
                .patch(
                    r,
                    ns,
                    name,
                    rr.subresource.as_deref(),
                    pt,
                    &body,
                    &write_options(q),
                )
                .await?;
            Ok(written_reply(w, r, sh, q))
        }
        Verb::Delete => {
            let name = rr.name.as_deref().unwrap_or("");
            let (_, body) = read_body(req).await?;
            let opts = delete_options(q, &body)?;
            let obj = reg.delete(r, ns, name, &opts).await?;
            Ok(object_reply(StatusCode::OK, r, obj, Shape::Object, q))
        }
        Verb::DeleteCollection => {
            let (_, body) = read_body(req).await?;
            let opts = delete_options(q, &body)?;
            let listed = reg
                .delete_collection(r, ns, &list_params(q)?, &opts)
                .await?;
            let mut list = json!({
                "kind": list_kind(r),
                "apiVersion": r.api_version(),
                "metadata": list_meta(&listed),
                "items": Value::Null,
            });
            list["items"] = Value::Array(listed.items);
            Ok(json_response(StatusCode::OK, "application/json", &list))
        }
    }
}

fn list_params(q: &request::Query) -> Result<ListParams, ApiError> {
    Ok(ListParams {
        label_selector: q.label_selector.clone(),
        field_selector: q.field_selector.clone(),
        limit: q.limit,
        continue_after: q
            .continue_token
            .as_deref()
            .map(decode_continue)
            .transpose()?,
    })
}

/// `pods/<name>/log`: the container is chosen and validated here; the node agent
/// ([`PodLogs`]) serves the text, streamed when following. Without an agent every
/// container is still waiting to start; say so as kube-apiserver does.
async fn pod_log(
    state: &ApiState,
    ns: &str,
    name: &str,
    q: &request::Query,
) -> Result<Response<Body>, ApiError> {
    let reg = &state.registry;
    let pods = podium_api::resources::find("", "v1", "pods").ok_or(ApiError::UnknownPath)?;
    let pod = reg.get(pods, Some(ns), name).await?;
    let names = |path: &str| -> Vec<String> {
        pod.pointer(path)
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("/spec/containers");
    let mut valid = containers.clone();
    valid.extend(names("/spec/initContainers"));
    let container = match (&q.container, containers.as_slice()) {
        (Some(c), _) => c.clone(),
        (None, [one]) => one.clone(),
        (None, _) => {
            return Err(ApiError::BadRequest(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )))
        }
    };
    if !valid.contains(&container) {
        return Err(ApiError::BadRequest(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    if let Some(logs) = &state.pod_logs {
        let req = LogRequest {
            container,
            follow: q.follow,
            previous: q.previous,
            tail_lines: q.tail_lines,
            timestamps: q.timestamps,
            since_seconds: q.since_seconds,
            limit_bytes: q.limit_bytes,
        };
        let mut stream = logs.logs(&pod, &req).await?;
        // The body must be Sync: forward through a channel (as watch streams do).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        tokio::spawn(async move {
            while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        let body = http_body_util::StreamBody::new(futures::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            |r| r.map(hyper::body::Frame::data),
        ));
        let mut resp = Response::new(BodyExt::boxed(body));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Ok(resp);
    }
    Err(ApiError::BadRequest(format!(
        "container {container:?} in pod {name:?} is waiting to start: ContainerCreating"
    )))
}

/// True once a shutdown was asked for.
pub fn shutting_down(state: &ApiState) -> bool {
    *state.shutdown.borrow()
}
