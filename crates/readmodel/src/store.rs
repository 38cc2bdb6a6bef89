//! The contract between the projector and query side on one hand and a backend's
//! read-model storage on the other.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::Status;
use eventstore::Position;
use uuid::Uuid;

use crate::project::ViewChanges;
use crate::views::{Dashboard, TicketDetail, TicketListRow};

/// What a caller of the view store must do about a failure.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Another projector committed past the checkpoint this batch was read after;
    /// re-read the checkpoint and carry on from there.
    #[error("checkpoint moved: expected {expected}, found {found}")]
    CheckpointMoved { expected: Position, found: Position },
    /// The database could not be reached or failed; the operation may be retried.
    #[error("view store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data breaks an invariant; retrying will not help.
    #[error("view store data is corrupt: {0}")]
    Corrupt(String),
}

impl ViewError {
    pub fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ViewError::Unavailable(Box::new(error))
    }
}

/// The order of the list: newest first, by creation time then id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListSort {
    #[default]
    NewestFirst,
}

/// One page request against the list view. Validation (limit bounds, cursor
/// decoding) happens in the `query` crate; a store gets well-formed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<Status>,
    /// Keyset position: rows strictly after this (created_at, id) in sort order.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: usize,
    pub sort: ListSort,
}

/// Read-model storage: the projector writes it, the query side reads it.
#[async_trait]
pub trait ViewStore: Send + Sync + std::fmt::Debug {
    /// The position of the last event reflected in the views (0 when none).
    async fn checkpoint(&self) -> Result<Position, ViewError>;

    /// The stored detail views of the given tickets (missing ones are absent).
    async fn load_tickets(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, TicketDetail>, ViewError>;

    /// Writes the changed tickets (detail and list rows), the dashboard delta and
    /// the checkpoint `changes.to` in one transaction, if the stored checkpoint is
    /// still `changes.from`; otherwise writes nothing and answers `CheckpointMoved`.
    async fn commit(&self, changes: ViewChanges) -> Result<(), ViewError>;

    async fn ticket(&self, id: Uuid) -> Result<Option<TicketDetail>, ViewError>;

    /// Up to `query.limit` list rows in sort order.
    async fn list(&self, query: &ListQuery) -> Result<Vec<TicketListRow>, ViewError>;

    async fn dashboard(&self) -> Result<Dashboard, ViewError>;
}
