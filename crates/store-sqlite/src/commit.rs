//! Group commit: appends that arrive while a commit runs wait for it, then go
//! together in the next transaction.
//!
//! With `synchronous=FULL` each commit waits for an fsync of the WAL, which
//! caps one-transaction-per-append near the disk's sync rate (a few thousand
//! a second at best) however many clients wait. Here an append joins a queue;
//! if no commit is running, it starts one on the blocking pool (the leader).
//! The leader drains the queue (bounded) and runs those appends in one
//! `BEGIN IMMEDIATE` transaction, each inside its own savepoint: an append
//! that is refused (a version conflict, a taken idempotency key, a duplicate
//! event id) rolls back to its savepoint and gets its refusal, while the
//! others commit. Every caller is answered only after the commit returned, so
//! an acknowledged append is as durable as before; one fsync now covers the
//! whole batch. Then the leader takes whatever queued up during that commit,
//! and stops when the queue is empty. A lone append costs what it did before
//! (one hop to the blocking pool and back), and nothing ever waits for
//! company: batches form only from appends that were waiting anyway.
//!
//! Positions stay gap-free and in commit order: the batch holds the file's
//! write lock from its first read, and each append takes the positions after
//! the ones before it. If the transaction as a whole fails (the lock was not
//! granted in time, an I/O error), each append of the batch is tried again
//! alone, so each caller gets its own outcome rather than a neighbour's error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use eventstore::{NewEvent, Position, RecordedEvent, StoreError};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::connection::Connections;
use crate::error::DbError;
use crate::events::{append_in, publish};

/// The most appends waiting for a batch. One more is refused at once
/// (`Unavailable`, which the API answers with 503 and `Retry-After`) rather
/// than queued behind a store that is not keeping up: a queue that only
/// grows ends in every caller timing out instead of some being told to
/// retry.
pub const APPEND_QUEUE_MAX: usize = 1024;
/// The most appends one transaction takes.
const MAX_BATCH_APPENDS: usize = 256;
/// The most events one transaction takes (an append is never split).
const MAX_BATCH_EVENTS: usize = 4096;

type Outcome = Result<Vec<RecordedEvent>, StoreError>;

/// One caller's append, waiting for its batch.
struct Request {
    ticket_id: Uuid,
    expected_version: u64,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Outcome>,
}

/// The append queue of one store (shared by its clones).
pub(crate) struct Committer {
    db: Arc<Connections>,
    head: Arc<watch::Sender<Position>>,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Request>,
    /// A leader is draining the queue; new appends just join it.
    draining: bool,
}

impl Committer {
    pub(crate) fn new(db: Arc<Connections>, head: Arc<watch::Sender<Position>>) -> Committer {
        Committer {
            db,
            head,
            queue: Mutex::new(Queue::default()),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent between statements; see `Leader`'s drop.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends through the next batch; answers after its commit.
    pub(crate) async fn append(
        self: &Arc<Self>,
        ticket_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut queue = self.queue();
            if queue.waiting.len() >= APPEND_QUEUE_MAX {
                return Err(StoreError::unavailable(std::io::Error::other(format!(
                    "{} appends already wait for the SQLite write lock (at most \
                     {APPEND_QUEUE_MAX}); retry shortly",
                    queue.waiting.len()
                ))));
            }
            queue.waiting.push_back(Request {
                ticket_id,
                expected_version,
                events,
                reply,
            });
            !std::mem::replace(&mut queue.draining, true)
        };
        if lead {
            let committer = Arc::clone(self);
            tokio::task::spawn_blocking(move || Leader(&committer).drain());
        }
        // Dropping this future does not undo the append: it is queued, and
        // commits (or not) like any other.
        answer.await.map_err(|_| {
            StoreError::unavailable(std::io::Error::other(
                "the SQLite append batch this append was in failed to finish",
            ))
        })?
    }
}

/// The leader of the moment, on a blocking thread.
struct Leader<'a>(&'a Committer);

impl Leader<'_> {
    /// Commits batches until the queue is empty.
    fn drain(&self) {
        while let Some(batch) = self.next_batch() {
            self.run(batch);
        }
    }

    /// The next batch, or `None` (and no longer draining) when none waits.
    fn next_batch(&self) -> Option<Vec<Request>> {
        let mut queue = self.0.queue();
        if queue.waiting.is_empty() {
            queue.draining = false;
            return None;
        }
        let mut batch = Vec::new();
        let mut events = 0;
        while batch.len() < MAX_BATCH_APPENDS && events < MAX_BATCH_EVENTS {
            let Some(request) = queue.waiting.pop_front() else {
                break;
            };
            events += request.events.len();
            batch.push(request);
        }
        Some(batch)
    }

    /// Commits one batch and answers its callers.
    fn run(&self, batch: Vec<Request>) {
        let db = &self.0.db;
        let outcomes = match db.write(|connection| commit(connection, &batch)) {
            Ok(outcomes) => outcomes,
            Err(error) if batch.len() == 1 => vec![Err(error.into())],
            Err(error) => {
                tracing::debug!(appends = batch.len(), error = ?error, "a batch failed as a whole; appending its members one by one");
                batch
                    .iter()
                    .map(|request| {
                        db.write(|connection| commit(connection, std::slice::from_ref(request)))
                            .map_err(StoreError::from)
                            .and_then(|mut one| one.pop().unwrap_or_else(|| Ok(Vec::new())))
                    })
                    .collect()
            }
        };
        // Published before answering, so a caller that reads the head after
        // its append returns never sees an older one.
        let newest = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok()?.last())
            .map(|event| event.position)
            .max();
        if let Some(newest) = newest {
            publish(&self.0.head, newest);
        }
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            // A caller that stopped waiting does not need its answer.
            let _ = request.reply.send(outcome);
        }
    }
}

impl Drop for Leader<'_> {
    /// A leader that panicked must not leave the queue marked as drained by
    /// nobody: the waiting appends are failed (their callers get an error)
    /// and the next append leads again.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.queue();
            queue.waiting.clear();
            queue.draining = false;
        }
    }
}

/// Appends `batch` in one write transaction, each append in its own
/// savepoint; commits once. `Err` only when the transaction as a whole failed
/// (then nothing was committed).
fn commit(
    connection: &mut Connection,
    batch: &[Request],
) -> Result<Vec<Outcome>, DbError<StoreError>> {
    // Appends are always synced, whatever a view transaction on this
    // connection set before (see `views::writing_derived`).
    connection.pragma_update(None, "synchronous", "FULL")?;
    let mut tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        if request.events.is_empty() {
            outcomes.push(Ok(Vec::new()));
            continue;
        }
        let savepoint = tx.savepoint()?;
        match append_in(
            &savepoint,
            request.ticket_id,
            request.expected_version,
            &request.events,
        ) {
            Ok(recorded) => {
                savepoint.commit()?;
                outcomes.push(Ok(recorded));
            }
            // This append's own fault: undo it alone (dropping a savepoint
            // rolls it back) and go on with the others.
            Err(refusal @ (DbError::Refused(_) | DbError::Corrupt(_))) => {
                drop(savepoint);
                outcomes.push(Err(refusal.into()));
            }
            Err(failure) => return Err(failure),
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ticket_id: Uuid, expected_version: u64, events: usize) -> Request {
        let event = || NewEvent::from(&domain::Event::TicketTriaged);
        Request {
            ticket_id,
            expected_version,
            events: (0..events).map(|_| event()).collect(),
            reply: oneshot::channel().0,
        }
    }

    /// A refused append in the middle of a batch is rolled back alone: its
    /// neighbours commit, with gap-free positions, in one transaction.
    #[test]
    fn a_refusal_rolls_back_only_its_own_append() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("t.db");
        let store = crate::SqliteStore::open(&path).expect("open");
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let batch = [
            request(a, 0, 2),
            // Two events, the second of which would fit; the version is wrong.
            request(b, 3, 2),
            request(c, 0, 1),
            // The same ticket as the first append, which this batch moved to 2.
            request(a, 2, 1),
        ];
        let outcomes = store
            .shared
            .db
            .write(|connection| commit(connection, &batch))
            .expect("the batch commits");
        let positions: Vec<Vec<Position>> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(recorded) => recorded.iter().map(|event| event.position).collect(),
                Err(_) => Vec::new(),
            })
            .collect();
        assert_eq!(positions, vec![vec![1, 2], vec![], vec![3], vec![4]]);
        assert!(matches!(
            outcomes[1],
            Err(StoreError::Conflict {
                expected: 3,
                actual: 0,
                ..
            })
        ));
        let stored: u64 = store
            .shared
            .db
            .write(|connection| crate::events::head(connection))
            .expect("head");
        assert_eq!(stored, 4, "what the answers say is what is stored");
    }

    /// A full database refuses appends as `Unavailable` (503, retry later),
    /// never as `Corrupt`, answers every caller queued behind them, writes
    /// none of them, and appends again on the same connection once there is
    /// room. `max_page_count` fails a write that needs one more page with
    /// `SQLITE_FULL`, as a full disk does (the black-box `disk_full` test
    /// fills a real filesystem).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_database_refuses_appends_as_unavailable_and_then_appends_again() {
        use eventstore::EventStore;
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = crate::SqliteStore::open(&dir.path().join("t.db")).expect("open");
        // Bigger than a page, so that every append needs new pages.
        let note = || {
            NewEvent::from(&domain::Event::NoteAdded {
                text: "x".repeat(10_000),
            })
        };
        store
            .append(Uuid::now_v7(), 0, vec![note()])
            .await
            .expect("append");
        let limit = |pages: Option<i64>| {
            store.shared.db.write(|connection| {
                let pages = match pages {
                    Some(pages) => pages,
                    None => {
                        // Full means no free pages either: migrations that
                        // replace tables leave some behind.
                        connection.execute_batch("VACUUM")?;
                        connection.query_row("PRAGMA page_count", [], |row| row.get(0))?
                    }
                };
                connection.pragma_update_and_check(None, "max_page_count", pages, |row| {
                    row.get::<_, i64>(0)
                })
            })
        };
        limit(None).expect("the database is full");
        let appends = |count: usize| {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..count {
                let store = store.clone();
                tasks.spawn(async move { store.append(Uuid::now_v7(), 0, vec![note()]).await });
            }
            tasks.join_all()
        };
        for outcome in appends(50).await {
            match outcome {
                Err(StoreError::Unavailable(error)) => {
                    assert!(error.to_string().contains("full"), "{error}");
                }
                other => panic!("an append on a full database: {other:?}"),
            }
        }
        assert_eq!(
            store.head().await.expect("head"),
            1,
            "nothing refused was written"
        );

        limit(Some(1_000_000)).expect("room again");
        let mut positions: Vec<Position> = appends(50)
            .await
            .into_iter()
            .map(|outcome| outcome.expect("an append once there is room")[0].position)
            .collect();
        positions.sort_unstable();
        assert_eq!(positions, (2..=51).collect::<Vec<_>>());
    }

    /// Many concurrent appends through the committer: every one is answered,
    /// and positions are gap-free across the batches they were grouped into.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_are_all_answered_with_gap_free_positions() {
        use eventstore::EventStore;
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = crate::SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let store = store.clone();
            tasks.spawn(async move {
                let event = NewEvent::from(&domain::Event::TicketTriaged);
                store.append(Uuid::now_v7(), 0, vec![event]).await
            });
        }
        let mut positions = Vec::new();
        while let Some(outcome) = tasks.join_next().await {
            let recorded = outcome.expect("task").expect("append");
            positions.extend(recorded.iter().map(|event| event.position));
        }
        positions.sort_unstable();
        assert_eq!(positions, (1..=200).collect::<Vec<_>>());
    }
}
