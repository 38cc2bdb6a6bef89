//! The event store's contract, independent of any database.
//!
//! This crate owns the event envelope ([`NewEvent`] going in, [`RecordedEvent`]
//! coming out, its [`Payload`] kept as stored JSON text), the codec between domain events and stored payloads (with the
//! upcasting hook for old schema versions), and the [`EventStore`] trait every
//! backend implements. Its semantics (atomic appends, optimistic concurrency on
//! the per-ticket version, a gap-free global position in commit order, tailing)
//! are pinned by the `conformance` crate's suite, run against every backend.

mod codec;
mod envelope;
mod forwarding;
mod payload;
mod wait;

pub use codec::{DecodeError, personal_fields};
pub use envelope::{Metadata, NewEvent, RecordedEvent};
pub use forwarding::Forwarding;
pub use payload::Payload;
pub use wait::wait_for_head;

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

/// A place in the global order of all events: 1 for the first event ever
/// appended, then gap-free and in commit order. 0 means "before everything".
pub type Position = u64;

/// What a caller of the store must do about a failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the ticket first; reload and decide again.
    #[error("ticket {ticket_id} is at version {actual}, not the expected {expected}")]
    Conflict {
        ticket_id: Uuid,
        expected: u64,
        actual: u64,
    },
    /// An append carried an idempotency key that an earlier append already
    /// recorded; nothing was appended. Look the key up with
    /// [`EventStore::read_idempotent`] and answer with what it did.
    #[error("the idempotency key {key:?} is already recorded")]
    IdempotencyKeyTaken { key: String },
    /// The database could not be reached or failed; the operation may be retried.
    #[error("event store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data breaks an invariant; retrying will not help.
    #[error("event store data is corrupt: {0}")]
    Corrupt(String),
    /// The ticket's customer was erased (its key destroyed): nothing more
    /// is recorded for it; retrying will not help.
    #[error("ticket {ticket_id}'s customer was erased; nothing more is recorded for it")]
    Erased { ticket_id: Uuid },
}

impl StoreError {
    pub fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable(Box::new(error))
    }
}

/// The failures a backend reports alike under either contract, events
/// ([`StoreError`]) or views (readmodel's `ViewError`): so a backend maps its
/// own database errors once, generically, for both.
pub trait ContractError {
    /// The database could not be reached or failed; the operation may be retried.
    fn unavailable_boxed(error: Box<dyn std::error::Error + Send + Sync>) -> Self;
    /// Stored data breaks an invariant; retrying will not help.
    fn corrupt(what: String) -> Self;
}

impl ContractError for StoreError {
    fn unavailable_boxed(error: Box<dyn std::error::Error + Send + Sync>) -> Self {
        StoreError::Unavailable(error)
    }

    fn corrupt(what: String) -> Self {
        StoreError::Corrupt(what)
    }
}

/// An append-only store of ticket events.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// Appends `events` to the ticket's stream, all or none, if the stream is at
    /// `expected_version` (0 for a new ticket). Returns the events as recorded,
    /// with versions `expected_version + 1 ..` and their global positions.
    /// An empty `events` appends nothing and returns nothing.
    ///
    /// When the first event's metadata carries an idempotency key, the store
    /// records the key with that event as unique, in the same transaction: an
    /// append whose key is already recorded fails with
    /// [`StoreError::IdempotencyKeyTaken`] and appends nothing, whichever
    /// process or instance recorded it.
    ///
    /// Provided: answers an empty `events` here and hands the rest to
    /// [`EventStore::append_nonempty`], which a backend implements.
    async fn append(
        &self,
        ticket_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.append_nonempty(ticket_id, expected_version, events)
            .await
    }

    /// [`EventStore::append`] of at least one event: what a backend implements.
    /// Callers use `append`.
    async fn append_nonempty(
        &self,
        ticket_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// One ticket's events in version order; empty for an unknown ticket.
    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The event that recorded this idempotency key (the first event of the
    /// append that carried it), if any.
    async fn read_idempotent(&self, key: &str) -> Result<Option<RecordedEvent>, StoreError>;

    /// Up to `limit` events with a position above `after`, in position order.
    /// Provided: a `limit` of 0 reads nothing; any other goes to
    /// [`EventStore::read_all_nonempty`].
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read_all_nonempty(after, limit).await
    }

    /// [`EventStore::read_all`] with a `limit` of at least 1: what a backend
    /// implements. Callers use `read_all`.
    async fn read_all_nonempty(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events ordered by (ticket id, version), strictly after
    /// `after` in that order: streams the whole store one ticket after another
    /// (what `verify` folds with bounded memory). Ticket ids order as their
    /// hyphenated lowercase text does, which is the order of their bytes.
    /// Provided: a `limit` of 0 reads nothing; any other goes to
    /// [`EventStore::read_by_ticket_nonempty`].
    async fn read_by_ticket(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read_by_ticket_nonempty(after, limit).await
    }

    /// [`EventStore::read_by_ticket`] with a `limit` of at least 1: what a
    /// backend implements. Callers use `read_by_ticket`.
    async fn read_by_ticket_nonempty(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position of the newest event (0 when the store is empty).
    async fn head(&self) -> Result<Position, StoreError>;

    /// Replaces the payload of one stored event, and records that it did:
    /// the one exception to immutability. Only an erasure calls it, to
    /// rewrite a customer's words stored in clear before sealing (see the
    /// `sealing` crate); nothing else about the event changes. Answers
    /// `Corrupt` when there is no such event.
    async fn redact(&self, ticket_id: Uuid, version: u64, data: Payload) -> Result<(), StoreError>;

    /// Waits until an event above `after` exists or `max_wait` passes; says which.
    /// This is the tailer's prompt wake-up: backends answer as soon as they can
    /// learn of a new event (an in-process signal, a change stream, a cheap poll).
    async fn wait_for_events(
        &self,
        after: Position,
        max_wait: Duration,
    ) -> Result<bool, StoreError>;
}
