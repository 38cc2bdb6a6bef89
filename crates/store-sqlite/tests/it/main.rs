//! The SQLite backend's integration tests, one binary: the shared store
//! contract (`contract`) and what is SQLite's own (`sqlite`): the file, the
//! migrations, immutability, several processes on one file; and the
//! erasure's side of it (`erasure`): recorded redactions as the one exception
//! to immutability, and destroyed keys scrubbed from the files; and reads
//! through the sealing decorator over a real file (`sealed_reads`).

mod contract;
mod erasure;
mod sealed_reads;
mod sqlite;
