//! Black-box tests: the real `ticketd` and `ticket-projector` binaries on a
//! temporary store (a SQLite file, and a fresh MongoDB database when a test
//! server is there), driven over real HTTP.

mod abandoned;
mod access;
mod consistency;
mod console;
mod contract;
mod crash;
mod dead_letters_api;
mod disk_full;
mod erasure;
mod errors;
mod harness;
mod idempotency;
mod limits;
mod listing;
mod metrics;
mod openapi;
mod operability;
mod operations;
mod outage;
mod processes;
mod rebuild_under_load;
mod stream;
