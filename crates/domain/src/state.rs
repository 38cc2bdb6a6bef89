//! The state the rules need, folded from events by [`evolve`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::event::Event;

/// Where a ticket is in its life: open → triaged → closed; closed is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Triaged,
    Closed,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Open, Status::Triaged, Status::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Triaged => "triaged",
            Status::Closed => "closed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of `open`, `triaged`, `closed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status must be one of open, triaged, closed")]
pub struct UnknownStatus;

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Status::Open),
            "triaged" => Ok(Status::Triaged),
            "closed" => Ok(Status::Closed),
            _ => Err(UnknownStatus),
        }
    }
}

/// What the rules know of an existing ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub status: Status,
    pub agent: Option<String>,
    /// How many notes the ticket holds (its `NoteAdded` events), for the cap
    /// [`crate::MAX_NOTES`].
    pub notes: usize,
    /// Its customer was erased ([`crate::Event::CustomerErased`]): it takes
    /// no more changes.
    pub erased: bool,
}

/// A ticket stream folded: nothing yet, or a ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TicketState {
    #[default]
    Missing,
    Exists(Ticket),
}

/// Applies one event. Events are facts, so this never fails: an event that makes
/// no sense for the state (which `decide` never produces) leaves the state as is.
pub fn evolve(state: TicketState, event: &Event) -> TicketState {
    match (state, event) {
        (TicketState::Missing, Event::TicketOpened { .. }) => TicketState::Exists(Ticket {
            status: Status::Open,
            agent: None,
            notes: 0,
            erased: false,
        }),
        // A stored second TicketOpened is never decided and changes nothing.
        (TicketState::Exists(ticket), Event::TicketOpened { .. }) => TicketState::Exists(ticket),
        (TicketState::Exists(mut ticket), event) => {
            if let Some(status) = event.new_status() {
                ticket.status = status;
            }
            match event {
                Event::AgentAssigned { agent } => ticket.agent = Some(agent.clone()),
                Event::AgentUnassigned => ticket.agent = None,
                Event::NoteAdded { .. } => ticket.notes += 1,
                Event::CustomerErased { .. } => ticket.erased = true,
                _ => {}
            }
            TicketState::Exists(ticket)
        }
        (state, _) => state,
    }
}

/// Folds a whole history from the empty state.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> TicketState {
    events.into_iter().fold(TicketState::Missing, evolve)
}
