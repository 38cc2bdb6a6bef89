//! The store contract from the `conformance` crate, run against a fresh
//! database per case.

use std::sync::Arc;

use eventstore::EventStore;
use readmodel::ViewStore;
use store_mongo::testing;

/// `None` skips the case: `testing` has said why on stderr (in CI it panics
/// instead, so a missing server fails the run).
/// The guard drops the case's database when the case ends.
async fn make_store() -> Option<(
    Arc<dyn EventStore>,
    Arc<dyn ViewStore>,
    testing::TestDatabase,
)> {
    let (store, database) = testing::store("contract").await?;
    Some((Arc::new(store.clone()), Arc::new(store), database))
}

conformance::store_contract_tests!(make_store);

/// The token store contract, on a fresh database per case; reopening
/// connects to the same database again.
mod tokens {
    use conformance::TokenStores;
    use store_mongo::{MongoStore, testing};

    async fn make_tokens() -> Option<(TokenStores, testing::TestDatabase)> {
        let (store, database) = testing::store("tokens").await?;
        let uri = database.uri().to_owned();
        let reopen = move || {
            let uri = uri.clone();
            async move {
                MongoStore::connect(&uri)
                    .await
                    .unwrap_or_else(|e| panic!("connecting to {uri} again: {e}"))
            }
        };
        Some((TokenStores::new(store, reopen), database))
    }

    conformance::token_contract_tests!(make_tokens);
}

/// The key store contract, on a fresh database per case; reopening connects
/// to the same database again.
mod keys {
    use conformance::KeyStores;
    use store_mongo::{MongoStore, testing};

    async fn make_keys() -> Option<(KeyStores, testing::TestDatabase)> {
        let (store, database) = testing::store("keys").await?;
        let uri = database.uri().to_owned();
        let reopen = move || {
            let uri = uri.clone();
            async move {
                MongoStore::connect(&uri)
                    .await
                    .unwrap_or_else(|e| panic!("connecting to {uri} again: {e}"))
            }
        };
        Some((KeyStores::new(store, reopen), database))
    }

    conformance::key_contract_tests!(make_keys);
}
