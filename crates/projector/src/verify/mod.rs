//! `verify`: the oracle. Folds every ticket's history with the projection's
//! own fold and compares the result with the slot's stored rows, one ticket
//! at a time, with bounded memory: the history is streamed in (ticket id,
//! version) order and the slot's rows in id order, and the two streams are
//! merge-joined by ticket id.
//!
//! The slot may be moving while it is checked (a running daemon). Each row is
//! compared with the fold of its ticket's events up to the checkpoint read at
//! the start; a row that is further on (the daemon applied more since) is
//! compared with the fold up to its own version instead. A row behind the
//! starting checkpoint, a missing row or an extra row is a difference. For the
//! dashboard, the counts must equal the sum of the status rows, read while the
//! checkpoint stands still.
//!
//! - `history`: the history, streamed in (ticket id, version) order;
//! - `rows`: the slot's rows, in id order;
//! - `merge`: the merge-join of the two into a report;
//! - `compare`: one ticket's events against its stored row;
//! - `counts`: the dashboard counts against the sum of the status rows;
//! - `report`: what verify reports, and how it reads.

mod compare;
mod counts;
mod history;
mod merge;
mod report;
mod rows;

use eventstore::{EventStore, Position};
use readmodel::{Projection, ProjectionStatus, SlotState, Target, ViewStore};
use tokio::sync::mpsc;

use crate::ProjectorError;

pub use report::{Difference, DifferenceKind, FieldDifference, VerifyReport};

use history::{HISTORY_PAGES_AHEAD, TicketCursor, read_history};
use merge::{Check, compare_all};

/// The upper bound for "every position".
const ALL_POSITIONS: Position = i64::MAX as Position;

/// How `verify` pages and reports.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Events, and rows, read per query.
    pub page_size: usize,
    /// Differences kept in the report (all are counted).
    pub max_listed: usize,
    /// Tries to read the dashboard counts and status rows while the
    /// checkpoint stands still, before giving up on that comparison.
    pub count_attempts: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            // Big pages: a verify of millions of events is mostly round
            // trips otherwise; a page is a few MB at most.
            page_size: 5000,
            max_listed: 20,
            count_attempts: 5,
        }
    }
}

/// Compares one slot of a projection with the fold of the whole history.
/// A slot swapped in while it is being checked restarts the check (three
/// times at most).
pub async fn verify(
    events: &dyn EventStore,
    views: &dyn ViewStore,
    projection: Projection,
    target: Target,
    options: &VerifyOptions,
) -> Result<VerifyReport, ProjectorError> {
    const TRIES: usize = 3;
    for _ in 0..TRIES {
        let before = views.status(projection).await?;
        let report = verify_once(events, views, projection, target, options).await?;
        let after = views.status(projection).await?;
        if target == Target::Live && swapped(&before, &after) {
            tracing::info!(%projection, "a rebuild swapped the live slot during verify; checking again");
            continue;
        }
        return Ok(report);
    }
    Err(ProjectorError::Unsettled(format!(
        "the live slot of {projection} was swapped {TRIES} times while it was being verified"
    )))
}

/// Whether a swap may have happened between two status reads.
fn swapped(before: &ProjectionStatus, after: &ProjectionStatus) -> bool {
    after.live.checkpoint < before.live.checkpoint
        || (before.shadow.state == SlotState::Building && after.shadow.state != SlotState::Building)
}

async fn verify_once(
    events: &dyn EventStore,
    views: &dyn ViewStore,
    projection: Projection,
    target: Target,
    options: &VerifyOptions,
) -> Result<VerifyReport, ProjectorError> {
    let page_size = options.page_size.max(1);
    let checkpoint = views.checkpoint(projection, target).await?;
    let skipped = views
        .skipped_positions(projection, 0, ALL_POSITIONS)
        .await?;
    // The history is read a page or two ahead while the comparison runs: on
    // two cores, verify then takes about as long as the slower of the two.
    let (pages, received) = mpsc::channel(HISTORY_PAGES_AHEAD);
    let reading = read_history(events, page_size, pages);
    let check = Check {
        events,
        views,
        projection,
        target,
        options,
        checkpoint,
        skipped,
    };
    let comparing = compare_all(&check, TicketCursor::new(received));
    let (read, compared) = tokio::join!(reading, comparing);
    // A failed read closes the channel early, which the comparison took for
    // the end of the history: its report is then meaningless.
    read?;
    compared
}
