//! What SQLite adds to an erasure's two store operations: a redaction is
//! recorded, and the immutability trigger lets through exactly a recorded
//! redaction's change of `data` and nothing else
//! (`migrations/sqlite/0008_customer_keys.sql`); a destroyed key leaves no
//! copy of itself in the files once they are scrubbed.

use std::path::{Path, PathBuf};

use domain::{ERASED, Event};
use eventstore::{EventStore, Metadata, NewEvent, Payload, RecordedEvent, StoreError};
use sealing::{KeyStore, StoredKey};
use serde_json::json;
use store_sqlite::SqliteStore;
use tempfile::TempDir;
use uuid::Uuid;

fn temp() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("tickets.db");
    (dir, path)
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// A plain connection, as an operator's `sqlite3` shell would have.
fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("a raw connection")
}

/// A ticket of three events: an opening that records an idempotency key,
/// and two notes without one.
async fn ticket(store: &SqliteStore) -> (Uuid, Vec<RecordedEvent>) {
    let ticket = Uuid::now_v7();
    let mut opening = NewEvent::from(&Event::TicketOpened {
        customer: "acme".into(),
        subject: "printer".into(),
        message: "call me on 555-0100".into(),
    });
    opening.metadata = Metadata {
        idempotency_key: Some(format!("key-{ticket}")),
        request_digest: Some("digest".into()),
        actor: Some("customer:acme".into()),
        ..Metadata::default()
    };
    let note = |text: &str| NewEvent::from(&Event::NoteAdded { text: text.into() });
    let recorded = store
        .append(ticket, 0, vec![opening, note("one"), note("two")])
        .await
        .expect("append");
    (ticket, recorded)
}

fn redactions(path: &Path) -> Vec<i64> {
    let connection = raw(path);
    let mut statement = connection
        .prepare("SELECT position FROM redactions ORDER BY position")
        .expect("prepare");
    statement
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[track_caller]
fn assert_refused(connection: &rusqlite::Connection, sql: &str) {
    let error = connection.execute(sql, []).expect_err(sql);
    assert!(
        error.to_string().contains("events are immutable"),
        "{sql}: {error}"
    );
}

/// A redaction is recorded with the event's position; one that finds no
/// event records nothing.
#[tokio::test]
async fn a_redaction_is_recorded_by_position() {
    let (_dir, path) = temp();
    let store = open(&path);
    let (ticket, recorded) = ticket(&store).await;
    let erased = Payload::from_value(&json!({ "text": ERASED }));
    match store.redact(ticket, 4, erased.clone()).await {
        Err(StoreError::Corrupt(_)) => {}
        other => panic!("redacting a missing event: expected Corrupt, got {other:?}"),
    }
    assert_eq!(redactions(&path), Vec::<i64>::new(), "nothing recorded");
    store
        .redact(ticket, 2, erased.clone())
        .await
        .expect("redact");
    store.redact(ticket, 2, erased).await.expect("redact again");
    let position = i64::try_from(recorded[1].position).expect("a small position");
    assert_eq!(redactions(&path), vec![position], "recorded once");
}

/// Without a recorded redaction, changing an event's `data` is refused as
/// before; with one, changing any other column is refused (alone or along
/// with `data`), and so is deleting the event. A change of `data` alone,
/// of an event with a redaction recorded, is what the trigger lets through.
#[tokio::test]
async fn the_trigger_lets_through_only_a_recorded_redactions_payload() {
    let (_dir, path) = temp();
    let store = open(&path);
    let (ticket, _) = ticket(&store).await;
    let erased = Payload::from_value(&json!({
        "customer": ERASED, "subject": ERASED, "message": ERASED,
    }));
    store
        .redact(ticket, 1, erased)
        .await
        .expect("redact the opening");
    store
        .redact(ticket, 2, Payload::from_value(&json!({ "text": ERASED })))
        .await
        .expect("redact a note");
    let after = store.read_stream(ticket).await.expect("read");
    let [opening, note, unredacted] = &after[..] else {
        panic!("three events: {after:?}");
    };
    assert!(
        opening.metadata.idempotency_key.is_some() && note.metadata.idempotency_key.is_none(),
        "the case needs an event with a key and one without"
    );
    let connection = raw(&path);
    let (p1, p2, p3) = (opening.position, note.position, unredacted.position);

    // No redaction recorded: the payload stays as it is.
    assert_refused(
        &connection,
        &format!("UPDATE events SET data = '{{}}' WHERE position = {p3}"),
    );
    assert_refused(&connection, "UPDATE events SET data = '{}'");
    // A redaction recorded: every other column stays as it is.
    let other_id = Uuid::now_v7();
    for change in [
        format!("position = {}", p3 + 100),
        format!("event_id = '{other_id}'"),
        format!("ticket_id = '{other_id}'"),
        "version = version + 100".to_owned(),
        "event_type = 'TicketClosed'".to_owned(),
        "schema_version = schema_version + 1".to_owned(),
        "occurred_at = '2030-01-01T00:00:00.000000Z'".to_owned(),
        r#"metadata = '{"actor":"mallory"}'"#.to_owned(),
        "data = '{}', event_type = 'TicketClosed'".to_owned(),
        r#"data = '{}', metadata = '{"actor":"mallory"}'"#.to_owned(),
    ] {
        for position in [p1, p2] {
            assert_refused(
                &connection,
                &format!("UPDATE events SET {change} WHERE position = {position}"),
            );
        }
    }
    assert_refused(
        &connection,
        &format!("UPDATE events SET idempotency_key = NULL WHERE position = {p1}"),
    );
    assert_refused(
        &connection,
        &format!("UPDATE events SET idempotency_key = 'another' WHERE position = {p1}"),
    );
    assert_refused(
        &connection,
        &format!("UPDATE events SET idempotency_key = 'sneaky' WHERE position = {p2}"),
    );
    assert_refused(
        &connection,
        &format!("DELETE FROM events WHERE position = {p1}"),
    );
    assert_eq!(
        store.read_stream(ticket).await.expect("read"),
        after,
        "nothing refused changed anything"
    );

    // The exception itself: `data` alone, of a redacted event.
    connection
        .execute(
            &format!("UPDATE events SET data = '{{\"text\":\"again\"}}' WHERE position = {p2}"),
            [],
        )
        .expect("a recorded redaction's payload may change");
    let mut expected = after.clone();
    expected[1].data = Payload::from_value(&json!({ "text": "again" }));
    assert_eq!(store.read_stream(ticket).await.expect("read"), expected);
}

/// A key; its material a recognisable run of bytes.
fn key(customer: &str, fill: u8) -> StoredKey {
    let mut material = vec![fill; 60];
    material[..8].copy_from_slice(b"KEYBYTES");
    StoredKey {
        key_id: Uuid::now_v7(),
        customer: customer.to_owned(),
        material,
    }
}

/// The bytes of the database file and of its write-ahead log, if any.
fn file_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("the database file");
    if let Ok(log) = std::fs::read(path.with_extension("db-wal")) {
        bytes.extend(log);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Once a key is destroyed and the store scrubbed, neither its material nor
/// its customer's name is anywhere in the files (the kept key's are, so the
/// search would find them).
#[tokio::test]
async fn a_destroyed_key_leaves_no_copy_in_the_files_after_a_scrub() {
    let (_dir, path) = temp();
    let store = open(&path);
    let gone = key("erased-customer-5c1f", 0xa7);
    let kept = key("kept-customer-93d2", 0x5e);
    for key in [&gone, &kept] {
        store.create(key.clone()).await.expect("create");
    }
    store.scrub().await.expect("scrub");
    let before = file_bytes(&path);
    for key in [&gone, &kept] {
        assert!(contains(&before, &key.material), "the material is stored");
        assert!(
            contains(&before, key.customer.as_bytes()),
            "the name is stored"
        );
    }
    assert!(store.destroy(gone.key_id).await.expect("destroy"));
    store.scrub().await.expect("scrub");
    let after = file_bytes(&path);
    assert!(
        !contains(&after, &gone.material),
        "the destroyed key's material is still in the files"
    );
    assert!(
        !contains(&after, gone.customer.as_bytes()),
        "the erased customer's name is still in the files"
    );
    assert!(contains(&after, &kept.material), "the kept key is stored");
    assert_eq!(
        store.by_id(kept.key_id).await.expect("by_id"),
        Some(kept),
        "the kept key reads as stored"
    );
}

/// A scrub comes after an erasure while the service runs: appends and reads
/// going on at the same time do not make it fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scrub_succeeds_while_appends_and_reads_go_on() {
    let (_dir, path) = temp();
    let store = open(&path);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut busy = tokio::task::JoinSet::new();
    for worker in 0..3 {
        let (store, stop) = (store.clone(), stop.clone());
        busy.spawn(async move {
            let mut rounds = 0_u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if worker == 0 {
                    ticket(&store).await;
                } else {
                    store.read_all(0, 500).await.expect("read_all");
                }
                rounds += 1;
            }
            rounds
        });
    }
    for round in 0..20 {
        let key = key(&format!("customer-{round}"), round);
        store.create(key.clone()).await.expect("create");
        assert!(store.destroy(key.key_id).await.expect("destroy"));
        store
            .scrub()
            .await
            .unwrap_or_else(|e| panic!("scrub {round} under load: {e}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(rounds) = busy.join_next().await {
        assert!(rounds.expect("a worker panicked") > 0, "each worker ran");
    }
}
