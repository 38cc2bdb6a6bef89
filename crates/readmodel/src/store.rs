//! The contract between the projector and query side on one hand and a
//! backend's read-model storage on the other.
//!
//! Every projection has two slots (live and shadow, see [`Target`]), each with
//! its rows, checkpoint, version and lease. Writes to a slot carry the slot's
//! [`Fence`]; the store checks it inside the same transaction, so a holder
//! whose lease was taken over cannot move a checkpoint. Times that decide
//! leases are the database's clock, never the caller's.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::Status;
use eventstore::Position;
use uuid::Uuid;

use crate::project::ViewChanges;
use crate::projection::{Fence, Projection, RunState, Target};
use crate::status::{DeadLetter, DeadLetterState, ProjectionStatus};
use crate::views::{Dashboard, Rows, TicketDetail, TicketListRow};

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

/// What [`ViewStore::batch_inputs`] reads for one batch.
#[derive(Debug)]
pub struct BatchInputs {
    /// The slot's stored rows of the batch's tickets.
    pub rows: Rows,
    /// Positions in the batch's range whose dead letters are skipped.
    pub skipped: HashSet<Position>,
}

/// Read-model storage: the projector writes it, the query side reads it.
#[async_trait]
pub trait ViewStore: Send + Sync + std::fmt::Debug {
    // ----- the projector's side, per projection slot -----

    /// The position of the last event reflected in the slot (0 when none).
    async fn checkpoint(
        &self,
        projection: Projection,
        target: Target,
    ) -> Result<Position, ViewError>;

    /// The slot's stored rows of the given tickets (missing ones are absent),
    /// as `Rows` of the projection's kind.
    async fn load_rows(
        &self,
        projection: Projection,
        target: Target,
        ids: &[Uuid],
    ) -> Result<Rows, ViewError>;

    /// What folding a batch of events in (`after`, `up_to`] needs, read from
    /// one snapshot: the slot's stored rows of `ids` (as [`load_rows`]) and
    /// the positions in the range whose dead letters are skipped (as
    /// [`skipped_positions`]). A backend that can read both at once overrides
    /// this: the live projector calls it for every batch.
    ///
    /// [`load_rows`]: ViewStore::load_rows
    /// [`skipped_positions`]: ViewStore::skipped_positions
    async fn batch_inputs(
        &self,
        projection: Projection,
        target: Target,
        ids: &[Uuid],
        after: Position,
        up_to: Position,
    ) -> Result<BatchInputs, ViewError> {
        Ok(BatchInputs {
            rows: self.load_rows(projection, target, ids).await?,
            skipped: self.skipped_positions(projection, after, up_to).await?,
        })
    }

    /// In one transaction: checks that `fence` still holds the slot's lease
    /// (else `LeaseLost`) and that the slot's checkpoint is still
    /// `changes.from` (else `CheckpointMoved`); writes the rows (never moving a
    /// row back to a lower version), the dashboard delta and the checkpoint
    /// `changes.to`. On any error nothing is written.
    async fn commit(&self, fence: &Fence, changes: ViewChanges) -> Result<(), ViewError>;

    /// Up to `limit` of the slot's rows with ids above `after`, by id
    /// ascending: `verify` streams a slot with it.
    async fn scan_rows(
        &self,
        projection: Projection,
        target: Target,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Rows, ViewError>;

    /// The dashboard counts stored in a slot of [`Projection::Dashboard`].
    async fn counts(&self, target: Target) -> Result<Dashboard, ViewError>;

    // ----- rebuilds -----

    /// Empties the shadow slot (rows, counts), sets its checkpoint to 0, its
    /// version to the projection's current version and its state to building.
    /// `fence` must hold the shadow slot's lease.
    async fn reset_shadow(&self, fence: &Fence) -> Result<(), ViewError>;

    /// Before a bulk load of the emptied shadow slot: the store may set the
    /// slot's secondary indexes aside, to build each once from the loaded
    /// rows ([`ViewStore::build_shadow_indexes`]) rather than row by row.
    /// While they are aside the slot is written, loaded and scanned by id
    /// as usual. [`ViewStore::reset_shadow`] and [`ViewStore::swap_shadow`]
    /// build whatever is still aside first, so a crash in between never
    /// leaves a slot live without its indexes. `fence` must hold the shadow
    /// slot's lease. The default (a store that maintains its indexes as it
    /// goes) sets nothing aside.
    async fn defer_shadow_indexes(&self, fence: &Fence) -> Result<(), ViewError> {
        let _ = fence;
        Ok(())
    }

    /// Builds the shadow slot's indexes set aside by
    /// [`ViewStore::defer_shadow_indexes`]; nothing when none are. It changes
    /// no row and no checkpoint, so the slot can be read by id meanwhile (a
    /// rebuild verifies the shadow while its indexes are built).
    async fn build_shadow_indexes(&self, fence: &Fence) -> Result<(), ViewError> {
        let _ = fence;
        Ok(())
    }

    /// In one transaction: the shadow slot becomes live (with its rows,
    /// checkpoint and version) and the live slot becomes the (retired) shadow.
    /// `fence` must hold the shadow slot's lease and the shadow must be
    /// building. A daemon tailing the old live slot sees `CheckpointMoved` on
    /// its next commit and carries on from the new live checkpoint.
    async fn swap_shadow(&self, fence: &Fence) -> Result<(), ViewError>;

    // ----- leases and heartbeats -----

    /// Takes the slot's lease for `holder` for `ttl` if it is free, expired, or
    /// already `holder`'s; `None` when another holder has it. The token grows
    /// by one whenever the lease changes hands.
    async fn acquire_lease(
        &self,
        projection: Projection,
        target: Target,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Fence>, ViewError>;

    /// Extends the lease by `ttl` and records the holder's state, last error
    /// and heartbeat. `LeaseLost` when the fence is no longer current.
    async fn heartbeat(
        &self,
        fence: &Fence,
        ttl: Duration,
        state: RunState,
        last_error: Option<&str>,
    ) -> Result<(), ViewError>;

    /// Gives the lease up now (if still held), so a standby takes over at once.
    async fn release_lease(&self, fence: &Fence) -> Result<(), ViewError>;

    // ----- status and dead letters -----

    /// Slots, leases and dead-letter count of one projection.
    async fn status(&self, projection: Projection) -> Result<ProjectionStatus, ViewError>;

    /// Records a dead letter, or updates the reason and time of the one at the
    /// same (projection, position); its state is set to `letter.state`.
    async fn put_dead_letter(&self, letter: &DeadLetter) -> Result<(), ViewError>;

    /// Dead letters, of one projection or all, by projection then position.
    async fn dead_letters(
        &self,
        projection: Option<Projection>,
    ) -> Result<Vec<DeadLetter>, ViewError>;

    /// Sets a dead letter's state; `false` when there is no such dead letter.
    async fn set_dead_letter_state(
        &self,
        projection: Projection,
        position: Position,
        state: DeadLetterState,
    ) -> Result<bool, ViewError>;

    /// Positions in (`after`, `up_to`] whose dead letters are skipped.
    async fn skipped_positions(
        &self,
        projection: Projection,
        after: Position,
        up_to: Position,
    ) -> Result<HashSet<Position>, ViewError>;

    // ----- the query side (live slots only) -----

    async fn ticket(&self, id: Uuid) -> Result<Option<TicketDetail>, ViewError>;

    /// Up to `query.limit` list rows in sort order.
    async fn list(&self, query: &ListQuery) -> Result<Vec<TicketListRow>, ViewError>;

    async fn dashboard(&self) -> Result<Dashboard, ViewError>;
}
