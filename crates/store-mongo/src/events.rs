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
//! their transaction. Every append writes the one counter document, so on the
//! server appends commit one at a time whatever the client does; concurrent
//! appends from one process would only abort each other and retry. Queueing
//! loses no throughput the server could give and wastes no round trips;
//! appends from other processes
//! still meet the server's write-conflict detection. (It also keeps the
//! in-memory test server correct for in-process concurrency: jongodb checks
//! commit-time conflicts without a lock, so two racing commits can both
//! succeed there.)
//!
//! Reads: by position on `_id`, one ticket's stream and the whole store by
//! (ticket id, version) on the unique `ticket_version` index, each a range
//! scan of its index in the index's order.

use std::time::Duration;

use async_trait::async_trait;
use eventstore::{EventStore, NewEvent, Position, RecordedEvent, StoreError};
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::{Hint, ReturnDocument};
use mongodb::{ClientSession, Collection};
use uuid::Uuid;

use crate::MongoStore;
use crate::codec::{self, Fields, event};
use crate::error::{DbError, is_duplicate_in};
use crate::txn::Transaction;

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
        let _turn = inner.append_turn.lock().await;
        let mut txn = Transaction::start(&inner.client, &inner.txn).await?;
        loop {
            let session = txn.begin().await?;
            let outcome = append_attempt(
                &inner.events,
                &inner.counters,
                session,
                ticket_id,
                expected_version,
                events,
            )
            .await;
            if let Some(recorded) = txn.settle(outcome).await? {
                return Ok(recorded);
            }
        }
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
    async fn append(
        &self,
        ticket_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let recorded = self.append_in(ticket_id, expected_version, &events).await?;
        self.inner.wakeups.notify();
        Ok(recorded)
    }

    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(read(
            &self.inner.events,
            doc! { event::TICKET_ID: codec::id(ticket_id) },
            doc! { event::VERSION: 1 },
            None,
        )
        .await?)
    }

    async fn read_idempotent(&self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        // The filter repeats the index's partial filter expression, so the
        // planner may use the index; at most one event matches, hence no sort.
        let find = self
            .inner
            .events
            .find(doc! { IDEMPOTENCY_KEY: { "$eq": key, "$type": "string" } })
            .hint(Hint::Name(IDEMPOTENCY_KEY_INDEX.to_owned()));
        let mut found = read_with(find, Some(1)).await?;
        Ok(found.pop())
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(read(
            &self.inner.events,
            doc! { event::POSITION: { "$gt": codec::clamp(after) } },
            doc! { event::POSITION: 1 },
            Some(codec::clamp(limit as u64)),
        )
        .await?)
    }

    async fn read_by_ticket(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let find = self
            .inner
            .events
            .find(by_ticket_filter(after))
            .sort(doc! { event::TICKET_ID: 1, event::VERSION: 1 })
            .hint(Hint::Name(TICKET_VERSION_INDEX.to_owned()));
        Ok(read_with(find, Some(codec::clamp(limit as u64))).await?)
    }

    async fn head(&self) -> Result<Position, StoreError> {
        Ok(head(&self.inner.events).await?)
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
            .wait(after, max_wait, || head(events))
            .await?)
    }
}
