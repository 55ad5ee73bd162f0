//! The store conformance suite, run against [`SqliteStore`], one test per case.
#![allow(clippy::unwrap_used)]

use podium_store::sqlite::SqliteStore;

podium_store::store_conformance_tests!(async {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("podium.db")).unwrap();
    (store, dir)
});
