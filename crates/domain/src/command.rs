//! What a client asks for. Commands are validated before they reach [`crate::decide`]
//! (see [`crate::validate`]): a command value that exists is well-formed.

use crate::state::Status;
use crate::validate::{self, FieldError};

/// Open a new ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTicket {
    pub customer: String,
    pub subject: String,
    pub message: String,
}

impl OpenTicket {
    /// Validates and normalises the fields (customer and subject are trimmed).
    pub fn new(customer: &str, subject: &str, message: &str) -> Result<Self, FieldError> {
        Ok(Self {
            customer: validate::customer(customer)?,
            subject: validate::subject(subject)?,
            message: validate::message(message)?,
        })
    }
}

/// Change an existing ticket: any combination of a status, an agent and a note.
///
/// `agent` is `None` when the request does not touch the agent, `Some(None)` to
/// unassign, `Some(Some(name))` to assign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeTicket {
    pub status: Option<Status>,
    pub agent: Option<Option<String>>,
    pub note: Option<String>,
}

impl ChangeTicket {
    /// Validates the fields; at least one of them must be present.
    pub fn new(
        status: Option<Status>,
        agent: Option<Option<&str>>,
        note: Option<&str>,
    ) -> Result<Self, FieldError> {
        if status.is_none() && agent.is_none() && note.is_none() {
            return Err(FieldError::new(
                "body",
                "at least one of `status`, `agent` or `note` must be given",
            ));
        }
        let agent = match agent {
            None => None,
            Some(None) => Some(None),
            Some(Some(name)) => Some(Some(validate::agent(name)?)),
        };
        let note = note.map(validate::note).transpose()?;
        Ok(Self {
            status,
            agent,
            note,
        })
    }
}

/// Every command the ticket aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Open(OpenTicket),
    Change(ChangeTicket),
    /// Erase the customer's personal data from the ticket (an erasure of
    /// the customer runs this on each of its tickets), recording which of
    /// its events stored in clear the erasure rewrites.
    Erase {
        rewritten: Vec<u64>,
    },
}
