//! API tokens ([`auth::TokenStore`]) on the `api_tokens` table
//! (`migrations/sqlite/0007_api_tokens.sql`): one row per token, revoked
//! ones included, keyed by name, looked up by the SHA-256 of the secret.
//!
//! Writes go through the writer connection, each one `BEGIN IMMEDIATE`
//! transaction of one statement at `synchronous=FULL` (a created token or a
//! revocation survives a power cut once acknowledged); reads use the reader
//! pool. Times are spelled as everywhere in the file (`text`): microseconds.
//!
//! A name is never reused: creating a token whose name is stored, revoked or
//! not, changes nothing and answers [`TokenError::NameTaken`]; the schema's
//! triggers refuse deleting a row and any change but one revocation.

use async_trait::async_trait;
use auth::{NewToken, Role, TokenError, TokenHash, TokenInfo, TokenStore};
use chrono::{DateTime, Utc};
use eventstore::StoreError;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior};

use crate::SqliteStore;
use crate::error::DbError;
use crate::text;

type Result<T, E = DbError<TokenError>> = std::result::Result<T, E>;

const COLUMNS: &str = "name, role, customer, hash, created_at, revoked_at";

/// The store's mapping of database failures (`error`), reused: I/O, busy
/// and a failed blocking task are `Unavailable`, unreadable data `Corrupt`.
impl From<DbError<TokenError>> for TokenError {
    fn from(error: DbError<TokenError>) -> Self {
        let error: DbError<StoreError> = match error {
            DbError::Refused(refused) => return refused,
            DbError::Sqlite(e) => DbError::Sqlite(e),
            DbError::Corrupt(what) => DbError::Corrupt(what),
            DbError::Task(e) => DbError::Task(e),
        };
        match StoreError::from(error) {
            StoreError::Corrupt(what) => TokenError::Corrupt(what),
            StoreError::Unavailable(source) => TokenError::Unavailable(source),
            // The mapping makes nothing else of a database failure.
            other => TokenError::Unavailable(Box::new(other)),
        }
    }
}

/// Runs `job` in one `BEGIN IMMEDIATE` transaction, committed only if it
/// succeeds.
fn writing<T>(
    connection: &mut Connection,
    job: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = job(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// Whether an insert hit the unique index on `hash`: another token has this
/// secret's hash, which a fresh random secret never gives.
fn is_hash_taken(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(failure, Some(message))
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && message.contains("api_tokens.hash")
    )
}

/// Inserts the token unless its name is stored (then `NameTaken`).
fn insert(connection: &Connection, token: &TokenInfo) -> Result<()> {
    // The conflict target makes a stored name a no-op rather than an error;
    // any other constraint still fails the statement.
    let inserted = connection
        .prepare_cached(&format!(
            "INSERT INTO api_tokens ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL)
             ON CONFLICT (name) DO NOTHING"
        ))?
        .execute(rusqlite::params![
            token.name,
            token.role.name(),
            token.customer,
            token.hash.as_str(),
            text::time(token.created_at),
        ]);
    match inserted {
        Ok(1) => Ok(()),
        Ok(_) => Err(DbError::Refused(TokenError::NameTaken(token.name.clone()))),
        Err(e) if is_hash_taken(&e) => Err(DbError::Refused(TokenError::Invalid(format!(
            "another token already has the hash of token {:?}'s secret; issue a new secret",
            token.name
        )))),
        Err(e) => Err(e.into()),
    }
}

fn revoke(connection: &Connection, name: &str, at: DateTime<Utc>) -> Result<bool> {
    let revoked = connection
        .prepare_cached(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        )?
        .execute(rusqlite::params![name, text::time(at)])?;
    Ok(revoked == 1)
}

/// A row as stored, before it is checked. A NULL or non-text value where
/// the schema has none fails the read as rusqlite reports it (`Corrupt`).
struct StoredRow {
    name: String,
    role: String,
    customer: Option<String>,
    hash: String,
    created_at: String,
    revoked_at: Option<String>,
}

fn stored(row: &Row<'_>) -> rusqlite::Result<StoredRow> {
    Ok(StoredRow {
        name: row.get(0)?,
        role: row.get(1)?,
        customer: row.get(2)?,
        hash: row.get(3)?,
        created_at: row.get(4)?,
        revoked_at: row.get(5)?,
    })
}

fn decode(row: StoredRow) -> Result<TokenInfo> {
    let corrupt = |what: String| DbError::Corrupt(format!("api_tokens row {:?}: {what}", row.name));
    let token = TokenInfo {
        name: row.name.clone(),
        role: row
            .role
            .parse::<Role>()
            .map_err(|e| corrupt(e.to_string()))?,
        customer: row.customer.clone(),
        hash: TokenHash::from_stored(&row.hash).map_err(|e| match e {
            TokenError::Corrupt(what) => corrupt(what),
            other => corrupt(other.to_string()),
        })?,
        created_at: text::parse_time(&row.created_at).map_err(corrupt)?,
        revoked_at: row
            .revoked_at
            .as_deref()
            .map(text::parse_time)
            .transpose()
            .map_err(corrupt)?,
    };
    match token.shape_error() {
        Some(why) => Err(corrupt(why)),
        None => Ok(token),
    }
}

fn list(connection: &Connection) -> Result<Vec<TokenInfo>> {
    // The primary key's index gives the order: no sort step.
    let mut statement =
        connection.prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens ORDER BY name"))?;
    let rows = statement
        .query_map([], stored)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(decode).collect()
}

fn by_hash(connection: &Connection, hash: &TokenHash) -> Result<Option<TokenInfo>> {
    connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens WHERE hash = ?1"))?
        .query_row([hash.as_str()], stored)
        .optional()?
        .map(decode)
        .transpose()
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn create_token(&self, token: &NewToken) -> Result<(), TokenError> {
        token.check()?;
        let token = token.0.clone();
        Ok(self
            .write(move |connection, _| writing(connection, |tx| insert(tx, &token)))
            .await?)
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>, TokenError> {
        Ok(self.read(list).await?)
    }

    async fn revoke_token(&self, name: &str, at: DateTime<Utc>) -> Result<bool, TokenError> {
        let name = name.to_owned();
        Ok(self
            .write(move |connection, _| writing(connection, |tx| revoke(tx, &name, at)))
            .await?)
    }

    async fn token_by_hash(&self, hash: &TokenHash) -> Result<Option<TokenInfo>, TokenError> {
        let hash = hash.clone();
        Ok(self
            .read(move |connection| by_hash(connection, &hash))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_plans::{plan, plans};

    /// A request's lookup by hash and a revocation by name are index
    /// searches, and the list walks the primary key in order.
    #[tokio::test]
    async fn lookups_use_the_indexes() {
        let plans = plans(|connection| {
            [
                plan(
                    connection,
                    &format!("SELECT {COLUMNS} FROM api_tokens WHERE hash = ?1"),
                ),
                plan(
                    connection,
                    "UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                ),
                plan(
                    connection,
                    &format!("SELECT {COLUMNS} FROM api_tokens ORDER BY name"),
                ),
            ]
        })
        .await;
        assert!(plans[0].starts_with("SEARCH"), "by hash: {}", plans[0]);
        assert!(plans[1].starts_with("SEARCH"), "revoke: {}", plans[1]);
        assert!(
            !plans[2].contains("TEMP B-TREE"),
            "list sorts: {}",
            plans[2]
        );
    }

    #[test]
    fn rows_that_break_the_shape_are_corrupt() {
        let hash = TokenHash::of("secret").as_str().to_owned();
        let row = |role: &str, customer: Option<&str>, hash: &str| StoredRow {
            name: "t".into(),
            role: role.into(),
            customer: customer.map(str::to_owned),
            hash: hash.into(),
            created_at: "2024-05-01T09:30:00.123456Z".into(),
            revoked_at: None,
        };
        assert!(decode(row("customer", Some("acme"), &hash)).is_ok());
        assert!(decode(row("agent", None, &hash)).is_ok());
        for bad in [
            row("customer", None, &hash),
            row("agent", Some("acme"), &hash),
            row("root", None, &hash),
            row("agent", None, "ABC"),
        ] {
            assert!(
                matches!(
                    TokenError::from(decode(bad).unwrap_err()),
                    TokenError::Corrupt(_)
                ),
                "accepted"
            );
        }
    }
}
