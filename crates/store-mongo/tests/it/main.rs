//! The MongoDB backend's integration tests, one binary, over the real wire
//! protocol (`MONGODB_URI`, else a jongodb process; see
//! `store_mongo::testing`): the shared store contract (`contract`) and what is
//! MongoDB's own (`mongo`): the URI's database, migrations, the unique index,
//! concurrent writers, the change stream and its fallback, bad documents; and
//! the registered sessions that let a dead process's transactions be ended
//! (`sessions`).

mod bulk;
mod contract;
mod faults;
mod fixtures;
mod mongo;
mod replica;
mod sessions;
