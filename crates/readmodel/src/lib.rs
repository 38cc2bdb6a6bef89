//! The read side's data: view types, the pure projections that fold events into
//! them, and the view-store contract every backend implements: one role trait
//! per kind of user ([`ViewReader`], [`ProjectionWriter`], [`SlotAdmin`],
//! [`LeaseStore`], [`DeadLetterStore`]), [`ViewStore`] for all of them, and
//! the slot bookkeeping ([`Slots`]) both backends share.
//!
//! Three projections are kept, each on its own (own rows, checkpoint, lease,
//! version; see [`Projection`]): the ticket detail (everything a detail page
//! shows), the ticket list (previews instead of full texts) and the dashboard
//! (counts per status, kept from each ticket's status). Folding is pure and
//! lives here ([`project`], [`fold_batch`]); the `projector` crate moves
//! batches between the event store and a view store.

mod checkpoint_watch;
mod preview;
mod project;
mod projection;
mod roles;
mod slots;
mod status;
mod store;
mod views;

pub use checkpoint_watch::{CHECKPOINT_RECHECK, CheckpointPrompts, CheckpointWatch, Unprompted};
pub use preview::{PREVIEW_CHARS, preview};
pub use project::{FailedEvent, FoldOutcome, ProjectionError, ViewChanges, fold_batch, project};
pub use projection::{Fence, Projection, RunState, Slot, Target, UnknownProjection};
pub use roles::{DeadLetterStore, LeaseStore, ProjectionWriter, SlotAdmin, ViewReader, ViewStore};
pub use slots::Slots;
pub use status::{
    DeadLetter, DeadLetterState, LeaseStatus, ProjectionStatus, SlotState, SlotStatus,
};
pub use store::{BatchInputs, ListQuery, ListSort, ListSortField, ViewError};
pub use views::{
    Dashboard, DashboardDelta, Note, Rows, TicketDetail, TicketListRow, TicketStatusRow,
};
