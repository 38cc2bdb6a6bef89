//! Decorators of an event store: wrap one, change a call or two, forward the
//! rest.
//!
//! A type that implements [`Forwarding`] names the store it wraps
//! ([`Forwarding::inner`]) and overrides only the calls it changes; it is an
//! [`EventStore`] through the blanket implementation here, with every other
//! call forwarded. Test doubles that fail, delay or race one call use it, so
//! a new [`EventStore`] method is forwarded by all of them without touching
//! any.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::{EventStore, NewEvent, Payload, Position, RecordedEvent, StoreError};

/// An [`EventStore`] that forwards every call it does not override to
/// [`Forwarding::inner`]. The methods mirror [`EventStore`]'s public ones;
/// what `EventStore` answers itself (an empty append, a read of limit 0)
/// never reaches them.
#[async_trait]
pub trait Forwarding: Send + Sync + std::fmt::Debug {
    /// The wrapped store.
    fn inner(&self) -> &dyn EventStore;

    async fn append(
        &self,
        ticket_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner()
            .append(ticket_id, expected_version, events)
            .await
    }

    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner().read_stream(ticket_id).await
    }

    async fn read_idempotent(&self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        self.inner().read_idempotent(key).await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner().read_all(after, limit).await
    }

    async fn read_by_ticket(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner().read_by_ticket(after, limit).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        self.inner().head().await
    }

    async fn redact(&self, ticket_id: Uuid, version: u64, data: Payload) -> Result<(), StoreError> {
        self.inner().redact(ticket_id, version, data).await
    }

    async fn wait_for_events(
        &self,
        after: Position,
        max_wait: Duration,
    ) -> Result<bool, StoreError> {
        self.inner().wait_for_events(after, max_wait).await
    }
}

#[async_trait]
impl<T: Forwarding> EventStore for T {
    async fn append_nonempty(
        &self,
        ticket_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Forwarding::append(self, ticket_id, expected_version, events).await
    }

    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        Forwarding::read_stream(self, ticket_id).await
    }

    async fn read_idempotent(&self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        Forwarding::read_idempotent(self, key).await
    }

    async fn read_all_nonempty(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Forwarding::read_all(self, after, limit).await
    }

    async fn read_by_ticket_nonempty(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Forwarding::read_by_ticket(self, after, limit).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        Forwarding::head(self).await
    }

    async fn redact(&self, ticket_id: Uuid, version: u64, data: Payload) -> Result<(), StoreError> {
        Forwarding::redact(self, ticket_id, version, data).await
    }

    async fn wait_for_events(
        &self,
        after: Position,
        max_wait: Duration,
    ) -> Result<bool, StoreError> {
        Forwarding::wait_for_events(self, after, max_wait).await
    }
}
