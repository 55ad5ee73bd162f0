//! The conformance suite every [`Store`] implementation must pass: Kubernetes storage
//! semantics (resourceVersion, preconditions, prefixes, pagination, watch replay and
//! filtering, compaction, concurrency), written once against the trait.
//!
//! Each case is a public `async fn(Arc<dyn Store>)` that panics on a failure and expects
//! a fresh, empty store. Run them all with one `#[tokio::test]` per case:
//!
//! ```ignore
//! podium_store::store_conformance_tests!(async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = SqliteStore::open(&dir.path().join("db")).unwrap();
//!     (store, dir) // the second value is kept alive until the case ends
//! });
//! ```
//!
//! or all in one test with [`run_all`]. Cases need a multi-threaded tokio runtime (the
//! macro uses one).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::{
    FieldSelector, Filter, LabelSelector, ListOptions, Preconditions, Revision, Store, StoreError,
    WatchEvent, WatchStream,
};

/// Expands to one `#[tokio::test]` per conformance case. `$make` is an expression
/// evaluating to a future of `(store, guard)`; it is evaluated afresh for every case, and
/// `guard` (a temporary directory, a server handle, `()`) lives until the case ends.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::__store_conformance_cases! { $make;
            create_get_round_trip,
            create_existing_fails,
            revisions_increase_across_keys,
            update_checks_resource_version,
            update_checks_uid,
            delete_checks_preconditions,
            delete_returns_delete_revision,
            missing_keys_not_found,
            delete_then_recreate,
            list_prefix_isolation,
            list_filters_labels_and_fields,
            list_paginates_exactly_once,
            watch_replays_then_follows,
            watch_prefix_isolation,
            watch_after_compaction,
            watch_filter_transitions,
            watch_has_no_gap_under_concurrent_writes,
            concurrent_creates,
            concurrent_updates_one_winner,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_cases {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = ($make).await;
                let store: ::std::sync::Arc<dyn $crate::Store> = ::std::sync::Arc::new(store);
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

/// Runs every case in turn, each on a fresh store from `make` (see the module docs).
pub async fn run_all<S, G, F, Fut>(make: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, G)>,
{
    macro_rules! run {
        ($($case:ident),*) => {$(
            {
                let (store, guard) = make().await;
                $case(Arc::new(store)).await;
                drop(guard);
            }
        )*};
    }
    run!(
        create_get_round_trip,
        create_existing_fails,
        revisions_increase_across_keys,
        update_checks_resource_version,
        update_checks_uid,
        delete_checks_preconditions,
        delete_returns_delete_revision,
        missing_keys_not_found,
        delete_then_recreate,
        list_prefix_isolation,
        list_filters_labels_and_fields,
        list_paginates_exactly_once,
        watch_replays_then_follows,
        watch_prefix_isolation,
        watch_after_compaction,
        watch_filter_transitions,
        watch_has_no_gap_under_concurrent_writes,
        concurrent_creates,
        concurrent_updates_one_winner
    );
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const WAIT: Duration = Duration::from_secs(10);

fn pod(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    })
}

/// The object's resourceVersion as a revision; panics if missing or not decimal.
pub fn rv(obj: &Value) -> Revision {
    let text = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no metadata.resourceVersion string in {obj}"));
    text.parse()
        .unwrap_or_else(|_| panic!("resourceVersion {text:?} is not a decimal revision"))
}

fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The object without its resourceVersion, to compare content.
fn content(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    o
}

fn pre_rv(rv: Revision) -> Preconditions {
    Preconditions {
        resource_version: Some(rv),
        uid: None,
    }
}

fn pre_uid(uid: &str) -> Preconditions {
    Preconditions {
        resource_version: None,
        uid: Some(uid.to_string()),
    }
}

fn no_pre() -> Preconditions {
    Preconditions::default()
}

fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, key: &str) {
    match r {
        Err(StoreError::NotFound { key: k }) => assert_eq!(k, key),
        other => panic!("expected NotFound for {key}, got {other:?}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, key: &str) {
    match r {
        Err(StoreError::Conflict { key: k, .. }) => assert_eq!(k, key),
        other => panic!("expected Conflict for {key}, got {other:?}"),
    }
}

async fn next_event(w: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {WAIT:?}"),
    }
}

/// (type, name, revision) of an event, for compact assertions.
fn summary(ev: &WatchEvent) -> (&'static str, String, Revision) {
    match ev {
        WatchEvent::Added(o) => ("ADDED", name(o).to_string(), rv(o)),
        WatchEvent::Modified(o) => ("MODIFIED", name(o).to_string(), rv(o)),
        WatchEvent::Deleted(o) => ("DELETED", name(o).to_string(), rv(o)),
        WatchEvent::Bookmark(r) => ("BOOKMARK", String::new(), *r),
    }
}

async fn expect_events(w: &mut WatchStream, want: &[(&'static str, &str, Revision)]) {
    for (i, (kind, n, r)) in want.iter().enumerate() {
        let ev = next_event(w).await;
        assert_eq!(summary(&ev), (*kind, n.to_string(), *r), "watch event #{i}");
    }
}

async fn watch(
    store: &Arc<dyn Store>,
    prefix: &str,
    after: Revision,
    filter: Filter,
) -> WatchStream {
    match store.watch(prefix, after, filter).await {
        Ok(w) => w,
        Err(e) => panic!("watch({prefix}, {after}) failed: {e}"),
    }
}

fn label_filter(s: &str) -> Filter {
    Filter {
        labels: LabelSelector::parse(s).unwrap_or_else(|e| panic!("{e}")),
        fields: FieldSelector::default(),
    }
}

async fn must<T>(what: &str, f: impl Future<Output = Result<T, StoreError>>) -> T {
    match f.await {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------

/// create sets a decimal resourceVersion equal to the store's revision; get returns
/// exactly what create returned; everything else is kept as given.
pub async fn create_get_round_trip(store: Arc<dyn Store>) {
    let before = must("current_revision", store.current_revision()).await;
    let key = "/registry/pods/default/a";
    let given = pod("a", json!({"app": "web"}));
    let created = must("create", store.create(key, given.clone())).await;
    let r = rv(&created);
    assert!(r > before, "revision {r} not after {before}");
    assert_eq!(must("current_revision", store.current_revision()).await, r);
    assert_eq!(
        content(&created),
        given,
        "create changed more than resourceVersion"
    );
    let got = must("get", store.get(key)).await;
    assert_eq!(got, created);
    // An object without metadata gets one.
    let bare = must(
        "create bare",
        store.create("/registry/x/bare", json!({"spec": {"n": 1}})),
    )
    .await;
    assert_eq!(rv(&bare), r + 1);
    assert_eq!(bare["spec"]["n"], 1);
}

/// A second create at a key fails with AlreadyExists and changes nothing.
pub async fn create_existing_fails(store: Arc<dyn Store>) {
    let key = "/registry/pods/default/a";
    let first = must("create", store.create(key, pod("a", json!({"v": "1"})))).await;
    let rev = must("current_revision", store.current_revision()).await;
    match store.create(key, pod("a", json!({"v": "2"}))).await {
        Err(StoreError::AlreadyExists { key: k }) => assert_eq!(k, key),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(must("get", store.get(key)).await, first);
    assert_eq!(
        must("current_revision", store.current_revision()).await,
        rev
    );
}

/// Every write, on any key, gets a revision greater than every earlier one.
pub async fn revisions_increase_across_keys(store: Arc<dyn Store>) {
    let mut last = must("current_revision", store.current_revision()).await;
    let mut step = |r: Revision, what: &str| {
        assert!(r > last, "{what}: revision {r} not after {last}");
        last = r;
    };
    let a = must(
        "create a",
        store.create("/registry/pods/ns1/a", pod("a", json!({}))),
    )
    .await;
    step(rv(&a), "create a");
    let b = must(
        "create b",
        store.create("/registry/services/ns2/b", pod("b", json!({}))),
    )
    .await;
    step(rv(&b), "create b");
    let c = must(
        "create c",
        store.create("/registry/pods/ns0/c", pod("c", json!({}))),
    )
    .await;
    step(rv(&c), "create c");
    let a2 = must(
        "update a",
        store.update("/registry/pods/ns1/a", a.clone(), &no_pre()),
    )
    .await;
    step(rv(&a2), "update a");
    let bd = must(
        "delete b",
        store.delete("/registry/services/ns2/b", &no_pre()),
    )
    .await;
    step(rv(&bd), "delete b");
    let b2 = must(
        "recreate b",
        store.create("/registry/services/ns2/b", pod("b", json!({}))),
    )
    .await;
    step(rv(&b2), "recreate b");
    assert_eq!(
        must("current_revision", store.current_revision()).await,
        last
    );
}

/// update: a stale resourceVersion conflicts and changes nothing; the current one
/// succeeds; no precondition always succeeds.
pub async fn update_checks_resource_version(store: Arc<dyn Store>) {
    let key = "/registry/pods/default/a";
    let v1 = must("create", store.create(key, pod("a", json!({"v": "1"})))).await;
    let r1 = rv(&v1);

    assert_conflict(
        store
            .update(key, pod("a", json!({"v": "x"})), &pre_rv(r1 - 1))
            .await,
        key,
    );
    assert_conflict(
        store
            .update(key, pod("a", json!({"v": "x"})), &pre_rv(r1 + 100))
            .await,
        key,
    );
    assert_eq!(
        must("get", store.get(key)).await,
        v1,
        "a conflicting update wrote"
    );

    let v2 = must(
        "update with rv",
        store.update(key, pod("a", json!({"v": "2"})), &pre_rv(r1)),
    )
    .await;
    let r2 = rv(&v2);
    assert!(r2 > r1);
    assert_eq!(v2["metadata"]["labels"]["v"], "2");
    assert_eq!(must("get", store.get(key)).await, v2);

    assert_conflict(
        store
            .update(key, pod("a", json!({"v": "x"})), &pre_rv(r1))
            .await,
        key,
    );

    let v3 = must(
        "update without rv",
        store.update(key, pod("a", json!({"v": "3"})), &no_pre()),
    )
    .await;
    assert!(rv(&v3) > r2);
    assert_eq!(must("get", store.get(key)).await, v3);
}

/// update: the uid precondition is checked against the stored metadata.uid.
pub async fn update_checks_uid(store: Arc<dyn Store>) {
    let key = "/registry/pods/default/a";
    let v1 = must("create", store.create(key, pod("a", json!({})))).await;
    assert_conflict(
        store
            .update(key, pod("a", json!({"v": "x"})), &pre_uid("uid-other"))
            .await,
        key,
    );
    let both_wrong_uid = Preconditions {
        resource_version: Some(rv(&v1)),
        uid: Some("uid-other".into()),
    };
    assert_conflict(
        store
            .update(key, pod("a", json!({"v": "x"})), &both_wrong_uid)
            .await,
        key,
    );
    assert_eq!(must("get", store.get(key)).await, v1);
    let both_right = Preconditions {
        resource_version: Some(rv(&v1)),
        uid: Some("uid-a".into()),
    };
    let v2 = must(
        "update",
        store.update(key, pod("a", json!({"v": "2"})), &both_right),
    )
    .await;
    let v3 = must(
        "update",
        store.update(key, pod("a", json!({"v": "3"})), &pre_uid("uid-a")),
    )
    .await;
    assert!(rv(&v3) > rv(&v2));
}

/// delete checks resourceVersion and uid; a failed delete leaves the object in place.
pub async fn delete_checks_preconditions(store: Arc<dyn Store>) {
    let key = "/registry/pods/default/a";
    let v1 = must("create", store.create(key, pod("a", json!({})))).await;
    let v2 = must(
        "update",
        store.update(key, pod("a", json!({"v": "2"})), &no_pre()),
    )
    .await;
    assert_conflict(store.delete(key, &pre_rv(rv(&v1))).await, key);
    assert_conflict(store.delete(key, &pre_uid("uid-b")).await, key);
    assert_eq!(must("get", store.get(key)).await, v2);
    let pre = Preconditions {
        resource_version: Some(rv(&v2)),
        uid: Some("uid-a".into()),
    };
    must("delete", store.delete(key, &pre)).await;
    assert_not_found(store.get(key).await, key);
}

/// delete returns the last state with the delete's own revision as resourceVersion.
pub async fn delete_returns_delete_revision(store: Arc<dyn Store>) {
    let key = "/registry/pods/default/a";
    must("create", store.create(key, pod("a", json!({})))).await;
    let v2 = must(
        "update",
        store.update(key, pod("a", json!({"v": "2"})), &no_pre()),
    )
    .await;
    let gone = must("delete", store.delete(key, &no_pre())).await;
    assert!(rv(&gone) > rv(&v2));
    assert_eq!(
        rv(&gone),
        must("current_revision", store.current_revision()).await
    );
    assert_eq!(content(&gone), content(&v2));
}

/// get, update and delete of a missing key fail with NotFound (also once deleted).
pub async fn missing_keys_not_found(store: Arc<dyn Store>) {
    let key = "/registry/pods/default/missing";
    assert_not_found(store.get(key).await, key);
    assert_not_found(
        store
            .update(key, pod("missing", json!({})), &no_pre())
            .await,
        key,
    );
    assert_not_found(
        store
            .update(key, pod("missing", json!({})), &pre_rv(1))
            .await,
        key,
    );
    assert_not_found(store.delete(key, &no_pre()).await, key);
    let rev = must("current_revision", store.current_revision()).await;
    must("create", store.create(key, pod("missing", json!({})))).await;
    must("delete", store.delete(key, &no_pre())).await;
    assert_not_found(store.get(key).await, key);
    assert_not_found(store.delete(key, &no_pre()).await, key);
    assert_not_found(
        store
            .update(key, pod("missing", json!({})), &no_pre())
            .await,
        key,
    );
    // Failed writes use no revision.
    assert_eq!(
        must("current_revision", store.current_revision()).await,
        rev + 2
    );
}

/// A deleted key can be created again, with a newer revision; a watch sees all three.
pub async fn delete_then_recreate(store: Arc<dyn Store>) {
    let key = "/registry/pods/default/a";
    let start = must("current_revision", store.current_revision()).await;
    let v1 = must("create", store.create(key, pod("a", json!({"gen": "1"})))).await;
    let d = must("delete", store.delete(key, &no_pre())).await;
    let v2 = must("recreate", store.create(key, pod("a", json!({"gen": "2"})))).await;
    assert!(rv(&v1) < rv(&d) && rv(&d) < rv(&v2));
    assert_eq!(must("get", store.get(key)).await, v2);
    let mut w = watch(&store, "/registry/pods/", start, Filter::default()).await;
    expect_events(
        &mut w,
        &[
            ("ADDED", "a", rv(&v1)),
            ("DELETED", "a", rv(&d)),
            ("ADDED", "a", rv(&v2)),
        ],
    )
    .await;
}

/// A prefix lists only keys under it (`default/` is not `default2/`), in key order,
/// at the current revision.
pub async fn list_prefix_isolation(store: Arc<dyn Store>) {
    for (key, n) in [
        ("/registry/pods/default/b", "b"),
        ("/registry/pods/default2/x", "x"),
        ("/registry/pods/default/a", "a"),
        ("/registry/pods/kube-system/c", "c"),
        ("/registry/services/default/a", "svc"),
        ("/registry/pods/default", "bare"),
    ] {
        must("create", store.create(key, pod(n, json!({})))).await;
    }
    let rev = must("current_revision", store.current_revision()).await;
    let l = must(
        "list",
        store.list("/registry/pods/default/", &ListOptions::default()),
    )
    .await;
    let names: Vec<&str> = l.items.iter().map(name).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(l.revision, rev);
    assert_eq!(l.continue_after, None);
    assert_eq!(l.remaining, None);
    for item in &l.items {
        assert!(rv(item) > 0 && rv(item) <= rev);
    }
    let all_pods = must(
        "list",
        store.list("/registry/pods/", &ListOptions::default()),
    )
    .await;
    let names: Vec<&str> = all_pods.items.iter().map(name).collect();
    assert_eq!(names, ["bare", "a", "b", "x", "c"]);
    let none = must(
        "list",
        store.list("/registry/nodes/", &ListOptions::default()),
    )
    .await;
    assert!(none.items.is_empty());
    assert_eq!(none.revision, rev);
}

/// Label and field selectors filter lists.
pub async fn list_filters_labels_and_fields(store: Arc<dyn Store>) {
    let pods = [
        ("a", json!({"app": "web", "tier": "front"}), "n1", "Running"),
        ("b", json!({"app": "web"}), "n2", "Pending"),
        ("c", json!({"app": "db"}), "n1", "Succeeded"),
        ("d", json!({}), "", "Pending"),
    ];
    for (n, labels, node, phase) in pods {
        let mut p = pod(n, labels);
        if !node.is_empty() {
            p["spec"]["nodeName"] = json!(node);
        }
        p["status"] = json!({"phase": phase});
        must(
            "create",
            store.create(&format!("/registry/pods/default/{n}"), p),
        )
        .await;
    }
    let names = |filter: Filter| {
        let store = store.clone();
        async move {
            let opts = ListOptions {
                filter,
                ..Default::default()
            };
            let l = must("list", store.list("/registry/pods/", &opts)).await;
            l.items
                .iter()
                .map(|o| name(o).to_string())
                .collect::<Vec<_>>()
        }
    };
    let f = |labels: &str, fields: &str| Filter {
        labels: LabelSelector::parse(labels).unwrap_or_else(|e| panic!("{e}")),
        fields: FieldSelector::parse(fields).unwrap_or_else(|e| panic!("{e}")),
    };
    assert_eq!(names(f("app=web", "")).await, ["a", "b"]);
    assert_eq!(names(f("app!=web", "")).await, ["c", "d"]);
    assert_eq!(names(f("app in (db,web),tier", "")).await, ["a"]);
    assert_eq!(names(f("!app", "")).await, ["d"]);
    assert_eq!(names(f("", "spec.nodeName=n1")).await, ["a", "c"]);
    assert_eq!(names(f("", "spec.nodeName=")).await, ["d"]);
    assert_eq!(
        names(f("", "status.phase!=Succeeded,status.phase!=Pending")).await,
        ["a"]
    );
    assert_eq!(names(f("", "metadata.name=b")).await, ["b"]);
    assert_eq!(names(f("app=web", "spec.nodeName=n2")).await, ["b"]);
    assert!(names(f("app=none", "")).await.is_empty());
}

/// limit + continue pages through every item exactly once, in order, with `remaining`
/// counting what is left; also with a filter.
pub async fn list_paginates_exactly_once(store: Arc<dyn Store>) {
    let mut all = Vec::new();
    for i in 0..10 {
        let n = format!("p{i:02}");
        let labels = if i % 2 == 0 {
            json!({"even": "true"})
        } else {
            json!({})
        };
        must(
            "create",
            store.create(&format!("/registry/pods/default/{n}"), pod(&n, labels)),
        )
        .await;
        all.push(n);
    }
    // Noise outside the prefix must not leak into pages.
    must(
        "create",
        store.create("/registry/pods/default2/zz", pod("zz", json!({}))),
    )
    .await;

    async fn pages(
        store: &Arc<dyn Store>,
        limit: usize,
        filter: Filter,
    ) -> (Vec<String>, Vec<Option<u64>>) {
        let mut seen = Vec::new();
        let mut remainings = Vec::new();
        let mut cont = None;
        for _ in 0..100 {
            let opts = ListOptions {
                filter: filter.clone(),
                limit: Some(limit),
                continue_after: cont.clone(),
            };
            let page = must("list page", store.list("/registry/pods/default/", &opts)).await;
            assert!(page.items.len() <= limit, "page larger than limit");
            seen.extend(page.items.iter().map(|o| name(o).to_string()));
            remainings.push(page.remaining);
            match page.continue_after {
                Some(c) => {
                    assert!(!page.items.is_empty(), "empty page with a continue");
                    cont = Some(c);
                }
                None => {
                    assert_eq!(page.remaining, None, "remaining without continue");
                    return (seen, remainings);
                }
            }
        }
        panic!("pagination did not end");
    }

    let (seen, remaining) = pages(&store, 3, Filter::default()).await;
    assert_eq!(seen, all);
    assert_eq!(remaining, [Some(7), Some(4), Some(1), None]);

    let (seen, remaining) = pages(&store, 10, Filter::default()).await;
    assert_eq!(seen, all);
    assert_eq!(remaining, [None]);

    let (seen, remaining) = pages(&store, 5, Filter::default()).await;
    assert_eq!(seen, all);
    assert_eq!(remaining, [Some(5), None]);

    let evens: Vec<String> = all.iter().step_by(2).cloned().collect();
    let (seen, remaining) = pages(&store, 2, label_filter("even=true")).await;
    assert_eq!(seen, evens);
    assert_eq!(remaining, [Some(3), Some(1), None]);
}

/// A watch from a revision replays exactly the later changes, in order, then follows
/// live ones.
pub async fn watch_replays_then_follows(store: Arc<dyn Store>) {
    let p = "/registry/pods/default/";
    let a1 = must(
        "create a",
        store.create(&format!("{p}a"), pod("a", json!({}))),
    )
    .await;
    let a2 = must(
        "update a",
        store.update(&format!("{p}a"), pod("a", json!({"v": "2"})), &no_pre()),
    )
    .await;
    let b1 = must(
        "create b",
        store.create(&format!("{p}b"), pod("b", json!({}))),
    )
    .await;
    let ad = must("delete a", store.delete(&format!("{p}a"), &no_pre())).await;

    let mut w = watch(&store, p, rv(&a1), Filter::default()).await;
    expect_events(
        &mut w,
        &[
            ("MODIFIED", "a", rv(&a2)),
            ("ADDED", "b", rv(&b1)),
            ("DELETED", "a", rv(&ad)),
        ],
    )
    .await;
    // The replayed objects are the stored states.
    let mut w0 = watch(&store, p, 0, Filter::default()).await;
    match next_event(&mut w0).await {
        WatchEvent::Added(o) => assert_eq!(o, a1),
        other => panic!("expected ADDED a, got {other:?}"),
    }
    match next_event(&mut w0).await {
        WatchEvent::Modified(o) => assert_eq!(o, a2),
        other => panic!("expected MODIFIED a, got {other:?}"),
    }

    // Live changes follow, in order.
    let c1 = must(
        "create c",
        store.create(&format!("{p}c"), pod("c", json!({}))),
    )
    .await;
    let b2 = must(
        "update b",
        store.update(&format!("{p}b"), pod("b", json!({"v": "2"})), &no_pre()),
    )
    .await;
    let cd = must("delete c", store.delete(&format!("{p}c"), &no_pre())).await;
    expect_events(
        &mut w,
        &[
            ("ADDED", "c", rv(&c1)),
            ("MODIFIED", "b", rv(&b2)),
            ("DELETED", "c", rv(&cd)),
        ],
    )
    .await;

    // A watch from the current revision sees only what comes next.
    let now = must("current_revision", store.current_revision()).await;
    let mut live = watch(&store, p, now, Filter::default()).await;
    let d1 = must(
        "create d",
        store.create(&format!("{p}d"), pod("d", json!({}))),
    )
    .await;
    expect_events(&mut live, &[("ADDED", "d", rv(&d1))]).await;
    expect_events(&mut w, &[("ADDED", "d", rv(&d1))]).await;
}

/// Watches see only their prefix: `default/` does not see `default2/`.
pub async fn watch_prefix_isolation(store: Arc<dyn Store>) {
    let start = must("current_revision", store.current_revision()).await;
    must(
        "create",
        store.create("/registry/pods/default2/x", pod("x", json!({}))),
    )
    .await;
    must(
        "create",
        store.create("/registry/services/default/s", pod("s", json!({}))),
    )
    .await;
    let a = must(
        "create",
        store.create("/registry/pods/default/a", pod("a", json!({}))),
    )
    .await;
    let mut w = watch(&store, "/registry/pods/default/", start, Filter::default()).await;
    expect_events(&mut w, &[("ADDED", "a", rv(&a))]).await;
    must(
        "create",
        store.create("/registry/pods/default2/y", pod("y", json!({}))),
    )
    .await;
    let b = must(
        "create",
        store.create("/registry/pods/default/b", pod("b", json!({}))),
    )
    .await;
    expect_events(&mut w, &[("ADDED", "b", rv(&b))]).await;
}

/// After compact(r), watching from before r fails with Compacted; from r it works.
/// Current state survives compaction.
pub async fn watch_after_compaction(store: Arc<dyn Store>) {
    let p = "/registry/pods/default/";
    let mut revs = Vec::new();
    for i in 0..5 {
        let o = must(
            "create",
            store.create(&format!("{p}p{i}"), pod(&format!("p{i}"), json!({}))),
        )
        .await;
        revs.push(rv(&o));
    }
    let at = revs[2];
    must("compact", store.compact(at)).await;
    for from in [0, at - 1] {
        match store.watch(p, from, Filter::default()).await {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => {
                assert_eq!(requested, from);
                assert_eq!(compacted, at);
            }
            Err(e) => panic!("watch from {from}: expected Compacted, got {e}"),
            Ok(_) => panic!("watch from {from} after compact({at}) should fail"),
        }
    }
    let mut w = watch(&store, p, at, Filter::default()).await;
    expect_events(
        &mut w,
        &[("ADDED", "p3", revs[3]), ("ADDED", "p4", revs[4])],
    )
    .await;
    // Compaction keeps the current state.
    let l = must("list", store.list(p, &ListOptions::default())).await;
    assert_eq!(l.items.len(), 5);
    must("get", store.get(&format!("{p}p0"))).await;
    // Compacting again to an older revision is harmless; to a future one is refused.
    must("compact older", store.compact(revs[1])).await;
    let now = must("current_revision", store.current_revision()).await;
    assert!(
        store.compact(now + 10).await.is_err(),
        "compacting the future succeeded"
    );
    let mut w = watch(&store, p, at, Filter::default()).await;
    expect_events(&mut w, &[("ADDED", "p3", revs[3])]).await;
}

/// With a filter, an object that starts matching is Added, one that stops matching is
/// Deleted (carrying its new state), and changes that never match are not seen; the
/// replayed and the live streams agree.
pub async fn watch_filter_transitions(store: Arc<dyn Store>) {
    let p = "/registry/pods/default/";
    let key = format!("{p}x");
    let start = must("current_revision", store.current_revision()).await;
    let mut live = watch(&store, p, start, label_filter("app=web")).await;

    must(
        "create db",
        store.create(&key, pod("x", json!({"app": "db"}))),
    )
    .await;
    let to_web = must(
        "to web",
        store.update(&key, pod("x", json!({"app": "web"})), &no_pre()),
    )
    .await;
    let still_web = must(
        "still web",
        store.update(&key, pod("x", json!({"app": "web", "v": "2"})), &no_pre()),
    )
    .await;
    let to_db = must(
        "to db",
        store.update(&key, pod("x", json!({"app": "db"})), &no_pre()),
    )
    .await;
    must(
        "still db",
        store.update(&key, pod("x", json!({"app": "db", "v": "3"})), &no_pre()),
    )
    .await;
    must("delete db", store.delete(&key, &no_pre())).await;
    let y = must(
        "create y",
        store.create(&format!("{p}y"), pod("y", json!({"app": "web"}))),
    )
    .await;
    let yd = must("delete y", store.delete(&format!("{p}y"), &no_pre())).await;

    let want = [
        ("ADDED", "x", rv(&to_web)),
        ("MODIFIED", "x", rv(&still_web)),
        ("DELETED", "x", rv(&to_db)),
        ("ADDED", "y", rv(&y)),
        ("DELETED", "y", rv(&yd)),
    ];
    let mut seen_live = Vec::new();
    for _ in 0..want.len() {
        seen_live.push(next_event(&mut live).await);
    }
    let mut replay = watch(&store, p, start, label_filter("app=web")).await;
    let mut seen_replay = Vec::new();
    for _ in 0..want.len() {
        seen_replay.push(next_event(&mut replay).await);
    }
    for seen in [&seen_live, &seen_replay] {
        let got: Vec<_> = seen.iter().map(summary).collect();
        let want: Vec<_> = want
            .iter()
            .map(|(k, n, r)| (*k, n.to_string(), *r))
            .collect();
        assert_eq!(got, want);
    }
    assert_eq!(seen_live, seen_replay);
    // The Deleted for a filter transition carries the new (non-matching) state.
    match &seen_live[2] {
        WatchEvent::Deleted(o) => assert_eq!(o, &to_db),
        other => panic!("expected DELETED, got {other:?}"),
    }
    // Nothing else is pending: a marker write is the next event.
    let m = must(
        "marker",
        store.create(&format!("{p}m"), pod("m", json!({"app": "web"}))),
    )
    .await;
    expect_events(&mut live, &[("ADDED", "m", rv(&m))]).await;
    expect_events(&mut replay, &[("ADDED", "m", rv(&m))]).await;
}

/// A watch started while writes stream in sees every revision exactly once, in order:
/// no gap and no duplicate between the replayed and the live part.
pub async fn watch_has_no_gap_under_concurrent_writes(store: Arc<dyn Store>) {
    const N: usize = 300;
    let p = "/registry/pods/default/";
    let start = must("current_revision", store.current_revision()).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..N {
                let o = must(
                    "create",
                    store.create(&format!("{p}p{i:04}"), pod(&format!("p{i:04}"), json!({}))),
                )
                .await;
                last = rv(&o);
            }
            last
        })
    };
    // Start watching somewhere in the middle of the writes.
    while must(
        "list",
        store.list(
            p,
            &ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        ),
    )
    .await
    .items
    .is_empty()
    {
        tokio::task::yield_now().await;
    }
    // From a little in the past, so that the watch replays and goes live while writes
    // are still being committed.
    let now = must("current_revision", store.current_revision()).await;
    let from = (now - 20).max(start);
    let mut w = watch(&store, p, from, Filter::default()).await;
    let last = match writer.await {
        Ok(l) => l,
        Err(e) => panic!("writer task failed: {e}"),
    };
    let mut expect = from + 1;
    while expect <= last {
        let (kind, _, r) = summary(&next_event(&mut w).await);
        assert_eq!(kind, "ADDED");
        assert_eq!(r, expect, "gap or duplicate in the watch");
        expect += 1;
    }
}

/// Many tasks creating at once all succeed, each with its own revision.
pub async fn concurrent_creates(store: Arc<dyn Store>) {
    const N: usize = 1000;
    let start = must("current_revision", store.current_revision()).await;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let n = format!("p{i:04}");
                store
                    .create(&format!("/registry/pods/default/{n}"), pod(&n, json!({})))
                    .await
            })
        })
        .collect();
    let mut revs = BTreeSet::new();
    for t in tasks {
        match t.await {
            Ok(Ok(o)) => assert!(revs.insert(rv(&o)), "revision {} reused", rv(&o)),
            Ok(Err(e)) => panic!("concurrent create failed: {e}"),
            Err(e) => panic!("task failed: {e}"),
        }
    }
    assert_eq!(revs.len(), N);
    assert!(revs.iter().all(|r| *r > start));
    let now = must("current_revision", store.current_revision()).await;
    assert_eq!(revs.last().copied(), Some(now));
    let l = must(
        "list",
        store.list("/registry/pods/default/", &ListOptions::default()),
    )
    .await;
    assert_eq!(l.items.len(), N);
}

/// Optimistic concurrency: of many updates from the same resourceVersion exactly one
/// wins; the rest conflict.
pub async fn concurrent_updates_one_winner(store: Arc<dyn Store>) {
    const N: usize = 20;
    let key = "/registry/pods/default/a";
    let v1 = must("create", store.create(key, pod("a", json!({})))).await;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = store.clone();
            let r = rv(&v1);
            tokio::spawn(async move {
                store
                    .update(
                        key,
                        pod("a", json!({"writer": format!("w{i}")})),
                        &pre_rv(r),
                    )
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(o)) => winners.push(o),
            Ok(Err(StoreError::Conflict { .. })) => {}
            Ok(Err(e)) => panic!("unexpected error: {e}"),
            Err(e) => panic!("task failed: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update must win");
    assert_eq!(must("get", store.get(key)).await, winners[0]);
}
