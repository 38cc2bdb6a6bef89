//! The projector: follows the event store by global position and keeps the read
//! models current, and the operations around that: rebuild, verify, status and
//! dead letters.
//!
//! The projections themselves are pure and live in `readmodel`; this crate owns
//! the loops around them. Each projection (detail, list, dashboard) runs on its
//! own: a runner takes the projection's live lease (or waits as a standby while
//! another process holds it), heartbeats it, and repeats one step: read a batch
//! after the checkpoint, load the rows it touches, fold, commit rows and
//! checkpoint in one transaction through the [`readmodel::ViewStore`] with its fence.
//! Because the commit is guarded by the fence and by the checkpoint it started
//! from, and every row by its ticket version, a crash, a stale runner or a
//! rebuild's swap at any point neither loses nor double-applies an event.
//!
//! Metrics go through the `metrics` facade (a no-op unless the process
//! installed a recorder): the live runner records [`BATCH_SIZE`] per
//! committed batch, and [`record_status`] turns a [`StatusReport`] into the
//! position, lag and dead-letter gauges, so a scrape can refresh them from
//! the store whichever process runs the projector.
//!
//! # Modules
//!
//! - `projector`: [`Projector`] and its [`ProjectorConfig`]: `run` (a live
//!   runner per projection, and the rebuild of outdated ones) and `catch_up`.
//! - `live`: one projection's live runner: standby, lease, batches, and the
//!   pause between them ([`linger`]).
//! - `batch`: one batch into one slot, the step every loop repeats.
//! - `lease`: holder names and the heartbeat that keeps a lease.
//! - `dead_letter`: events a projection cannot apply, in one place: the
//!   [`DeadLetterPolicy`], how the live runner, `catch_up` and a rebuild
//!   record one, how a stopped runner moves on, and [`set_dead_letter`] and
//!   [`DeadLetterAdmin`] for ops (the CLI, and `ticketd`'s HTTP routes).
//! - `rebuild`: blue/green [`rebuild`] into the shadow slot; `bulk` is its
//!   by-ticket first pass.
//! - `verify`: the oracle, [`verify`], comparing a slot with the fold of the
//!   history.
//! - `status`: [`status`], what ops, `/readyz` and `/metrics` see, as data.
//! - `error`: [`ProjectorError`]; `names`: how reports serialise names.

mod batch;
mod bulk;
mod dead_letter;
mod error;
mod lease;
mod live;
mod names;
mod projector;
mod rebuild;
mod status;
mod verify;

pub use dead_letter::{DeadLetterAdmin, DeadLetterChange, DeadLetterPolicy, set_dead_letter};
pub use error::ProjectorError;
pub use lease::holder_name;
pub use live::{BATCH_SIZE, DEFAULT_MAX_LINGER, LINGER_FULL_AT, linger};
pub use projector::{CATCH_UP_HOLDER, Projector, ProjectorConfig};
pub use rebuild::{
    LogProgress, Progress, RebuildError, RebuildOptions, RebuildOutcome, eta, rebuild,
};
pub use status::{
    ProjectionReport, RebuildActivity, ShadowReport, StatusReport, VersionReport, lag, live_state,
    record_status, status,
};
pub use verify::{
    Difference, DifferenceKind, FieldDifference, VerifyOptions, VerifyReport, verify,
};
