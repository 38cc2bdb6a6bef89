//! The rules: given what happened, what does a command make happen?
//!
//! [`decide`] is a thin dispatch; each command's decision is one small function.

use crate::command::{ChangeTicket, Command, OpenTicket};
use crate::event::Event;
use crate::state::{Status, Ticket, TicketState};

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
}

/// Decides which events a command produces on the given state. An empty result
/// means the command changes nothing (for example, setting the status a ticket
/// already has).
pub fn decide(state: &TicketState, command: Command) -> Result<Vec<Event>, DomainError> {
    match command {
        Command::Open(open) => decide_open(state, open),
        Command::Change(change) => match state {
            TicketState::Missing => Err(DomainError::NotFound),
            TicketState::Exists(ticket) => decide_change(ticket, change),
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
