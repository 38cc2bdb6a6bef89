//! Bulk import: many tickets' events appended in one transaction, for seeding
//! a store (the benchmark tool, a future `ticketctl import`).
//!
//! [`SqliteStore::append`](eventstore::EventStore::append) pays one `BEGIN
//! IMMEDIATE`, one version check and one synced commit per command; an import
//! of millions of events pays them once per call, with one prepared insert
//! reused for every row. It keeps the invariants every append keeps: positions
//! continue gap-free from the head in the order given, and each ticket's
//! versions continue from its stored version (1 for a new ticket) with no
//! gap. It does not check an expected version: the importer owns the streams
//! it writes, so there is no decision to race with.

use std::collections::HashMap;

use eventstore::{NewEvent, Position, StoreError};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::watch;
use uuid::Uuid;

use crate::SqliteStore;
use crate::error::DbError;
use crate::{events, text};

type Result<T, E = DbError<StoreError>> = std::result::Result<T, E>;

impl SqliteStore {
    /// Appends `events` (each with its ticket id) in the order given, all or
    /// none, in one transaction; returns the head position after the commit.
    ///
    /// Events of one ticket keep their relative order and get that ticket's
    /// next versions; tickets may interleave freely. An empty import writes
    /// nothing and returns the current head.
    pub async fn import(&self, events: Vec<(Uuid, NewEvent)>) -> Result<Position, StoreError> {
        let head = self
            .write(move |connection, head| import(connection, head, &events))
            .await?;
        Ok(head)
    }
}

fn import(
    connection: &mut Connection,
    known_head: &watch::Sender<Position>,
    events: &[(Uuid, NewEvent)],
) -> Result<Position> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut position: Position = tx
        .prepare_cached("SELECT coalesce(max(position), 0) FROM events")?
        .query_row([], |row| text::get_unsigned(row, 0))?;
    // The version each ticket of this import is at: looked up once per ticket
    // (the stored stream may have events already), then counted here.
    let mut versions: HashMap<Uuid, u64> = HashMap::new();
    {
        let mut stored_version = tx.prepare_cached(events::STREAM_VERSION)?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (position, ticket_id, version, event_id, event_type, \
             schema_version, occurred_at, data, metadata) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for (ticket_id, event) in events {
            let ticket = text::id(*ticket_id);
            let version = match versions.get_mut(ticket_id) {
                Some(version) => version,
                None => {
                    let stored =
                        stored_version.query_row([&ticket], |row| text::get_unsigned(row, 0))?;
                    versions.entry(*ticket_id).or_insert(stored)
                }
            };
            *version += 1;
            position += 1;
            let metadata = events::encode_metadata(event)?;
            let inserted = insert.execute(rusqlite::params![
                to_sql_int(position)?,
                ticket,
                to_sql_int(*version)?,
                text::id(event.event_id),
                event.event_type,
                i64::from(event.schema_version),
                text::time(event.occurred_at),
                event.data.json(),
                metadata,
            ]);
            match inserted {
                Ok(_) => {}
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) =>
                {
                    // Under the write lock, versions and positions cannot be
                    // taken; what is left is bad input, which a retry repeats.
                    return Err(DbError::Corrupt(format!(
                        "event {} of ticket {ticket_id} cannot be imported: {e}",
                        event.event_id
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    tx.commit()?;
    // Raise the in-process head so that waiters (a projector in this process)
    // wake now rather than at their next poll; never lower it.
    known_head.send_if_modified(|known| {
        let newer = position > *known;
        if newer {
            *known = position;
        }
        newer
    });
    Ok(position)
}

fn to_sql_int(value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| DbError::Corrupt(format!("{value} exceeds SQLite's integer range")))
}

#[cfg(test)]
mod tests {
    use eventstore::EventStore;

    use super::*;

    fn event(e: domain::Event) -> NewEvent {
        NewEvent::from(&e)
    }

    fn opened() -> NewEvent {
        event(domain::Event::TicketOpened {
            customer: "c".into(),
            subject: "s".into(),
            message: "m".into(),
        })
    }

    #[tokio::test]
    async fn interleaved_tickets_get_gap_free_positions_and_versions() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        // `a` already has one event: the import continues its versions.
        store.append(a, 0, vec![opened()]).await.expect("append");
        let head = store
            .import(vec![
                (b, opened()),
                (a, event(domain::Event::TicketTriaged)),
                (b, event(domain::Event::TicketTriaged)),
                (a, event(domain::Event::TicketClosed)),
            ])
            .await
            .expect("import");
        assert_eq!(head, 5);
        assert_eq!(store.head().await.expect("head"), 5);
        let all = store.read_all(0, 100).await.expect("read_all");
        let positions: Vec<_> = all.iter().map(|e| e.position).collect();
        assert_eq!(positions, [1, 2, 3, 4, 5]);
        let versions = |id| {
            all.iter()
                .filter(|e| e.ticket_id == id)
                .map(|e| e.version)
                .collect::<Vec<_>>()
        };
        assert_eq!(versions(a), [1, 2, 3]);
        assert_eq!(versions(b), [1, 2]);
        // Appends go on from where the import left off.
        let next = store
            .append(b, 2, vec![event(domain::Event::TicketClosed)])
            .await
            .expect("append after import");
        assert_eq!((next[0].position, next[0].version), (6, 3));
        for recorded in &all {
            recorded.decode().expect("imported events decode");
        }
    }

    #[tokio::test]
    async fn a_bad_event_imports_nothing() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let first = opened();
        let mut duplicate = opened();
        duplicate.event_id = first.event_id;
        let refused = store
            .import(vec![(Uuid::now_v7(), first), (Uuid::now_v7(), duplicate)])
            .await;
        assert!(
            matches!(refused, Err(StoreError::Corrupt(_))),
            "{refused:?}"
        );
        assert_eq!(store.head().await.expect("head"), 0);
        assert_eq!(store.import(Vec::new()).await.expect("empty import"), 0);
    }
}
