//! The database's clock, which every lease time is read from.
//!
//! Leases are decided on one clock for all processes: the server's. The
//! store asks the server for its time with `hello` and reads `localTime`, the
//! server's current time in UTC that MongoDB documents in every `hello` (and
//! `isMaster`) reply; on a replica set the command goes to the primary, so
//! every writer compares with the primary's clock. The time is taken right
//! before the statement or transaction that uses it (a round trip earlier at
//! most), and every comparison and stored time (`expires_at`, `heartbeat_at`,
//! the fence check, `status().now`) uses that value, never the caller's clock.
//!
//! Why not `$$NOW` in an aggregation-pipeline update, which real MongoDB also
//! documents and which would fold reading the time into the write: the test
//! server (jongodb 0.1.6) rejects expressions in pipeline updates
//! ("update pipeline expressions are not supported"), evaluates `$$NOW` to
//! null in `$project` and matches nothing with it in `$expr`, and has no
//! `$currentDate`. With `hello` both servers run the same code path.
//!
//! jongodb's `hello` carries no `localTime` either. A server whose `hello`
//! lacks it (only such test servers; every MongoDB has it) is read once,
//! reported once with a warning, and from then on this process's clock stands
//! in for it. jongodb runs as a child process of the tests on the same host,
//! so that clock is the server machine's clock there.

use std::sync::atomic::{AtomicU8, Ordering};

use chrono::{DateTime, Utc};
use mongodb::Database;
use mongodb::bson::{Bson, doc};

/// Where the store's "now" comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// Not asked yet.
    Unknown,
    /// The server's `hello.localTime`.
    Server,
    /// This process's clock: the server's `hello` has no `localTime`.
    Local,
}

// 0, the default: not asked yet.
const SERVER: u8 = 1;
const LOCAL: u8 = 2;

#[derive(Debug, Default)]
pub(crate) struct Clock {
    source: AtomicU8,
}

impl Clock {
    pub(crate) fn source(&self) -> ClockSource {
        match self.source.load(Ordering::Relaxed) {
            SERVER => ClockSource::Server,
            LOCAL => ClockSource::Local,
            _ => ClockSource::Unknown,
        }
    }

    /// The database's current time, to the millisecond (what BSON dates hold).
    pub(crate) async fn now(&self, db: &Database) -> Result<DateTime<Utc>, mongodb::error::Error> {
        if self.source.load(Ordering::Relaxed) == LOCAL {
            return Ok(local_now());
        }
        let hello = db.run_command(doc! { "hello": 1 }).await?;
        match hello.get("localTime") {
            Some(Bson::DateTime(at)) => {
                self.source.store(SERVER, Ordering::Relaxed);
                // Out of chrono's range only for a server clock that is broken
                // beyond use; this process's clock is the better answer then.
                Ok(
                    DateTime::from_timestamp_millis(at.timestamp_millis())
                        .unwrap_or_else(local_now),
                )
            }
            _ => {
                if self.source.swap(LOCAL, Ordering::Relaxed) != LOCAL {
                    tracing::warn!(
                        database = db.name(),
                        "the server's hello has no localTime (a test server?): \
                         leases use this process's clock"
                    );
                }
                Ok(local_now())
            }
        }
    }
}

fn local_now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
