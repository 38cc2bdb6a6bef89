//! The schema: the SQL files in `migrations/sqlite/` at the workspace root,
//! compiled in, and the runner that applies each exactly once.
//!
//! Each migration runs in its own `BEGIN IMMEDIATE` transaction together with
//! the `schema_migrations` row that records it. Two processes opening a fresh
//! file at once are serialised by the write lock, and each re-checks inside the
//! transaction whether the migration is already there, so none runs twice. The
//! recorded checksum catches a migration edited after it was applied.

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::OpenError;
use crate::text;
pub use migration_files::AppliedMigration;
use migration_files::Migration;

/// In version order: every file in `migrations/sqlite/`, listed at build time
/// (see `migration_files`), so a new file there is all a new migration takes.
const MIGRATIONS: &[Migration] = migration_files::SQLITE;

/// The migrations this build knows, as (version, name), in order.
pub fn migrations() -> impl Iterator<Item = (u32, &'static str)> {
    MIGRATIONS.iter().map(|m| (m.version, m.name))
}

/// The bookkeeping table is the one piece of schema outside the migration
/// files: it has to exist before the first of them can be recorded.
const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
) STRICT";

/// Applies every migration not yet applied, in order; refuses a database whose
/// applied migrations differ from this build's. Returns the versions applied.
pub(crate) fn apply(
    connection: &mut Connection,
    path: &std::path::Path,
) -> Result<Vec<u32>, OpenError> {
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        if apply_one(connection, path, migration)? {
            applied.push(migration.version);
        }
    }
    refuse_unknown(connection, path)?;
    Ok(applied)
}

/// Applies one migration unless already applied; says whether it did.
fn apply_one(
    connection: &mut Connection,
    path: &std::path::Path,
    migration: &Migration,
) -> Result<bool, OpenError> {
    let step = |what: &str| OpenError::sqlite(path, format!("{what} {}", migration.name));
    let current = migration.checksum();
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(step("locking the database to apply"))?;
    tx.execute_batch(CREATE_LEDGER)
        .map_err(step("creating schema_migrations before"))?;
    let recorded: Option<String> = tx
        .query_row(
            "SELECT checksum FROM schema_migrations WHERE version = ?1",
            [migration.version],
            |row| row.get(0),
        )
        .optional()
        .map_err(step("checking"))?;
    match recorded {
        Some(recorded) if recorded == current => return Ok(false),
        Some(recorded) => {
            return Err(OpenError::MigrationEdited {
                path: path.to_owned(),
                version: migration.version,
                name: migration.name.to_owned(),
                recorded,
                current,
            });
        }
        None => {}
    }
    tx.execute_batch(migration.text).map_err(step("applying"))?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at)
         VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![
            migration.version,
            migration.name,
            current,
            text::time(Utc::now())
        ],
    )
    .map_err(step("recording"))?;
    tx.commit().map_err(step("committing"))?;
    tracing::info!(path = %path.display(), migration = migration.name, "applied migration");
    Ok(true)
}

/// A migration recorded in the file but missing here means a newer build wrote
/// the schema; running against it could misread or miswrite data.
fn refuse_unknown(connection: &Connection, path: &std::path::Path) -> Result<(), OpenError> {
    let newest = MIGRATIONS.last().map_or(0, |m| m.version);
    let unknown: Option<(u32, String)> = connection
        .query_row(
            "SELECT version, name FROM schema_migrations WHERE version > ?1
             ORDER BY version LIMIT 1",
            [newest],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(OpenError::sqlite(path, "checking for unknown migrations"))?;
    match unknown {
        Some((version, name)) => Err(OpenError::UnknownMigration {
            path: path.to_owned(),
            version,
            name,
        }),
        None => Ok(()),
    }
}

/// The rows of `schema_migrations`, in version order.
pub(crate) fn applied(connection: &Connection) -> Result<Vec<AppliedMigration>, String> {
    let read = || -> rusqlite::Result<Vec<(u32, String, String, String)>> {
        let mut statement = connection.prepare_cached(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
        rows.collect()
    };
    read()
        .map_err(|e| format!("schema_migrations: {e}"))?
        .into_iter()
        .map(|(version, name, checksum, applied_at)| {
            Ok(AppliedMigration {
                version,
                name,
                checksum,
                applied_at: text::parse_time(&applied_at)
                    .map_err(|e| format!("schema_migrations row {version}: {e}"))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that holds views in the 0002 tables moves to slots: the old
    /// tables go (views are derived; the projector replays into slot a from
    /// position 0), events stay, every projection starts at 0 in slot a.
    #[test]
    fn slots_replace_the_old_view_tables_and_keep_the_events() {
        let path = std::path::Path::new(":memory:");
        let mut connection = Connection::open_in_memory().expect("a database");
        for migration in &MIGRATIONS[..2] {
            assert!(apply_one(&mut connection, path, migration).expect("apply"));
        }
        connection
            .execute_batch(
                "INSERT INTO events VALUES (1, '00000000-0000-7000-8000-000000000001',
                     '00000000-0000-7000-8000-000000000002', 1, 'TicketOpened', 1,
                     '2024-05-01T09:30:00.000000Z', '{}', '{}');
                 UPDATE dashboard SET count = 1 WHERE status = 'open';
                 INSERT INTO checkpoints VALUES ('views', 1, '2024-05-01T09:30:00.000000Z');",
            )
            .expect("an old file's data");
        let later: Vec<u32> = MIGRATIONS[2..].iter().map(|m| m.version).collect();
        assert_eq!(apply(&mut connection, path).expect("apply"), later);
        let key: Option<String> = connection
            .query_row("SELECT idempotency_key FROM events", [], |row| row.get(0))
            .expect("the old event");
        assert_eq!(key, None, "events stored before 0005 have no key");

        let tables: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .expect("tables");
        for gone in ["ticket_details", "ticket_list", "dashboard", "checkpoints"] {
            assert!(!tables.iter().any(|t| t == gone), "{gone} is still there");
        }
        let events: i64 = connection
            .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .expect("events");
        assert_eq!(events, 1, "events are untouched");
        let slots: Vec<(String, String, String, i64, i64)> = connection
            .prepare(
                "SELECT projection, slot, state, checkpoint, version FROM projection_slots
                 ORDER BY projection, slot",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .expect("slots");
        let expected: Vec<(String, String, String, i64, i64)> = ["dashboard", "detail", "list"]
            .into_iter()
            .flat_map(|p| {
                [
                    (p.into(), "a".into(), "live".into(), 0, 1),
                    (p.into(), "b".into(), "retired".into(), 0, 0),
                ]
            })
            .collect();
        assert_eq!(slots, expected);
        let second_live = connection.execute(
            "UPDATE projection_slots SET state = 'live' WHERE projection = 'list' AND slot = 'b'",
            [],
        );
        assert!(second_live.is_err(), "one live slot per projection");
    }

    #[test]
    fn every_file_in_the_folder_is_listed_in_order() {
        let folder =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
        migration_files::check_folder(&folder, "sql", MIGRATIONS).unwrap();
    }
}
