//! For tests: what SQLite's planner makes of a statement, on a fresh store,
//! so a test can hold a lookup to its index.

use rusqlite::Connection;

use crate::SqliteStore;
use crate::error::DbError;

/// `EXPLAIN QUERY PLAN` of `sql`, its steps joined with `; `.
pub(crate) fn plan(connection: &Connection, sql: &str) -> String {
    let mut statement = connection
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    // EXPLAIN wants every parameter bound; NULLs do for the plan.
    let nulls = vec![rusqlite::types::Null; statement.parameter_count()];
    let rows = statement
        .query_map(rusqlite::params_from_iter(nulls), |row| {
            row.get::<_, String>(3)
        })
        .expect("plan rows");
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .expect("plan")
        .join("; ")
}

/// Runs `job` on a reader connection of a fresh, migrated store.
pub(crate) async fn plans<T: Send + 'static>(
    job: impl FnOnce(&Connection) -> T + Send + 'static,
) -> T {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
    store
        .read(move |connection| Ok::<_, DbError<eventstore::StoreError>>(job(connection)))
        .await
        .map_err(eventstore::StoreError::from)
        .expect("plans")
}
