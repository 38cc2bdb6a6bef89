//! A shadow slot's secondary indexes, set aside while a rebuild bulk-loads
//! the slot and built again from the loaded rows (migration 0006).
//!
//! Dropping an index and recording its definition in `deferred_indexes`
//! happen in one transaction, as do creating it again and forgetting the
//! definition: whatever the process dies between, the definition is either
//! in place as an index or kept in the table. [`build`] runs before a
//! shadow slot is emptied or swapped in, so no slot goes live without its
//! indexes.

use rusqlite::{Connection, OptionalExtension};

use super::Result;

/// Drops the secondary indexes of `table`, keeping their definitions. The
/// primary key stays: rows are still written, loaded and scanned by id.
pub(crate) fn defer(connection: &Connection, table: &str) -> Result<()> {
    let indexes: Vec<(String, String)> = connection
        .prepare_cached(
            // `sql` is NULL for the indexes SQLite makes itself (the primary
            // key's, unique constraints'), which cannot be dropped.
            "SELECT name, sql FROM sqlite_schema
             WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL
             ORDER BY name",
        )?
        .query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, sql) in &indexes {
        connection
            .prepare_cached(
                "INSERT INTO deferred_indexes (name, table_name, sql) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET table_name = excluded.table_name, sql = excluded.sql",
            )?
            .execute([name, table, sql])?;
        // The name comes from the schema itself, quoted as an identifier.
        connection.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))?;
    }
    Ok(())
}

/// Creates again every deferred index of `table` (one that exists already,
/// say made by a later migration, is kept as it is) and forgets their
/// definitions.
pub(crate) fn build(connection: &Connection, table: &str) -> Result<()> {
    let deferred: Vec<(String, String)> = connection
        .prepare_cached(
            "SELECT name, sql FROM deferred_indexes WHERE table_name = ?1 ORDER BY name",
        )?
        .query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if deferred.is_empty() {
        return Ok(());
    }
    // SQLite sizes the sort's in-memory runs (one per helper thread) by the
    // connection's page cache: with the writer's 32 MiB, building the list
    // slot's indexes at 3.3 M events peaked at 190 MB RSS; with 8 MiB, 117 MB,
    // in the same time (runs spill to temporary files and are merged).
    let cache_size: i64 = connection.query_row("PRAGMA cache_size", [], |row| row.get(0))?;
    connection.pragma_update(None, "cache_size", SORT_CACHE_SIZE)?;
    let outcome = create_deferred(connection, &deferred);
    connection.pragma_update(None, "cache_size", cache_size)?;
    outcome
}

/// The page cache while deferred indexes are built, in KiB (negative: a
/// size, not a page count).
const SORT_CACHE_SIZE: i64 = -8 * 1024;

fn create_deferred(connection: &Connection, deferred: &[(String, String)]) -> Result<()> {
    for (name, sql) in deferred {
        let exists = connection
            .prepare_cached("SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?1")?
            .query_row([name], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            connection.execute_batch(sql)?;
        }
        connection
            .prepare_cached("DELETE FROM deferred_indexes WHERE name = ?1")?
            .execute([name])?;
    }
    Ok(())
}
