//! A SQLite store on a filesystem that fills up under load.
