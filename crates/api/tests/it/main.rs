//! The HTTP API through the router (`tower::ServiceExt::oneshot`), on a real
//! SQLite store in a temporary folder. Reads run the projector first.

mod consistency;
mod contract;
mod errors;
mod harness;
mod note_cap;
mod query_params;
mod stream;
