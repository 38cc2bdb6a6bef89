//! The view store's contract, split by who uses it. A backend implements
//! every role; a crate depends on the roles it uses and no more.
//!
//! | role | what it owns | used by |
//! | --- | --- | --- |
//! | [`ViewReader`] | the live views, how far each slot has got, and a prompt when a live checkpoint moves | `query` (pages, waits for a position, the change feed), `bench` |
//! | [`ProjectionWriter`] | a batch's rows in, its changes and checkpoint out (and, as a [`ViewReader`], the checkpoint it starts from) | the projector's runners (live, bulk load) |
//! | [`SlotAdmin`] | whole slots: status, scans, a rebuild's reset and swap (and, as a [`ViewReader`], their checkpoints) | the projector's rebuild, verify and status |
//! | [`LeaseStore`] | the leases that fence every slot writer | every projector runner |
//! | [`DeadLetterStore`] | the dead-letter records | the projector's dead-letter policy, ops commands |
//!
//! Every projection has two slots (live and shadow, see [`Target`]), each with
//! its rows, checkpoint, version and lease. Writes to a slot carry the slot's
//! [`Fence`]; the store checks it inside the same transaction, so a holder
//! whose lease was taken over cannot move a checkpoint. Times that decide
//! leases are the database's clock, never the caller's.
//!
//! [`ViewStore`] is all the roles in one, for the composition roots (the
//! binaries) that open one store and hand it to everything; an
//! `Arc<dyn ViewStore>` coerces to an `Arc<dyn Role>` of any of them.

use std::collections::HashSet;
use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use eventstore::Position;
use uuid::Uuid;

use crate::checkpoint_watch::{CheckpointWatch, Unprompted};
use crate::project::ViewChanges;
use crate::projection::{Fence, Projection, RunState, Target};
use crate::status::{DeadLetter, DeadLetterState, ProjectionStatus};
use crate::store::{BatchInputs, ListQuery, ViewError};
use crate::views::{Dashboard, Rows, TicketDetail, TicketListRow};

/// The query side's reads. The views are read from the live slots only; a
/// checkpoint can be read for either slot.
#[async_trait]
pub trait ViewReader: Send + Sync + Debug {
    /// The live detail of one ticket, `None` when the view has no such ticket.
    async fn ticket(&self, id: Uuid) -> Result<Option<TicketDetail>, ViewError>;

    /// Up to `query.limit` live list rows in sort order. Provided: a limit of
    /// 0 reads nothing; any other goes to [`ViewReader::list_nonempty`].
    async fn list(&self, query: &ListQuery) -> Result<Vec<TicketListRow>, ViewError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        self.list_nonempty(query).await
    }

    /// [`ViewReader::list`] with a limit of at least 1: what a backend
    /// implements. Callers use `list`.
    async fn list_nonempty(&self, query: &ListQuery) -> Result<Vec<TicketListRow>, ViewError>;

    /// The live dashboard counts.
    async fn dashboard(&self) -> Result<Dashboard, ViewError>;

    /// The position of the last event reflected in the slot (0 when none):
    /// how far a view has got (the change feed cuts the event log at the live
    /// List checkpoint), and where a projector resumes.
    async fn checkpoint(
        &self,
        projection: Projection,
        target: Target,
    ) -> Result<Position, ViewError>;

    /// A watch that returns when the live checkpoint of `projection` may have
    /// moved, so that a reader waiting for it (a read with a minimum
    /// position) reads it again only then, or after the watch's
    /// [`CheckpointWatch::recheck`]. Make it before the first read it guards.
    /// A backend prompts at once for every live commit and swap made through
    /// this store (any clone), after its transaction commits; what other
    /// processes commit it prompts for if it can follow the database's
    /// changes, else the recheck finds it. A wrapper around a store must
    /// forward this. Provided: no prompts, a recheck every
    /// [`CHECKPOINT_RECHECK`](crate::CHECKPOINT_RECHECK).
    fn watch_live_checkpoint(&self, projection: Projection) -> Box<dyn CheckpointWatch> {
        let _ = projection;
        Box::new(Unprompted)
    }
}

/// A projector's batch cycle on a slot whose lease it holds: read what the
/// fold needs, then commit what it changed together with the checkpoint.
#[async_trait]
pub trait ProjectionWriter: ViewReader {
    /// The slot's stored rows of the given tickets (missing ones are absent),
    /// as `Rows` of the projection's kind. Provided: no ids read nothing; any
    /// goes to [`ProjectionWriter::load_rows_nonempty`].
    async fn load_rows(
        &self,
        projection: Projection,
        target: Target,
        ids: &[Uuid],
    ) -> Result<Rows, ViewError> {
        if ids.is_empty() {
            return Ok(Rows::empty(projection));
        }
        self.load_rows_nonempty(projection, target, ids).await
    }

    /// [`ProjectionWriter::load_rows`] of at least one id: what a backend
    /// implements. Callers use `load_rows`.
    async fn load_rows_nonempty(
        &self,
        projection: Projection,
        target: Target,
        ids: &[Uuid],
    ) -> Result<Rows, ViewError>;

    /// Positions in (`after`, `up_to`] whose dead letters are skipped: the
    /// fold steps over them. (The dead letters themselves are
    /// [`DeadLetterStore`]'s.) Provided: an empty range reads nothing; any
    /// other goes to [`ProjectionWriter::skipped_positions_nonempty`].
    async fn skipped_positions(
        &self,
        projection: Projection,
        after: Position,
        up_to: Position,
    ) -> Result<HashSet<Position>, ViewError> {
        if up_to <= after {
            return Ok(HashSet::new());
        }
        self.skipped_positions_nonempty(projection, after, up_to)
            .await
    }

    /// [`ProjectionWriter::skipped_positions`] of a range that is not empty
    /// (`after < up_to`): what a backend implements. Callers use
    /// `skipped_positions`.
    async fn skipped_positions_nonempty(
        &self,
        projection: Projection,
        after: Position,
        up_to: Position,
    ) -> Result<HashSet<Position>, ViewError>;

    /// What folding a batch of events in (`after`, `up_to`] needs, read from
    /// one snapshot: the slot's stored rows of `ids` (as [`load_rows`]) and
    /// the positions in the range whose dead letters are skipped (as
    /// [`skipped_positions`]). A backend that can read both at once overrides
    /// this: the live projector calls it for every batch.
    ///
    /// [`load_rows`]: ProjectionWriter::load_rows
    /// [`skipped_positions`]: ProjectionWriter::skipped_positions
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
    /// `changes.to`. On any error nothing is written. Changes that do not fit
    /// the fence ([`ViewChanges::check_fits`]) are refused before anything is
    /// read.
    async fn commit(&self, fence: &Fence, changes: ViewChanges) -> Result<(), ViewError>;
}

/// Whole slots: what ops and a rebuild see and do to them. A rebuild fills
/// the shadow slot (reset, bulk load with its indexes set aside, verify) and
/// swaps it in; `verify` streams a slot; `status` reports on both slots.
#[async_trait]
pub trait SlotAdmin: ViewReader {
    /// Slots, leases and dead-letter count of one projection.
    async fn status(&self, projection: Projection) -> Result<ProjectionStatus, ViewError>;

    /// Up to `limit` of the slot's rows with ids above `after`, by id
    /// ascending: `verify` streams a slot with it. Provided: a `limit` of 0
    /// reads nothing; any other goes to [`SlotAdmin::scan_rows_nonempty`].
    async fn scan_rows(
        &self,
        projection: Projection,
        target: Target,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Rows, ViewError> {
        if limit == 0 {
            return Ok(Rows::empty(projection));
        }
        self.scan_rows_nonempty(projection, target, after, limit)
            .await
    }

    /// [`SlotAdmin::scan_rows`] with a `limit` of at least 1: what a backend
    /// implements. Callers use `scan_rows`.
    async fn scan_rows_nonempty(
        &self,
        projection: Projection,
        target: Target,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Rows, ViewError>;

    /// The dashboard counts stored in a slot of [`Projection::Dashboard`].
    async fn counts(&self, target: Target) -> Result<Dashboard, ViewError>;

    /// Empties the shadow slot (rows, counts), sets its checkpoint to 0, its
    /// version to the projection's current version and its state to building.
    /// `fence` must hold the shadow slot's lease.
    async fn reset_shadow(&self, fence: &Fence) -> Result<(), ViewError>;

    /// Before a bulk load of the emptied shadow slot: the store may set the
    /// slot's secondary indexes aside, to build each once from the loaded
    /// rows ([`SlotAdmin::build_shadow_indexes`]) rather than row by row.
    /// While they are aside the slot is written, loaded and scanned by id
    /// as usual. [`SlotAdmin::reset_shadow`] and [`SlotAdmin::swap_shadow`]
    /// build whatever is still aside first, so a crash in between never
    /// leaves a slot live without its indexes. `fence` must hold the shadow
    /// slot's lease. The default (a store that maintains its indexes as it
    /// goes) sets nothing aside.
    async fn defer_shadow_indexes(&self, fence: &Fence) -> Result<(), ViewError> {
        let _ = fence;
        Ok(())
    }

    /// Builds the shadow slot's indexes set aside by
    /// [`SlotAdmin::defer_shadow_indexes`]; nothing when none are. It changes
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
}

/// The leases that make one writer per slot: a runner acquires one, keeps it
/// with heartbeats (which also report its state) and passes its [`Fence`] to
/// every slot write.
#[async_trait]
pub trait LeaseStore: Send + Sync + Debug {
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
}

/// The events a projection could not apply, kept with their reason until
/// ops retry or skip them (a skipped one is stepped over by the fold, see
/// [`ProjectionWriter::skipped_positions`]).
#[async_trait]
pub trait DeadLetterStore: Send + Sync + Debug {
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
}

/// Every role in one: what a backend is. For composition roots (the
/// binaries, test harnesses) that open one store and hand it to everything;
/// a library takes the roles it uses instead. Implemented for every type
/// that implements all the roles.
pub trait ViewStore:
    ViewReader + ProjectionWriter + SlotAdmin + LeaseStore + DeadLetterStore
{
}

impl<T> ViewStore for T where
    T: ViewReader + ProjectionWriter + SlotAdmin + LeaseStore + DeadLetterStore + ?Sized
{
}
