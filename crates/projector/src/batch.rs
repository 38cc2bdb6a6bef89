//! One batch into one slot: the step the live runner, `catch_up` and a rebuild
//! all repeat.

use std::collections::HashSet;

use eventstore::{EventStore, Position};
use readmodel::{BatchInputs, FailedEvent, Fence, ProjectionWriter, ViewError, fold_batch};
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

/// The slot's checkpoint as the last batch of this caller committed it, so
/// that the next batch need not read it again: under load the live runner
/// goes from one batch straight to the next. A stale value (a rebuild swapped
/// another slot in) does no harm: the commit checks the slot's checkpoint in
/// its transaction and refuses with `CheckpointMoved`, nothing written, and
/// any error forgets the value. After an idle batch it is read afresh, so an
/// idle runner never waits behind a checkpoint that moved.
#[derive(Debug, Default)]
pub(crate) struct KnownCheckpoint(Option<Position>);

/// Reads a batch after the slot's checkpoint, loads the rows it touches,
/// folds, and commits the folded prefix with `fence` (whose target names the
/// slot). A failed event is returned, not committed.
pub(crate) async fn apply_batch(
    events: &dyn EventStore,
    views: &dyn ProjectionWriter,
    fence: &Fence,
    batch_size: usize,
    known: &mut KnownCheckpoint,
) -> Result<Batch, ProjectorError> {
    let outcome = apply(events, views, fence, batch_size, known.0.take()).await;
    known.0 = match &outcome {
        Ok(Batch::Applied { to, .. }) => Some(*to),
        Ok(Batch::Idle { .. }) | Err(_) => None,
    };
    outcome
}

async fn apply(
    events: &dyn EventStore,
    views: &dyn ProjectionWriter,
    fence: &Fence,
    batch_size: usize,
    known: Option<Position>,
) -> Result<Batch, ProjectorError> {
    let projection = fence.projection;
    let from = match known {
        Some(checkpoint) => checkpoint,
        None => views.checkpoint(projection, fence.target).await?,
    };
    let batch = events.read_all(from, batch_size).await?;
    let Some(last) = batch.last() else {
        return Ok(Batch::Idle { checkpoint: from });
    };
    let mut ids: Vec<Uuid> = batch.iter().map(|event| event.ticket_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let BatchInputs { rows, skipped } = views
        .batch_inputs(projection, fence.target, &ids, from, last.position)
        .await?;
    let outcome = fold_batch(projection, from, rows, &batch, &skipped);
    let to = outcome.changes.to;
    if to > from {
        views.commit(fence, outcome.changes).await?;
    } else if known.is_some() && outcome.failed.is_some() {
        // Nothing to commit, so nothing checked the carried checkpoint: the
        // failure counts only if it is at the slot's real checkpoint.
        let found = views.checkpoint(projection, fence.target).await?;
        if found != from {
            return Err(ViewError::CheckpointMoved {
                expected: from,
                found,
            }
            .into());
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use domain::Event;
    use eventstore::NewEvent;
    use readmodel::{LeaseStore, Projection, Target};
    use store_sqlite::SqliteStore;

    use super::*;

    /// Events 1..=3 of one ticket, and the live list slot's fence.
    async fn one_ticket() -> (tempfile::TempDir, SqliteStore, Fence) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let events = [
            Event::TicketOpened {
                customer: "c".into(),
                subject: "s".into(),
                message: "m".into(),
            },
            Event::TicketTriaged,
            Event::NoteAdded { text: "n".into() },
        ];
        let events = events.iter().map(NewEvent::from).collect();
        store
            .append(Uuid::now_v7(), 0, events)
            .await
            .expect("append");
        let fence = store
            .acquire_lease(
                Projection::List,
                Target::Live,
                "test",
                Duration::from_secs(10),
            )
            .await
            .expect("acquire_lease")
            .expect("the lease is free");
        (dir, store, fence)
    }

    #[tokio::test]
    async fn a_carried_checkpoint_is_read_only_after_a_batch_that_did_not_commit() {
        let (_dir, store, fence) = one_ticket().await;
        let mut known = KnownCheckpoint::default();
        let first = apply_batch(&store, &store, &fence, 1, &mut known).await;
        assert!(matches!(first, Ok(Batch::Applied { to: 1, .. })));
        assert_eq!(known.0, Some(1), "the committed checkpoint is carried");
        let rest = apply_batch(&store, &store, &fence, 10, &mut known).await;
        assert!(matches!(rest, Ok(Batch::Applied { from: 1, to: 3, .. })));
        let idle = apply_batch(&store, &store, &fence, 10, &mut known).await;
        assert!(matches!(idle, Ok(Batch::Idle { checkpoint: 3 })));
        assert_eq!(known.0, None, "after an idle batch it is read afresh");
    }

    #[tokio::test]
    async fn a_stale_carried_checkpoint_never_reports_a_failure_or_commits() {
        let (_dir, store, fence) = one_ticket().await;
        let mut known = KnownCheckpoint::default();
        apply_batch(&store, &store, &fence, 1, &mut known)
            .await
            .expect("first batch");
        // As if the slot had been swapped for one at a lower checkpoint: the
        // event after the carried one does not fold onto the stored row.
        known.0 = Some(2);
        let stale = apply_batch(&store, &store, &fence, 10, &mut known).await;
        assert!(
            matches!(
                stale,
                Err(ProjectorError::Views(ViewError::CheckpointMoved {
                    expected: 2,
                    found: 1
                }))
            ),
            "a fold failure after a stale checkpoint is a moved checkpoint, not a dead letter: {stale:?}"
        );
        assert_eq!(known.0, None, "the error forgets the carried checkpoint");
        let next = apply_batch(&store, &store, &fence, 10, &mut known).await;
        assert!(matches!(
            next,
            Ok(Batch::Applied {
                from: 1,
                to: 3,
                failed: None,
                ..
            })
        ));
    }
}
