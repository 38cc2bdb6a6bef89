//! The store contract from the `conformance` crate, run against a fresh
//! SQLite file per case.

use std::sync::Arc;

use eventstore::EventStore;
use readmodel::ViewStore;
use store_sqlite::SqliteStore;
use tempfile::TempDir;

async fn make_store() -> Option<(Arc<dyn EventStore>, Arc<dyn ViewStore>, TempDir)> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(&dir.path().join("tickets.db")).expect("open a fresh store");
    Some((Arc::new(store.clone()), Arc::new(store), dir))
}

conformance::store_contract_tests!(make_store);
