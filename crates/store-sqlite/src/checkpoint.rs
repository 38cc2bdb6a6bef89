//! Copying the write-ahead log back into the database file (checkpointing)
//! on a thread of its own, off the writer's path.
//!
//! SQLite's own auto-checkpoint runs inside the commit that takes the log
//! past 1,000 pages, on the writer connection: that commit copies every page
//! the log holds into the database file and syncs the file before it
//! returns, while the writer (and with it every append and view commit
//! queued behind it) waits: under write load a share of the CPU that all
//! lands on the one writer (bench/HISTORY.md has the figures).
//!
//! Here the writer's WAL hook, called after each commit, looks how much of
//! the log is not yet copied (a `NOOP` checkpoint: it reads the log's index
//! and takes no lock) and, from [`Thresholds::step`] pages on, wakes a
//! [`Checkpointer`] thread. That thread, on its own connection, runs PASSIVE
//! checkpoints: they copy what no reader still needs, never block a writer
//! or a reader, and give way (`SQLITE_BUSY`, ignored) to a checkpoint
//! another connection is running.
//!
//! The log can only start again from its beginning (instead of growing) when
//! a write transaction begins with every page of it copied. A busy writer
//! may never meet that moment between the background passes, so the hook
//! keeps a backstop: at [`Thresholds::backstop`] pages it checkpoints on the
//! writer, as SQLite's default hook does at 1,000. By then the background
//! passes have copied nearly everything, so the writer copies only the rest,
//! and its next write starts the log again. The log stays bounded.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;

use crate::connection::open_existing;
use crate::error::OpenError;

/// The counter of checkpoints this process ran on the file, labelled `by`
/// the background `thread` or the `writer` (its backstop). A `writer` count
/// that keeps growing means the thread cannot finish the log, most likely
/// because a long read keeps its oldest pages in use.
pub const CHECKPOINTS: &str = "sqlite_checkpoints_total";

/// When the writer's hook acts, in pages of the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// Pages waiting to be copied that wake the background thread.
    pub step: u32,
    /// Log size at which the writer checkpoints itself.
    pub backstop: u32,
}

impl Thresholds {
    /// The background thread copies in steps of SQLite's default
    /// auto-checkpoint (smaller steps copy the pages that every commit
    /// touches more often, which costs CPU per command for nothing). The
    /// writer's backstop is 16,000 pages (64 MiB at 4 KiB), well above one
    /// bulk-import transaction (about 6,000 pages), so that the background
    /// thread copies a few of those while the writer goes on, and the writer
    /// copies only the last.
    pub(crate) const DEFAULT: Thresholds = Thresholds {
        step: 1_000,
        backstop: 16_000,
    };
}

/// What the writer's hook and the checkpoint thread share.
#[derive(Debug, Default)]
struct Shared {
    /// Background passes that ran, and checkpoints the writer ran itself
    /// (also counted in [`CHECKPOINTS`], for ops).
    passes: AtomicU64,
    backstops: AtomicU64,
    state: Mutex<Wake>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Wake {
    due: bool,
    stop: bool,
}

/// The background checkpoint thread of one open store. Dropping it stops
/// the thread (after the pass in flight, if any).
#[derive(Debug)]
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the thread's own connection to `path`, starts the thread, and
    /// installs the hook that wakes it on `writer` (replacing SQLite's
    /// default auto-checkpoint).
    pub(crate) fn start(
        path: &Path,
        writer: &mut Connection,
        thresholds: Thresholds,
    ) -> Result<Self, OpenError> {
        let connection = open_existing(path)
            .map_err(OpenError::sqlite(path, "opening the checkpoint connection"))?;
        // A connection finds the log when it first reads the file; until
        // then a checkpoint on it has no log to copy (SQLite answers -1).
        connection
            .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(OpenError::sqlite(
                path,
                "reading the schema for the checkpointer",
            ))?;
        let shared = Arc::new(Shared::default());
        let hook = shared.clone();
        let Thresholds { step, backstop } = thresholds;
        writer
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
                if u32::try_from(pages).unwrap_or(0) >= backstop {
                    hook.backstops.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(CHECKPOINTS, "by" => "writer").increment(1);
                    // The result is ignored as in SQLite's default hook: busy
                    // means a checkpoint is running elsewhere; the next commit
                    // tries again.
                    let _ = wal.checkpoint();
                    return Ok(());
                }
                // How much of the log is copied: NOOP only reads the log's
                // index, taking no lock.
                if let Ok((log, copied)) = wal.checkpoint_v2(CheckpointMode::NOOP)
                    && u32::try_from(log - copied).unwrap_or(0) >= step
                {
                    hook.wake_up();
                }
                Ok(())
            }))
            .map_err(OpenError::sqlite(path, "installing the WAL hook"))?;
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn({
                let shared = shared.clone();
                move || run(&connection, &shared)
            })
            .map_err(|source| OpenError::CheckpointThread {
                path: path.to_owned(),
                source,
            })?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn wake_up(&self) {
        let mut state = lock(&self.state);
        if !state.due {
            state.due = true;
            self.wake.notify_one();
        }
    }
}

fn run(connection: &Connection, shared: &Shared) {
    // The failure last logged as a warning, until a pass succeeds again.
    let mut failing: Option<String> = None;
    loop {
        {
            let mut state = lock(&shared.state);
            while !state.due && !state.stop {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
            state.due = false;
        }
        match connection.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok(_) => {
                shared.passes.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(CHECKPOINTS, "by" => "thread").increment(1);
                if failing.take().is_some() {
                    tracing::info!("background checkpoints run again");
                }
            }
            // Busy: another connection is checkpointing; the next wake tries
            // again.
            Err(error) if is_busy(&error) => {
                tracing::debug!(%error, "background checkpoint did not run");
            }
            // An I/O error, such as a full disk (the file cannot grow by the
            // pages the log holds): the log keeps them, and stays readable
            // and appendable while it has room, so nothing is lost; the next
            // wake (a later commit) tries again, and the writer's backstop
            // too. Worth a warning, once per kind, since the log grows
            // meanwhile; never a retry loop of its own, which on a full disk
            // would only spin.
            Err(error) => {
                let message = error.to_string();
                if failing.as_deref() != Some(&message) {
                    tracing::warn!(%error, "background checkpoint failed; the log keeps its pages and the next commit tries again");
                }
                failing = Some(message);
            }
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    const SMALL: Thresholds = Thresholds {
        step: 100,
        backstop: 1_000,
    };

    fn writer(path: &Path) -> Connection {
        let writer = Connection::open(path).expect("open");
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .expect("WAL");
        writer
            .execute_batch("CREATE TABLE t (x BLOB)")
            .expect("table");
        writer
    }

    /// A file in WAL mode with one table, its writer, and a checkpointer
    /// with small thresholds.
    fn started() -> (tempfile::TempDir, Connection, Checkpointer) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let mut writer = writer(&path);
        let checkpointer = Checkpointer::start(&path, &mut writer, SMALL).expect("start");
        (dir, writer, checkpointer)
    }

    /// One transaction of about `pages` pages of 4 KiB.
    fn write_pages(writer: &Connection, pages: u32) {
        writer
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO t SELECT randomblob(3900) FROM n",
                [pages],
            )
            .expect("insert");
    }

    fn log_pages(path: &Path) -> u64 {
        let log = std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
        log / 4096
    }

    fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_background_thread_copies_the_log_and_the_writer_restarts_it() {
        let (dir, writer, checkpointer) = started();
        let path = dir.path().join("t.db");
        let shared = checkpointer.shared.clone();
        for round in 1..=20_u64 {
            write_pages(&writer, 150);
            eventually("a background pass", || {
                shared.passes.load(Ordering::Relaxed) >= round
            });
        }
        assert_eq!(
            shared.backstops.load(Ordering::Relaxed),
            0,
            "the writer never had to checkpoint itself"
        );
        // 20 x 150 pages went through the log, which started again from its
        // beginning each time the thread had copied all of it: its file
        // never grew much beyond two transactions.
        assert!(log_pages(&path) < 400, "log of {} pages", log_pages(&path));
    }

    #[test]
    fn past_the_backstop_the_writer_checkpoints_itself() {
        let (_dir, writer, checkpointer) = started();
        write_pages(&writer, 1_200);
        let shared = &checkpointer.shared;
        assert_eq!(shared.backstops.load(Ordering::Relaxed), 1);
        assert_eq!(shared.passes.load(Ordering::Relaxed), 0);
        // NOOP reads how much is copied without copying anything.
        let (log, copied) = writer
            .wal_checkpoint_v2(None::<&str>, CheckpointMode::NOOP)
            .expect("status");
        assert!(log >= 1_200, "the log holds the transaction: {log} pages");
        assert_eq!(copied, log, "the writer's checkpoint copied the whole log");
    }

    #[test]
    fn dropping_it_stops_the_thread() {
        let (_dir, _writer, checkpointer) = started();
        let shared = checkpointer.shared.clone();
        drop(checkpointer);
        assert_eq!(Arc::strong_count(&shared), 2, "the hook's and this one");
    }
}
