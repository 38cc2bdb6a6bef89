//! Customers' data keys ([`sealing::KeyStore`]) on the `customer_keys`
//! table, and the rewrite of an event stored in clear
//! (`migrations/sqlite/0008_customer_keys.sql`).
//!
//! A key is written before the first event sealed with it, at
//! `synchronous=NORMAL`: its commit is not flushed on its own, but the WAL
//! is one file written in order, so the flush of the append that follows
//! (at `FULL`) makes the key durable too, and no sealed event can survive a
//! crash without its key. Destroying a key is a `DELETE` under
//! `secure_delete` (set on every connection), so its bytes are overwritten
//! in the page, not left in free space.

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sealing::{KeyError, KeyStore, StoredKey};
use uuid::Uuid;

use crate::SqliteStore;
use crate::error::DbError;
use crate::text;

type Result<T, E = DbError<KeyError>> = std::result::Result<T, E>;

impl From<DbError<KeyError>> for KeyError {
    fn from(error: DbError<KeyError>) -> Self {
        match error {
            DbError::Refused(refused) => refused,
            DbError::Corrupt(what) => KeyError::Corrupt(what),
            DbError::Sqlite(e) => KeyError::Unavailable(Box::new(e)),
            DbError::Task(e) => KeyError::Unavailable(Box::new(e)),
        }
    }
}

fn stored(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, Vec<u8>)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn decode((key_id, customer, material): (String, String, Vec<u8>)) -> Result<StoredKey> {
    let key_id = text::parse_id(&key_id)
        .map_err(|why| DbError::Corrupt(format!("customer_keys row {key_id:?}: {why}")))?;
    Ok(StoredKey {
        key_id,
        customer,
        material,
    })
}

fn by_customer(connection: &Connection, customer: &str) -> Result<Option<StoredKey>> {
    connection
        .prepare_cached("SELECT key_id, customer, material FROM customer_keys WHERE customer = ?1")?
        .query_row([customer], stored)
        .optional()?
        .map(decode)
        .transpose()
}

fn by_id(connection: &Connection, key_id: Uuid) -> Result<Option<StoredKey>> {
    connection
        .prepare_cached("SELECT key_id, customer, material FROM customer_keys WHERE key_id = ?1")?
        .query_row([text::id(key_id)], stored)
        .optional()?
        .map(decode)
        .transpose()
}

/// Ids per `by_ids` statement: under SQLite's smallest limit on bound
/// variables (999 before 3.32), and one statement text, cached: a shorter
/// last chunk repeats its last id (`IN` answers a row once however often
/// it is named).
const IDS_PER_QUERY: usize = 500;

fn by_ids(connection: &Connection, key_ids: &[Uuid]) -> Result<Vec<StoredKey>> {
    let mut found = Vec::with_capacity(key_ids.len());
    let Some(&last) = key_ids.last() else {
        return Ok(found);
    };
    let mut statement = connection.prepare_cached(&format!(
        "SELECT key_id, customer, material FROM customer_keys WHERE key_id IN ({})",
        vec!["?"; IDS_PER_QUERY].join(", ")
    ))?;
    for chunk in key_ids.chunks(IDS_PER_QUERY) {
        let ids = chunk
            .iter()
            .chain(std::iter::repeat(&last))
            .take(IDS_PER_QUERY)
            .map(|&id| text::id(id));
        let rows = statement.query_map(rusqlite::params_from_iter(ids), stored)?;
        for row in rows {
            found.push(decode(row?)?);
        }
    }
    Ok(found)
}

fn create(connection: &mut Connection, key: &StoredKey) -> Result<StoredKey> {
    // Flushed by the append that follows (see the module doc).
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    let outcome = (|| {
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "INSERT INTO customer_keys (key_id, customer, material, created_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (customer) DO NOTHING",
        )?
        .execute(rusqlite::params![
            text::id(key.key_id),
            key.customer,
            key.material,
            text::time(Utc::now()),
        ])?;
        let kept = by_customer(&tx, &key.customer)?.ok_or_else(|| {
            DbError::Corrupt(format!("the key of customer {:?} vanished", key.customer))
        })?;
        tx.commit()?;
        Ok(kept)
    })();
    connection.pragma_update(None, "synchronous", "FULL")?;
    outcome
}

fn destroy(connection: &mut Connection, key_id: Uuid) -> Result<bool> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let deleted = tx
        .prepare_cached("DELETE FROM customer_keys WHERE key_id = ?1")?
        .execute([text::id(key_id)])?;
    tx.commit()?;
    Ok(deleted == 1)
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn by_customer(&self, customer: &str) -> Result<Option<StoredKey>, KeyError> {
        let customer = customer.to_owned();
        Ok(self.read(move |c| by_customer(c, &customer)).await?)
    }

    async fn by_id(&self, key_id: Uuid) -> Result<Option<StoredKey>, KeyError> {
        Ok(self.read(move |c| by_id(c, key_id)).await?)
    }

    async fn by_ids(&self, key_ids: &[Uuid]) -> Result<Vec<StoredKey>, KeyError> {
        let key_ids = key_ids.to_vec();
        Ok(self.read(move |c| by_ids(c, &key_ids)).await?)
    }

    async fn create(&self, key: StoredKey) -> Result<StoredKey, KeyError> {
        Ok(self.write(move |c, _| create(c, &key)).await?)
    }

    async fn destroy(&self, key_id: Uuid) -> Result<bool, KeyError> {
        Ok(self.write(move |c, _| destroy(c, key_id)).await?)
    }

    /// Copies every page the write-ahead log holds into the database and
    /// truncates the log to nothing: the log's old page images (a key, an
    /// erased customer's rows before their rewrite) go with it. Deleted
    /// content inside the database file was zeroed when it was deleted
    /// (`secure_delete`). A reader holding an old snapshot makes the
    /// truncation wait for it, within the busy timeout.
    async fn scrub(&self) -> Result<(), KeyError> {
        Ok(self
            .write(|c, _| {
                let (busy, _, _): (i64, i64, i64) =
                    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })?;
                if busy != 0 {
                    return Err(DbError::Refused(KeyError::Unavailable(
                        "a reader held the write-ahead log; it was not truncated".into(),
                    )));
                }
                Ok(())
            })
            .await?)
    }
}
