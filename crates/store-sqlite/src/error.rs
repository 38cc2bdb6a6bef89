//! Failures: the public [`OpenError`] of start-up, and the internal [`DbError`]
//! every blocking database job returns, with its one mapping to the traits'
//! [`StoreError`] and [`ViewError`].

use std::path::PathBuf;

use eventstore::{ContractError, StoreError};
use readmodel::ViewError;
use rusqlite::ErrorCode;

/// Why [`crate::SqliteStore::open`] failed: the database file and the step.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the folder {path} for the database: {source}")]
    CreateFolder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SQLite database {path}: {step} failed: {source}")]
    Sqlite {
        path: PathBuf,
        /// What was being done, e.g. "setting journal_mode=WAL".
        step: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("SQLite database {path}: cannot start the checkpoint thread: {source}")]
    CheckpointThread {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SQLite database {path}: journal_mode is `{mode}`, not `wal`")]
    NotWal { path: PathBuf, mode: String },
    #[error(
        "SQLite database {path}: migration {version} ({name}) was edited after it was applied \
         (checksum {recorded} recorded, {current} in this build); never edit an applied \
         migration, add a new one"
    )]
    MigrationEdited {
        path: PathBuf,
        version: u32,
        name: String,
        recorded: String,
        current: String,
    },
    #[error(
        "SQLite database {path}: migration {version} ({name}) is applied but unknown to this \
         build, which is older than the database"
    )]
    UnknownMigration {
        path: PathBuf,
        version: u32,
        name: String,
    },
}

impl OpenError {
    pub(crate) fn sqlite(
        path: &std::path::Path,
        step: impl Into<String>,
    ) -> impl FnOnce(rusqlite::Error) -> Self {
        let path = path.to_owned();
        let step = step.into();
        move |source| OpenError::Sqlite { path, step, source }
    }
}

/// What a blocking database job can end in, besides success. `E` is the
/// caller-facing error type, carried through untouched for the outcomes a job
/// decides itself (a version conflict, a moved checkpoint).
#[derive(Debug)]
pub(crate) enum DbError<E> {
    Sqlite(rusqlite::Error),
    /// A stored value this code cannot read back, with the row it came from.
    Corrupt(String),
    /// The blocking task panicked or was cancelled.
    Task(tokio::task::JoinError),
    Refused(E),
}

impl<E> From<rusqlite::Error> for DbError<E> {
    fn from(error: rusqlite::Error) -> Self {
        DbError::Sqlite(error)
    }
}

/// Whether a SQLite failure is about the data (retrying will not help) or about
/// reaching it (it may be retried).
fn is_corruption(error: &rusqlite::Error) -> bool {
    use rusqlite::Error as E;
    match error {
        E::SqliteFailure(failure, _) => matches!(
            failure.code,
            ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::TypeMismatch
                // Our writes satisfy the schema's constraints; one firing means
                // the stored data and the code disagree (the version conflict is
                // caught before it gets here).
                | ErrorCode::ConstraintViolation
        ),
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::InvalidColumnType(..)
        | E::Utf8Error(..) => true,
        _ => false,
    }
}

impl<E: ContractError> DbError<E> {
    /// The one mapping to the contract's error, events' or views'.
    fn into_contract(self) -> E {
        match self {
            DbError::Sqlite(e) if is_corruption(&e) => E::corrupt(e.to_string()),
            DbError::Sqlite(e) => E::unavailable_boxed(Box::new(e)),
            DbError::Corrupt(what) => E::corrupt(what),
            DbError::Task(e) => E::unavailable_boxed(Box::new(e)),
            DbError::Refused(e) => e,
        }
    }
}

impl From<DbError<StoreError>> for StoreError {
    fn from(error: DbError<StoreError>) -> Self {
        error.into_contract()
    }
}

impl From<DbError<ViewError>> for ViewError {
    fn from(error: DbError<ViewError>) -> Self {
        error.into_contract()
    }
}
