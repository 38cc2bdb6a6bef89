//! A fresh rebuild's first pass: the history folded one ticket at a time and
//! every row written once.
//!
//! Replaying in global order touches a ticket once per event: each batch
//! loads the rows its events touch and writes them back, so a ticket with
//! five events is read and written five times, and each write moves it in
//! every secondary index of the slot. An empty shadow needs none of that.
//! This pass reads the store by ticket (a ticket's events together, in
//! version order), folds each ticket to its final row in memory and writes
//! it once, in id order, into the shadow with its indexes in place.
//!
//! Commits are small and paced (`rebuild::pace`): each holds the store's
//! write lock for a few milliseconds and is followed by a pause, so a live
//! service's appends beside the rebuild never wait long. (The pass once set
//! the shadow's secondary indexes aside and built each in one sort at the
//! end: faster on a quiet store, but on SQLite the build is one write
//! transaction as long as the sort, seconds at a million tickets, during
//! which every append waited or failed.)
//!
//! The pass covers the events up to `upto`, the head when it starts. A
//! ticket's later events are the end of its stream, so they are left out
//! here and applied by the ordinary replay that follows from checkpoint
//! `upto`. Every commit but the last leaves the shadow's checkpoint at 0; the
//! last moves it to `upto`. An interrupted pass therefore leaves a building
//! shadow at checkpoint 0, which the next rebuild empties and starts again:
//! this pass does not resume, the global-order replay after it does.
//!
//! Reading (on the event store's thread), folding (on the pass's task) and
//! committing (on the view store's thread) run side by side, each a run of
//! tickets ahead of the next, so on two cores the pass takes about as long as
//! the slowest of the three rather than their sum.
//!
//! Anything out of the ordinary (an event the fold cannot apply, a failing
//! store) ends the pass as [`Pass::Abandoned`]; the rebuild then empties the
//! shadow and replays in global order, which stops at a bad event, retries a
//! failing store and reports either exactly as it always has.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use eventstore::{EventStore, Position, RecordedEvent, StoreError};
use readmodel::{Fence, Projection, ProjectionWriter, ViewChanges, ViewError, fold_batch};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::rebuild::pace::Pace;

/// Tickets in the first commit; later ones are sized by their pace.
const FIRST_COMMIT: usize = 64;
/// Most tickets in one commit.
const MAX_COMMIT: usize = 5000;

/// How a pass ended.
#[derive(Debug)]
pub(crate) enum Pass {
    /// Every event up to `upto` is in the shadow, whose checkpoint is `upto`.
    Done,
    /// The shadow holds some rows and checkpoint 0; `reason` says why the
    /// pass gave up.
    Abandoned { reason: String },
    /// Shutdown was asked for; the shadow is left at checkpoint 0.
    Interrupted,
    /// The fence no longer holds the shadow's lease.
    LeaseLost,
}

/// What the pass needs from the rebuild around it.
pub(crate) struct BulkPass<'a> {
    pub events: &'a dyn EventStore,
    pub views: &'a dyn ProjectionWriter,
    pub fence: &'a Fence,
    /// Events read per round trip to the event store.
    pub read_size: usize,
    pub shutdown: &'a CancellationToken,
    pub lost: &'a CancellationToken,
}

/// What the reader hands the writer.
enum Chunk {
    /// A run of whole tickets, each ticket's events in version order.
    Tickets(Vec<RecordedEvent>),
    /// Every event up to `upto` was sent. (A reader that fails closes the
    /// channel without this, so the writer never takes a failed read for
    /// the end of the history.)
    End,
}

impl BulkPass<'_> {
    /// Folds every event up to `upto` into the (empty) shadow; `advanced` is
    /// told how many events are folded so far.
    pub(crate) async fn run(&self, upto: Position, advanced: &(dyn Fn(u64) + Sync)) -> Pass {
        let projection = self.fence.projection;
        let skipped = match self.views.skipped_positions(projection, 0, upto).await {
            Ok(skipped) => skipped,
            Err(error) => return abandoned("reading the skipped dead letters", &error),
        };
        // Two chunks in flight: one being folded and written, one read ahead.
        let (sender, receiver) = mpsc::channel::<Chunk>(2);
        let stop = CancellationToken::new();
        let reading = self.read(upto, sender, &stop);
        let writing = self.write(projection, upto, receiver, &skipped, &stop, advanced);
        let (read, written) = tokio::join!(reading, writing);
        match (written, read) {
            // The writer only saw the channel close; the reader knows why.
            (Pass::Abandoned { .. }, Err(error)) => {
                abandoned("reading the events by ticket", &error)
            }
            (written, _) => written,
        }
    }

    /// Reads the store by ticket and sends runs of whole tickets; the last
    /// ticket of a read is held back until the next read shows it ended.
    async fn read(
        &self,
        upto: Position,
        sender: mpsc::Sender<Chunk>,
        stop: &CancellationToken,
    ) -> Result<(), StoreError> {
        let mut after: Option<(Uuid, u64)> = None;
        let mut pending: Vec<RecordedEvent> = Vec::new();
        loop {
            let read = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                read = self.events.read_by_ticket(after, self.read_size) => read?,
            };
            let exhausted = read.len() < self.read_size;
            if let Some(last) = read.last() {
                after = Some((last.ticket_id, last.version));
            }
            pending.extend(read.into_iter().filter(|event| event.position <= upto));
            let complete = if exhausted {
                std::mem::take(&mut pending)
            } else {
                let open = open_ticket(&pending);
                let held = pending.split_off(open);
                std::mem::replace(&mut pending, held)
            };
            // A failed send means the writer gave up; it says why.
            if !complete.is_empty() && sender.send(Chunk::Tickets(complete)).await.is_err() {
                return Ok(());
            }
            if exhausted {
                let _ = sender.send(Chunk::End).await;
                return Ok(());
            }
        }
    }

    /// Folds and commits each run; the last commit moves the checkpoint.
    /// Folding a run (on this task) overlaps the commit of the run before it
    /// (on the view store's thread).
    async fn write(
        &self,
        projection: Projection,
        upto: Position,
        receiver: mpsc::Receiver<Chunk>,
        skipped: &HashSet<Position>,
        stop: &CancellationToken,
        advanced: &(dyn Fn(u64) + Sync),
    ) -> Pass {
        // Whatever this returns, the reader must stop too.
        let _stop_reader = stop.clone().drop_guard();
        let (sender, folded) = mpsc::channel::<Folded>(1);
        // Tickets per commit: set by the committer's pace, read by the folder.
        let size = AtomicUsize::new(FIRST_COMMIT);
        let folding = self.fold(projection, upto, receiver, skipped, sender, &size);
        let committing = self.commit(folded, advanced, &size);
        match tokio::join!(folding, committing) {
            // The committer only saw the channel close; the folder knows why.
            (Some(stopped), _) => stopped,
            (None, committed) => committed,
        }
    }

    /// Folds each run of tickets into the changes of one commit. `None` when
    /// every run was handed on, or the committer stopped (it says why).
    async fn fold(
        &self,
        projection: Projection,
        upto: Position,
        mut receiver: mpsc::Receiver<Chunk>,
        skipped: &HashSet<Position>,
        sender: mpsc::Sender<Folded>,
        size: &AtomicUsize,
    ) -> Option<Pass> {
        loop {
            if self.shutdown.is_cancelled() {
                return Some(Pass::Interrupted);
            }
            if self.lost.is_cancelled() {
                return Some(Pass::LeaseLost);
            }
            let (events, last) = match receiver.recv().await {
                Some(Chunk::Tickets(events)) => (events, false),
                Some(Chunk::End) => (Vec::new(), true),
                None => {
                    return Some(Pass::Abandoned {
                        reason: "the reader stopped".to_owned(),
                    });
                }
            };
            // A read is split into commits of whole tickets, as many as the
            // pace allows; the end of the history is a commit of its own,
            // with no rows, that moves the checkpoint.
            let mut rest: &[RecordedEvent] = &events;
            loop {
                let cut = tickets_end(rest, size.load(Ordering::Relaxed));
                let (run, after) = rest.split_at(cut);
                rest = after;
                let outcome = fold_batch(
                    projection,
                    0,
                    readmodel::Rows::empty(projection),
                    run,
                    skipped,
                );
                if let Some(failed) = outcome.failed {
                    return Some(Pass::Abandoned {
                        reason: format!(
                            "event {} cannot be folded: {}",
                            failed.event.position, failed.error
                        ),
                    });
                }
                let changes = ViewChanges {
                    from: 0,
                    to: if last { upto } else { 0 },
                    ..outcome.changes
                };
                let folded = Folded {
                    tickets: changes.rows.len(),
                    changes,
                    events: run.len() as u64,
                    last,
                };
                if sender.send(folded).await.is_err() || last {
                    return None;
                }
                if rest.is_empty() {
                    break;
                }
            }
        }
    }

    /// Commits the folded runs in order; done once the last is committed.
    async fn commit(
        &self,
        mut folded: mpsc::Receiver<Folded>,
        advanced: &(dyn Fn(u64) + Sync),
        size: &AtomicUsize,
    ) -> Pass {
        let mut pace = Pace::new(FIRST_COMMIT, 1, MAX_COMMIT);
        let mut events = 0_u64;
        while let Some(run) = folded.recv().await {
            let started = Instant::now();
            match self.views.commit(self.fence, run.changes).await {
                Ok(()) => {}
                Err(ViewError::LeaseLost { .. }) => return Pass::LeaseLost,
                Err(error) => return abandoned("writing the shadow", &error),
            }
            let took = started.elapsed();
            events += run.events;
            advanced(events);
            if run.last {
                return Pass::Done;
            }
            let head = match self.events.head().await {
                Ok(head) => head,
                Err(error) => return abandoned("reading the head", &error),
            };
            let pause = pace.committed(run.tickets, took, head);
            size.store(pace.size(), Ordering::Relaxed);
            tokio::select! {
                () = self.shutdown.cancelled() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        // Not a reason of its own: the folder stopped, and says why.
        Pass::Abandoned {
            reason: "the folder stopped".to_owned(),
        }
    }
}

/// One run of tickets, folded and ready to commit.
struct Folded {
    changes: ViewChanges,
    /// The rows it writes, for the pace.
    tickets: usize,
    /// The events it holds, for the progress count.
    events: u64,
    /// The last run: its commit moves the checkpoint to the pass's end.
    last: bool,
}

/// Where the last ticket of `events` starts: everything before it is whole.
fn open_ticket(events: &[RecordedEvent]) -> usize {
    let Some(last) = events.last() else {
        return 0;
    };
    events
        .iter()
        .rposition(|event| event.ticket_id != last.ticket_id)
        .map_or(0, |before| before + 1)
}

/// Where the run of the first `tickets` tickets of `events` ends (all of
/// them when there are no more).
fn tickets_end(events: &[RecordedEvent], tickets: usize) -> usize {
    let mut seen = 0;
    let mut previous = None;
    for (at, event) in events.iter().enumerate() {
        if previous != Some(event.ticket_id) {
            if seen == tickets.max(1) {
                return at;
            }
            seen += 1;
            previous = Some(event.ticket_id);
        }
    }
    events.len()
}

fn abandoned(doing: &str, error: &dyn std::fmt::Display) -> Pass {
    Pass::Abandoned {
        reason: format!("{doing}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use domain::Event;
    use eventstore::{Metadata, NewEvent};

    use super::*;

    fn event(ticket: Uuid, version: u64) -> RecordedEvent {
        let new = NewEvent::from_domain(&Event::AgentUnassigned, Utc::now(), Metadata::default());
        RecordedEvent {
            position: version,
            ticket_id: ticket,
            version,
            event_id: new.event_id,
            event_type: new.event_type,
            schema_version: new.schema_version,
            occurred_at: new.occurred_at,
            data: new.data,
            metadata: new.metadata,
        }
    }

    #[test]
    fn the_open_ticket_is_the_run_of_the_last_id() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(open_ticket(&[]), 0);
        assert_eq!(open_ticket(&[event(a, 1), event(a, 2)]), 0);
        assert_eq!(open_ticket(&[event(a, 1), event(b, 1), event(b, 2)]), 1);
        assert_eq!(open_ticket(&[event(a, 1), event(a, 2), event(b, 1)]), 2);
    }

    #[test]
    fn a_run_of_tickets_ends_where_the_next_ticket_starts() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let events = [
            event(a, 1),
            event(a, 2),
            event(b, 1),
            event(c, 1),
            event(c, 2),
        ];
        assert_eq!(tickets_end(&events, 1), 2);
        assert_eq!(tickets_end(&events, 2), 3);
        assert_eq!(tickets_end(&events, 3), 5);
        assert_eq!(tickets_end(&events, 9), 5);
        assert_eq!(tickets_end(&events, 0), 2, "at least one ticket");
        assert_eq!(tickets_end(&[], 2), 0);
    }
}
