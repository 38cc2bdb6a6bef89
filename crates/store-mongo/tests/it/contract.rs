//! The store contract from the `conformance` crate, run against a fresh
//! database per case.

use std::sync::Arc;

use eventstore::EventStore;
use readmodel::ViewStore;
use store_mongo::testing;

/// `None` skips the case: `testing` has said why on stderr (in CI it panics
/// instead, so a missing server fails the run).
async fn make_store() -> Option<(Arc<dyn EventStore>, Arc<dyn ViewStore>, ())> {
    let store = testing::store("contract").await?;
    Some((Arc::new(store.clone()), Arc::new(store), ()))
}

conformance::store_contract_tests!(make_store);
