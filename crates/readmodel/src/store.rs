//! The vocabulary of the view-store roles (`roles`): what a failure means to
//! the caller, what a list page asks for, what a batch reads.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use domain::Status;
use eventstore::Position;
use uuid::Uuid;

use crate::projection::{Fence, Projection};
use crate::views::{Rows, TicketListRow};

/// What a caller of the view store must do about a failure.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Another writer committed past the checkpoint this batch was read after
    /// (a second runner, or a rebuild's swap); re-read the checkpoint and carry
    /// on from there.
    #[error("checkpoint moved: expected {expected}, found {found}")]
    CheckpointMoved { expected: Position, found: Position },
    /// The fence's lease is no longer held (expired and taken over, or
    /// released): stop writing and try to acquire the lease again.
    #[error("lease on {projection}/{target} lost: token {token} is no longer current")]
    LeaseLost {
        projection: Projection,
        target: &'static str,
        token: u64,
    },
    /// The database could not be reached or failed; the operation may be retried.
    #[error("view store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data breaks an invariant; retrying will not help.
    #[error("view store data is corrupt: {0}")]
    Corrupt(String),
}

impl eventstore::ContractError for ViewError {
    fn unavailable_boxed(error: Box<dyn std::error::Error + Send + Sync>) -> Self {
        ViewError::Unavailable(error)
    }

    fn corrupt(what: String) -> Self {
        ViewError::Corrupt(what)
    }
}

impl ViewError {
    pub fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ViewError::Unavailable(Box::new(error))
    }

    /// The error a store answers when a fence does not match the stored lease.
    pub fn lease_lost(fence: &Fence) -> Self {
        ViewError::LeaseLost {
            projection: fence.projection,
            target: fence.target.name(),
            token: fence.token,
        }
    }
}

/// The time a list is ordered by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ListSortField {
    /// When the ticket was opened.
    #[default]
    CreatedAt,
    /// When the ticket last changed.
    UpdatedAt,
}

impl ListSortField {
    pub const ALL: [ListSortField; 2] = [ListSortField::CreatedAt, ListSortField::UpdatedAt];

    /// The name used on the wire, in cursors and in column names.
    pub fn name(self) -> &'static str {
        match self {
            ListSortField::CreatedAt => "created_at",
            ListSortField::UpdatedAt => "updated_at",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|field| field.name() == name)
    }
}

/// The order of the list: by `field`, ties broken by id in the same
/// direction. The default is newest first by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListSort {
    pub field: ListSortField,
    pub descending: bool,
}

impl Default for ListSort {
    fn default() -> Self {
        ListSort {
            field: ListSortField::CreatedAt,
            descending: true,
        }
    }
}

impl ListSort {
    /// Every sort a list can be asked for.
    pub fn all() -> impl Iterator<Item = ListSort> {
        ListSortField::ALL
            .into_iter()
            .flat_map(|field| [true, false].map(|descending| ListSort { field, descending }))
    }

    /// The row's value of the sort key.
    pub fn key(self, row: &TicketListRow) -> DateTime<Utc> {
        match self.field {
            ListSortField::CreatedAt => row.created_at,
            ListSortField::UpdatedAt => row.updated_at,
        }
    }
}

/// One page request against the list view. Validation (limit bounds, cursor
/// decoding) happens in the `query` crate; a store gets well-formed input.
/// Filters are exact matches and combine with AND. The default is no
/// filter, the default sort, from the start, and a limit of 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<Status>,
    pub agent: Option<String>,
    pub customer: Option<String>,
    /// Keyset position: rows strictly after this (sort key value, id) in
    /// sort order.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: usize,
    pub sort: ListSort,
}

/// What [`ProjectionWriter::batch_inputs`](crate::ProjectionWriter::batch_inputs)
/// reads for one batch.
#[derive(Debug)]
pub struct BatchInputs {
    /// The slot's stored rows of the batch's tickets.
    pub rows: Rows,
    /// Positions in the batch's range whose dead letters are skipped.
    pub skipped: HashSet<Position>,
}
