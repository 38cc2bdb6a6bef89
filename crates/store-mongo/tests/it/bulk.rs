//! A view commit's writes go in bulk: one `update` command per collection
//! (more only past the server's limits on one command), whatever the number
//! of rows, and the version guard and the counts' guard still hold.
//!
//! The commands are counted with the driver's command monitoring, through a
//! store opened with [`MongoStore::open_observed`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::Status;
use eventstore::Position;
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use readmodel::{
    DashboardDelta, Fence, LeaseStore, Projection, ProjectionWriter, Rows, SlotAdmin, Target,
    TicketDetail, TicketStatusRow, ViewChanges, ViewError, ViewReader,
};
use store_mongo::MongoStore;
use store_mongo::testing::{self, ServerKind};
use uuid::Uuid;

/// The name and the target collection (if any) of every command the driver
/// started, in order.
#[derive(Clone, Default)]
struct Commands(Arc<Mutex<Vec<(String, String)>>>);

impl Commands {
    fn observer(&self) -> EventHandler<CommandEvent> {
        let seen = Arc::clone(&self.0);
        EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                let target = started
                    .command
                    .get_str(&started.command_name)
                    .unwrap_or_default()
                    .to_owned();
                seen.lock()
                    .expect("the command log")
                    .push((started.command_name, target));
            }
        })
    }

    fn len(&self) -> usize {
        self.0.lock().expect("the command log").len()
    }

    /// The commands started since the log held `from` of them.
    fn since(&self, from: usize) -> Vec<(String, String)> {
        self.0.lock().expect("the command log")[from..].to_vec()
    }
}

fn count(commands: &[(String, String)], name: &str, collection: &str) -> usize {
    commands
        .iter()
        .filter(|(n, c)| n == name && c == collection)
        .count()
}

/// A migrated database and a store on it whose commands are logged; `None`:
/// skipped (see `store_mongo::testing`).
async fn observed(label: &str) -> Option<(MongoStore, Commands, testing::TestDatabase)> {
    let (_, database) = testing::store(label).await?;
    let commands = Commands::default();
    let store = MongoStore::open_observed(database.uri(), commands.observer())
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", database.uri()));
    Some((store, commands, database))
}

async fn lease(store: &MongoStore, projection: Projection) -> Fence {
    store
        .acquire_lease(projection, Target::Live, "bulk", Duration::from_secs(300))
        .await
        .expect("acquire")
        .expect("a free lease")
}

fn ids(n: usize) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    ids.sort();
    ids
}

fn status_rows(ids: &[Uuid], status: Status, version: u64) -> Vec<TicketStatusRow> {
    ids.iter()
        .map(|&id| TicketStatusRow {
            id,
            status,
            version,
        })
        .collect()
}

fn delta(open: i64, triaged: i64, closed: i64) -> DashboardDelta {
    DashboardDelta {
        open,
        triaged,
        closed,
    }
}

/// Commits `rows` and `dashboard` from the live slot's checkpoint to one
/// past it.
async fn commit(
    store: &MongoStore,
    fence: &Fence,
    rows: Rows,
    dashboard: DashboardDelta,
) -> Result<(), ViewError> {
    let from: Position = store
        .checkpoint(fence.projection, Target::Live)
        .await
        .expect("checkpoint");
    store
        .commit(
            fence,
            ViewChanges {
                projection: fence.projection,
                from,
                to: from + 1,
                rows,
                dashboard,
            },
        )
        .await
}

async fn stored_rows(store: &MongoStore, projection: Projection) -> Vec<(Uuid, Status, u64)> {
    let keys = store
        .scan_rows(projection, Target::Live, None, 1_000_000)
        .await
        .expect("scan");
    match keys {
        Rows::Dashboard(rows) => rows.iter().map(|r| (r.id, r.status, r.version)).collect(),
        Rows::Detail(rows) => rows.iter().map(|r| (r.id, r.status, r.version)).collect(),
        Rows::List(rows) => rows.iter().map(|r| (r.id, r.status, r.version)).collect(),
    }
}

/// How many rows the commit under test carries. jongodb answers each update
/// statement with a scan of the whole collection, so 5,000 statements take
/// minutes there for reasons that are not round trips; a real server
/// (`MONGODB_URI`) gets the full 5,000.
fn rows_for_this_server() -> usize {
    match testing::shared().map(|server| server.kind()) {
        Some(ServerKind::External) | None => 5_000,
        Some(ServerKind::Jongodb) => 500,
    }
}

/// A commit of `rows` dashboard rows (two fifths stale and skipped, two
/// fifths newer than the stored ones, one fifth new) sends the same few
/// commands as a 3-row one: one `update` on the rows, one on the counts.
#[tokio::test]
async fn a_big_commit_sends_one_update_per_collection() {
    big_commit("bulk dashboard", rows_for_this_server()).await;
}

async fn big_commit(label: &str, n: usize) {
    let Some((store, commands, _database)) = observed(label).await else {
        return;
    };
    let fence = lease(&store, Projection::Dashboard).await;
    let (rows, counts) = ("dashboard_tickets_a", "dashboard_counts_a");
    let all = ids(n);
    let fifth = n / 5;
    let (stale, newer, new) = (
        &all[..2 * fifth],
        &all[2 * fifth..4 * fifth],
        &all[4 * fifth..],
    );
    let seeded = 4 * fifth as i64;
    let (moved, added) = (newer.len() as i64, new.len() as i64);

    // Seed the stale and the newer rows at version 5, all open.
    let seed = [stale, newer].concat();
    commit(
        &store,
        &fence,
        Rows::Dashboard(status_rows(&seed, Status::Open, 5)),
        delta(seeded, 0, 0),
    )
    .await
    .expect("seed");

    // A small commit, for the number of commands a commit takes.
    let small_ids = ids(3);
    let before = commands.len();
    commit(
        &store,
        &fence,
        Rows::Dashboard(status_rows(&small_ids, Status::Open, 1)),
        delta(3, 0, 0),
    )
    .await
    .expect("small commit");
    let small = commands.since(before);

    // The big one: stale rows (version 3 < 5) are skipped, newer ones
    // (version 7) replace the stored ones, new ones are inserted.
    let mut batch = status_rows(stale, Status::Closed, 3);
    batch.extend(status_rows(newer, Status::Triaged, 7));
    batch.extend(status_rows(new, Status::Closed, 1));
    let before = commands.len();
    let started = Instant::now();
    commit(
        &store,
        &fence,
        Rows::Dashboard(batch),
        delta(-moved, moved, added),
    )
    .await
    .expect("big commit");
    let took = started.elapsed();
    let big = commands.since(before);
    eprintln!(
        "a {n}-row dashboard commit: {took:?}, {} commands: {big:?}",
        big.len()
    );

    assert_eq!(count(&big, "update", rows), 1, "{big:?}");
    assert_eq!(count(&big, "update", counts), 1, "{big:?}");
    assert_eq!(count(&big, "insert", rows), 0, "{big:?}");
    assert_eq!(count(&big, "find", rows), 1, "{big:?}");
    assert_eq!(
        big.len(),
        small.len(),
        "the number of commands depends on the rows: {small:?} against {big:?}"
    );
    assert!(big.len() <= 12, "{big:?}");

    let stored = stored_rows(&store, Projection::Dashboard).await;
    assert_eq!(stored.len(), n + 3);
    let stored: HashMap<Uuid, (Status, u64)> = stored
        .into_iter()
        .map(|(id, status, version)| (id, (status, version)))
        .collect();
    for id in stale {
        assert_eq!(stored[id], (Status::Open, 5), "a stale row was written");
    }
    for id in newer {
        assert_eq!(stored[id], (Status::Triaged, 7), "a newer row was not");
    }
    for id in new {
        assert_eq!(stored[id], (Status::Closed, 1), "a new row was not");
    }
    let dashboard = store.counts(Target::Live).await.expect("counts");
    assert_eq!(
        (dashboard.open, dashboard.triaged, dashboard.closed),
        ((seeded - moved + 3) as u64, moved as u64, added as u64)
    );
}

/// A decrement that would take a count below zero is still refused, names
/// the count, and writes nothing: not the rows, not the other counts, not
/// the checkpoint.
#[tokio::test]
async fn a_count_going_below_zero_is_refused_and_writes_nothing() {
    let Some((store, _, _database)) = observed("bulk counts guard").await else {
        return;
    };
    let fence = lease(&store, Projection::Dashboard).await;
    let seeded = ids(2);
    commit(
        &store,
        &fence,
        Rows::Dashboard(status_rows(&seeded, Status::Open, 1)),
        delta(2, 0, 0),
    )
    .await
    .expect("seed");
    let checkpoint = store
        .checkpoint(Projection::Dashboard, Target::Live)
        .await
        .expect("checkpoint");

    let error = commit(
        &store,
        &fence,
        Rows::Dashboard(status_rows(&ids(3), Status::Closed, 1)),
        delta(0, -1, 3),
    )
    .await
    .expect_err("triaged is zero");
    match &error {
        ViewError::Corrupt(what) => assert!(
            what.contains("`triaged` count would go below zero (by -1)"),
            "{what}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }

    assert_eq!(stored_rows(&store, Projection::Dashboard).await.len(), 2);
    let dashboard = store.counts(Target::Live).await.expect("counts");
    assert_eq!(
        (dashboard.open, dashboard.triaged, dashboard.closed),
        (2, 0, 0)
    );
    assert_eq!(
        store
            .checkpoint(Projection::Dashboard, Target::Live)
            .await
            .expect("checkpoint"),
        checkpoint
    );
}

fn detail(id: Uuid, message: String, version: u64) -> TicketDetail {
    let now = Utc::now();
    TicketDetail {
        id,
        customer: "acme".to_owned(),
        subject: "bulk".to_owned(),
        message,
        status: Status::Open,
        agent: None,
        notes: Vec::new(),
        created_at: now,
        updated_at: now,
        version,
    }
}

/// Rows adding up to more than one command's 16 MiB go in as few commands as
/// fit, and every row arrives.
#[tokio::test]
async fn rows_past_16_mib_split_into_a_few_commands() {
    let Some((store, commands, _database)) = observed("bulk split").await else {
        return;
    };
    let fence = lease(&store, Projection::Detail).await;
    // 24 rows of 1 MiB: two commands.
    let rows: Vec<TicketDetail> = ids(24)
        .into_iter()
        .map(|id| detail(id, "x".repeat(1 << 20), 1))
        .collect();
    let before = commands.len();
    commit(
        &store,
        &fence,
        Rows::Detail(rows),
        DashboardDelta::default(),
    )
    .await
    .expect("commit");
    let sent = commands.since(before);
    assert_eq!(count(&sent, "update", "detail_a"), 2, "{sent:?}");
    assert_eq!(count(&sent, "insert", "detail_a"), 0, "{sent:?}");
    let stored = stored_rows(&store, Projection::Detail).await;
    assert_eq!(stored.len(), 24);
}
