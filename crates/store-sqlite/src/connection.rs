//! The connections to the database file: one writer, a small pool of readers.
//!
//! SQLite allows one writer at a time per file, across all processes. In this
//! process the writer is one connection behind a mutex; against other processes
//! every write transaction starts with `BEGIN IMMEDIATE`, which takes the write
//! lock up front (waiting up to the busy timeout) instead of upgrading a read
//! transaction later, the upgrade being what can fail with `SQLITE_BUSY` at once.
//! In WAL mode readers see the last committed snapshot and never wait for the
//! writer, so reads go through their own connections.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::checkpoint::{Checkpointer, Thresholds};
use crate::error::{DbError, OpenError};

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache, in KiB (as a negative `cache_size`, SQLite's
/// spelling for a size rather than a page count).
const WRITER_CACHE_KIB: i64 = -32 * 1024;

/// Idle read connections kept for reuse; more may be open while busy.
const MAX_IDLE_READERS: usize = 4;

/// Prepared statements kept per connection. Each slot's tables have their own
/// statement texts (two slots of three projections, several list shapes), a
/// few dozen in all; rusqlite's default of 16 would keep re-preparing them.
const STATEMENT_CACHE: usize = 96;

pub(crate) struct Connections {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Copies the log into the file off the writer's path (`checkpoint`).
    _checkpointer: Checkpointer,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A panic while a connection was locked leaves it usable: an open transaction
/// was rolled back when its guard dropped during the unwind.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connections {
    /// Opens (creating if needed) the file and its writer connection, and puts
    /// the file in WAL mode.
    pub(crate) fn open(path: &Path) -> Result<Self, OpenError> {
        let mut writer =
            Connection::open(path).map_err(OpenError::sqlite(path, "opening the file"))?;
        writer
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(OpenError::sqlite(path, "setting busy_timeout"))?;
        writer.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        keep_plans(&writer).map_err(OpenError::sqlite(
            path,
            "enabling the query planner stability guarantee",
        ))?;
        // WAL lets the projector process read (and the query side serve) while
        // ticketd writes. The mode is stored in the file; setting it again is a
        // no-op.
        let mode = set_wal(&writer).map_err(OpenError::sqlite(path, "setting journal_mode=WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::NotWal {
                path: path.to_owned(),
                mode,
            });
        }
        // FULL syncs the WAL on every commit: an acknowledged append survives a
        // power cut, not only a crash of the process.
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(OpenError::sqlite(path, "setting synchronous=FULL"))?;
        writer
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(OpenError::sqlite(path, "setting foreign_keys=ON"))?;
        // Deleted and overwritten content is zeroed, in its page and in the
        // pages it frees, so that a destroyed key or an erased customer's
        // view rows leave no copy in free space (see `keys`). Only the
        // writer changes content; the cost falls on deletes and rewrites.
        writer
            .pragma_update(None, "secure_delete", "ON")
            .map_err(OpenError::sqlite(path, "setting secure_delete=ON"))?;
        // The writer's page cache (default 2 MiB) is where the list slot's
        // indexes live during projection: too small, and every batch reads
        // pages back from the OS and spills dirty ones mid-transaction, and
        // a list rebuild then spends most of its time in pread/pwrite.
        // Pages are allocated only as used, so an idle server stays small.
        writer
            .pragma_update(None, "cache_size", WRITER_CACHE_KIB.to_string())
            .map_err(OpenError::sqlite(path, "setting cache_size"))?;
        // A sort too big for memory (building the indexes a rebuild set
        // aside) may use a helper thread, so the build uses the second core.
        writer
            .pragma_update(None, "threads", 2)
            .map_err(OpenError::sqlite(path, "setting threads"))?;
        let checkpointer = Checkpointer::start(path, &mut writer, Thresholds::DEFAULT)?;
        Ok(Connections {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            _checkpointer: checkpointer,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `job` on the writer connection. Blocking: call from a blocking task.
    pub(crate) fn write<T>(&self, job: impl FnOnce(&mut Connection) -> T) -> T {
        job(&mut lock(&self.writer))
    }

    /// Runs `job` on a read connection. Blocking: call from a blocking task.
    pub(crate) fn read<T, E>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, DbError<E>>,
    ) -> Result<T, DbError<E>> {
        let idle = lock(&self.readers).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.open_reader()?,
        };
        let result = job(&connection);
        let mut idle = lock(&self.readers);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(connection);
        }
        result
    }

    fn open_reader(&self) -> Result<Connection, rusqlite::Error> {
        let connection = open_existing(&self.path)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        keep_plans(&connection)?;
        // A guard against a read path that writes by mistake.
        connection.pragma_update(None, "query_only", "ON")?;
        Ok(connection)
    }
}

/// Opens another connection to the file the writer opened (a reader, the
/// checkpoint thread's). No CREATE flag: a file deleted under us is an
/// error, not a new empty database.
pub(crate) fn open_existing(path: &Path) -> Result<Connection, rusqlite::Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(path, flags)?;
    // Rarely needed in WAL mode, but a connection can wait while another one
    // recovers the WAL index after a crash.
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

/// Turns on SQLite's query planner stability guarantee: a statement keeps
/// the plan it was prepared with, whatever values are bound to it later.
///
/// Without it SQLite may mark a plan as depending on a bound value, and then
/// clearing the bindings (which rusqlite's statement cache does whenever a
/// statement goes back to it) expires the statement, so that its next use
/// compiles it again: a hidden parse and plan per query. The append's version
/// check was one, compiled afresh on every append, a visible share of
/// `ticketd`'s CPU under write load. Our statements are point lookups and index range
/// scans whose plans never depend on the value looked up, so nothing is given
/// up.
fn keep_plans(connection: &Connection) -> Result<(), rusqlite::Error> {
    connection.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Switches the file to WAL. On a new file the switch needs an exclusive lock,
/// and SQLite answers `SQLITE_BUSY` at once, without its busy handler, when
/// another connection is opening the same new file (waiting could deadlock):
/// so wait here, within the same budget as any other lock.
fn set_wal(connection: &Connection) -> Result<String, rusqlite::Error> {
    let started = std::time::Instant::now();
    loop {
        match connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}
