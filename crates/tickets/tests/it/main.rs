//! Black-box tests: the real `ticketd` and `ticket-projector` binaries on a
//! temporary SQLite file, driven over real HTTP.

mod contract;
mod errors;
mod harness;
mod processes;
