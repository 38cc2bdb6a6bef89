//! The embedded backend: one SQLite file holds the event store, the read models
//! (each projection in two slots, with its checkpoints), the projector's leases
//! and its dead letters.
//!
//! [`SqliteStore`] implements both [`eventstore::EventStore`] and
//! [`readmodel::ViewStore`]. Two processes use the file at once (ticketd appends
//! events, ticket-projector writes views), as do many tasks in each, so:
//!
//! - every write transaction is `BEGIN IMMEDIATE`, and this process has a
//!   single writer connection (`connection`);
//! - appends are group-committed: the appends that queue up while a commit
//!   runs go together in the next transaction, under one fsync (`commit`);
//! - reads use their own connections and, the file being in WAL mode, never
//!   wait for a writer;
//! - all SQLite work runs on tokio's blocking pool, never on a runtime thread;
//! - the schema comes from the versioned files in `migrations/sqlite/`, applied
//!   at [`SqliteStore::open`] (`migrate`).
//!
//! Modules: `connection` (opening, pragmas, writer and reader pool),
//! `checkpoint` (copying the log into the file on a thread of its own),
//! `commit` (the group committer), `migrate`
//! (the schema runner), `events` (the event store), `views` (the view store:
//! slots, rows, leases, dead letters), `tokens` (the API tokens,
//! [`auth::TokenStore`]),
//! `text` (how times and ids are spelled), `error` (failures and their mapping).

mod checkpoint;
mod commit;
pub use commit::APPEND_QUEUE_MAX;
mod connection;
mod error;
mod events;
mod import;
mod keys;
mod migrate;
#[cfg(test)]
mod query_plans;
mod text;
mod tokens;
mod views;

use std::path::Path;
use std::sync::Arc;

use eventstore::{Position, StoreError};
use tokio::sync::watch;

use crate::commit::Committer;
use crate::connection::Connections;
use crate::error::DbError;

pub use checkpoint::CHECKPOINTS;
pub use error::OpenError;
pub use migrate::{AppliedMigration, migrations};

/// The SQLite backend. Cloning is cheap: clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    db: Arc<Connections>,
    /// The newest position this process knows of. Appends here publish it after
    /// commit so that in-process waiters wake at once; appends by other
    /// processes are noticed by polling (see `wait_for_events`).
    head: Arc<watch::Sender<Position>>,
    /// Where appends queue for their group commit (see `commit`).
    committer: Arc<Committer>,
    /// Prompts waiters when a live checkpoint moves here (see `views`).
    checkpoints: Arc<readmodel::CheckpointPrompts>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.shared.db.path())
            .field("head", &*self.shared.head.borrow())
            .finish()
    }
}

impl SqliteStore {
    /// Opens the database file, creating it and its folder if missing, and
    /// brings its schema up to date. Safe to call from several processes at once.
    pub fn open(path: &Path) -> Result<SqliteStore, OpenError> {
        Self::open_migrated(path).map(|(store, _)| store)
    }

    /// Like [`SqliteStore::open`], and says which migration versions this call
    /// applied (empty: the schema was current). For a `migrate` command.
    pub fn migrate(path: &Path) -> Result<Vec<u32>, OpenError> {
        Self::open_migrated(path).map(|(_, applied)| applied)
    }

    fn open_migrated(path: &Path) -> Result<(SqliteStore, Vec<u32>), OpenError> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|source| OpenError::CreateFolder {
                path: folder.to_owned(),
                source,
            })?;
        }
        let db = Connections::open(path)?;
        let applied = db.write(|connection| migrate::apply(connection, path))?;
        let head = db
            .write(|connection| events::head(connection))
            .map_err(OpenError::sqlite(path, "reading the head position"))?;
        let db = Arc::new(db);
        let head = Arc::new(watch::Sender::new(head));
        let committer = Arc::new(Committer::new(db.clone(), head.clone()));
        let store = SqliteStore {
            shared: Arc::new(Shared {
                db,
                head,
                committer,
                checkpoints: Arc::default(),
            }),
        };
        Ok((store, applied))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.shared.db.path()
    }

    /// The migrations recorded in the file, in version order.
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>, StoreError> {
        self.read(|connection| migrate::applied(connection).map_err(DbError::Corrupt))
            .await
            .map_err(StoreError::from)
    }

    /// Runs `job` on the writer connection, on the blocking pool.
    async fn write<T, E>(
        &self,
        job: impl FnOnce(&mut rusqlite::Connection, &watch::Sender<Position>) -> Result<T, DbError<E>>
        + Send
        + 'static,
    ) -> Result<T, DbError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            shared.db.write(|connection| job(connection, &shared.head))
        })
        .await
        .map_err(DbError::Task)?
    }

    /// Runs `job` on a read connection, on the blocking pool.
    async fn read<T, E>(
        &self,
        job: impl FnOnce(&rusqlite::Connection) -> Result<T, DbError<E>> + Send + 'static,
    ) -> Result<T, DbError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || shared.db.read(job))
            .await
            .map_err(DbError::Task)?
    }
}
