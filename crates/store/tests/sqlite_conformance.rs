//! The store conformance suite, run against [`SqliteStore`], one test per case.
#![allow(clippy::unwrap_used)]

use podium_store::sqlite::SqliteStore;

podium_store::store_conformance_tests!(async {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("podium.db")).unwrap();
    (store, dir)
});

/// `run_all` (the one-test form of the suite) runs every case too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_cases_in_one_test() {
    podium_store::conformance::run_all(|| async {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("podium.db")).unwrap();
        (store, dir)
    })
    .await;
}
