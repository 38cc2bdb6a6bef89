//! The sessions a store runs transactions on, on record in `session_owners`
//! so that a dead process's abandoned transactions can be ended
//! (`store_mongo` module `sessions`): every lsid is on record before its
//! first transaction, live owners are never swept, an owner whose heartbeat
//! is stale is swept (`killSessions` goes out for its lsids, its record is
//! deleted), a store whose record was swept puts it back, and a clean stop
//! deletes its own record.
//!
//! On jongodb `killSessions` is refused (CommandNotFound) and abandoned
//! transactions hold no locks, so there the fault proxy's command count shows
//! `killSessions` going out; that it ends an abandoned transaction holding
//! the `counters` document, and that an append then succeeds, only a real
//! replica set shows (`MONGODB_URI`, the last test).

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventstore::EventStore;
use futures::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, Document, doc};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use store_mongo::fault_proxy::{self, FaultProxy};
use store_mongo::testing::{self, ServerKind, TestDatabase};
use store_mongo::{HEARTBEAT_EVERY, MongoStore, OWNER_DEAD_AFTER, SESSION_OWNERS, SWEEP_EVERY};
use tokio::time::Instant;
use uuid::Uuid;

use crate::fixtures::{note, opened};

/// Longest a sweep of a stale owner may take after a store connects: its own
/// heartbeats must first succeed for [`OWNER_DEAD_AFTER`], then a sweep is
/// at most [`SWEEP_EVERY`] away, plus slack for a loaded test machine.
fn sweep_within() -> Duration {
    OWNER_DEAD_AFTER + SWEEP_EVERY + HEARTBEAT_EVERY * 2 + Duration::from_secs(5)
}

fn owners(store: &MongoStore) -> mongodb::Collection<Document> {
    store.database().collection(SESSION_OWNERS)
}

/// The store's record, if there is one.
async fn record(store: &MongoStore, owner: &str) -> Option<Document> {
    owners(store)
        .find_one(doc! { "_id": owner })
        .await
        .expect("read session_owners")
}

/// The lsid UUIDs of a record.
fn lsids(record: &Document) -> HashSet<Vec<u8>> {
    record
        .get_array("lsids")
        .expect("a record has lsids")
        .iter()
        .map(|lsid| match lsid {
            Bson::Binary(binary) => {
                assert_eq!(binary.subtype, BinarySubtype::Uuid, "{lsid:?}");
                binary.bytes.clone()
            }
            other => panic!("an lsid that is not a UUID: {other:?}"),
        })
        .collect()
}

/// Polls `check` until it holds or `within` has passed; says whether it held.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A connected store through a fault proxy (to count the commands it
/// sends), and the database's guard; `None`: skipped.
async fn through_proxy(label: &str) -> Option<(FaultProxy, MongoStore, TestDatabase)> {
    let database = testing::database(label)?;
    let upstream = fault_proxy::first_host(database.uri())
        .unwrap_or_else(|| panic!("the proxy needs a mongodb:// URI: {}", database.uri()));
    let proxy = FaultProxy::start(upstream).await.expect("start the proxy");
    let uri = proxy.uri(database.uri()).expect("a URI through the proxy");
    let store = MongoStore::connect(&uri)
        .await
        .unwrap_or_else(|e| panic!("connect through the proxy to {uri}: {e}"));
    Some((proxy, store, database))
}

/// A dead owner's record, written directly: a heartbeat ten minutes old.
async fn write_dead_owner(store: &MongoStore, owner: &str, lsids: &[Vec<u8>]) {
    let lsids: Vec<Bson> = lsids
        .iter()
        .map(|id| {
            Bson::Binary(Binary {
                subtype: BinarySubtype::Uuid,
                bytes: id.clone(),
            })
        })
        .collect();
    let old = chrono::Utc::now() - chrono::TimeDelta::minutes(10);
    owners(store)
        .insert_one(doc! {
            "_id": owner,
            "heartbeat_at": mongodb::bson::DateTime::from_millis(old.timestamp_millis()),
            "lsids": lsids,
        })
        .await
        .expect("write a dead owner's record");
}

/// Every command the driver started, whole, in order.
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<Document>>>);

impl Sent {
    fn observer(&self) -> EventHandler<CommandEvent> {
        let sent = Arc::clone(&self.0);
        EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                let mut command = started.command;
                if !command.contains_key("$db") {
                    command.insert("$db", started.db);
                }
                sent.lock().expect("the command log").push(command);
            }
        })
    }

    fn all(&self) -> Vec<Document> {
        self.0.lock().expect("the command log").clone()
    }
}

/// The bytes of `{id: UUID}`.
fn uuid_of(lsid: &Document) -> Option<Vec<u8>> {
    match lsid.get("id")? {
        Bson::Binary(binary) if binary.subtype == BinarySubtype::Uuid => Some(binary.bytes.clone()),
        _ => None,
    }
}

fn lsid_of(command: &Document) -> Option<Vec<u8>> {
    uuid_of(command.get_document("lsid").ok()?)
}

#[tokio::test]
async fn every_lsid_is_on_record_before_its_first_transaction() {
    let Some(database) = testing::database("sessions_registered") else {
        return;
    };
    let upstream = fault_proxy::first_host(database.uri())
        .unwrap_or_else(|| panic!("the proxy needs a mongodb:// URI: {}", database.uri()));
    let proxy = FaultProxy::start(upstream).await.expect("start the proxy");
    let uri = proxy.uri(database.uri()).expect("a URI through the proxy");
    let sent = Sent::default();
    let store = MongoStore::connect_observed(&uri, sent.observer())
        .await
        .unwrap_or_else(|e| panic!("connect {uri}: {e}"));
    // The store's transactions take turns, so they reuse one pooled
    // session; a network error makes the driver discard a session, and the
    // next transaction starts on a new lsid. Dropping one commit does that
    // (the driver's own commit retry then commits).
    let ticket = Uuid::now_v7();
    store
        .append(ticket, 0, vec![opened("registered")])
        .await
        .expect("open");
    for version in 1..=3 {
        proxy.faults().drop_commits(1);
        store
            .append(ticket, version, vec![note(&format!("v{version}"))])
            .await
            .unwrap_or_else(|e| panic!("append {version}: {e}"));
        proxy.faults().drop_commits(0);
    }
    for version in 4..=6 {
        store
            .append(ticket, version, vec![note(&format!("v{version}"))])
            .await
            .unwrap_or_else(|e| panic!("append {version}: {e}"));
    }

    // Walk the commands in the order they were sent: each one that starts
    // a transaction must name an lsid that an earlier write to
    // session_owners put on record.
    let mut on_record: HashSet<Vec<u8>> = HashSet::new();
    let mut started = 0;
    for command in sent.all() {
        if command.get_str("update").ok() == Some(SESSION_OWNERS) {
            let updates = command.get_array("updates").expect("updates");
            for update in updates {
                let Bson::Document(update) = update else {
                    panic!("an update that is not a document: {update:?}");
                };
                let set = update
                    .get_document("u")
                    .and_then(|u| u.get_document("$set"))
                    .expect("a record write sets its fields");
                on_record.extend(lsids(set));
            }
        }
        if command.get_bool("startTransaction").unwrap_or(false) {
            started += 1;
            let lsid = lsid_of(&command).expect("a transaction's command names its lsid");
            assert!(
                on_record.contains(&lsid),
                "a transaction started on an lsid not yet on record: {command:?}"
            );
        }
    }
    // The start-up check's transaction, then 7 appends.
    assert!(started >= 8, "{started} transactions seen");
    let record = record(&store, store.session_owner())
        .await
        .expect("the store's record");
    let registered = lsids(&record);
    assert!(
        (2..=8).contains(&registered.len()),
        "new sessions after network errors, and few: {} lsids",
        registered.len()
    );
    assert!(
        registered.is_subset(&on_record),
        "the record holds the lsids the store put there"
    );
}

#[tokio::test]
async fn live_owners_are_never_swept() {
    let Some((proxy, first, database)) = through_proxy("sessions_live").await else {
        return;
    };
    let uri = proxy.uri(database.uri()).expect("a URI through the proxy");
    let second = MongoStore::connect(&uri)
        .await
        .expect("connect a second store");
    let ticket = Uuid::now_v7();
    first
        .append(ticket, 0, vec![opened("live")])
        .await
        .expect("open");
    // Long enough for several sweeps by both stores.
    let until = Instant::now() + OWNER_DEAD_AFTER + SWEEP_EVERY * 3;
    let mut version = 1;
    while Instant::now() < until {
        for store in [&first, &second] {
            store
                .append(ticket, version, vec![note(&format!("v{version}"))])
                .await
                .unwrap_or_else(|e| panic!("append {version}: {e}"));
            version += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for store in [&first, &second] {
        let record = record(store, store.session_owner())
            .await
            .unwrap_or_else(|| panic!("store {} lost its record", store.session_owner()));
        assert!(!lsids(&record).is_empty(), "{record:?}");
    }
    assert_eq!(
        proxy.faults().commands("killSessions"),
        0,
        "no live store's sessions were killed"
    );
}

#[tokio::test]
async fn an_owner_with_a_stale_heartbeat_is_swept_and_its_sessions_killed() {
    let Some((proxy, store, _database)) = through_proxy("sessions_stale").await else {
        return;
    };
    let started = Instant::now();
    let dead = format!("dead-{}", Uuid::now_v7());
    let dead_lsids = vec![
        Uuid::now_v7().as_bytes().to_vec(),
        Uuid::now_v7().as_bytes().to_vec(),
    ];
    write_dead_owner(&store, &dead, &dead_lsids).await;
    // A dead owner that had registered nothing yet.
    let empty = format!("dead-{}", Uuid::now_v7());
    write_dead_owner(&store, &empty, &[]).await;

    let swept = eventually(sweep_within(), || async {
        record(&store, &dead).await.is_none() && record(&store, &empty).await.is_none()
    })
    .await;
    assert!(
        swept,
        "the dead owners' records are still there after {:?}",
        started.elapsed()
    );
    eprintln!("dead owners swept {:?} after connect", started.elapsed());
    // The sweep asked the server to kill the dead owner's sessions (jongodb
    // answers CommandNotFound; the records go all the same), and only once
    // per owner with lsids: never `killSessions: []`, which kills every
    // session of the user.
    let kills = proxy.faults().commands("killSessions");
    assert!(kills >= 1, "killSessions was sent");
    // The sweeping store's own record is intact.
    let own = record(&store, store.session_owner())
        .await
        .expect("the sweeping store keeps its record");
    assert!(!lsids(&own).is_empty());
    // It still writes.
    store
        .append(Uuid::now_v7(), 0, vec![opened("after the sweep")])
        .await
        .expect("append after the sweep");
}

#[tokio::test]
async fn killsessions_names_exactly_the_dead_owners_lsids() {
    let Some(database) = testing::database("sessions_kill_list") else {
        return;
    };
    let sent = Sent::default();
    let store = MongoStore::connect_observed(database.uri(), sent.observer())
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", database.uri()));
    let dead = format!("dead-{}", Uuid::now_v7());
    let dead_lsids: Vec<Vec<u8>> = (0..3).map(|_| Uuid::now_v7().as_bytes().to_vec()).collect();
    write_dead_owner(&store, &dead, &dead_lsids).await;
    let swept = eventually(sweep_within(), || async {
        record(&store, &dead).await.is_none()
    })
    .await;
    assert!(swept, "the dead owner's record is still there");
    let kills: Vec<Document> = sent
        .all()
        .into_iter()
        .filter(|command| command.contains_key("killSessions"))
        .collect();
    assert_eq!(
        kills.len(),
        1,
        "one killSessions for one dead owner: {kills:?}"
    );
    let kill = &kills[0];
    assert_eq!(kill.get_str("$db").ok(), Some("admin"), "{kill:?}");
    let named: Vec<Vec<u8>> = kill
        .get_array("killSessions")
        .expect("an array of lsids")
        .iter()
        .map(|lsid| {
            let Bson::Document(lsid) = lsid else {
                panic!("an lsid that is not {{id: UUID}}: {lsid:?}");
            };
            uuid_of(lsid).expect("{id: UUID}")
        })
        .collect();
    assert_eq!(named, dead_lsids);
    let own = lsids(
        &record(&store, store.session_owner())
            .await
            .expect("own record"),
    );
    assert!(
        named.iter().all(|lsid| !own.contains(lsid)),
        "a store never kills its own sessions"
    );
}

#[tokio::test]
async fn a_store_whose_record_was_swept_puts_it_back() {
    let Some((store, _database)) = testing::store("sessions_back").await else {
        return;
    };
    let ticket = Uuid::now_v7();
    store
        .append(ticket, 0, vec![opened("back")])
        .await
        .expect("open");
    let owner = store.session_owner().to_owned();
    let before = lsids(&record(&store, &owner).await.expect("on record"));
    assert!(!before.is_empty());
    // What another store's sweep does when this one was paused too long.
    let deleted = owners(&store)
        .delete_one(doc! { "_id": &owner })
        .await
        .expect("delete the record");
    assert_eq!(deleted.deleted_count, 1);
    let back = eventually(HEARTBEAT_EVERY * 4, || async {
        record(&store, &owner).await.is_some()
    })
    .await;
    assert!(back, "the store's next heartbeat writes its record again");
    let after = lsids(&record(&store, &owner).await.expect("on record"));
    assert!(
        before.is_subset(&after),
        "every lsid is on record again: before {before:?}, after {after:?}"
    );
    store
        .append(ticket, 1, vec![note("after coming back")])
        .await
        .expect("append after coming back");
}

#[tokio::test]
async fn a_clean_stop_deletes_the_stores_record() {
    let Some((store, database)) = testing::store("sessions_shutdown").await else {
        return;
    };
    store
        .append(Uuid::now_v7(), 0, vec![opened("stop")])
        .await
        .expect("append");
    let owner = store.session_owner().to_owned();
    assert!(record(&store, &owner).await.is_some());
    store.shutdown().await.expect("shut down");
    assert!(record(&store, &owner).await.is_none(), "deleted at once");
    // No heartbeat writes it again.
    tokio::time::sleep(HEARTBEAT_EVERY * 3).await;
    assert!(
        record(&store, &owner).await.is_none(),
        "and it stays deleted"
    );

    // A store dropped without `shutdown` deletes its record in the
    // background.
    let dropped = MongoStore::connect(database.uri())
        .await
        .expect("connect another");
    dropped
        .append(Uuid::now_v7(), 0, vec![opened("drop")])
        .await
        .expect("append");
    let owner = dropped.session_owner().to_owned();
    assert!(record(&store, &owner).await.is_some());
    drop(dropped);
    let gone = eventually(Duration::from_secs(3), || async {
        record(&store, &owner).await.is_none()
    })
    .await;
    assert!(gone, "a dropped store's record is deleted");
}

/// Whether the server runs `killSessions` (jongodb answers CommandNotFound).
async fn has_kill_sessions(client: &mongodb::Client) -> Result<(), String> {
    let nobody = Bson::Binary(Binary {
        subtype: BinarySubtype::Uuid,
        bytes: Uuid::now_v7().as_bytes().to_vec(),
    });
    client
        .database("admin")
        .run_command(doc! { "killSessions": [ { "id": nobody } ] })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// On a real replica set only: a transaction left open by a process that
/// "died" (a raw client session that wrote the `counters` document and
/// never committed, on record as a dead owner's) holds the counter's lock,
/// so appends meet write conflicts; the sweep kills its session, which
/// aborts it, and an append succeeds long before the server's own 60 s
/// `transactionLifetimeLimitSeconds`.
#[tokio::test]
async fn on_a_replica_set_a_dead_processs_open_transaction_is_ended_by_the_sweep() {
    let Some(server) = testing::shared() else {
        return;
    };
    if server.kind() == ServerKind::Jongodb {
        // Past the harness's capture: a skip must show.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: jongodb has no killSessions and its abandoned transactions hold no locks; \
             set MONGODB_URI to a replica set to run this"
        );
        return;
    }
    let Some(database) = testing::database("sessions_abandoned") else {
        return;
    };
    let client = mongodb::Client::with_uri_str(database.uri())
        .await
        .expect("a raw client");
    if let Err(why) = has_kill_sessions(&client).await {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the server refuses killSessions ({why}); this test needs it"
        );
        return;
    }
    let store = MongoStore::connect(database.uri())
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", database.uri()));
    let ticket = Uuid::now_v7();
    store
        .append(ticket, 0, vec![opened("abandoned")])
        .await
        .expect("open the ticket");

    // The "dead process": a transaction that takes positions and is never
    // committed, on a session on record under an owner whose heartbeat is
    // old. The session is kept (not dropped), so nothing but the sweep or
    // the server's lifetime limit can end its transaction.
    let mut abandoned = client.start_session().await.expect("a session");
    abandoned.start_transaction().await.expect("start");
    let counters = client
        .default_database()
        .expect("the URI names the database")
        .collection::<Document>("counters");
    counters
        .update_one(
            doc! { "_id": "events" },
            doc! { "$inc": { "position": 1_i64 } },
        )
        .session(&mut abandoned)
        .await
        .expect("write the counter in the open transaction");
    let lsid = uuid_of(abandoned.id()).expect("the session's UUID");
    let dead = format!("dead-{}", Uuid::now_v7());
    write_dead_owner(&store, &dead, &[lsid]).await;

    // Appends meet the abandoned transaction's lock until the sweep ends it.
    let started = Instant::now();
    let mut refused = 0;
    let mut version = 1;
    loop {
        match store
            .append(
                ticket,
                version,
                vec![note("behind the abandoned transaction")],
            )
            .await
        {
            Ok(_) => break,
            Err(e) => {
                refused += 1;
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "appends still fail {:?} after the abandoned transaction: {e}",
                    started.elapsed()
                );
                // A refusal after an unknown outcome may have landed.
                version = store.read_stream(ticket).await.expect("read").len() as u64;
            }
        }
    }
    let waited = started.elapsed();
    let _ = writeln!(
        std::io::stderr(),
        "MEASURE store-mongo: an append behind a dead process's open transaction succeeded \
         after {waited:?} ({refused} refused meanwhile)"
    );
    assert!(
        waited < OWNER_DEAD_AFTER + SWEEP_EVERY + Duration::from_secs(15),
        "the sweep ended the abandoned transaction in {waited:?}"
    );
    // The abandoned transaction was aborted by the kill, not committed.
    let commit = abandoned.commit_transaction().await;
    assert!(
        commit.is_err(),
        "the killed session's transaction cannot commit"
    );
    let dead_record = owners(&store)
        .find(doc! { "_id": &dead })
        .await
        .expect("find")
        .try_collect::<Vec<_>>()
        .await
        .expect("read");
    assert!(dead_record.is_empty(), "the dead owner's record is deleted");
    // Positions stayed gap-free: the abandoned $inc never landed.
    let all = store.read_all(0, 100).await.expect("read all");
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    let expected: Vec<u64> = (1..=positions.len() as u64).collect();
    assert_eq!(positions, expected);
}
