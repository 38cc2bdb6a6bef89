//! Folding events into the projections' rows: pure functions, no IO.
//!
//! The version guard lives here, once for every projection: an event at or
//! below a row's version was already applied and changes nothing, so replays
//! (after a crash, an overlap, a rebuild) are harmless; an event that skips a
//! version is an error, never silently applied. An event ops chose to skip
//! (a dead letter) moves the row's version on and changes nothing else.

use std::collections::{HashMap, HashSet};

use domain::{Event, Status};
use eventstore::{DecodeError, Position, RecordedEvent};
use uuid::Uuid;

use crate::preview::preview;
use crate::projection::Projection;
use crate::views::{DashboardDelta, Note, Rows, TicketDetail, TicketListRow, TicketStatusRow};

/// An event a projection cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    #[error("event at position {position} cannot be decoded: {source}")]
    Undecodable {
        position: Position,
        #[source]
        source: DecodeError,
    },
    #[error(
        "event at position {position} has version {found} for ticket {ticket_id}, expected {expected}"
    )]
    VersionGap {
        position: Position,
        ticket_id: Uuid,
        expected: u64,
        found: u64,
    },
    #[error(
        "event at position {position} ({event_type}) cannot start a ticket: the first event must be TicketOpened"
    )]
    NotOpened {
        position: Position,
        event_type: String,
    },
}

/// A row a projection keeps per ticket.
trait Row: Clone {
    fn id(&self) -> Uuid;
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);
    /// Applies a decoded event to the row (`None`: the ticket has no row yet).
    fn apply(
        current: Option<&Self>,
        event: &RecordedEvent,
        decoded: Event,
    ) -> Result<Self, ProjectionError>;
}

/// The guard around every projection's fold. `Ok(None)`: the row already
/// reflects the event (or a skipped event found no row to move on).
fn fold_row<R: Row>(
    current: Option<&R>,
    event: &RecordedEvent,
    skipped: bool,
) -> Result<Option<R>, ProjectionError> {
    let applied = current.map_or(0, Row::version);
    if event.version <= applied {
        return Ok(None);
    }
    if event.version != applied + 1 {
        return Err(ProjectionError::VersionGap {
            position: event.position,
            ticket_id: event.ticket_id,
            expected: applied + 1,
            found: event.version,
        });
    }
    if skipped {
        return Ok(current.map(|row| {
            let mut row = row.clone();
            row.set_version(event.version);
            row
        }));
    }
    let decoded = event
        .decode()
        .map_err(|source| ProjectionError::Undecodable {
            position: event.position,
            source,
        })?;
    let mut row = R::apply(current, event, decoded)?;
    row.set_version(event.version);
    Ok(Some(row))
}

fn not_opened(event: &RecordedEvent) -> ProjectionError {
    ProjectionError::NotOpened {
        position: event.position,
        event_type: event.event_type.clone(),
    }
}

/// What an event changes in a ticket that already has a row: the three folds
/// keep different rows, but read the events the same way.
enum Change {
    None,
    /// The customer's words are gone: every personal field reads
    /// [`domain::ERASED`].
    Erased,
    Status(Status),
    Agent(Option<String>),
    Note(String),
}

fn changes(event: Event) -> Change {
    match event {
        // A second TicketOpened is never decided; a stored one changes nothing.
        Event::TicketOpened { .. } => Change::None,
        Event::AgentAssigned { agent } => Change::Agent(Some(agent)),
        Event::AgentUnassigned => Change::Agent(None),
        Event::NoteAdded { text } => Change::Note(text),
        Event::CustomerErased { .. } => Change::Erased,
        status_change => status_change
            .new_status()
            .map_or(Change::None, Change::Status),
    }
}

impl Row for TicketDetail {
    fn id(&self) -> Uuid {
        self.id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    fn apply(
        current: Option<&Self>,
        event: &RecordedEvent,
        decoded: Event,
    ) -> Result<Self, ProjectionError> {
        let at = event.occurred_at;
        let Some(current) = current else {
            let Event::TicketOpened {
                customer,
                subject,
                message,
            } = decoded
            else {
                return Err(not_opened(event));
            };
            return Ok(TicketDetail {
                id: event.ticket_id,
                customer,
                subject,
                message,
                status: Status::Open,
                agent: None,
                notes: Vec::new(),
                created_at: at,
                updated_at: at,
                version: 0,
            });
        };
        let mut view = current.clone();
        view.updated_at = at;
        match changes(decoded) {
            Change::None => {}
            Change::Status(status) => view.status = status,
            Change::Agent(agent) => view.agent = agent,
            Change::Note(text) => view.notes.push(Note { text, added_at: at }),
            Change::Erased => {
                view.customer = domain::ERASED.to_owned();
                view.subject = domain::ERASED.to_owned();
                view.message = domain::ERASED.to_owned();
                for note in &mut view.notes {
                    note.text = domain::ERASED.to_owned();
                }
            }
        }
        Ok(view)
    }
}

impl Row for TicketListRow {
    fn id(&self) -> Uuid {
        self.id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    fn apply(
        current: Option<&Self>,
        event: &RecordedEvent,
        decoded: Event,
    ) -> Result<Self, ProjectionError> {
        let at = event.occurred_at;
        let Some(current) = current else {
            let Event::TicketOpened {
                customer,
                subject,
                message,
            } = decoded
            else {
                return Err(not_opened(event));
            };
            return Ok(TicketListRow {
                id: event.ticket_id,
                customer,
                subject,
                status: Status::Open,
                agent: None,
                preview: preview(&message),
                has_note: false,
                last_note_preview: None,
                created_at: at,
                updated_at: at,
                version: 0,
            });
        };
        let mut row = current.clone();
        row.updated_at = at;
        match changes(decoded) {
            Change::None => {}
            Change::Status(status) => row.status = status,
            Change::Agent(agent) => row.agent = agent,
            Change::Note(text) => {
                row.has_note = true;
                row.last_note_preview = Some(preview(&text));
            }
            Change::Erased => {
                row.customer = domain::ERASED.to_owned();
                row.subject = domain::ERASED.to_owned();
                row.preview = domain::ERASED.to_owned();
                if row.last_note_preview.is_some() {
                    row.last_note_preview = Some(domain::ERASED.to_owned());
                }
            }
        }
        Ok(row)
    }
}

impl Row for TicketStatusRow {
    fn id(&self) -> Uuid {
        self.id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    fn apply(
        current: Option<&Self>,
        event: &RecordedEvent,
        decoded: Event,
    ) -> Result<Self, ProjectionError> {
        let Some(current) = current else {
            let Event::TicketOpened { .. } = decoded else {
                return Err(not_opened(event));
            };
            return Ok(TicketStatusRow {
                id: event.ticket_id,
                status: Status::Open,
                version: 0,
            });
        };
        let mut row = *current;
        if let Change::Status(status) = changes(decoded) {
            row.status = status;
        }
        Ok(row)
    }
}

/// Folds one event into a ticket's detail view (what the write side answers
/// with). `Ok(None)` means the view already reflects the event.
pub fn project(
    current: Option<&TicketDetail>,
    event: &RecordedEvent,
) -> Result<Option<TicketDetail>, ProjectionError> {
    fold_row(current, event, false)
}

/// What one batch changes in one projection's slot, and the checkpoint move
/// that must be committed with it, atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewChanges {
    pub projection: Projection,
    /// The checkpoint the batch was read after; the commit must find it unchanged.
    pub from: Position,
    /// The position of the last event folded: the new checkpoint.
    pub to: Position,
    /// The new state of every row the batch changed (in first-touched order).
    pub rows: Rows,
    /// For [`Projection::Dashboard`]: how the counts move (zero otherwise).
    pub dashboard: DashboardDelta,
}

/// An event the fold stopped at.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedEvent {
    pub event: RecordedEvent,
    pub error: ProjectionError,
}

/// A batch folded as far as it goes: `changes` covers every event before
/// `failed` (all of them when `failed` is `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct FoldOutcome {
    pub changes: ViewChanges,
    pub failed: Option<FailedEvent>,
}

/// Folds a batch (in position order, all above `from`) into one projection's
/// rows. `current` must hold the slot's stored row of every ticket in the
/// batch that has one; `skipped` the positions ops chose to pass by.
pub fn fold_batch(
    projection: Projection,
    from: Position,
    current: Rows,
    events: &[RecordedEvent],
    skipped: &HashSet<Position>,
) -> FoldOutcome {
    match current {
        Rows::Detail(rows) => fold_rows(
            projection,
            from,
            rows,
            events,
            skipped,
            Rows::Detail,
            |_, _, _| {},
        ),
        Rows::List(rows) => fold_rows(
            projection,
            from,
            rows,
            events,
            skipped,
            Rows::List,
            |_, _, _| {},
        ),
        Rows::Dashboard(rows) => fold_rows(
            projection,
            from,
            rows,
            events,
            skipped,
            Rows::Dashboard,
            |delta, before: Option<&TicketStatusRow>, after: &TicketStatusRow| {
                delta.moved(before.map(|row| row.status), after.status);
            },
        ),
    }
}

fn fold_rows<R: Row>(
    projection: Projection,
    from: Position,
    rows: Vec<R>,
    events: &[RecordedEvent],
    skipped: &HashSet<Position>,
    wrap: fn(Vec<R>) -> Rows,
    count: impl Fn(&mut DashboardDelta, Option<&R>, &R),
) -> FoldOutcome {
    let mut current: HashMap<Uuid, R> = rows.into_iter().map(|row| (row.id(), row)).collect();
    let mut changed: Vec<Uuid> = Vec::new();
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut dashboard = DashboardDelta::default();
    let mut to = from;
    let mut failed = None;
    for event in events {
        let before = current.get(&event.ticket_id);
        match fold_row(before, event, skipped.contains(&event.position)) {
            Ok(Some(after)) => {
                count(&mut dashboard, before, &after);
                if seen.insert(event.ticket_id) {
                    changed.push(event.ticket_id);
                }
                current.insert(event.ticket_id, after);
            }
            Ok(None) => {}
            Err(error) => {
                failed = Some(FailedEvent {
                    event: event.clone(),
                    error,
                });
                break;
            }
        }
        to = event.position;
    }
    let rows = changed
        .into_iter()
        .filter_map(|id| current.remove(&id))
        .collect();
    FoldOutcome {
        changes: ViewChanges {
            projection,
            from,
            to,
            rows: wrap(rows),
            dashboard,
        },
        failed,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use eventstore::{Metadata, NewEvent};

    use super::*;

    fn recorded(ticket: Uuid, version: u64, position: Position, event: &Event) -> RecordedEvent {
        let at = Utc
            .timestamp_opt(1_700_000_000 + position as i64, 0)
            .unwrap();
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

    fn history() -> (Uuid, Vec<RecordedEvent>) {
        let ticket = Uuid::now_v7();
        let events = [
            Event::TicketOpened {
                customer: "c".into(),
                subject: "s".into(),
                message: "a  long\n\nmessage".into(),
            },
            Event::TicketTriaged,
            Event::AgentAssigned {
                agent: "ana".into(),
            },
            Event::NoteAdded {
                text: "first".into(),
            },
            Event::TicketClosed,
            Event::NoteAdded {
                text: "second   note".into(),
            },
        ];
        let recorded = events
            .iter()
            .enumerate()
            .map(|(i, e)| recorded(ticket, i as u64 + 1, i as u64 + 1, e))
            .collect();
        (ticket, recorded)
    }

    fn fold_all(projection: Projection, events: &[RecordedEvent]) -> FoldOutcome {
        fold_batch(
            projection,
            0,
            Rows::empty(projection),
            events,
            &HashSet::new(),
        )
    }

    #[test]
    fn the_list_projection_agrees_with_the_detail_it_could_be_derived_from() {
        let (_, events) = history();
        let Rows::Detail(detail) = fold_all(Projection::Detail, &events).changes.rows else {
            panic!("detail rows");
        };
        let Rows::List(list) = fold_all(Projection::List, &events).changes.rows else {
            panic!("list rows");
        };
        assert_eq!(list, vec![TicketListRow::from(&detail[0])]);
        assert_eq!(list[0].preview, "a long message");
        assert_eq!(list[0].last_note_preview.as_deref(), Some("second note"));
    }

    #[test]
    fn the_dashboard_counts_each_ticket_once_in_its_latest_status() {
        let (_, events) = history();
        let outcome = fold_all(Projection::Dashboard, &events);
        assert_eq!(outcome.changes.dashboard.get(Status::Closed), 1);
        assert_eq!(outcome.changes.dashboard.get(Status::Open), 0);
        assert_eq!(outcome.changes.dashboard.get(Status::Triaged), 0);
        assert_eq!(outcome.changes.to, 6);
    }

    #[test]
    fn replaying_a_batch_over_its_own_result_changes_nothing() {
        let (_, events) = history();
        for projection in Projection::ALL {
            let first = fold_all(projection, &events);
            let again = fold_batch(
                projection,
                0,
                first.changes.rows.clone(),
                &events,
                &HashSet::new(),
            );
            assert!(
                again.changes.rows.is_empty(),
                "{projection}: rows already current"
            );
            assert!(again.changes.dashboard.is_zero());
        }
    }

    #[test]
    fn a_bad_event_stops_the_fold_after_the_good_ones_and_a_skip_passes_it() {
        let (ticket, mut events) = history();
        events[3].event_type = "TicketMerged".into();
        let outcome = fold_all(Projection::Detail, &events);
        let failed = outcome.failed.expect("the unknown type fails");
        assert_eq!(failed.event.position, 4);
        assert!(matches!(failed.error, ProjectionError::Undecodable { .. }));
        assert_eq!(outcome.changes.to, 3, "the events before it are kept");

        let skipped = HashSet::from([4]);
        let outcome = fold_batch(
            Projection::Detail,
            0,
            Rows::empty(Projection::Detail),
            &events,
            &skipped,
        );
        assert!(outcome.failed.is_none());
        let Rows::Detail(rows) = outcome.changes.rows else {
            panic!()
        };
        assert_eq!(rows[0].id, ticket);
        assert_eq!(rows[0].version, 6, "the skipped event moves the version on");
        assert_eq!(rows[0].notes.len(), 1, "and changes nothing else");
    }

    #[test]
    fn a_version_gap_is_an_error_not_a_silent_apply() {
        let (_, events) = history();
        let outcome = fold_all(Projection::List, &[events[0].clone(), events[2].clone()]);
        assert!(matches!(
            outcome.failed.map(|f| f.error),
            Some(ProjectionError::VersionGap {
                expected: 2,
                found: 3,
                ..
            })
        ));
    }
}
