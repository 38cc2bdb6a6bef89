//! What happened to a ticket. Events are a public contract: once written they are
//! never changed, so a variant's fields are only ever added to under a new schema
//! version (upcast at the store boundary, never here).

use serde::{Deserialize, Serialize};

/// One fact about one ticket. The envelope (ids, version, time, metadata) lives in
/// the `eventstore` crate; this is the payload and its type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    TicketOpened {
        customer: String,
        subject: String,
        message: String,
    },
    /// open → triaged
    TicketTriaged,
    /// triaged → open
    TicketReopened,
    /// open or triaged → closed; final for the status.
    TicketClosed,
    AgentAssigned {
        agent: String,
    },
    AgentUnassigned,
    NoteAdded {
        text: String,
    },
    /// The customer's personal data was erased: from here on the ticket's
    /// customer, subject, message and notes read [`ERASED`], and it takes no
    /// more changes. Its id, status, agent and times stay.
    CustomerErased {
        /// The versions of this ticket's events that were stored in clear
        /// (before sealing) and whose words the erasure rewrote: the record
        /// of the one exception to the events' immutability.
        rewritten: Vec<u64>,
    },
}

/// What an erased customer's words read as, wherever they were.
pub const ERASED: &str = "[erased]";

impl Event {
    /// The stable type name stored with the event.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::TicketOpened { .. } => "TicketOpened",
            Event::TicketTriaged => "TicketTriaged",
            Event::TicketReopened => "TicketReopened",
            Event::TicketClosed => "TicketClosed",
            Event::AgentAssigned { .. } => "AgentAssigned",
            Event::AgentUnassigned => "AgentUnassigned",
            Event::NoteAdded { .. } => "NoteAdded",
            Event::CustomerErased { .. } => "CustomerErased",
        }
    }

    /// The status this event moves a ticket to, if it is a status change: the
    /// one place that says which event means which status.
    pub fn new_status(&self) -> Option<crate::Status> {
        match self {
            Event::TicketOpened { .. } | Event::TicketReopened => Some(crate::Status::Open),
            Event::TicketTriaged => Some(crate::Status::Triaged),
            Event::TicketClosed => Some(crate::Status::Closed),
            Event::AgentAssigned { .. }
            | Event::AgentUnassigned
            | Event::NoteAdded { .. }
            | Event::CustomerErased { .. } => None,
        }
    }

    /// The schema version this code writes for the event's type.
    pub fn schema_version(&self) -> u32 {
        1
    }
}
