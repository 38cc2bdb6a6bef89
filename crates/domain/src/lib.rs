//! The ticket rules, and nothing else.
//!
//! This crate owns the commands a client can give, the events that record what
//! happened, the state those events fold into, and the two functions that carry
//! the rules: [`decide`] (state + command → events, or a rule error) and
//! [`evolve`] (state + event → state). It is pure: no IO, no async, no clock.
//! Time, ids and the actor arrive with the command or in the event envelope that
//! other crates own; this crate's `[dependencies]` keep it that way.

mod command;
mod decide;
mod event;
mod state;
mod validate;

#[cfg(test)]
mod tests;

pub use command::{ChangeTicket, Command, OpenTicket};
pub use decide::{DomainError, MAX_NOTES, decide};
pub use event::{ERASED, Event};
pub use state::{Status, Ticket, TicketState, evolve, fold};
pub use validate::{FieldError, LIMITS, Limits, MAX_NOTE_BYTES};
