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

/// The token store contract, on a fresh file per case; reopening opens the
/// same file again.
mod tokens {
    use conformance::TokenStores;
    use store_sqlite::SqliteStore;
    use tempfile::TempDir;

    async fn make_tokens() -> Option<(TokenStores, TempDir)> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("tickets.db");
        let store = SqliteStore::open(&path).expect("open a fresh store");
        let reopen = move || {
            let path = path.clone();
            async move { SqliteStore::open(&path).expect("open the file again") }
        };
        Some((TokenStores::new(store, reopen), dir))
    }

    conformance::token_contract_tests!(make_tokens);
}

/// The key store contract, on a fresh file per case; reopening opens the
/// same file again.
mod keys {
    use conformance::KeyStores;
    use store_sqlite::SqliteStore;
    use tempfile::TempDir;

    async fn make_keys() -> Option<(KeyStores, TempDir)> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("tickets.db");
        let store = SqliteStore::open(&path).expect("open a fresh store");
        let reopen = move || {
            let path = path.clone();
            async move { SqliteStore::open(&path).expect("open the file again") }
        };
        Some((KeyStores::new(store, reopen), dir))
    }

    conformance::key_contract_tests!(make_keys);
}
