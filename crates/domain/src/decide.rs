//! The rules: given what happened, what does a command make happen?
//!
//! [`decide`] is a thin dispatch; each command's decision is one small function.

use crate::command::{ChangeTicket, Command, OpenTicket};
use crate::event::Event;
use crate::state::{Status, Ticket, TicketState};

/// The most notes one ticket holds; a change adding one more is refused whole
/// ([`DomainError::TooManyNotes`]).
///
/// Why: a ticket's detail view is one document carrying all its notes, and
/// MongoDB refuses a document over 16 MiB. A detail the projector cannot write
/// stops the detail projection at that event, for every ticket behind it, so
/// a ticket must not be able to grow one. 1,000 notes of at most
/// [`crate::MAX_NOTE_BYTES`] (15,000) bytes each are at most 15 MB, whatever
/// the script.
pub const MAX_NOTES: usize = 1_000;

/// Why a command was refused. Field-level input errors are caught earlier, when
/// the command is built (see [`crate::FieldError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the ticket does not exist")]
    NotFound,
    #[error("the ticket already exists")]
    AlreadyExists,
    #[error("a closed ticket cannot change status (asked for `{requested}`)")]
    ClosedIsFinal { requested: Status },
    /// The change carries a note and the ticket already holds [`MAX_NOTES`];
    /// a rule on the field `note`.
    #[error("a ticket holds at most {max} notes")]
    TooManyNotes { max: usize },
    /// The ticket's customer was erased; it takes no more changes.
    #[error("the ticket's customer was erased; it takes no more changes")]
    Erased,
}

impl DomainError {
    /// The command field whose value the rule refused, when one did (`status`
    /// for [`DomainError::ClosedIsFinal`], `note` for
    /// [`DomainError::TooManyNotes`]).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            DomainError::NotFound | DomainError::AlreadyExists | DomainError::Erased => None,
            DomainError::ClosedIsFinal { .. } => Some("status"),
            DomainError::TooManyNotes { .. } => Some("note"),
        }
    }
}

/// Decides which events a command produces on the given state. An empty result
/// means the command changes nothing (for example, setting the status a ticket
/// already has).
pub fn decide(state: &TicketState, command: Command) -> Result<Vec<Event>, DomainError> {
    match command {
        Command::Open(open) => decide_open(state, open),
        Command::Change(change) => match state {
            TicketState::Missing => Err(DomainError::NotFound),
            TicketState::Exists(ticket) if ticket.erased => Err(DomainError::Erased),
            TicketState::Exists(ticket) => decide_change(ticket, change),
        },
        // Erasing an erased ticket again changes nothing: an erasure that
        // stopped half-way can simply be run again.
        Command::Erase { rewritten } => match state {
            TicketState::Missing => Err(DomainError::NotFound),
            TicketState::Exists(ticket) if ticket.erased => Ok(Vec::new()),
            TicketState::Exists(_) => Ok(vec![Event::CustomerErased { rewritten }]),
        },
    }
}

fn decide_open(state: &TicketState, open: OpenTicket) -> Result<Vec<Event>, DomainError> {
    if let TicketState::Exists(_) = state {
        return Err(DomainError::AlreadyExists);
    }
    Ok(vec![Event::TicketOpened {
        customer: open.customer,
        subject: open.subject,
        message: open.message,
    }])
}

/// Status first, then agent, then note: the order the events are appended in.
fn decide_change(ticket: &Ticket, change: ChangeTicket) -> Result<Vec<Event>, DomainError> {
    let mut events = Vec::new();
    if let Some(status) = change.status {
        events.extend(status_change(ticket.status, status)?);
    }
    if let Some(agent) = change.agent {
        events.extend(agent_change(ticket.agent.as_deref(), agent));
    }
    if let Some(text) = change.note {
        if ticket.notes >= MAX_NOTES {
            return Err(DomainError::TooManyNotes { max: MAX_NOTES });
        }
        events.push(Event::NoteAdded { text });
    }
    Ok(events)
}

fn status_change(current: Status, requested: Status) -> Result<Option<Event>, DomainError> {
    if current == requested {
        return Ok(None);
    }
    if current == Status::Closed {
        return Err(DomainError::ClosedIsFinal { requested });
    }
    Ok(Some(match requested {
        Status::Open => Event::TicketReopened,
        Status::Triaged => Event::TicketTriaged,
        Status::Closed => Event::TicketClosed,
    }))
}

fn agent_change(current: Option<&str>, requested: Option<String>) -> Option<Event> {
    match requested {
        Some(agent) if current != Some(agent.as_str()) => Some(Event::AgentAssigned { agent }),
        None if current.is_some() => Some(Event::AgentUnassigned),
        _ => None,
    }
}
