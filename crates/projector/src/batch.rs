//! One batch into one slot: the step the live runner, `catch_up` and a rebuild
//! all repeat.

use std::collections::HashSet;

use eventstore::{EventStore, Position};
use readmodel::{FailedEvent, Fence, ViewStore, fold_batch};
use uuid::Uuid;

use crate::ProjectorError;

/// What one batch did.
#[derive(Debug)]
pub(crate) enum Batch {
    /// No event after the checkpoint: the slot is caught up.
    Idle { checkpoint: Position },
    /// Events up to `to` are committed; `failed` is the event the fold
    /// stopped at, if any (everything before it is committed).
    Applied {
        from: Position,
        to: Position,
        /// How many events the commit applied (those in `from..=to`; 0
        /// when nothing was committed).
        committed: usize,
        /// Positions the fold passed by as skipped dead letters.
        skipped: HashSet<Position>,
        failed: Option<Box<FailedEvent>>,
    },
}

/// Reads a batch after the slot's checkpoint, loads the rows it touches,
/// folds, and commits the folded prefix with `fence` (whose target names the
/// slot). A failed event is returned, not committed.
pub(crate) async fn apply_batch(
    events: &dyn EventStore,
    views: &dyn ViewStore,
    fence: &Fence,
    batch_size: usize,
) -> Result<Batch, ProjectorError> {
    let projection = fence.projection;
    let from = views.checkpoint(projection, fence.target).await?;
    let batch = events.read_all(from, batch_size).await?;
    let Some(last) = batch.last() else {
        return Ok(Batch::Idle { checkpoint: from });
    };
    let mut ids: Vec<Uuid> = batch.iter().map(|event| event.ticket_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = views.load_rows(projection, fence.target, &ids).await?;
    let skipped = views
        .skipped_positions(projection, from, last.position)
        .await?;
    let outcome = fold_batch(projection, from, rows, &batch, &skipped);
    let to = outcome.changes.to;
    if to > from {
        views.commit(fence, outcome.changes).await?;
    }
    let committed = if to > from {
        batch.iter().filter(|event| event.position <= to).count()
    } else {
        0
    };
    Ok(Batch::Applied {
        from,
        to,
        committed,
        skipped,
        failed: outcome.failed.map(Box::new),
    })
}
