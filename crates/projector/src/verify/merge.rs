//! The merge-join at the centre of `verify`: the history and the slot's
//! rows, both in ticket id order, walked together; each ticket compared
//! with its row, the differences tallied, and for the dashboard the counts
//! checked at the end.

use std::cmp::Ordering;
use std::collections::HashSet;

use eventstore::{EventStore, Position};
use readmodel::{DashboardDelta, Projection, SlotAdmin, Target};
use uuid::Uuid;

use super::VerifyOptions;
use super::compare::{Verdict, compare};
use super::counts::{check_counts, counts_of};
use super::history::TicketCursor;
use super::report::{Difference, Tally, VerifyReport};
use super::rows::{Row, RowCursor};
use crate::ProjectorError;

/// What one check of a slot against the history works from.
pub(super) struct Check<'a> {
    pub(super) events: &'a dyn EventStore,
    pub(super) views: &'a dyn SlotAdmin,
    pub(super) projection: Projection,
    pub(super) target: Target,
    pub(super) options: &'a VerifyOptions,
    /// The slot's checkpoint when the check started.
    pub(super) checkpoint: Position,
    /// Positions the projection skipped (dead letters set aside).
    pub(super) skipped: HashSet<Position>,
}

/// Merges the history with the slot's rows and compares them ticket by
/// ticket; for the dashboard, then the counts.
pub(super) async fn compare_all(
    check: &Check<'_>,
    mut history: TicketCursor,
) -> Result<VerifyReport, ProjectorError> {
    let Check {
        events,
        views,
        projection,
        target,
        options,
        checkpoint,
        ref skipped,
    } = *check;
    let mut slot = RowCursor::new(views, projection, target, options.page_size.max(1));
    let mut tally = Tally::new(options.max_listed);
    let mut row_counts = DashboardDelta::default();
    let (mut tickets, mut rows) = (0u64, 0u64);

    let mut next_ticket = history.next().await;
    let mut next_row = slot.next().await?;
    loop {
        let order = match (&next_ticket, &next_row) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((id, _)), Some(row)) => id.cmp(&row.id()),
        };
        let (id, ticket_events, row) = match order {
            Ordering::Less => {
                let (id, evs) = next_ticket.take().unwrap_or_default();
                next_ticket = history.next().await;
                (id, evs, None)
            }
            Ordering::Greater => {
                let row = next_row.take();
                next_row = slot.next().await?;
                let id = row.as_ref().map_or(Uuid::nil(), Row::id);
                (id, Vec::new(), row)
            }
            Ordering::Equal => {
                let (id, evs) = next_ticket.take().unwrap_or_default();
                let row = next_row.take();
                next_ticket = history.next().await;
                next_row = slot.next().await?;
                (id, evs, row)
            }
        };
        if !ticket_events.is_empty() {
            tickets += 1;
        }
        if let Some(row) = &row {
            rows += 1;
            if let Row::Dashboard(status) = row {
                row_counts.moved(None, status.status);
            }
        }
        let mut verdict = compare(
            projection,
            checkpoint,
            &ticket_events,
            row.as_ref(),
            skipped,
            false,
        );
        if verdict == Verdict::NeedsNewerEvents {
            // The daemon applied events appended after this ticket was read.
            let fresh = events.read_stream(id).await?;
            verdict = compare(projection, checkpoint, &fresh, row.as_ref(), skipped, true);
        }
        if let Verdict::Differs(kind) = verdict {
            tally.push(Difference {
                projection,
                ticket: Some(id),
                kind,
            });
        }
    }

    let mut notes = Vec::new();
    let mut counts_checked = false;
    if projection == Projection::Dashboard {
        let merged = counts_of(row_counts);
        match check_counts(views, target, checkpoint, merged, options).await? {
            Some(Some(difference)) => {
                counts_checked = true;
                tally.push(difference);
            }
            Some(None) => counts_checked = true,
            None => notes.push(format!(
                "dashboard counts not compared with the status rows: the checkpoint kept moving ({} tries); run verify again when the projector is quieter",
                options.count_attempts
            )),
        }
    }

    Ok(VerifyReport {
        projection,
        target,
        checkpoint,
        tickets,
        rows,
        counts_checked,
        differences: tally.listed,
        total_differences: tally.total,
        notes,
    })
}
