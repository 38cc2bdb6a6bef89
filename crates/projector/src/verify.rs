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

use std::cmp::Ordering;
use std::collections::{HashSet, VecDeque};
use std::fmt;

use eventstore::{EventStore, Position, RecordedEvent, StoreError};
use readmodel::{
    Dashboard, DashboardDelta, FailedEvent, Projection, ProjectionStatus, Rows, SlotState, Target,
    TicketDetail, TicketListRow, TicketStatusRow, ViewError, ViewStore, fold_batch,
};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::ProjectorError;

/// Pages of history read ahead of the comparison.
const HISTORY_PAGES_AHEAD: usize = 2;

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
            page_size: 500,
            max_listed: 20,
            count_attempts: 5,
        }
    }
}

/// One way a slot differs from the fold of the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    #[serde(serialize_with = "crate::names::serialize_projection")]
    pub projection: Projection,
    /// The ticket, for row differences (none for the dashboard counts).
    pub ticket: Option<Uuid>,
    #[serde(flatten)]
    pub kind: DifferenceKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DifferenceKind {
    /// The history has the ticket at the checkpoint; the slot has no row.
    Missing { expected_version: u64 },
    /// The slot has a row for a ticket the history does not know.
    Extra { stored_version: u64 },
    /// The row is older than the slot's checkpoint says it should be.
    Behind {
        stored_version: u64,
        expected_version: u64,
    },
    /// The row is at a version the history does not have.
    AheadOfHistory {
        stored_version: u64,
        history_version: u64,
    },
    /// Same version, different content.
    Mismatch {
        version: u64,
        fields: Vec<FieldDifference>,
    },
    /// An event at or below the checkpoint that the fold cannot apply and that
    /// is not a skipped dead letter: the slot claims to be past it.
    Unappliable { position: Position, reason: String },
    /// The dashboard counts disagree with the sum of the status rows.
    Counts {
        stored: Dashboard,
        from_rows: Dashboard,
    },
}

/// One field of a row that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDifference {
    pub field: String,
    pub stored: Value,
    pub expected: Value,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let projection = self.projection;
        match self.ticket {
            Some(ticket) => write!(f, "{projection} {ticket}: ")?,
            None => write!(f, "{projection}: ")?,
        }
        match &self.kind {
            DifferenceKind::Missing { expected_version } => {
                write!(
                    f,
                    "row missing (the history has version {expected_version})"
                )
            }
            DifferenceKind::Extra { stored_version } => write!(
                f,
                "extra row at version {stored_version} (no such ticket in the history)"
            ),
            DifferenceKind::Behind {
                stored_version,
                expected_version,
            } => write!(
                f,
                "row at version {stored_version}, behind the checkpoint (the history has version {expected_version})"
            ),
            DifferenceKind::AheadOfHistory {
                stored_version,
                history_version,
            } => write!(
                f,
                "row at version {stored_version}, beyond the history (version {history_version})"
            ),
            DifferenceKind::Mismatch { version, fields } => {
                write!(f, "row at version {version} differs: ")?;
                for (n, field) in fields.iter().enumerate() {
                    if n > 0 {
                        f.write_str("; ")?;
                    }
                    write!(
                        f,
                        "{} stored {}, expected {}",
                        field.field,
                        short(&field.stored),
                        short(&field.expected)
                    )?;
                }
                Ok(())
            }
            DifferenceKind::Unappliable { position, reason } => write!(
                f,
                "the checkpoint is past event {position}, which cannot be applied: {reason}"
            ),
            DifferenceKind::Counts { stored, from_rows } => write!(
                f,
                "counts open/triaged/closed are {}/{}/{}, the status rows sum to {}/{}/{}",
                stored.open,
                stored.triaged,
                stored.closed,
                from_rows.open,
                from_rows.triaged,
                from_rows.closed
            ),
        }
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 80 {
        return text;
    }
    let cut: String = text.chars().take(79).collect();
    format!("{cut}…")
}

/// What `verify` found in one slot.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    #[serde(serialize_with = "crate::names::serialize_projection")]
    pub projection: Projection,
    #[serde(serialize_with = "crate::names::serialize_target")]
    pub target: Target,
    /// The slot's checkpoint when the check started.
    pub checkpoint: Position,
    /// Tickets in the history.
    pub tickets: u64,
    /// Rows in the slot.
    pub rows: u64,
    /// Whether the dashboard counts were compared with the status rows
    /// (always false for other projections).
    pub counts_checked: bool,
    /// The first differences found (at most `VerifyOptions::max_listed`).
    pub differences: Vec<Difference>,
    pub total_differences: u64,
    /// Things worth knowing that are not differences.
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.total_differences == 0
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.total_differences {
            0 => "ok".to_owned(),
            1 => "1 difference".to_owned(),
            n => format!("{n} differences"),
        };
        write!(
            f,
            "{} ({} slot, checkpoint {}): {} tickets, {} rows",
            self.projection,
            self.target.name(),
            self.checkpoint,
            self.tickets,
            self.rows
        )?;
        if self.counts_checked {
            f.write_str(", counts checked against the rows")?;
        }
        write!(f, ": {verdict}")?;
        for difference in &self.differences {
            write!(f, "\n  {difference}")?;
        }
        let unlisted = self.total_differences - self.differences.len() as u64;
        if unlisted > 0 {
            write!(f, "\n  … and {unlisted} more")?;
        }
        for note in &self.notes {
            write!(f, "\n  note: {note}")?;
        }
        Ok(())
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

/// Sends the history in (ticket id, version) order, a page at a time, until
/// it ends or the receiver is gone.
async fn read_history(
    events: &dyn EventStore,
    page_size: usize,
    pages: mpsc::Sender<Vec<RecordedEvent>>,
) -> Result<(), StoreError> {
    let mut after = None;
    loop {
        let page = events.read_by_ticket(after, page_size).await?;
        let last_page = page.len() < page_size;
        if let Some(last) = page.last() {
            after = Some((last.ticket_id, last.version));
        }
        if !page.is_empty() && pages.send(page).await.is_err() {
            // The comparison stopped (it failed); nothing is waiting.
            return Ok(());
        }
        if last_page {
            return Ok(());
        }
    }
}

/// What one check of a slot against the history works from.
struct Check<'a> {
    events: &'a dyn EventStore,
    views: &'a dyn ViewStore,
    projection: Projection,
    target: Target,
    options: &'a VerifyOptions,
    /// The slot's checkpoint when the check started.
    checkpoint: Position,
    /// Positions the projection skipped (dead letters set aside).
    skipped: HashSet<Position>,
}

/// Merges the history with the slot's rows and compares them ticket by
/// ticket; for the dashboard, then the counts.
async fn compare_all(
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

/// Compares the counts with the sum of the status rows, both read while the
/// checkpoint stood still. `None`: it never stood still long enough.
async fn check_counts(
    views: &dyn ViewStore,
    target: Target,
    start: Position,
    merged: Dashboard,
    options: &VerifyOptions,
) -> Result<Option<Option<Difference>>, ProjectorError> {
    for attempt in 0..options.count_attempts.max(1) {
        let before = views.checkpoint(Projection::Dashboard, target).await?;
        let stored = views.counts(target).await?;
        // The rows summed during the merge are the rows at `start` if the
        // checkpoint has not moved since (every commit moves it).
        let from_rows = if attempt == 0 && before == start {
            merged
        } else {
            sum_status_rows(views, target, options.page_size.max(1)).await?
        };
        let after = views.checkpoint(Projection::Dashboard, target).await?;
        if before != after {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        return Ok(Some(counts_difference(stored, from_rows)));
    }
    Ok(None)
}

fn counts_difference(stored: Dashboard, from_rows: Dashboard) -> Option<Difference> {
    (stored != from_rows).then_some(Difference {
        projection: Projection::Dashboard,
        ticket: None,
        kind: DifferenceKind::Counts { stored, from_rows },
    })
}

async fn sum_status_rows(
    views: &dyn ViewStore,
    target: Target,
    page_size: usize,
) -> Result<Dashboard, ViewError> {
    let mut cursor = RowCursor::new(views, Projection::Dashboard, target, page_size);
    let mut delta = DashboardDelta::default();
    while let Some(row) = cursor.next().await? {
        if let Row::Dashboard(status) = row {
            delta.moved(None, status.status);
        }
    }
    Ok(counts_of(delta))
}

fn counts_of(delta: DashboardDelta) -> Dashboard {
    Dashboard {
        open: delta.open.max(0) as u64,
        triaged: delta.triaged.max(0) as u64,
        closed: delta.closed.max(0) as u64,
    }
}

/// The first differences, and how many there are.
struct Tally {
    listed: Vec<Difference>,
    total: u64,
    max: usize,
}

impl Tally {
    fn new(max: usize) -> Self {
        Self {
            listed: Vec::new(),
            total: 0,
            max,
        }
    }

    fn push(&mut self, difference: Difference) {
        self.total += 1;
        if self.listed.len() < self.max {
            self.listed.push(difference);
        }
    }
}

/// One stored row of any projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Row {
    Detail(TicketDetail),
    List(TicketListRow),
    Dashboard(TicketStatusRow),
}

impl Row {
    fn id(&self) -> Uuid {
        match self {
            Row::Detail(row) => row.id,
            Row::List(row) => row.id,
            Row::Dashboard(row) => row.id,
        }
    }

    fn version(&self) -> u64 {
        match self {
            Row::Detail(row) => row.version,
            Row::List(row) => row.version,
            Row::Dashboard(row) => row.version,
        }
    }

    fn all(rows: Rows) -> Vec<Row> {
        match rows {
            Rows::Detail(rows) => rows.into_iter().map(Row::Detail).collect(),
            Rows::List(rows) => rows.into_iter().map(Row::List).collect(),
            Rows::Dashboard(rows) => rows.into_iter().map(Row::Dashboard).collect(),
        }
    }
}

/// What one ticket's comparison found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Same,
    Differs(DifferenceKind),
    /// The row is further on than the events at hand: read the stream again.
    NeedsNewerEvents,
}

/// Folds one ticket's events (in version order) with the projection's fold.
fn fold_ticket(
    projection: Projection,
    events: &[RecordedEvent],
    skipped: &HashSet<Position>,
) -> Result<Option<Row>, Box<FailedEvent>> {
    let outcome = fold_batch(projection, 0, Rows::empty(projection), events, skipped);
    if let Some(failed) = outcome.failed {
        return Err(Box::new(failed));
    }
    Ok(Row::all(outcome.changes.rows).into_iter().next())
}

fn unappliable(failed: Box<FailedEvent>) -> Verdict {
    Verdict::Differs(DifferenceKind::Unappliable {
        position: failed.event.position,
        reason: failed.error.to_string(),
    })
}

/// The pure heart of `verify`: one ticket's events (all of them known so far,
/// in version order; `complete` when just re-read) against its stored row.
pub(crate) fn compare(
    projection: Projection,
    checkpoint: Position,
    events: &[RecordedEvent],
    stored: Option<&Row>,
    skipped: &HashSet<Position>,
    complete: bool,
) -> Verdict {
    // A ticket's versions are in commit order, so the events at or below the
    // checkpoint are a prefix of its stream.
    let at_checkpoint = events.partition_point(|event| event.position <= checkpoint);
    let expected = match fold_ticket(projection, &events[..at_checkpoint], skipped) {
        Ok(expected) => expected,
        Err(failed) => return unappliable(failed),
    };
    let expected_version = expected.as_ref().map_or(0, Row::version);
    let Some(stored) = stored else {
        return match expected {
            None => Verdict::Same,
            Some(_) => Verdict::Differs(DifferenceKind::Missing { expected_version }),
        };
    };
    let stored_version = stored.version();
    match (stored_version.cmp(&expected_version), expected) {
        (Ordering::Less, _) => Verdict::Differs(DifferenceKind::Behind {
            stored_version,
            expected_version,
        }),
        (Ordering::Equal, Some(expected)) => compare_rows(stored, &expected),
        // Further on than the checkpoint: the slot moved on since the check
        // started. Compare with the fold up to the row's own version.
        _ => {
            let history_version = events.last().map_or(0, |event| event.version);
            if history_version < stored_version {
                return match (complete, history_version) {
                    (false, _) => Verdict::NeedsNewerEvents,
                    (true, 0) => Verdict::Differs(DifferenceKind::Extra { stored_version }),
                    (true, _) => Verdict::Differs(DifferenceKind::AheadOfHistory {
                        stored_version,
                        history_version,
                    }),
                };
            }
            let upto = events.partition_point(|event| event.version <= stored_version);
            match fold_ticket(projection, &events[..upto], skipped) {
                Ok(Some(expected)) => compare_rows(stored, &expected),
                Ok(None) => Verdict::Differs(DifferenceKind::Extra { stored_version }),
                Err(failed) => unappliable(failed),
            }
        }
    }
}

fn compare_rows(stored: &Row, expected: &Row) -> Verdict {
    if stored == expected {
        return Verdict::Same;
    }
    let as_json = |row: &Row| serde_json::to_value(row).unwrap_or(Value::Null);
    let (stored_json, expected_json) = (as_json(stored), as_json(expected));
    let fields = match (&stored_json, &expected_json) {
        (Value::Object(s), Value::Object(e)) => {
            let mut keys: Vec<&String> = s.keys().chain(e.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|key| s.get(*key) != e.get(*key))
                .map(|key| FieldDifference {
                    field: key.clone(),
                    stored: s.get(key).cloned().unwrap_or(Value::Null),
                    expected: e.get(key).cloned().unwrap_or(Value::Null),
                })
                .collect()
        }
        _ => vec![FieldDifference {
            field: "row".to_owned(),
            stored: stored_json,
            expected: expected_json,
        }],
    };
    Verdict::Differs(DifferenceKind::Mismatch {
        version: stored.version(),
        fields,
    })
}

/// The history, one ticket at a time, in ticket id order, from the pages
/// [`read_history`] sends.
struct TicketCursor {
    pages: mpsc::Receiver<Vec<RecordedEvent>>,
    page: VecDeque<RecordedEvent>,
}

impl TicketCursor {
    fn new(pages: mpsc::Receiver<Vec<RecordedEvent>>) -> Self {
        Self {
            pages,
            page: VecDeque::new(),
        }
    }

    async fn fill(&mut self) {
        if self.page.is_empty()
            && let Some(page) = self.pages.recv().await
        {
            self.page.extend(page);
        }
    }

    /// The next ticket's events, in version order.
    async fn next(&mut self) -> Option<(Uuid, Vec<RecordedEvent>)> {
        self.fill().await;
        let first = self.page.pop_front()?;
        let id = first.ticket_id;
        let mut events = vec![first];
        loop {
            self.fill().await;
            match self.page.front() {
                Some(event) if event.ticket_id == id => {
                    events.extend(self.page.pop_front());
                }
                _ => return Some((id, events)),
            }
        }
    }
}

/// A slot's rows in id order.
struct RowCursor<'a> {
    views: &'a dyn ViewStore,
    projection: Projection,
    target: Target,
    page: VecDeque<Row>,
    after: Option<Uuid>,
    exhausted: bool,
    page_size: usize,
}

impl<'a> RowCursor<'a> {
    fn new(
        views: &'a dyn ViewStore,
        projection: Projection,
        target: Target,
        page_size: usize,
    ) -> Self {
        Self {
            views,
            projection,
            target,
            page: VecDeque::new(),
            after: None,
            exhausted: false,
            page_size,
        }
    }

    async fn next(&mut self) -> Result<Option<Row>, ViewError> {
        if self.page.is_empty() && !self.exhausted {
            let rows = Row::all(
                self.views
                    .scan_rows(self.projection, self.target, self.after, self.page_size)
                    .await?,
            );
            self.exhausted = rows.len() < self.page_size;
            if let Some(last) = rows.last() {
                self.after = Some(last.id());
            }
            self.page.extend(rows);
        }
        Ok(self.page.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use domain::{Event, Status};
    use eventstore::{Metadata, NewEvent};

    use super::*;

    fn recorded(ticket: Uuid, version: u64, position: Position, event: &Event) -> RecordedEvent {
        let at = Utc
            .timestamp_opt(1_700_000_000 + position as i64, 0)
            .single()
            .expect("time");
        let new = NewEvent::from_domain(event, at, Metadata::default());
        RecordedEvent {
            position,
            ticket_id: ticket,
            version,
            event_id: new.event_id,
            event_type: new.event_type,
            schema_version: new.schema_version,
            occurred_at: at,
            data: new.data,
            metadata: new.metadata,
        }
    }

    /// Ticket events at positions 10, 20, 30: opened, triaged, closed.
    fn history() -> (Uuid, Vec<RecordedEvent>) {
        let id = Uuid::now_v7();
        let events = [
            Event::TicketOpened {
                customer: "c".into(),
                subject: "s".into(),
                message: "m".into(),
            },
            Event::TicketTriaged,
            Event::TicketClosed,
        ];
        let recorded = events
            .iter()
            .enumerate()
            .map(|(i, e)| recorded(id, i as u64 + 1, (i as u64 + 1) * 10, e))
            .collect();
        (id, recorded)
    }

    fn folded(projection: Projection, events: &[RecordedEvent]) -> Row {
        fold_ticket(projection, events, &HashSet::new())
            .expect("folds")
            .expect("a row")
    }

    fn check(checkpoint: Position, events: &[RecordedEvent], stored: Option<&Row>) -> Verdict {
        compare(
            Projection::List,
            checkpoint,
            events,
            stored,
            &HashSet::new(),
            false,
        )
    }

    #[test]
    fn a_row_equal_to_the_fold_at_the_checkpoint_is_the_same() {
        let (_, events) = history();
        let row = folded(Projection::List, &events[..2]);
        assert_eq!(check(25, &events, Some(&row)), Verdict::Same);
        assert_eq!(check(5, &events, None), Verdict::Same, "not yet projected");
    }

    #[test]
    fn a_row_further_on_is_compared_at_its_own_version() {
        let (_, events) = history();
        let row = folded(Projection::List, &events);
        assert_eq!(
            check(15, &events, Some(&row)),
            Verdict::Same,
            "the daemon moved on"
        );
        assert_eq!(
            check(15, &events[..2], Some(&row)),
            Verdict::NeedsNewerEvents,
            "the events were read before the last one was appended"
        );
    }

    #[test]
    fn behind_missing_extra_and_beyond_the_history_are_differences() {
        let (id, events) = history();
        let early = folded(Projection::List, &events[..1]);
        assert_eq!(
            check(25, &events, Some(&early)),
            Verdict::Differs(DifferenceKind::Behind {
                stored_version: 1,
                expected_version: 2
            })
        );
        assert_eq!(
            check(25, &events, None),
            Verdict::Differs(DifferenceKind::Missing {
                expected_version: 2
            })
        );
        let stray = folded(Projection::List, &events);
        let verdict = compare(
            Projection::List,
            25,
            &[],
            Some(&stray),
            &HashSet::new(),
            true,
        );
        assert_eq!(
            verdict,
            Verdict::Differs(DifferenceKind::Extra { stored_version: 3 })
        );
        let verdict = compare(
            Projection::List,
            25,
            &events[..2],
            Some(&stray),
            &HashSet::new(),
            true,
        );
        assert_eq!(
            verdict,
            Verdict::Differs(DifferenceKind::AheadOfHistory {
                stored_version: 3,
                history_version: 2
            })
        );
        assert_eq!(stray.id(), id);
    }

    #[test]
    fn a_tampered_field_is_named_with_both_values() {
        let (_, events) = history();
        let Row::List(mut row) = folded(Projection::List, &events) else {
            panic!("a list row");
        };
        row.subject = "tampered".into();
        let verdict = check(30, &events, Some(&Row::List(row)));
        let Verdict::Differs(DifferenceKind::Mismatch { version, fields }) = verdict else {
            panic!("a mismatch: {verdict:?}");
        };
        assert_eq!(version, 3);
        assert_eq!(
            fields,
            vec![FieldDifference {
                field: "subject".into(),
                stored: Value::from("tampered"),
                expected: Value::from("s"),
            }]
        );
    }

    #[test]
    fn an_unappliable_event_below_the_checkpoint_is_a_difference_unless_skipped() {
        let (_, mut events) = history();
        events[1].event_type = "TicketMerged".into();
        let row = Row::Dashboard(TicketStatusRow {
            id: events[0].ticket_id,
            status: Status::Closed,
            version: 3,
        });
        let verdict = compare(
            Projection::Dashboard,
            30,
            &events,
            Some(&row),
            &HashSet::new(),
            false,
        );
        assert!(
            matches!(
                verdict,
                Verdict::Differs(DifferenceKind::Unappliable { position: 20, .. })
            ),
            "{verdict:?}"
        );
        let skipped = HashSet::from([20]);
        let verdict = compare(
            Projection::Dashboard,
            30,
            &events,
            Some(&row),
            &skipped,
            false,
        );
        assert_eq!(verdict, Verdict::Same);
    }

    #[test]
    fn counts_must_equal_the_sum_of_the_rows() {
        let stored = Dashboard {
            open: 1,
            triaged: 2,
            closed: 3,
        };
        assert_eq!(counts_difference(stored, stored), None);
        let off = Dashboard {
            closed: 4,
            ..stored
        };
        let difference = counts_difference(stored, off).expect("a difference");
        assert_eq!(
            difference.to_string(),
            "dashboard: counts open/triaged/closed are 1/2/3, the status rows sum to 1/2/4"
        );
    }

    #[test]
    fn the_report_lists_a_bounded_number_and_counts_all() {
        let mut tally = Tally::new(2);
        for _ in 0..5 {
            tally.push(Difference {
                projection: Projection::List,
                ticket: Some(Uuid::nil()),
                kind: DifferenceKind::Extra { stored_version: 1 },
            });
        }
        let report = VerifyReport {
            projection: Projection::List,
            target: Target::Live,
            checkpoint: 9,
            tickets: 0,
            rows: 5,
            counts_checked: false,
            differences: tally.listed,
            total_differences: tally.total,
            notes: Vec::new(),
        };
        let text = report.to_string();
        assert!(
            text.starts_with("list (live slot, checkpoint 9): 0 tickets, 5 rows: 5 differences"),
            "{text}"
        );
        assert!(text.ends_with("… and 3 more"), "{text}");
    }
}
