//! The event store on the `events` table: appends, reads, the head and the
//! wake-up for tailers.
//!
//! An append is one `BEGIN IMMEDIATE` transaction: check the stream's version,
//! take positions after the current maximum, insert, commit. Holding the file's
//! write lock from the first read makes the version check and the position
//! assignment race-free across processes, and makes positions gap-free and in
//! commit order.

use std::time::Duration;

use async_trait::async_trait;
use eventstore::{EventStore, Metadata, NewEvent, Payload, Position, RecordedEvent, StoreError};
use rusqlite::{Connection, OptionalExtension, Row};
use tokio::sync::watch;
use uuid::Uuid;

use crate::SqliteStore;
use crate::error::DbError;
use crate::text;

/// How often a waiter looks for appends made by other processes, which the
/// in-process signal cannot see.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

const COLUMNS: &str = "position, ticket_id, version, event_id, event_type, schema_version, \
                       occurred_at, data, metadata";

type Result<T, E = DbError<StoreError>> = std::result::Result<T, E>;

/// An event as the table spells it, its text borrowed: from a row being
/// read (no copy of any column), or from the [`EncodedEvent`] an append
/// inserts.
struct EventRow<'a> {
    position: i64,
    ticket_id: &'a str,
    version: i64,
    event_id: &'a str,
    event_type: &'a str,
    schema_version: i64,
    occurred_at: &'a str,
    data: &'a str,
    metadata: &'a str,
}

/// The columns of an event being appended that have to be spelled for
/// SQLite (the rest are borrowed from the append: see [`EncodedEvent::row`]).
struct EncodedEvent {
    position: i64,
    version: i64,
    event_id: String,
    schema_version: i64,
    occurred_at: String,
    metadata: String,
}

impl EncodedEvent {
    fn encode(position: u64, version: u64, event: &NewEvent) -> Result<Self> {
        Ok(EncodedEvent {
            position: to_sql_int(position)?,
            version: to_sql_int(version)?,
            event_id: text::id(event.event_id),
            schema_version: i64::from(event.schema_version),
            occurred_at: text::time(event.occurred_at),
            metadata: encode_metadata(event)?,
        })
    }

    /// The row to insert; the ticket id, the type and the payload are the
    /// append's, and borrowed.
    fn row<'a>(&'a self, ticket_id: &'a str, event: &'a NewEvent) -> EventRow<'a> {
        EventRow {
            position: self.position,
            ticket_id,
            version: self.version,
            event_id: &self.event_id,
            event_type: &event.event_type,
            schema_version: self.schema_version,
            occurred_at: &self.occurred_at,
            data: event.data.json(),
            metadata: &self.metadata,
        }
    }
}

impl<'a> EventRow<'a> {
    /// The columns of `row` (selected as [`COLUMNS`]), borrowed from it.
    fn read(row: &'a Row<'_>) -> Result<EventRow<'a>> {
        let text = |column: usize| -> Result<&'a str> {
            row.get_ref(column)?
                .as_str()
                .map_err(|e| DbError::Corrupt(format!("events column {column} is not text: {e}")))
        };
        Ok(EventRow {
            position: row.get(0)?,
            ticket_id: text(1)?,
            version: row.get(2)?,
            event_id: text(3)?,
            event_type: text(4)?,
            schema_version: row.get(5)?,
            occurred_at: text(6)?,
            data: text(7)?,
            metadata: text(8)?,
        })
    }

    /// The event as every read returns it. Appends decode the row they insert
    /// with this too, so an append's result equals a later read to the bit
    /// (times truncated to microseconds, the payload as its stored text).
    fn decode(&self) -> Result<RecordedEvent> {
        let corrupt =
            |what: String| DbError::Corrupt(format!("event at position {}: {what}", self.position));
        let unsigned = |name: &str, value: i64| {
            u64::try_from(value).map_err(|_| corrupt(format!("{name} {value} is negative")))
        };
        Ok(RecordedEvent {
            position: unsigned("position", self.position)?,
            ticket_id: text::parse_id(self.ticket_id).map_err(corrupt)?,
            version: unsigned("version", self.version)?,
            event_id: text::parse_id(self.event_id).map_err(corrupt)?,
            event_type: self.event_type.to_owned(),
            schema_version: u32::try_from(self.schema_version).map_err(|_| {
                corrupt(format!(
                    "schema version {} is out of range",
                    self.schema_version
                ))
            })?,
            occurred_at: text::parse_time(self.occurred_at).map_err(corrupt)?,
            data: Payload::from_json(self.data.to_owned())
                .map_err(|e| corrupt(format!("data: {e}")))?,
            metadata: serde_json::from_str::<Metadata>(self.metadata)
                .map_err(|e| corrupt(format!("metadata: {e}")))?,
        })
    }
}

/// Decodes every row a query yields.
fn decode_all(mut rows: rusqlite::Rows<'_>) -> Result<Vec<RecordedEvent>> {
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(EventRow::read(row)?.decode()?);
    }
    Ok(events)
}

/// The metadata column of `event`.
pub(crate) fn encode_metadata(event: &NewEvent) -> Result<String> {
    serde_json::to_string(&event.metadata).map_err(|e| {
        // Metadata always serialises; this is unreachable in practice, and
        // not the caller's to retry.
        DbError::Corrupt(format!(
            "cannot encode the metadata of event {}: {e}",
            event.event_id
        ))
    })
}

/// SQLite integers are signed; positions and versions stay far below the limit.
fn to_sql_int(value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| DbError::Corrupt(format!("{value} exceeds SQLite's integer range")))
}

/// Saturates rather than fails: a bound above every stored value means "none".
fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The newest position (0 when empty).
pub(crate) fn head(connection: &Connection) -> rusqlite::Result<Position> {
    connection
        .prepare_cached("SELECT coalesce(max(position), 0) FROM events")?
        .query_row([], |row| text::get_unsigned(row, 0))
}

/// A ticket's current version: the append's optimistic-concurrency check.
pub(crate) const STREAM_VERSION: &str =
    "SELECT coalesce(max(version), 0) FROM events WHERE ticket_id = ?1";

fn stream_version(connection: &Connection, ticket_id: &str) -> rusqlite::Result<u64> {
    connection
        .prepare_cached(STREAM_VERSION)?
        .query_row([ticket_id], |row| text::get_unsigned(row, 0))
}

fn is_version_taken(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(failure, Some(message))
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && message.contains("events.ticket_id, events.version")
    )
}

fn is_key_taken(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(failure, Some(message))
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && message.contains("events.idempotency_key")
    )
}

/// One append inside the caller's write transaction (which holds the file's
/// write lock): check the stream's version, take the positions after the
/// current maximum, insert. Nothing is committed here.
pub(crate) fn append_in(
    tx: &Connection,
    ticket_id: Uuid,
    expected_version: u64,
    events: &[NewEvent],
) -> Result<Vec<RecordedEvent>> {
    let ticket = text::id(ticket_id);
    let conflict = |actual| {
        DbError::Refused(StoreError::Conflict {
            ticket_id,
            expected: expected_version,
            actual,
        })
    };
    let actual = stream_version(tx, &ticket)?;
    if actual != expected_version {
        return Err(conflict(actual));
    }
    let last = self::head(tx)?;
    let mut recorded = Vec::with_capacity(events.len());
    {
        let mut insert = tx.prepare_cached(&format!(
            "INSERT INTO events ({COLUMNS}, idempotency_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?;
        for (event, offset) in events.iter().zip(1u64..) {
            let encoded = EncodedEvent::encode(last + offset, expected_version + offset, event)?;
            let row = encoded.row(&ticket, event);
            // The key is recorded (unique) on the append's first event only.
            let key = if offset == 1 {
                event.metadata.idempotency_key.as_deref()
            } else {
                None
            };
            let inserted = insert.execute(rusqlite::params![
                row.position,
                row.ticket_id,
                row.version,
                row.event_id,
                row.event_type,
                row.schema_version,
                row.occurred_at,
                row.data,
                row.metadata,
                key,
            ]);
            match inserted {
                Ok(_) => {}
                Err(e) if is_key_taken(&e) => {
                    return Err(DbError::Refused(StoreError::IdempotencyKeyTaken {
                        key: key.unwrap_or_default().to_owned(),
                    }));
                }
                // Unreachable while the check above holds the write lock; kept so
                // that the database's own guard answers like the check does.
                Err(e) if is_version_taken(&e) => {
                    return Err(conflict(stream_version(tx, &ticket)?));
                }
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) =>
                {
                    // Not a conflict: retrying will not help, so say what broke.
                    let why = if e.to_string().contains("events.event_id") {
                        "its event id is already stored"
                    } else {
                        "it breaks a constraint of the events table"
                    };
                    return Err(DbError::Corrupt(format!(
                        "event {} of ticket {ticket_id} cannot be stored, {why}: {e}",
                        event.event_id
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            recorded.push(row.decode()?);
        }
    }
    Ok(recorded)
}

/// Raises the known head; never lowers it (another append may have published a
/// later position first).
pub(crate) fn publish(head: &watch::Sender<Position>, position: Position) {
    head.send_if_modified(|known| {
        let newer = position > *known;
        if newer {
            *known = position;
        }
        newer
    });
}

fn read_stream(connection: &Connection, ticket_id: Uuid) -> Result<Vec<RecordedEvent>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events WHERE ticket_id = ?1 ORDER BY version"
    ))?;
    decode_all(statement.query([text::id(ticket_id)])?)
}

fn read_idempotent(connection: &Connection, key: &str) -> Result<Option<RecordedEvent>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events WHERE idempotency_key = ?1"
    ))?;
    let mut rows = statement.query([key])?;
    rows.next()?
        .map(|row| EventRow::read(row)?.decode())
        .transpose()
}

fn read_all(connection: &Connection, after: Position, limit: usize) -> Result<Vec<RecordedEvent>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
    ))?;
    let limit = clamp(u64::try_from(limit).unwrap_or(u64::MAX));
    decode_all(statement.query([clamp(after), limit])?)
}

/// Events in (ticket id, version) order after `after`. The row-value keyset
/// is a range on the unique (ticket_id, version) index, read in index order.
fn read_by_ticket(
    connection: &Connection,
    after: Option<(Uuid, u64)>,
    limit: usize,
) -> Result<Vec<RecordedEvent>> {
    // Every stored id is 36 characters, so all sort after the empty text.
    let (ticket, version) = after.map_or((String::new(), 0), |(ticket, version)| {
        (text::id(ticket), clamp(version))
    });
    let limit = clamp(u64::try_from(limit).unwrap_or(u64::MAX));
    let mut statement =
        connection.prepare_cached(&format!("SELECT {COLUMNS} FROM events {BY_TICKET}"))?;
    decode_all(statement.query(rusqlite::params![ticket, version, limit])?)
}

/// The keyset and order of `read_by_ticket`, after `SELECT {COLUMNS} FROM events`.
const BY_TICKET: &str =
    "WHERE (ticket_id, version) > (?1, ?2) ORDER BY ticket_id, version LIMIT ?3";

/// The smallest `read_all` that is read as two halves at once.
const SPLIT_READ_MIN: usize = 4096;

impl SqliteStore {
    /// A big `read_all` whose events are known to be stored, read as two
    /// position ranges on two connections at once.
    ///
    /// Decoding rows is most of a history read's cost, and one connection
    /// decodes on one core, and a replay then leaves the other core mostly
    /// idle (bench/HISTORY.md has the figures). Positions are gap-free, and every position
    /// up to the published head is committed, so the second half starts
    /// exactly where the first one ends. Should the first half not end
    /// there (a gap, which this store never writes), the rest is read
    /// after it in one piece, as an unsplit read would.
    async fn read_all_split(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let half = limit / 2;
        let middle = after + half as u64;
        let (first, second) = tokio::join!(
            self.read(move |connection| read_all(connection, after, half)),
            self.read(move |connection| read_all(connection, middle, limit - half)),
        );
        let mut events = first?;
        let last = events.last().map_or(after, |event| event.position);
        if last == middle && events.len() == half {
            events.extend(second?);
            return Ok(events);
        }
        let rest = limit - events.len();
        events.extend(
            self.read(move |connection| read_all(connection, last, rest))
                .await?,
        );
        Ok(events)
    }

    /// The head as stored, which includes other processes' appends; raises the
    /// in-process head to it so that every waiter here wakes.
    async fn stored_head(&self) -> Result<Position> {
        let position = self.read(|connection| Ok(head(connection)?)).await?;
        publish(&self.shared.head, position);
        Ok(position)
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append_nonempty(
        &self,
        ticket_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.shared
            .committer
            .append(ticket_id, expected_version, events)
            .await
    }

    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self
            .read(move |connection| read_stream(connection, ticket_id))
            .await?)
    }

    async fn read_idempotent(&self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        let key = key.to_owned();
        Ok(self
            .read(move |connection| read_idempotent(connection, &key))
            .await?)
    }

    async fn read_all_nonempty(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let known_head = *self.shared.head.borrow();
        if limit >= SPLIT_READ_MIN && known_head.saturating_sub(after) >= limit as u64 {
            return self.read_all_split(after, limit).await;
        }
        Ok(self
            .read(move |connection| read_all(connection, after, limit))
            .await?)
    }

    async fn read_by_ticket_nonempty(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self
            .read(move |connection| read_by_ticket(connection, after, limit))
            .await?)
    }

    async fn head(&self) -> Result<Position, StoreError> {
        Ok(self.stored_head().await?)
    }

    async fn redact(&self, ticket_id: Uuid, version: u64, data: Payload) -> Result<(), StoreError> {
        Ok(self
            .write(move |connection, _| redact(connection, ticket_id, version, &data))
            .await?)
    }

    async fn wait_for_events(
        &self,
        after: Position,
        max_wait: Duration,
    ) -> Result<bool, StoreError> {
        // Subscribed before the first look at the table, so an in-process append
        // that commits in between still marks the receiver as changed. The
        // in-process head answers without a read when it is already past.
        let known = self.shared.head.subscribe();
        let head = || async {
            let published = *self.shared.head.borrow();
            if published > after {
                return Ok(published);
            }
            self.stored_head().await
        };
        Ok(eventstore::wait_for_head(known, after, max_wait, || POLL_INTERVAL, head).await?)
    }
}

/// Rewrites one event's payload, recording the redaction first in the same
/// transaction: the immutability trigger lets through exactly that
/// (`migrations/sqlite/0008_customer_keys.sql`).
fn redact(
    connection: &mut rusqlite::Connection,
    ticket_id: Uuid,
    version: u64,
    data: &Payload,
) -> Result<(), DbError<StoreError>> {
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let position: Option<i64> = tx
        .prepare_cached("SELECT position FROM events WHERE ticket_id = ?1 AND version = ?2")?
        .query_row(
            rusqlite::params![
                text::id(ticket_id),
                i64::try_from(version).unwrap_or(i64::MAX)
            ],
            |row| row.get(0),
        )
        .optional()?;
    let Some(position) = position else {
        return Err(DbError::Refused(StoreError::Corrupt(format!(
            "no event {ticket_id} version {version} to redact"
        ))));
    };
    tx.prepare_cached(
        "INSERT INTO redactions (position, redacted_at) VALUES (?1, ?2)
         ON CONFLICT (position) DO NOTHING",
    )?
    .execute(rusqlite::params![position, text::time(chrono::Utc::now())])?;
    tx.prepare_cached("UPDATE events SET data = ?2 WHERE position = ?1")?
        .execute(rusqlite::params![position, data.json()])?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In-process waiters are woken by the append itself, not by the next poll
    /// (which timing tests cannot tell apart).
    #[tokio::test]
    async fn an_append_publishes_the_head_in_process() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let mut known = store.shared.head.subscribe();
        assert_eq!(*known.borrow_and_update(), 0);
        let event = || NewEvent::from(&domain::Event::TicketTriaged);
        let recorded = store
            .append(Uuid::now_v7(), 0, vec![event(), event()])
            .await
            .map(|events| positions(&events))
            .expect("append");
        assert!(known.has_changed().expect("the sender lives"), "no signal");
        assert_eq!(*known.borrow_and_update(), recorded[1]);
        // A refused append signals nothing.
        let refused = store.append(Uuid::now_v7(), 5, vec![event()]).await;
        assert!(matches!(refused, Err(StoreError::Conflict { .. })));
        assert!(!known.has_changed().expect("the sender lives"));
    }

    /// The append's version check is compiled once and reused: binding the
    /// next ticket's id must not expire its plan (it did, on every append,
    /// before the connections kept their plans; see `connection::keep_plans`).
    #[tokio::test]
    async fn the_append_check_is_not_compiled_again_per_append() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        for _ in 0..10 {
            let event = NewEvent::from(&domain::Event::TicketTriaged);
            store
                .append(Uuid::now_v7(), 0, vec![event])
                .await
                .expect("append");
        }
        let recompiled = store.shared.db.write(|connection| {
            connection
                .prepare_cached(STREAM_VERSION)
                .map(|statement| statement.get_status(rusqlite::StatementStatus::RePrepare))
        });
        assert_eq!(recompiled.expect("the cached statement"), 0);
    }

    /// A store holding `count` events (ten per ticket), imported at once.
    async fn store_with_events(count: usize) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let mut ticket = Uuid::now_v7();
        let events = (0..count)
            .map(|n| {
                if n % 10 == 0 {
                    ticket = Uuid::now_v7();
                }
                (ticket, NewEvent::from(&domain::Event::TicketTriaged))
            })
            .collect();
        store.import(events).await.expect("import");
        (dir, store)
    }

    /// What one unsplit read on one connection returns.
    async fn read_in_one_piece(
        store: &SqliteStore,
        after: Position,
        limit: usize,
    ) -> Vec<RecordedEvent> {
        store
            .read(move |connection| read_all(connection, after, limit))
            .await
            .map_err(StoreError::from)
            .expect("a plain read")
    }

    /// Big reads of stored history are read in two halves at once; what they
    /// return is what one read returns, wherever they start and whether or
    /// not the whole batch exists.
    #[tokio::test]
    async fn a_split_read_returns_what_one_read_returns() {
        let (_dir, store) = store_with_events(10_000).await;
        assert_eq!(*store.shared.head.borrow(), 10_000, "the head is known");
        // Split: 0/8192, 1234/5000, 5904/4096; not split: 6000/4096 (the
        // batch runs past the head) and 0/4095 (too small).
        for (after, limit) in [
            (0, 8192),
            (1234, 5000),
            (5904, 4096),
            (6000, 4096),
            (0, 4095),
        ] {
            let read = store.read_all(after, limit).await.expect("read_all");
            assert_eq!(read.len(), limit.min(10_000 - after as usize));
            assert_eq!(
                read,
                read_in_one_piece(&store, after, limit).await,
                "{after}/{limit}"
            );
        }
    }

    /// A gap in positions (which appends and imports never leave; made here
    /// by hand) does not make a split read skip or repeat an event.
    #[tokio::test]
    async fn a_split_read_over_a_gap_returns_what_one_read_returns() {
        let (_dir, store) = store_with_events(10_000).await;
        store
            .shared
            .db
            .write(|connection| {
                connection.execute_batch(
                    "DROP TRIGGER events_are_immutable_delete;
                     DELETE FROM events WHERE position IN (1000, 2500);",
                )
            })
            .expect("a gap made by hand");
        for (after, limit) in [(0, 8192), (0, 4096), (2000, 5000)] {
            let read = store.read_all(after, limit).await.expect("read_all");
            let positions = positions(&read);
            assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "in order, no repeats"
            );
            assert_eq!(read.len(), limit, "{after}/{limit}");
            assert_eq!(
                read,
                read_in_one_piece(&store, after, limit).await,
                "{after}/{limit}"
            );
        }
    }

    fn positions(events: &[RecordedEvent]) -> Vec<Position> {
        events.iter().map(|event| event.position).collect()
    }

    /// The planner must answer the hot reads with an index, never a scan.
    #[tokio::test]
    async fn reads_use_indexes() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let plans = store
            .read(|connection| {
                let plan = |sql: String| -> Result<String> {
                    let mut statement = connection.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let rows = statement.query_map([], |row| row.get::<_, String>(3))?;
                    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.join("; "))
                };
                Ok::<_, DbError<StoreError>>(vec![
                    plan(format!(
                        "SELECT {COLUMNS} FROM events WHERE ticket_id = 'x' ORDER BY version"
                    ))?,
                    plan(format!(
                        "SELECT {COLUMNS} FROM events WHERE position > 5 ORDER BY position LIMIT 10"
                    ))?,
                    plan(STREAM_VERSION.replace("?1", "'x'"))?,
                    plan("SELECT coalesce(max(position), 0) FROM events".into())?,
                    plan(format!(
                        "SELECT {COLUMNS} FROM events \
                         WHERE (ticket_id, version) > ('x', 1) ORDER BY ticket_id, version LIMIT 10"
                    ))?,
                    plan(format!(
                        "SELECT {COLUMNS} FROM events \
                         WHERE (ticket_id, version) > ('', 0) ORDER BY ticket_id, version LIMIT 10"
                    ))?,
                    plan(format!(
                        "SELECT {COLUMNS} FROM events WHERE idempotency_key = 'k'"
                    ))?,
                ])
            })
            .await
            .map_err(StoreError::from)
            .expect("plans");
        for plan in &plans {
            assert!(!plan.contains("SCAN events"), "a full scan: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "a sort step: {plan}");
        }
        assert!(
            plans[0].contains("USING INDEX sqlite_autoindex_events"),
            "{}",
            plans[0]
        );
        assert!(
            plans[1].contains("USING INTEGER PRIMARY KEY"),
            "{}",
            plans[1]
        );
        assert!(
            plans[6].contains("USING INDEX events_idempotency_key"),
            "{}",
            plans[6]
        );
        // `read_by_ticket` seeks into the unique (ticket_id, version) index
        // with the row value and reads it in order.
        for plan in &plans[4..6] {
            assert!(
                plan.starts_with("SEARCH events USING INDEX sqlite_autoindex_events_")
                    && plan.contains("(ticket_id,version)>(?,?)"),
                "{plan}"
            );
        }
    }
}
