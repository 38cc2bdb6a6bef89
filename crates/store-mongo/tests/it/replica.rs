//! What the store asks of a replica set, read off the commands the driver
//! sends (command monitoring through [`MongoStore::open_observed`]): reads
//! outside transactions ask for majority-committed data and writes for a
//! majority, and a shadow slot is emptied in bounded transactions rather than
//! in one that a real server would abort on a large store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::Status;
use eventstore::EventStore;
use mongodb::bson::Document;
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use readmodel::{
    DashboardDelta, DeadLetterStore, LeaseStore, Projection, ProjectionWriter, Rows, SlotAdmin,
    SlotState, Target, TicketStatusRow, ViewChanges, ViewReader,
};
use store_mongo::MongoStore;
use store_mongo::testing::{self, TestDatabase};
use uuid::Uuid;

/// Every command the driver started, whole.
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<Document>>>);

impl Sent {
    fn observer(&self) -> EventHandler<CommandEvent> {
        let sent = Arc::clone(&self.0);
        EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                sent.lock().expect("the command log").push(started.command);
            }
        })
    }

    fn take(&self) -> Vec<Document> {
        std::mem::take(&mut *self.0.lock().expect("the command log"))
    }
}

/// A migrated database, a store on it whose commands are recorded, and the
/// database's guard; `None`: skipped (see `store_mongo::testing`).
async fn observed(label: &str) -> Option<(MongoStore, Sent, TestDatabase)> {
    let (_, database) = testing::store(label).await?;
    let sent = Sent::default();
    let store = MongoStore::open_observed(database.uri(), sent.observer())
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", database.uri()));
    Some((store, sent, database))
}

fn in_transaction(command: &Document) -> bool {
    command.contains_key("txnNumber")
}

fn named<'a>(commands: &'a [Document], name: &str) -> Vec<&'a Document> {
    commands.iter().filter(|c| c.contains_key(name)).collect()
}

#[tokio::test]
async fn reads_outside_transactions_ask_for_majority_committed_data() {
    let Some((store, sent, _database)) = observed("majority reads").await else {
        return;
    };
    let ticket = Uuid::now_v7();
    store
        .append(ticket, 0, vec![crate::fixtures::opened("acme")])
        .await
        .expect("append");
    sent.take();

    // The tailer's reads, a write-side read, and the query side's.
    store.read_all(0, 10).await.expect("read_all");
    store.head().await.expect("head");
    store.read_stream(ticket).await.expect("read_stream");
    store
        .checkpoint(Projection::List, Target::Live)
        .await
        .expect("checkpoint");
    store.dashboard().await.expect("dashboard");

    let finds = sent.take();
    let finds = named(&finds, "find");
    assert!(finds.len() >= 5, "{finds:?}");
    for find in finds {
        assert!(!in_transaction(find), "{find}");
        let level = find
            .get_document("readConcern")
            .and_then(|concern| concern.get_str("level"));
        assert_eq!(level.ok(), Some("majority"), "{find}");
    }
}

#[tokio::test]
async fn writes_outside_transactions_wait_for_a_majority() {
    let Some((store, sent, _database)) = observed("majority writes").await else {
        return;
    };
    sent.take();
    store
        .put_dead_letter(&readmodel::DeadLetter {
            projection: Projection::List,
            position: 1,
            ticket_id: Uuid::now_v7(),
            version: 1,
            event_type: "TicketOpened".into(),
            reason: "test".into(),
            event: serde_json::json!({}),
            state: readmodel::DeadLetterState::Pending,
            recorded_at: chrono::Utc::now(),
        })
        .await
        .expect("put");
    let commands = sent.take();
    let updates = named(&commands, "update");
    assert_eq!(updates.len(), 1, "{commands:?}");
    let w = updates[0]
        .get_document("writeConcern")
        .and_then(|concern| concern.get_str("w"));
    assert_eq!(w.ok(), Some("majority"), "{}", updates[0]);
}

/// 2,500 rows in a shadow slot are deleted 1,000 at a time, each batch in a
/// transaction of its own under the fence; the slot then restarts empty.
#[tokio::test]
async fn a_shadow_slot_is_emptied_in_bounded_transactions() {
    let Some((store, sent, _database)) = observed("bounded reset").await else {
        return;
    };
    let fence = store
        .acquire_lease(
            Projection::Dashboard,
            Target::Shadow,
            "rebuilder",
            Duration::from_secs(300),
        )
        .await
        .expect("acquire")
        .expect("a free lease");
    store.reset_shadow(&fence).await.expect("first reset");
    let mut ids: Vec<Uuid> = (0..2_500).map(|_| Uuid::now_v7()).collect();
    ids.sort();
    for (chunk, from) in ids.chunks(500).zip(0..) {
        let rows = chunk
            .iter()
            .map(|&id| TicketStatusRow {
                id,
                status: Status::Open,
                version: 1,
            })
            .collect();
        let changes = ViewChanges {
            projection: Projection::Dashboard,
            from,
            to: from + 1,
            rows: Rows::Dashboard(rows),
            dashboard: DashboardDelta {
                open: 500,
                triaged: 0,
                closed: 0,
            },
        };
        store
            .commit(&fence, changes)
            .await
            .expect("fill the shadow");
    }
    assert_eq!(
        store.counts(Target::Shadow).await.expect("counts").open,
        2_500
    );

    sent.take();
    store.reset_shadow(&fence).await.expect("reset");
    let commands = sent.take();
    let deletes = named(&commands, "delete");
    assert_eq!(deletes.len(), 3, "2,500 rows, 1,000 a batch: {deletes:?}");
    for delete in &deletes {
        assert!(in_transaction(delete), "{delete}");
    }
    let commits = named(&commands, "commitTransaction").len();
    assert!(commits >= 5, "set aside, three deletes, restart: {commits}");

    let left = store
        .scan_rows(Projection::Dashboard, Target::Shadow, None, 10)
        .await
        .expect("scan");
    assert!(left.is_empty(), "the shadow is empty");
    assert_eq!(
        store.counts(Target::Shadow).await.expect("counts"),
        readmodel::Dashboard::default()
    );
    let status = store.status(Projection::Dashboard).await.expect("status");
    assert_eq!(status.shadow.state, SlotState::Building);
    assert_eq!(status.shadow.checkpoint, 0);
}
