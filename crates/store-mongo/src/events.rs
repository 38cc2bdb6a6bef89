//! The event store on the `events` and `counters` collections.
//!
//! An append is one multi-document transaction: read the stream's version,
//! take positions from the `counters` document (`$inc` by the number of
//! events), insert the events with `_id` = position, commit with write concern
//! majority. Two appenders always write the counter document, so the server's
//! write-conflict detection serialises them: the loser runs again and sees the
//! winner's commit. Positions are therefore gap-free and in commit order (no
//! position becomes visible before a lower one). `_id` = position adds a
//! second guard: two transactions that took the same positions can never both
//! commit.
//!
//! Appends through one store (all its clones) queue on an async mutex before
//! their transaction ([`AppendTurn`]). Every append writes the one counter document, so on the
//! server appends commit one at a time whatever the client does; concurrent
//! appends from one process would only abort each other and retry. Queueing
//! loses no throughput the server could give and wastes no round trips;
//! appends from other processes
//! still meet the server's write-conflict detection. (It also keeps the
//! in-memory test server correct for in-process concurrency: jongodb checks
//! commit-time conflicts without a lock, so two racing commits can both
//! succeed there.) The queue is bounded: an append waits at most
//! `bounds::APPEND_QUEUE_WAIT` for its turn, and when
//! `bounds::APPEND_QUEUE_MAX` appends already wait, one more is answered
//! `Unavailable` at once; so a commit that does not return never holds every
//! other append behind it, and the whole append (queue included) ends within
//! `bounds::OPERATION_DEADLINE`.
//!
//! A commit whose outcome is unknown (`txn::Settled::Unknown`: the reply was
//! lost, the server stopped answering, a write concern timeout) is found out
//! by reading the append's events by their ids (the unique `event_id` index,
//! majority read concern). Found: the append succeeded, and answers with the
//! events as stored. Not found: the transaction runs again. That is safe
//! because the two attempts exclude each other: they insert the same event
//! ids under a unique index (and the same stream version and counter), so at
//! most one of them can ever commit; and the new attempt runs on the same
//! session, on which the server aborts the earlier transaction if it is still
//! open. When the new attempt then meets a taken event id, a moved stream
//! version or a taken idempotency key, that may be the earlier attempt's
//! commit: the events are looked up again before anything is reported. Only
//! a proven non-commit becomes an error; when the server cannot be asked in
//! time, the answer is `Unavailable`, saying the outcome is unknown. So a
//! retried append never stores its events twice (a note is never added
//! twice), and a caller is never told "failed" about an append that
//! happened.
//!
//! Reads: by position on `_id`, one ticket's stream and the whole store by
//! (ticket id, version) on the unique `ticket_version` index, each a range
//! scan of its index in the index's order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use eventstore::{EventStore, NewEvent, Payload, Position, RecordedEvent, StoreError};
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::{Hint, ReadConcern, ReturnDocument};
use mongodb::{ClientSession, Collection};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;
use uuid::Uuid;

use crate::bounds::{self, APPEND_QUEUE_MAX, APPEND_QUEUE_WAIT, OPERATION_DEADLINE};
use crate::codec::{self, Fields, event};
use crate::error::{DbError, is_duplicate_in};
use crate::txn::{self, Settled, Transaction};
use crate::{Inner, MongoStore};

type Result<T, E = DbError<StoreError>> = std::result::Result<T, E>;

/// The `counters` document that holds the newest position.
pub(crate) const EVENTS_COUNTER: &str = "events";

/// Index names from `migrations/mongodb/0001_events.json`.
const TICKET_VERSION_INDEX: &str = "ticket_version";
const EVENT_ID_INDEX: &str = "event_id";
const POSITION_INDEX: &str = "_id_";
/// From `migrations/mongodb/0005_idempotency_keys.json`: unique, partial.
const IDEMPOTENCY_KEY_INDEX: &str = "idempotency_key";
/// The top-level field of an append's first event that records its key.
const IDEMPOTENCY_KEY: &str = "idempotency_key";

/// A read's cursor batch: whole pages for the projector's usual batch sizes,
/// bounded so one batch stays well inside a 16 MiB reply.
const MAX_BATCH: usize = 1000;

fn corrupt(what: String) -> DbError<StoreError> {
    DbError::Corrupt(what)
}

/// The appends' turn: an async mutex (fair: first come, first served) with
/// a bounded wait and a bounded number of waiters (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct AppendTurn {
    turn: Mutex<()>,
    waiting: AtomicUsize,
}

/// Counts a waiter while it waits, cancelled or not.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AppendTurn {
    /// The turn, once the appends before this one are done; `Unavailable`
    /// at once when too many wait, or after [`APPEND_QUEUE_WAIT`] (or at
    /// `deadline`, if sooner).
    async fn take(&self, deadline: Instant) -> Result<MutexGuard<'_, ()>> {
        if let Ok(turn) = self.turn.try_lock() {
            return Ok(turn);
        }
        let ahead = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if ahead >= APPEND_QUEUE_MAX {
            return Err(DbError::Unavailable(format!(
                "{ahead} appends already wait for their turn (at most {APPEND_QUEUE_MAX}); \
                 MongoDB is not keeping up or not answering"
            )));
        }
        let by = deadline.min(Instant::now() + APPEND_QUEUE_WAIT);
        tokio::time::timeout_at(by, self.turn.lock())
            .await
            .map_err(|_| {
                DbError::Unavailable(format!(
                    "the appends before this one did not finish within {APPEND_QUEUE_WAIT:?}; \
                     MongoDB is slow or not answering"
                ))
            })
    }
}

async fn stream_version(
    events: &Collection<Document>,
    ticket: &str,
    session: &mut ClientSession,
) -> Result<u64> {
    let newest = events
        .find_one(doc! { event::TICKET_ID: ticket })
        .sort(doc! { event::VERSION: -1 })
        .projection(doc! { event::VERSION: 1 })
        .session(session)
        .await?;
    match newest {
        Some(newest) => Fields::new("events", &newest)
            .u64(event::VERSION)
            .map_err(corrupt),
        None => Ok(0),
    }
}

/// The newest position: the highest `_id` in `events` (one step down the
/// `_id` index). Not the counter: the head says what a read will find, and a
/// server may make a transaction's writes visible one document at a time
/// (jongodb does); the events are the truth.
pub(crate) async fn head(events: &Collection<Document>) -> Result<Position> {
    let newest = events
        .find_one(doc! {})
        .sort(doc! { event::POSITION: -1 })
        .projection(doc! { event::POSITION: 1 })
        .await?;
    match newest {
        Some(newest) => Fields::new("events", &newest)
            .u64(event::POSITION)
            .map_err(corrupt),
        None => Ok(0),
    }
}

async fn read(
    events: &Collection<Document>,
    filter: Document,
    sort: Document,
    limit: Option<i64>,
) -> Result<Vec<RecordedEvent>> {
    read_with(events.find(filter).sort(sort), limit).await
}

async fn read_with(
    mut find: mongodb::action::Find<'_, Document>,
    limit: Option<i64>,
) -> Result<Vec<RecordedEvent>> {
    if let Some(limit) = limit {
        let batch = u32::try_from(limit.min(MAX_BATCH as i64)).unwrap_or(1);
        find = find.limit(limit).batch_size(batch);
    }
    let documents: Vec<Document> = find.await?.try_collect().await?;
    documents
        .iter()
        .map(|document| codec::read_event(document).map_err(corrupt))
        .collect()
}

/// Events strictly after `after` in (ticket id, version) order: a range on
/// the ticket id plus a tie-break on the version, so the read is one range
/// scan of the `ticket_version` index in its own order (no sort step).
fn by_ticket_filter(after: Option<(Uuid, u64)>) -> Document {
    let Some((ticket_id, version)) = after else {
        return Document::new();
    };
    let ticket_id = codec::id(ticket_id);
    doc! {
        event::TICKET_ID: { "$gte": &ticket_id },
        "$or": [
            { event::TICKET_ID: { "$gt": &ticket_id } },
            { event::VERSION: { "$gt": codec::clamp(version) } },
        ],
    }
}

impl MongoStore {
    async fn append_in(
        &self,
        ticket_id: Uuid,
        expected_version: u64,
        events: &[NewEvent],
    ) -> Result<Vec<RecordedEvent>> {
        let inner = &self.inner;
        let deadline = Instant::now() + OPERATION_DEADLINE;
        let _turn = inner.append_turn.take(deadline).await?;
        let append = Append {
            inner,
            ticket_id,
            expected_version,
            events,
        };
        let mut txn = Transaction::start(inner, deadline).await?;
        // Why an earlier attempt's outcome is unknown, once one's is: from
        // then on that attempt may have committed, whatever a later one says.
        let mut uncertain: Option<String> = None;
        loop {
            match append.attempt(&mut txn).await {
                Ok(Settled::Committed(recorded)) => return Ok(recorded),
                Ok(Settled::Again) => continue,
                Ok(Settled::Unknown { why }) => {
                    tracing::warn!(
                        ticket_id = %ticket_id,
                        "the commit of an append went unanswered ({why}); looking its events up"
                    );
                    uncertain = Some(why);
                }
                Err(error) => {
                    let Some(why) = &uncertain else {
                        return Err(error);
                    };
                    // This failure may be the earlier attempt's commit.
                    return match append.lookup(txn.deadline(), why).await? {
                        Some(recorded) => Ok(recorded),
                        None if proves_no_commit(&error) => Err(error),
                        None => Err(append.unknown(why, &error.into())),
                    };
                }
            }
            if let Some(recorded) = append
                .lookup(txn.deadline(), uncertain.as_deref().unwrap_or_default())
                .await?
            {
                return Ok(recorded);
            }
            // Not committed yet: run again (see the module doc).
        }
    }
}

/// Whether an append's refusal, found after an earlier attempt's outcome was
/// unknown and a lookup found none of its events, proves that no attempt
/// committed: another append's events hold the stream version or the key,
/// and an earlier attempt, holding the same, can then never commit.
fn proves_no_commit(error: &DbError<StoreError>) -> bool {
    matches!(
        error,
        DbError::Refused(StoreError::Conflict { .. } | StoreError::IdempotencyKeyTaken { .. })
    )
}

/// One append: what the attempts write, and the lookup of its outcome.
struct Append<'a> {
    inner: &'a Inner,
    ticket_id: Uuid,
    expected_version: u64,
    events: &'a [NewEvent],
}

impl Append<'_> {
    /// One attempt, settled.
    async fn attempt(&self, txn: &mut Transaction<'_>) -> Result<Settled<Vec<RecordedEvent>>> {
        let by = txn.attempt_deadline();
        let session = txn.begin().await?;
        let outcome = txn::until(
            by,
            "an append",
            append_attempt(
                &self.inner.events,
                &self.inner.counters,
                session,
                self.ticket_id,
                self.expected_version,
                self.events,
            ),
        )
        .await;
        txn.settle(outcome).await
    }

    /// The append's events as stored, if an attempt committed: all of them,
    /// on this ticket at the versions this append gives them. `None`: none
    /// is stored (majority read). Events with these ids stored otherwise are
    /// ids reused by another append: `Corrupt`, as an attempt says. A server
    /// that does not answer by `deadline`: `Unavailable`, outcome unknown.
    async fn lookup(&self, deadline: Instant, why: &str) -> Result<Option<Vec<RecordedEvent>>> {
        let ids: Vec<String> = self
            .events
            .iter()
            .map(|new| codec::id(new.event_id))
            .collect();
        let find = self
            .inner
            .events
            .find(doc! { event::EVENT_ID: { "$in": ids } })
            .sort(doc! { event::POSITION: 1 })
            .hint(Hint::Name(EVENT_ID_INDEX.to_owned()))
            .read_concern(ReadConcern::majority());
        let found = match txn::until(
            deadline,
            "the lookup of an append's events",
            read_with(find, None),
        )
        .await
        {
            Ok(found) => found,
            Err(error) => return Err(self.unknown(why, &error.into())),
        };
        if found.is_empty() {
            return Ok(None);
        }
        let ours = found.len() == self.events.len()
            && found
                .iter()
                .zip(self.events)
                .zip(1..)
                .all(|((stored, new), offset)| {
                    stored.event_id == new.event_id
                        && stored.ticket_id == self.ticket_id
                        && stored.version == self.expected_version + offset
                });
        if ours {
            tracing::info!(
                ticket_id = %self.ticket_id,
                "an append whose commit went unanswered had committed"
            );
            Ok(Some(found))
        } else {
            Err(corrupt(format!(
                "an event of this append to ticket {} reuses a stored event id \
                 (event ids must be unique)",
                self.ticket_id
            )))
        }
    }

    /// The failure of an append whose outcome could not be found out.
    fn unknown(&self, why: &str, error: &StoreError) -> DbError<StoreError> {
        DbError::Unavailable(format!(
            "the outcome of an append to ticket {} is unknown: its commit went unanswered \
             ({why}) and it could not be found out in time ({error}); the events may be stored",
            self.ticket_id
        ))
    }
}

/// One attempt of an append, inside the transaction of `session`.
async fn append_attempt(
    events_collection: &Collection<Document>,
    counters: &Collection<Document>,
    session: &mut ClientSession,
    ticket_id: Uuid,
    expected_version: u64,
    events: &[NewEvent],
) -> Result<Vec<RecordedEvent>> {
    let ticket = codec::id(ticket_id);
    let actual = stream_version(events_collection, &ticket, session).await?;
    if actual != expected_version {
        return Err(DbError::Refused(StoreError::Conflict {
            ticket_id,
            expected: expected_version,
            actual,
        }));
    }
    let count = codec::int(events.len() as u64, "event count").map_err(corrupt)?;
    let counter = counters
        .find_one_and_update(
            doc! { "_id": EVENTS_COUNTER },
            doc! { "$inc": { "position": count } },
        )
        .upsert(true)
        .return_document(ReturnDocument::After)
        .session(&mut *session)
        .await?
        .ok_or_else(|| corrupt("the events counter is missing after its upsert".into()))?;
    let last = Fields::new("counters", &counter)
        .u64("position")
        .map_err(corrupt)?;
    let first = (last + 1)
        .checked_sub(events.len() as u64)
        .ok_or_else(|| corrupt(format!("the events counter ({last}) went backwards")))?;
    let mut documents = events
        .iter()
        .zip(0..)
        .map(|(new, offset)| {
            codec::event_document(
                first + offset,
                ticket_id,
                expected_version + 1 + offset,
                new,
            )
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(corrupt)?;
    // The key is recorded (unique) on the append's first event only.
    let key = events
        .first()
        .and_then(|first| first.metadata.idempotency_key.clone());
    if let (Some(key), Some(document)) = (&key, documents.first_mut()) {
        document.insert(IDEMPOTENCY_KEY, key.as_str());
    }
    // Decoded from the documents as inserted: exactly what reads return.
    let recorded = documents
        .iter()
        .map(codec::read_event)
        .collect::<Result<Vec<_>, String>>()
        .map_err(corrupt)?;
    match events_collection
        .insert_many(documents)
        .session(&mut *session)
        .await
    {
        Ok(_) => Ok(recorded),
        // First: the key is the client's text, and may spell an index name.
        Err(e) if is_duplicate_in(&e, IDEMPOTENCY_KEY_INDEX) => {
            Err(DbError::Refused(StoreError::IdempotencyKeyTaken {
                key: key.unwrap_or_default(),
            }))
        }
        // Another append took the version or the positions and committed
        // after this transaction's snapshot: run again, and the fresh
        // snapshot answers (a conflict, or new positions).
        Err(e)
            if is_duplicate_in(&e, TICKET_VERSION_INDEX) || is_duplicate_in(&e, POSITION_INDEX) =>
        {
            Err(DbError::Retry(format!(
                "appends kept colliding with concurrent appends: {e}"
            )))
        }
        Err(e) if is_duplicate_in(&e, EVENT_ID_INDEX) => Err(corrupt(format!(
            "an event of this append to ticket {ticket_id} reuses a stored event id \
             (event ids must be unique): {e}"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl EventStore for MongoStore {
    async fn append_nonempty(
        &self,
        ticket_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let recorded = self.append_in(ticket_id, expected_version, &events).await?;
        self.inner.wakeups.notify();
        Ok(recorded)
    }

    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        let read = read(
            &self.inner.events,
            doc! { event::TICKET_ID: codec::id(ticket_id) },
            doc! { event::VERSION: 1 },
            None,
        );
        Ok(bounds::read("a ticket's events", read).await?)
    }

    async fn read_idempotent(&self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        // The filter repeats the index's partial filter expression, so the
        // planner may use the index; at most one event matches, hence no sort.
        let find = self
            .inner
            .events
            .find(doc! { IDEMPOTENCY_KEY: { "$eq": key, "$type": "string" } })
            .hint(Hint::Name(IDEMPOTENCY_KEY_INDEX.to_owned()));
        let mut found = bounds::read("an idempotency key", read_with(find, Some(1))).await?;
        Ok(found.pop())
    }

    async fn read_all_nonempty(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let read = read(
            &self.inner.events,
            doc! { event::POSITION: { "$gt": codec::clamp(after) } },
            doc! { event::POSITION: 1 },
            Some(codec::clamp(limit as u64)),
        );
        Ok(bounds::read("events by position", read).await?)
    }

    async fn read_by_ticket_nonempty(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let find = self
            .inner
            .events
            .find(by_ticket_filter(after))
            .sort(doc! { event::TICKET_ID: 1, event::VERSION: 1 })
            .hint(Hint::Name(TICKET_VERSION_INDEX.to_owned()));
        let read = read_with(find, Some(codec::clamp(limit as u64)));
        Ok(bounds::read("events by ticket", read).await?)
    }

    async fn head(&self) -> Result<Position, StoreError> {
        Ok(bounds::read("the head", head(&self.inner.events)).await?)
    }

    async fn redact(&self, ticket_id: Uuid, version: u64, data: Payload) -> Result<(), StoreError> {
        let events = &self.inner.events;
        let serde_json::Value::Object(fields) = data.to_value() else {
            return Err(StoreError::Corrupt(format!(
                "a redacted payload for {ticket_id} version {version} that is not an object"
            )));
        };
        let filter = doc! {
            codec::event::TICKET_ID: codec::id(ticket_id),
            codec::event::VERSION: codec::clamp(version),
        };
        let update = doc! { "$set": { codec::event::DATA: codec::to_document(&fields) } };
        let updated = bounds::read("an event's redaction", async {
            Ok::<_, DbError<StoreError>>(events.update_one(filter, update).await?)
        })
        .await?;
        if updated.matched_count != 1 {
            return Err(StoreError::Corrupt(format!(
                "no event {ticket_id} version {version} to redact"
            )));
        }
        Ok(())
    }

    async fn wait_for_events(
        &self,
        after: Position,
        max_wait: Duration,
    ) -> Result<bool, StoreError> {
        let events = &self.inner.events;
        Ok(self
            .inner
            .wakeups
            .wait(after, max_wait, || bounds::read("the head", head(events)))
            .await?)
    }
}
