//! Watch streams: newline-delimited `WatchEvent`s over a chunked response. Starts with
//! the current state (synthetic ADDED events) when no resourceVersion is given, or replays
//! from the given one; sends BOOKMARKs when asked; ends at timeoutSeconds, when the client
//! goes away, or at server shutdown. A compacted start revision yields an ERROR event with
//! a 410 Expired status, which makes clients re-list.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use podium_api::{table, ApiError, ResourceInfo};
use podium_store::WatchEvent;

use crate::handlers::{ApiState, Body};
use crate::keys::list_prefix;
use crate::registry::{self, ListParams};
use crate::request::Query;

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);
/// The longest a watch runs when the client sets no timeout (kube-apiserver uses 30-60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Encodes one event; `table` turns objects into one-row Tables (for `kubectl get -w`).
fn encode(
    kind: &str,
    object: &Value,
    r: &ResourceInfo,
    table: Option<table::IncludeObject>,
) -> Bytes {
    let object = match table {
        Some(inc) if kind != "BOOKMARK" && kind != "ERROR" => {
            let rv = podium_api::meta::resource_version(object).to_string();
            table::table(
                r.kind,
                std::slice::from_ref(object),
                inc,
                chrono::Utc::now(),
                json!({"resourceVersion": rv}),
            )
        }
        _ => object.clone(),
    };
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(r: &ResourceInfo, rev: i64, initial_end: bool) -> Value {
    let mut m = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        m["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": m})
}

pub async fn start(
    state: &ApiState,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    q: &Query,
    table: Option<table::IncludeObject>,
) -> Result<Response<Body>, ApiError> {
    let reg = state.registry.clone();
    let filter = registry::parse_filter(r, &q.label_selector, &q.field_selector)?;
    let rv = q.resource_version.clone().unwrap_or_default();
    let send_initial = q.send_initial_events.unwrap_or(rv.is_empty() || rv == "0");
    // The initial state and the revision to follow from.
    let (initial, from) = if send_initial {
        let listed = reg
            .list(
                r,
                ns,
                &ListParams {
                    label_selector: q.label_selector.clone(),
                    field_selector: q.field_selector.clone(),
                    ..Default::default()
                },
            )
            .await?;
        (listed.items, listed.revision)
    } else {
        (Vec::new(), registry::parse_resource_version(&rv)?)
    };
    let prefix = list_prefix(r, ns);
    let store_stream = reg.store().watch(&prefix, from, filter).await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    let timeout = q
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = q.allow_watch_bookmarks;
    let initial_end_bookmark = q.send_initial_events == Some(true) && bookmarks;
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let send = |b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(Frame::data(b))).await.is_ok() }
        };
        for obj in &initial {
            if !send(encode("ADDED", obj, r, table)).await {
                return;
            }
        }
        if initial_end_bookmark
            && !send(encode("BOOKMARK", &bookmark(r, from, true), r, None)).await
        {
            return;
        }
        let mut stream = match store_stream {
            Ok(s) => s,
            Err(e) => {
                let status = registry::store_error(r, "", e).to_status();
                let _ = send(encode("ERROR", &status, r, None)).await;
                return;
            }
        };
        let mut last_rev = from;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if !send(encode("BOOKMARK", &bookmark(r, last_rev, false), r, None)).await {
                        return;
                    }
                }
                ev = stream.next() => {
                    let (kind, obj) = match ev {
                        None => return,
                        Some(Ok(WatchEvent::Added(o))) => ("ADDED", o),
                        Some(Ok(WatchEvent::Modified(o))) => ("MODIFIED", o),
                        Some(Ok(WatchEvent::Deleted(o))) => ("DELETED", o),
                        Some(Ok(WatchEvent::Bookmark(rev))) => ("BOOKMARK", bookmark(r, rev, false)),
                        Some(Err(e)) => {
                            let status = registry::store_error(r, "", e).to_status();
                            let _ = send(encode("ERROR", &status, r, None)).await;
                            return;
                        }
                    };
                    if let Ok(rev) = podium_api::meta::resource_version(&obj).parse::<i64>() {
                        last_rev = last_rev.max(rev);
                    }
                    if !send(encode(kind, &obj, r, table)).await {
                        return;
                    }
                }
            }
        }
    });
    let body: Body = BodyExt::boxed(StreamBody::new(ReceiverStream::new(rx)));
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let ct = if table.is_some() {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        "application/json"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(resp)
}
