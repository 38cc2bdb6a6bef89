//! A ticket's history: its raw events, and the ticket as it was at a past
//! point of its stream (time travel).
//!
//! These reads go to the event log rather than a read model: the read models
//! keep only the present, and a ticket's own stream is the record of every
//! past state. The past detail is folded with [`readmodel::project`], the fold
//! the projector and the write side use, so "the ticket as of version N" is
//! exactly what the detail view showed when the ticket was at version N.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventstore::{EventStore, RecordedEvent, StoreError};
use readmodel::{TicketDetail, project};
use uuid::Uuid;

/// A past point of one ticket's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After the event with this version (1 is the opening).
    Version(u64),
    /// After the last event that occurred at or before this time.
    Time(DateTime<Utc>),
}

/// Why a history read did not answer.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The ticket has no events (at that point, for [`History::ticket_as_of`]).
    #[error("the ticket does not exist")]
    NotFound,
    /// The event store failed, or holds events that do not fold.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads tickets' streams from the event store.
#[derive(Debug, Clone)]
pub struct History {
    events: Arc<dyn EventStore>,
}

impl History {
    pub fn new(events: Arc<dyn EventStore>) -> Self {
        Self { events }
    }

    /// The ticket's events, in version order; [`HistoryError::NotFound`] when
    /// it has none.
    pub async fn events(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, HistoryError> {
        let events = self.events.read_stream(ticket_id).await?;
        if events.is_empty() {
            return Err(HistoryError::NotFound);
        }
        Ok(events)
    }

    /// The ticket as it was at `as_of`, folded from its events up to that
    /// point. [`HistoryError::NotFound`] when the ticket did not exist then
    /// (or does not exist at all).
    pub async fn ticket_as_of(
        &self,
        ticket_id: Uuid,
        as_of: AsOf,
    ) -> Result<TicketDetail, HistoryError> {
        let recorded = self.events.read_stream(ticket_id).await?;
        let mut view: Option<TicketDetail> = None;
        for event in recorded.iter().take_while(|event| match as_of {
            AsOf::Version(version) => event.version <= version,
            AsOf::Time(time) => event.occurred_at <= time,
        }) {
            let next = project(view.as_ref(), event)
                .map_err(|error| StoreError::Corrupt(format!("ticket {ticket_id}: {error}")))?;
            if let Some(next) = next {
                view = Some(next);
            }
        }
        view.ok_or(HistoryError::NotFound)
    }
}
