//! The SQLite backend's integration tests, one binary: the shared store
//! contract (`contract`) and what is SQLite's own (`sqlite`): the file, the
//! migrations, immutability, several processes on one file.

mod contract;
mod sqlite;
