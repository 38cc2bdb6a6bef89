//! What only the SQLite backend promises: the file and its folder, migrations
//! applied once and never edited, immutable events at the SQL level, several
//! processes and instances on one file, bad stored data reported as corrupt.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use domain::Event;
use eventstore::{EventStore, NewEvent, RecordedEvent, StoreError};
use readmodel::{
    DashboardDelta, LeaseStore, ListQuery, ListSort, Projection, ProjectionWriter, Rows, SlotAdmin,
    Target, ViewChanges, ViewError, ViewReader,
};
use store_sqlite::{OpenError, SqliteStore};
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

fn opened(customer: &str) -> Event {
    Event::TicketOpened {
        customer: customer.into(),
        subject: "subject".into(),
        message: "message".into(),
    }
}

fn note(text: &str) -> NewEvent {
    NewEvent::from(&Event::NoteAdded { text: text.into() })
}

async fn open_ticket(store: &SqliteStore) -> (Uuid, Vec<RecordedEvent>) {
    let ticket = Uuid::now_v7();
    let recorded = store
        .append(ticket, 0, vec![NewEvent::from(&opened("c")), note("n")])
        .await
        .expect("append");
    (ticket, recorded)
}

fn known_migrations() -> Vec<(u32, String)> {
    store_sqlite::migrations()
        .map(|(version, name)| (version, name.to_owned()))
        .collect()
}

async fn applied(store: &SqliteStore) -> Vec<store_sqlite::AppliedMigration> {
    store
        .applied_migrations()
        .await
        .expect("applied migrations")
}

#[tokio::test]
async fn open_creates_missing_folders_and_uses_wal() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("a/b/tickets.db");
    let store = open(&path);
    assert_eq!(store.path(), path);
    assert!(path.is_file(), "the file was created");
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn open_names_the_path_when_it_fails() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"a file").expect("write");
    let error = SqliteStore::open(&blocker.join("tickets.db")).expect_err("a file is in the way");
    assert!(matches!(error, OpenError::CreateFolder { .. }), "{error:?}");
    assert!(error.to_string().contains("not-a-folder"), "{error}");

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).expect("write");
    let error = SqliteStore::open(&garbage).expect_err("not a database");
    assert!(error.to_string().contains("garbage.db"), "{error}");
}

#[tokio::test]
async fn migrations_are_applied_once_and_reopening_changes_nothing() {
    let (_dir, path) = temp();
    let first = applied(&open(&path)).await;
    let versions: Vec<(u32, String)> = first.iter().map(|m| (m.version, m.name.clone())).collect();
    assert_eq!(
        versions,
        known_migrations(),
        "every migration is recorded, in order"
    );
    assert!(first.iter().all(|m| m.checksum.len() == 16), "{first:?}");

    let again = applied(&open(&path)).await;
    assert_eq!(again, first, "reopening applies and records nothing new");
    let connection = raw(&path);
    for (table, rows) in [
        ("projection_slots", 6),
        ("dashboard_counts_a", 3),
        ("dashboard_counts_b", 3),
    ] {
        let seeded: i64 = connection
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .expect("count");
        assert_eq!(seeded, rows, "the {table} seed ran once");
    }
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() {
    let (_dir, path) = temp();
    drop(open(&path));
    raw(&path)
        .execute(
            "UPDATE schema_migrations SET checksum = '0123456789abcdef' WHERE version = 1",
            [],
        )
        .expect("simulate an edit");
    let error = SqliteStore::open(&path).expect_err("an edited migration");
    match &error {
        OpenError::MigrationEdited {
            version,
            name,
            recorded,
            ..
        } => assert_eq!(
            (*version, name.as_str(), recorded.as_str()),
            (1, "0001_events", "0123456789abcdef")
        ),
        other => panic!("expected MigrationEdited, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("0001_events") && message.contains("never edit"),
        "{message}"
    );
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let (_dir, path) = temp();
    drop(open(&path));
    raw(&path)
        .execute(
            "INSERT INTO schema_migrations VALUES (99, '0099_future', 'x', '2030-01-01T00:00:00.000000Z')",
            [],
        )
        .expect("simulate a newer build");
    let error = SqliteStore::open(&path).expect_err("an unknown migration");
    assert!(
        matches!(&error, OpenError::UnknownMigration { version: 99, name, .. } if name == "0099_future"),
        "{error:?}"
    );
}

#[tokio::test]
async fn parallel_opens_of_a_new_file_all_succeed() {
    let (_dir, path) = temp();
    const OPENERS: usize = 8;
    let barrier = Arc::new(Barrier::new(OPENERS));
    let openers: Vec<_> = (0..OPENERS)
        .map(|_| {
            let (path, barrier) = (path.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                SqliteStore::open(&path)
            })
        })
        .collect();
    let mut stores = Vec::new();
    for opener in openers {
        let store = opener.join().expect("an opener panicked");
        stores.push(store.unwrap_or_else(|e| panic!("a parallel open failed: {e}")));
    }
    let recorded: Vec<(u32, String)> = applied(&stores[0])
        .await
        .iter()
        .map(|m| (m.version, m.name.clone()))
        .collect();
    assert_eq!(
        recorded,
        known_migrations(),
        "each migration applied exactly once"
    );
}

/// A file as a build with migrations 1 to `upto` left it (each recorded as
/// the runner records it), for testing what a later migration does to data.
fn migrated_up_to(path: &Path, upto: u32) -> rusqlite::Connection {
    let mut connection = raw(path);
    connection
        .execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             checksum TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT",
        )
        .expect("the ledger");
    for migration in migration_files::SQLITE.iter().filter(|m| m.version <= upto) {
        let tx = connection.transaction().expect("begin");
        tx.execute_batch(migration.text)
            .unwrap_or_else(|e| panic!("{}: {e}", migration.name));
        tx.execute(
            "INSERT INTO schema_migrations VALUES (?1, ?2, ?3, '2026-01-01T00:00:00.000000Z')",
            rusqlite::params![migration.version, migration.name, migration.checksum()],
        )
        .expect("record");
        tx.commit().expect("commit");
    }
    connection
}

/// 0010 rebuilds the detail slots with a cheaper check on `notes`: the rows
/// are copied as they were, an array is still required, and a malformed one
/// still reads as corrupt, naming its ticket.
#[tokio::test]
async fn migration_0010_keeps_the_detail_rows_and_checks_the_notes_shape() {
    let (_dir, path) = temp();
    let (kept, retired, malformed) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let insert = |table: &str| {
        format!(
            "INSERT INTO {table} VALUES (?1, 'c', 's', 'm', 'triaged', 'ann', ?2,
             '2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z', 3)"
        )
    };
    let notes = r#"[{"text":"first","added_at":"2026-01-01T00:00:01.000000Z"},{"text":"second","added_at":"2026-01-01T00:00:02.000000Z"}]"#;
    {
        let before = migrated_up_to(&path, 9);
        before
            .execute(
                &insert("detail_a"),
                rusqlite::params![kept.to_string(), notes],
            )
            .expect("a live detail row");
        before
            .execute(
                &insert("detail_b"),
                rusqlite::params![retired.to_string(), "[]"],
            )
            .expect("a retired slot's row");
    }

    let store = open(&path);
    let versions: Vec<u32> = applied(&store).await.iter().map(|m| m.version).collect();
    assert!(versions.contains(&10), "{versions:?}");
    let detail = store
        .ticket(kept)
        .await
        .expect("read")
        .expect("the row was copied");
    assert_eq!(
        (detail.status, detail.agent.as_deref(), detail.version),
        (domain::Status::Triaged, Some("ann"), 3)
    );
    let texts: Vec<&str> = detail.notes.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(texts, ["first", "second"]);
    let connection = raw(&path);
    let copied: i64 = connection
        .query_row(
            "SELECT count(*) FROM detail_b WHERE id = ?1",
            [retired.to_string()],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(copied, 1, "the other slot's rows are copied too");

    for (table, not_an_array) in [("detail_a", "{}"), ("detail_b", "null")] {
        let error = connection
            .execute(
                &insert(table),
                rusqlite::params![Uuid::now_v7().to_string(), not_an_array],
            )
            .expect_err("notes must be an array");
        assert!(error.to_string().contains("CHECK"), "{table}: {error}");
    }
    connection
        .execute(
            &insert("detail_a"),
            rusqlite::params![malformed.to_string(), "[{\"text\""],
        )
        .expect("the shape check passes a truncated array");
    match store.ticket(malformed).await {
        Err(ViewError::Corrupt(message)) => {
            assert!(message.contains(&malformed.to_string()), "{message}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn events_cannot_be_updated_or_deleted() {
    let (_dir, path) = temp();
    let store = open(&path);
    let (ticket, recorded) = open_ticket(&store).await;
    let connection = raw(&path);
    for sql in [
        "UPDATE events SET event_type = 'TicketClosed' WHERE version = 2",
        "UPDATE events SET data = '{}'",
        "DELETE FROM events WHERE version = 2",
        "DELETE FROM events",
    ] {
        let error = connection.execute(sql, []).expect_err(sql);
        assert!(
            error.to_string().contains("events are immutable"),
            "{sql}: {error}"
        );
    }
    assert_eq!(store.read_stream(ticket).await.expect("read"), recorded);
}

#[tokio::test]
async fn data_survives_closing_and_reopening() {
    let (_dir, path) = temp();
    let (ticket, recorded, detail, dashboard, checkpoint) = {
        let store = open(&path);
        let (ticket, recorded) = open_ticket(&store).await;
        let checkpoint = conformance::catch_up(&store, &store, 10).await;
        let detail = store.ticket(ticket).await.expect("ticket");
        let dashboard = store.dashboard().await.expect("dashboard");
        (ticket, recorded, detail, dashboard, checkpoint)
    };
    assert!(detail.is_some());
    let store = open(&path);
    assert_eq!(store.read_stream(ticket).await.expect("read"), recorded);
    assert_eq!(store.head().await.expect("head"), recorded[1].position);
    for projection in Projection::ALL {
        assert_eq!(
            store
                .checkpoint(projection, Target::Live)
                .await
                .expect("checkpoint"),
            checkpoint
        );
    }
    assert_eq!(store.ticket(ticket).await.expect("ticket"), detail);
    assert_eq!(store.dashboard().await.expect("dashboard"), dashboard);
}

/// Two instances on one file share nothing in memory, as two processes do: the
/// waiter must learn of the other's append from the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_notices_appends_by_another_instance() {
    let (_dir, path) = temp();
    let (waiting, writing) = (open(&path), open(&path));
    let waiter = tokio::spawn(async move {
        let woke = waiting.wait_for_events(0, Duration::from_secs(30)).await;
        (woke, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "woke with nothing appended");
    let appended_at = Instant::now();
    open_ticket(&writing).await;
    let (woke, woke_at) = waiter.await.expect("the waiter panicked");
    assert!(woke.expect("wait"));
    let latency = woke_at.saturating_duration_since(appended_at);
    assert!(
        latency < Duration::from_secs(1),
        "woke {latency:?} after the append"
    );
}

/// An append that fails half-way (its second event reuses an existing event
/// id) writes none of its events.
#[tokio::test]
async fn an_append_failing_midway_writes_nothing() {
    let (_dir, path) = temp();
    let store = open(&path);
    let (_, recorded) = open_ticket(&store).await;
    let head = store.head().await.expect("head");
    let ticket = Uuid::now_v7();
    let mut reused = note("dup");
    reused.event_id = recorded[0].event_id;
    let result = store
        .append(ticket, 0, vec![NewEvent::from(&opened("d")), reused])
        .await;
    match result {
        Err(StoreError::Corrupt(message)) => {
            assert!(
                message.contains(&recorded[0].event_id.to_string()),
                "{message}"
            )
        }
        other => panic!("a duplicate event id must be refused, got {other:?}"),
    }
    assert_eq!(
        store.head().await.expect("head"),
        head,
        "nothing was written"
    );
    assert!(store.read_stream(ticket).await.expect("read").is_empty());
}

#[tokio::test]
async fn bad_stored_rows_are_reported_as_corrupt_with_their_place() {
    let (_dir, path) = temp();
    let store = open(&path);
    let (ticket, recorded) = open_ticket(&store).await;
    let next = recorded[1].position + 1;
    raw(&path)
        .execute(
            "INSERT INTO events VALUES (?1, 'this-is-not-a-uuid-but-36-chars-long', ?2, 3,
             'NoteAdded', 1, '2024-01-01T00:00:00.000000Z', '{}', '{}', NULL)",
            rusqlite::params![
                i64::try_from(next).expect("a small position"),
                ticket.to_string()
            ],
        )
        .expect("a bad row");
    for result in [store.read_stream(ticket).await, store.read_all(0, 10).await] {
        match result {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(&format!("position {next}")), "{message}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

/// A delta that would take a count below zero means the rows and their
/// checkpoint disagree; the commit is refused and changes nothing.
#[tokio::test]
async fn a_dashboard_count_never_goes_below_zero() {
    let (_dir, path) = temp();
    let store = open(&path);
    open_ticket(&store).await;
    let checkpoint = conformance::catch_up(&store, &store, 10).await;
    let before = store.dashboard().await.expect("dashboard");
    let fence = conformance::fence(&store, Projection::Dashboard, Target::Live).await;
    let result = store
        .commit(
            &fence,
            ViewChanges {
                projection: Projection::Dashboard,
                from: checkpoint,
                to: checkpoint + 1,
                rows: Rows::empty(Projection::Dashboard),
                dashboard: DashboardDelta {
                    open: 1,
                    triaged: 0,
                    closed: -1,
                },
            },
        )
        .await;
    assert!(matches!(result, Err(ViewError::Corrupt(_))), "{result:?}");
    assert_eq!(store.dashboard().await.expect("dashboard"), before);
    assert_eq!(
        store
            .checkpoint(Projection::Dashboard, Target::Live)
            .await
            .expect("checkpoint"),
        checkpoint
    );
}

/// Lease times are the database's clock, stored in the same fixed-width
/// spelling as every other time (so text order is time order).
#[tokio::test]
async fn lease_times_are_stored_in_the_time_format() {
    let (_dir, path) = temp();
    let store = open(&path);
    store
        .acquire_lease(
            Projection::Detail,
            Target::Live,
            "holder",
            Duration::from_millis(1500),
        )
        .await
        .expect("acquire")
        .expect("a free lease");
    let (expires_at, heartbeat_at): (String, String) = raw(&path)
        .query_row(
            "SELECT expires_at, heartbeat_at FROM projection_leases",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the lease row");
    for at in [&expires_at, &heartbeat_at] {
        assert_eq!(at.len(), "2024-05-01T09:30:00.123456Z".len(), "{at}");
        assert!(at.ends_with("000Z"), "milliseconds, padded: {at}");
    }
    let status = store.status(Projection::Detail).await.expect("status");
    let lease = status.live_lease.expect("the lease");
    assert_eq!(
        lease.expires_at - lease.heartbeat_at,
        chrono::Duration::milliseconds(1500),
        "expires_at is the heartbeat plus the ttl, on one clock reading"
    );
}

/// A store opened on a file with a half-written slot table (an operator's
/// mistake) reports the projection as corrupt rather than guessing a slot.
#[tokio::test]
async fn slots_without_exactly_one_live_are_corrupt() {
    let (_dir, path) = temp();
    let store = open(&path);
    raw(&path)
        .execute(
            "UPDATE projection_slots SET state = 'retired' WHERE projection = 'list'",
            [],
        )
        .expect("retire every list slot");
    for result in [
        store
            .list(&ListQuery {
                status: None,
                after: None,
                limit: 10,
                sort: ListSort::default(),
                agent: None,
                customer: None,
            })
            .await
            .map(|_| ()),
        store
            .checkpoint(Projection::List, Target::Live)
            .await
            .map(|_| ()),
    ] {
        match result {
            Err(ViewError::Corrupt(message)) => {
                assert!(message.contains("projection_slots of list"), "{message}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    assert!(
        store.ticket(Uuid::now_v7()).await.is_ok(),
        "other projections are unaffected"
    );
}

const CHILD_DB: &str = "STORE_SQLITE_IT_CHILD_DB";
const CHILD_APPENDS: u64 = 25;

/// Run by `appends_from_several_processes_stay_gap_free` in child processes;
/// does nothing when run by hand.
#[tokio::test]
#[ignore = "a helper run by another test in a child process"]
async fn child_process_appender() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return;
    };
    let store = open(Path::new(&path));
    let ticket = Uuid::now_v7();
    store
        .append(ticket, 0, vec![NewEvent::from(&opened("child"))])
        .await
        .expect("child open");
    for version in 1..CHILD_APPENDS {
        store
            .append(ticket, version, vec![note("from a child")])
            .await
            .expect("child append");
    }
}

/// Several processes append to one file at once (each its own writer
/// connection, serialised only by SQLite's lock): every append succeeds within
/// the busy timeout, positions stay gap-free, and a waiter here sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_several_processes_stay_gap_free() {
    const CHILDREN: u64 = 3;
    let (_dir, path) = temp();
    let store = open(&path);
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_events(0, Duration::from_secs(60)).await })
    };
    let exe = std::env::current_exe().expect("the test binary");
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "sqlite::child_process_appender",
                    "--test-threads=1",
                ])
                .env(CHILD_DB, &path)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn a child")
        })
        .collect();
    // This process appends too, racing the children.
    let (ticket, _) = open_ticket(&store).await;
    for version in 2..10 {
        store
            .append(ticket, version, vec![note("parent")])
            .await
            .expect("parent append");
    }
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait for a child");
        assert!(status.success(), "a child failed: {status}");
    }
    assert!(waiter.await.expect("the waiter panicked").expect("wait"));

    let total = CHILDREN * CHILD_APPENDS + 10;
    let all = store.read_all(0, 10_000).await.expect("read_all");
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        (1..=total).collect::<Vec<_>>(),
        "gap-free across processes"
    );
    let mut tickets: Vec<Uuid> = all.iter().map(|e| e.ticket_id).collect();
    tickets.sort();
    tickets.dedup();
    assert_eq!(tickets.len() as u64, CHILDREN + 1);
    for ticket in tickets {
        let stream = store.read_stream(ticket).await.expect("read");
        let versions: Vec<u64> = stream.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=stream.len() as u64).collect::<Vec<_>>());
    }
}

/// The secondary indexes of `table`, by name.
fn secondary_indexes(path: &Path, table: &str) -> Vec<String> {
    raw(path)
        .prepare(
            "SELECT name FROM sqlite_schema
             WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY name",
        )
        .expect("prepare")
        .query_map([table], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("index names")
}

/// The list table of the slot in `state` (`live` or not).
fn list_table(path: &Path, live: bool) -> String {
    let slot: String = raw(path)
        .query_row(
            "SELECT slot FROM projection_slots
             WHERE projection = 'list' AND (state = 'live') = ?1",
            [live],
            |row| row.get(0),
        )
        .expect("the list slot");
    format!("list_{slot}")
}

/// A rebuild's bulk load sets the shadow list slot's secondary indexes
/// aside. Their definitions outlive the process that set them aside, and
/// emptying the shadow or swapping it in builds them first: the slot never
/// goes live without them, and the live slot's are never touched.
#[tokio::test]
async fn deferred_shadow_indexes_are_built_before_the_slot_is_emptied_or_swapped_in() {
    let (_dir, path) = temp();
    let store = open(&path);
    open_ticket(&store).await;
    conformance::catch_up(&store, &store, 10).await;
    let (shadow, live) = (list_table(&path, false), list_table(&path, true));
    let shadow_indexes = secondary_indexes(&path, &shadow);
    let live_indexes = secondary_indexes(&path, &live);
    assert!(shadow_indexes.len() >= 8, "{shadow_indexes:?}");
    let deferred = || -> i64 {
        raw(&path)
            .query_row("SELECT count(*) FROM deferred_indexes", [], |row| {
                row.get(0)
            })
            .expect("count")
    };

    let fence = conformance::fence(&store, Projection::List, Target::Shadow).await;
    store.reset_shadow(&fence).await.expect("reset");
    store.defer_shadow_indexes(&fence).await.expect("defer");
    assert_eq!(secondary_indexes(&path, &shadow), Vec::<String>::new());
    assert_eq!(deferred(), shadow_indexes.len() as i64);
    assert_eq!(secondary_indexes(&path, &live), live_indexes);

    // The process dies; the next one empties the shadow to start over.
    drop(store);
    let store = open(&path);
    store.reset_shadow(&fence).await.expect("reset");
    assert_eq!(secondary_indexes(&path, &shadow), shadow_indexes);
    assert_eq!(deferred(), 0);

    // Set aside again, filled, and swapped in without building them first.
    store.defer_shadow_indexes(&fence).await.expect("defer");
    conformance::fold_into(&store, &store, &fence, 10, u64::MAX).await;
    store.swap_shadow(&fence).await.expect("swap");
    assert_eq!(list_table(&path, true), shadow);
    assert_eq!(secondary_indexes(&path, &shadow), shadow_indexes);
    assert_eq!(deferred(), 0);
    let page = store
        .list(&ListQuery {
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .expect("a list page from the swapped-in slot");
    assert_eq!(page.len(), 1);

    // Building with nothing set aside changes nothing.
    store.build_shadow_indexes(&fence).await.expect("build");
    assert_eq!(secondary_indexes(&path, &live), live_indexes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_past_the_queue_bound_are_refused_at_once_and_the_rest_commit() {
    let (_dir, path) = temp();
    let store = Arc::new(open(&path));
    // An operator's shell holds the write lock: the first batch waits for it
    // (within the busy timeout) and every later append queues behind it.
    let shell = raw(&path);
    shell
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let appends = store_sqlite::APPEND_QUEUE_MAX + 600;
    let mut tasks = Vec::with_capacity(appends);
    for n in 0..appends {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let event = NewEvent::from(&opened(&format!("c{n}")));
            store.append(Uuid::now_v7(), 0, vec![event]).await
        }));
    }
    // The refused ones answer while the lock is still held.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !tasks.iter().any(|task| task.is_finished()) {
        assert!(Instant::now() < deadline, "no append was refused at once");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shell
        .execute_batch("COMMIT")
        .expect("release the write lock");

    let (mut committed, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("the task") {
            Ok(_) => committed += 1,
            Err(StoreError::Unavailable(why)) => {
                assert!(why.to_string().contains("at most"), "{why}");
                refused += 1;
            }
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    // At most one batch left the queue before it filled.
    assert!(refused >= 600 - 256, "{refused} refused");
    assert_eq!(committed + refused, appends);
    assert_eq!(store.head().await.expect("head"), committed as u64);
}
