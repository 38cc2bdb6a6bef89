//! Failures: the public [`OpenError`] of start-up, the internal [`DbError`]
//! every operation returns with its one mapping to the traits' [`StoreError`]
//! and [`ViewError`], and the helpers that read a server error's code and
//! labels whatever shape the driver gave it.

use eventstore::{ContractError, StoreError};
use mongodb::error::{
    ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure,
};
use readmodel::ViewError;

/// Server error codes this crate acts on.
pub(crate) mod code {
    /// A unique index refused a document.
    pub const DUPLICATE_KEY: i32 = 11000;
    /// Two transactions wrote the same document; the later one must retry.
    pub const WRITE_CONFLICT: i32 = 112;
    /// The server does not know the command (jongodb for `create`, `collMod`).
    pub const COMMAND_NOT_FOUND: i32 = 59;
    /// `create` of a collection that exists.
    pub const NAMESPACE_EXISTS: i32 = 48;
    /// A document failed the collection's validator.
    pub const DOCUMENT_VALIDATION_FAILURE: i32 = 121;
}

/// Why [`crate::MongoStore::connect`] (or [`crate::MongoStore::migrate`]) failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("MongoDB URI is not valid: {0}")]
    Uri(#[source] Box<mongodb::error::Error>),
    #[error("MongoDB at {hosts} does not answer ping: {source}")]
    Unreachable {
        hosts: String,
        #[source]
        source: Box<mongodb::error::Error>,
    },
    #[error("MongoDB database {database}: {step} failed: {source}")]
    Mongo {
        database: String,
        /// What was being done, e.g. "applying migration 0001_events".
        step: String,
        #[source]
        source: Box<mongodb::error::Error>,
    },
    #[error(
        "MongoDB database {database}: the server does not run multi-document transactions \
         (a standalone mongod? appends and view commits need a replica set, even a single-node \
         one: mongod --replSet rs0, then rs.initiate()): {source}"
    )]
    NoTransactions {
        database: String,
        #[source]
        source: Box<mongodb::error::Error>,
    },
    #[error("migration {name} is not valid: {reason}")]
    BadMigration { name: String, reason: String },
    #[error(
        "MongoDB database {database}: migration {version} ({name}) was edited after it was \
         applied (checksum {recorded} recorded, {current} in this build); never edit an applied \
         migration, add a new one"
    )]
    MigrationEdited {
        database: String,
        version: u32,
        name: String,
        recorded: String,
        current: String,
    },
    #[error(
        "MongoDB database {database}: migration {version} ({name}) is applied but unknown to \
         this build, which is older than the database"
    )]
    UnknownMigration {
        database: String,
        version: u32,
        name: String,
    },
    #[error(
        "MongoDB database {database}: migration {version} ({name}) has been claimed by another \
         starter since {since} and is still not applied; if that starter died, delete its \
         claim from schema_migrations"
    )]
    MigrationStuck {
        database: String,
        version: u32,
        name: String,
        since: String,
    },
    #[error("MongoDB database {database}: {step} wrote nothing for some documents: {reason}")]
    MigrationWrite {
        database: String,
        /// Which command of which migration, e.g. "migration 0003_...: update projection_slots".
        step: String,
        /// The server's write errors.
        reason: String,
    },
    #[error("MongoDB database {database}: schema_migrations holds a bad document: {reason}")]
    BadLedger { database: String, reason: String },
}

/// What an operation can end in, besides success. `E` is the caller-facing
/// error type, carried through untouched for the outcomes an operation decides
/// itself (a version conflict, a moved checkpoint).
#[derive(Debug)]
pub(crate) enum DbError<E> {
    Mongo(mongodb::error::Error),
    /// A stored document this code cannot read back, or a write the schema
    /// refuses, described with the document it concerns.
    Corrupt(String),
    /// A transaction body asks to be run again from the start: it collided with
    /// a concurrent transaction in a way the server did not label transient.
    /// Says how, for the error reported when the retries run out.
    Retry(String),
    /// The server did not answer within a bound (`bounds`), or whether a
    /// commit took effect could not be found out in time. Says which.
    Unavailable(String),
    Refused(E),
}

impl<E> From<mongodb::error::Error> for DbError<E> {
    fn from(error: mongodb::error::Error) -> Self {
        DbError::Mongo(error)
    }
}

/// The server's error code, whichever of the driver's three shapes carries it:
/// a command error (jongodb reports even a duplicate key this way), a single
/// write's error, or the first write error of an `insert_many`. Write-concern
/// errors count too.
pub(crate) fn server_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        ErrorKind::Write(WriteFailure::WriteError(write)) => Some(write.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => Some(concern.code),
        ErrorKind::InsertMany(insert) => insert
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first())
            .map(|write| write.code)
            .or_else(|| insert.write_concern_error.as_ref().map(|c| c.code)),
        _ => None,
    }
}

/// The server's message, for the few decisions that need to know which index
/// a duplicate key hit.
pub(crate) fn server_message(error: &mongodb::error::Error) -> Option<&str> {
    match error.kind.as_ref() {
        ErrorKind::Command(command) => Some(&command.message),
        ErrorKind::Write(WriteFailure::WriteError(write)) => Some(&write.message),
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => Some(&concern.message),
        ErrorKind::InsertMany(insert) => insert
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first())
            .map(|write| write.message.as_str()),
        _ => None,
    }
}

pub(crate) fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    server_code(error) == Some(code::DUPLICATE_KEY)
}

/// Whether a duplicate key hit the named index. Servers name the index in the
/// message (`... index: ticket_version dup key: ...`).
pub(crate) fn is_duplicate_in(error: &mongodb::error::Error, index: &str) -> bool {
    is_duplicate_key(error)
        && server_message(error).is_some_and(|message| {
            message
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == index)
        })
}

/// Whether a transaction that failed this way should simply run again: the
/// server labels it transient, or it is a write conflict (jongodb reports
/// conflicts found at commit without the label).
pub(crate) fn is_transient_transaction_error(error: &mongodb::error::Error) -> bool {
    error.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || server_code(error) == Some(code::WRITE_CONFLICT)
}

pub(crate) fn is_unknown_commit_result(error: &mongodb::error::Error) -> bool {
    error.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
}

/// Whether a driver failure is about the data (retrying will not help) rather
/// than about reaching the server.
fn is_corruption(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::BsonDeserialization(_)
        | ErrorKind::BsonSerialization(_)
        | ErrorKind::Bson(_) => true,
        // Our writes satisfy the validators and unique indexes; one firing means
        // the stored data and the code disagree (version conflicts and position
        // collisions are decided before errors get here).
        _ => matches!(
            server_code(error),
            Some(code::DOCUMENT_VALIDATION_FAILURE | code::DUPLICATE_KEY)
        ),
    }
}

impl<E: ContractError> DbError<E> {
    /// The one mapping to the contract's error, events' or views'.
    fn into_contract(self) -> E {
        match self {
            DbError::Mongo(e) if is_corruption(&e) => E::corrupt(e.to_string()),
            DbError::Mongo(e) => E::unavailable_boxed(Box::new(e)),
            DbError::Retry(what) | DbError::Unavailable(what) => E::unavailable_boxed(what.into()),
            DbError::Corrupt(what) => E::corrupt(what),
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

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    /// A server error in the `Command` shape, as jongodb sends even duplicate keys.
    pub(crate) fn command_error(code: i32, message: &str) -> mongodb::error::Error {
        let command: mongodb::error::CommandError = mongodb::bson::deserialize_from_document(
            doc! { "code": code, "codeName": "Test", "errmsg": message },
        )
        .expect("a command error document");
        ErrorKind::Command(command).into()
    }

    fn write_error(code: i32, message: &str) -> mongodb::error::Error {
        let write: mongodb::error::WriteError =
            mongodb::bson::deserialize_from_document(doc! { "code": code, "errmsg": message })
                .expect("a write error document");
        ErrorKind::Write(WriteFailure::WriteError(write)).into()
    }

    fn insert_many_error(code: i32, message: &str) -> mongodb::error::Error {
        let insert: mongodb::error::InsertManyError = mongodb::bson::deserialize_from_document(
            doc! { "writeErrors": [{ "index": 1, "code": code, "errmsg": message }] },
        )
        .expect("an insert-many error document");
        ErrorKind::InsertMany(insert).into()
    }

    #[test]
    fn the_code_is_found_in_every_shape() {
        let message = "E11000 duplicate key error collection: t.events index: ticket_version \
                       dup key: { ticket_id: \"x\", version: 2 }";
        for error in [
            command_error(11000, message),
            write_error(11000, message),
            insert_many_error(11000, message),
        ] {
            assert_eq!(server_code(&error), Some(11000), "{error}");
            assert!(is_duplicate_in(&error, "ticket_version"), "{error}");
            assert!(!is_duplicate_in(&error, "_id_"), "{error}");
            assert!(!is_duplicate_in(&error, "ticket"), "{error}");
        }
        let io: mongodb::error::Error =
            ErrorKind::Io(std::sync::Arc::new(std::io::Error::other("reset"))).into();
        assert_eq!(server_code(&io), None);
    }

    #[test]
    fn write_conflicts_are_transient_without_a_label() {
        assert!(is_transient_transaction_error(&command_error(
            112,
            "commit transaction write conflict on _id=events"
        )));
        assert!(!is_transient_transaction_error(&command_error(
            11000, "dup"
        )));
    }

    #[test]
    fn the_mapping_separates_bad_data_from_an_unreachable_server() {
        let duplicate = DbError::<StoreError>::Mongo(write_error(11000, "dup"));
        assert!(matches!(
            StoreError::from(duplicate),
            StoreError::Corrupt(_)
        ));
        let io: mongodb::error::Error =
            ErrorKind::Io(std::sync::Arc::new(std::io::Error::other("reset"))).into();
        assert!(matches!(
            ViewError::from(DbError::<ViewError>::Mongo(io)),
            ViewError::Unavailable(_)
        ));
    }
}
