//! The SQLite backend's integration tests, one binary: the shared store
//! contract (`contract`) and what is SQLite's own (`sqlite`): the file, the
//! migrations, immutability, several processes on one file; and the
//! erasure's side of it (`erasure`): recorded redactions as the one exception
//! to immutability, and destroyed keys scrubbed from the files.

mod contract;
mod erasure;
mod sqlite;
