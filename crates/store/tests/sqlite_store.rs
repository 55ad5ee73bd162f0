//! SQLite-specific behaviour beyond the conformance suite: persistence across reopen,
//! lagging watchers, corrupt rows, and the store going away under a watch.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use podium_store::sqlite::{SqliteOptions, SqliteStore};
use podium_store::{Filter, ListOptions, Preconditions, Store, StoreError, WatchEvent};
use serde_json::{json, Value};

fn pod(name: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "default"}, "spec": {}})
}

fn rv(o: &Value) -> i64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn next(w: &mut podium_store::WatchStream) -> Option<Result<WatchEvent, StoreError>> {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch stalled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data_and_revision_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podium.db");
    let (a, last) = {
        let s = SqliteStore::open(&path).unwrap();
        let a = s
            .create("/registry/pods/default/a", pod("a"))
            .await
            .unwrap();
        s.create("/registry/pods/default/b", pod("b"))
            .await
            .unwrap();
        // The newest write is a delete: the revision must not fall back to max(kv).
        let gone = s
            .delete("/registry/pods/default/b", &Preconditions::default())
            .await
            .unwrap();
        (a, rv(&gone))
    };
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), last);
    assert_eq!(s.get("/registry/pods/default/a").await.unwrap(), a);
    assert!(matches!(
        s.get("/registry/pods/default/b").await,
        Err(StoreError::NotFound { .. })
    ));
    let c = s
        .create("/registry/pods/default/c", pod("c"))
        .await
        .unwrap();
    assert_eq!(rv(&c), last + 1);
    // The log survives too: a watch from 0 replays history written before the reopen.
    let mut w = s
        .watch("/registry/pods/", 0, Filter::default())
        .await
        .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..4 {
        kinds.push(match next(&mut w).await.unwrap().unwrap() {
            WatchEvent::Added(o) => format!("A{}", rv(&o)),
            WatchEvent::Modified(o) => format!("M{}", rv(&o)),
            WatchEvent::Deleted(o) => format!("D{}", rv(&o)),
            WatchEvent::Bookmark(r) => format!("B{r}"),
        });
    }
    assert_eq!(kinds, ["A1", "A2", "D3", "A4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podium.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        for i in 0..4 {
            s.create(&format!("/k/{i}"), pod("x")).await.unwrap();
        }
        s.compact(3).await.unwrap();
        assert_eq!(s.compacted_revision().await.unwrap(), 3);
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), 3);
    assert!(matches!(
        s.watch("/k/", 2, Filter::default()).await,
        Err(StoreError::Compacted {
            requested: 2,
            compacted: 3
        })
    ));
    let mut w = s.watch("/k/", 3, Filter::default()).await.unwrap();
    match next(&mut w).await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(rv(&o), 4),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.list("/k/", &ListOptions::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_catches_up_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        event_buffer: 4,
        ..Default::default()
    };
    let s = SqliteStore::open_with(&dir.path().join("db"), opts).unwrap();
    let mut w = s.watch("/k/", 0, Filter::default()).await.unwrap();
    // Nobody reads the watch while 200 changes go by a 4-slot channel.
    for i in 0..200 {
        s.create(&format!("/k/{i:03}"), pod("x")).await.unwrap();
    }
    for want in 1..=200 {
        match next(&mut w).await.unwrap().unwrap() {
            WatchEvent::Added(o) => assert_eq!(rv(&o), want),
            other => panic!("{other:?}"),
        }
    }
    // Nothing is delivered twice: what the channel still holds was already replayed.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), w.next())
            .await
            .is_err(),
        "an event was delivered twice"
    );
    // And live events keep flowing afterwards.
    s.create("/k/z", pod("z")).await.unwrap();
    match next(&mut w).await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(rv(&o), 201),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_past_compaction_gets_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        event_buffer: 2,
        ..Default::default()
    };
    let s = SqliteStore::open_with(&dir.path().join("db"), opts).unwrap();
    let mut w = s.watch("/k/", 0, Filter::default()).await.unwrap();
    for i in 0..20 {
        s.create(&format!("/k/{i:03}"), pod("x")).await.unwrap();
    }
    s.compact(15).await.unwrap();
    // The watcher lost events it can no longer replay: it must say so, not skip them.
    let mut got = Vec::new();
    loop {
        match next(&mut w).await {
            Some(Ok(WatchEvent::Added(o))) => got.push(rv(&o)),
            Some(Ok(other)) => panic!("{other:?}"),
            Some(Err(StoreError::Compacted { compacted, .. })) => {
                assert_eq!(compacted, 15);
                break;
            }
            Some(Err(e)) => panic!("{e}"),
            None => panic!("stream ended without an error"),
        }
    }
    // Whatever was delivered before the error was in order with no gap.
    assert_eq!(got, (1..=got.len() as i64).collect::<Vec<_>>());
    assert!(
        next(&mut w).await.is_none(),
        "stream goes on after the error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = SqliteStore::open(&path).unwrap();
    s.create("/k/a", pod("a")).await.unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.busy_timeout(Duration::from_secs(5)).unwrap();
    raw.execute(
        "UPDATE podium_kv SET value = '{not json' WHERE key = '/k/a'",
        [],
    )
    .unwrap();
    let is_corrupt = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Corrupt { key, .. }) if key == "/k/a");
    assert!(is_corrupt(s.get("/k/a").await.map(|_| ())));
    assert!(is_corrupt(
        s.list("/k/", &ListOptions::default()).await.map(|_| ())
    ));
    assert!(is_corrupt(
        s.update("/k/a", pod("a"), &Preconditions::default())
            .await
            .map(|_| ())
    ));
    // A corrupt row does not break writes to other keys.
    s.create("/k/b", pod("b")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_objects_are_refused_without_using_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("db")).unwrap();
    assert!(s.create("/k/a", json!([1, 2])).await.is_err());
    assert!(s.create("/k/b", json!({"metadata": "x"})).await.is_err());
    assert_eq!(s.current_revision().await.unwrap(), 0);
    let o = s.create("/k/c", json!({})).await.unwrap();
    assert_eq!(rv(&o), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_is_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let _s = SqliteStore::open(&path).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_end_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("db")).unwrap();
    let mut w = s.watch("/k/", 0, Filter::default()).await.unwrap();
    drop(s);
    assert!(next(&mut w).await.is_none());
}

/// Not an assertion on speed (the machine is noisy); prints creates/s for the record
/// and checks that concurrent writers share transactions (fewer commits than writes
/// shows up as far more than one fsync's worth of throughput).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_create_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
    let n = 2000;
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.create(&format!("/k/{i:05}"), pod("x")).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let concurrent = t0.elapsed();
    let t0 = Instant::now();
    for i in 0..200 {
        s.create(&format!("/s/{i:05}"), pod("x")).await.unwrap();
    }
    let serial = t0.elapsed();
    eprintln!(
        "concurrent: {:.0} creates/s; serial: {:.0} creates/s",
        n as f64 / concurrent.as_secs_f64(),
        200.0 / serial.as_secs_f64()
    );
    assert_eq!(s.current_revision().await.unwrap(), n + 200);
}
