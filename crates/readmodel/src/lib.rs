//! The read side's data: view types, the pure projections that fold events into
//! them, and the [`ViewStore`] contract every backend implements.
//!
//! Three views are kept: the ticket detail (everything a detail page shows), the
//! list row (derived from the detail: previews instead of full texts), and the
//! dashboard counts per status. Folding is pure and lives here
//! ([`project`], [`fold_batch`]); the `projector` crate only moves batches between
//! the event store and a [`ViewStore`].

mod preview;
mod project;
mod store;
mod views;

pub use preview::{PREVIEW_CHARS, preview};
pub use project::{ProjectionError, ViewChanges, fold_batch, project};
pub use store::{ListQuery, ListSort, ViewError, ViewStore};
pub use views::{Dashboard, DashboardDelta, Note, TicketDetail, TicketListRow};
