//! Folding events into views: pure functions, no IO.
//!
//! The version guard lives here: an event at or below a view's version was
//! already applied and changes nothing, so replays (after a crash, an overlap,
//! a rebuild) are harmless; an event that skips a version is an error, never
//! silently applied.

use std::collections::HashMap;

use domain::{Event, Status};
use eventstore::{DecodeError, Position, RecordedEvent};
use uuid::Uuid;

use crate::views::{DashboardDelta, Note, TicketDetail};

/// An event the projection cannot apply.
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
}

/// Folds one event into a ticket's detail view. `Ok(None)` means the view
/// already reflects the event.
pub fn project(
    current: Option<&TicketDetail>,
    event: &RecordedEvent,
) -> Result<Option<TicketDetail>, ProjectionError> {
    let applied = current.map_or(0, |view| view.version);
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
    let decoded = event
        .decode()
        .map_err(|source| ProjectionError::Undecodable {
            position: event.position,
            source,
        })?;
    let at = event.occurred_at;
    let mut view = match (current, decoded) {
        (
            None,
            Event::TicketOpened {
                customer,
                subject,
                message,
            },
        ) => TicketDetail {
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
        },
        (None, _) => {
            // A stream must start with TicketOpened at version 1; anything else
            // at version 1 is a history this code cannot read.
            return Err(ProjectionError::Undecodable {
                position: event.position,
                source: DecodeError::BadPayload {
                    event_type: event.event_type.clone(),
                    reason: "a ticket's first event must be TicketOpened".into(),
                },
            });
        }
        (Some(current), decoded) => {
            let mut view = current.clone();
            apply(&mut view, decoded, at);
            view
        }
    };
    view.version = event.version;
    view.updated_at = at;
    Ok(Some(view))
}

fn apply(view: &mut TicketDetail, event: Event, at: chrono::DateTime<chrono::Utc>) {
    match event {
        // Re-opening an existing ticket is never decided; a stored one changes nothing.
        Event::TicketOpened { .. } => {}
        Event::TicketTriaged => view.status = Status::Triaged,
        Event::TicketReopened => view.status = Status::Open,
        Event::TicketClosed => view.status = Status::Closed,
        Event::AgentAssigned { agent } => view.agent = Some(agent),
        Event::AgentUnassigned => view.agent = None,
        Event::NoteAdded { text } => view.notes.push(Note { text, added_at: at }),
    }
}

/// What one batch of events changes in the views, and the checkpoint move that
/// must be committed with it (atomically).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewChanges {
    /// The checkpoint the batch was read after; the commit must find it unchanged.
    pub from: Position,
    /// The position of the batch's last event: the new checkpoint.
    pub to: Position,
    /// The new state of every ticket the batch changed.
    pub tickets: Vec<TicketDetail>,
    pub dashboard: DashboardDelta,
}

/// Folds a batch (in position order, all above `from`) into the current views of
/// the tickets it touches. `current` must hold the stored view of every ticket in
/// the batch that has one.
pub fn fold_batch(
    from: Position,
    mut current: HashMap<Uuid, TicketDetail>,
    events: &[RecordedEvent],
) -> Result<ViewChanges, ProjectionError> {
    let mut changed: Vec<Uuid> = Vec::new();
    let mut dashboard = DashboardDelta::default();
    for event in events {
        let before = current.get(&event.ticket_id);
        let Some(after) = project(before, event)? else {
            continue;
        };
        dashboard.moved(before.map(|view| view.status), after.status);
        if !changed.contains(&event.ticket_id) {
            changed.push(event.ticket_id);
        }
        current.insert(event.ticket_id, after);
    }
    let tickets = changed
        .into_iter()
        .filter_map(|id| current.remove(&id))
        .collect();
    Ok(ViewChanges {
        from,
        to: events.last().map_or(from, |event| event.position),
        tickets,
        dashboard,
    })
}
