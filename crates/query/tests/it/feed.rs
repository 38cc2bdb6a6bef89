//! The list change feed against a real SQLite store: written through the
//! write side, applied by the real projector.

use std::sync::Arc;
use std::time::Duration;

use domain::{ChangeTicket, OpenTicket, Status};
use eventstore::{EventStore, Position};
use projector::{Projector, ProjectorConfig};
use query::{ChangeFeed, ListChange, Subscription};
use store_sqlite::SqliteStore;
use uuid::Uuid;
use write::{CommandContext, CommandService};

/// How long a test waits for a change it expects.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long a test watches for a change it does not expect.
const QUIET: Duration = Duration::from_millis(300);

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    commands: CommandService,
    feed: Arc<ChangeFeed>,
}

impl Fixture {
    fn new() -> Self {
        Self::with_feed(|feed| feed)
    }

    fn with_feed(configure: impl FnOnce(ChangeFeed) -> ChangeFeed) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            Arc::new(SqliteStore::open(&dir.path().join("tickets.db")).expect("open store"));
        let feed =
            ChangeFeed::new(store.clone(), store.clone()).with_poll(Duration::from_millis(5));
        Self {
            _dir: dir,
            commands: CommandService::new(store.clone()),
            feed: Arc::new(configure(feed)),
            store,
        }
    }

    async fn open(&self, customer: &str) -> Uuid {
        let command = OpenTicket::new(customer, "subject", "message").expect("open");
        self.commands
            .open(command, CommandContext::default())
            .await
            .expect("open")
            .ticket
            .id
    }

    async fn change(
        &self,
        id: Uuid,
        status: Option<Status>,
        agent: Option<&str>,
        note: Option<&str>,
    ) {
        let command = ChangeTicket::new(status, agent.map(Some), note).expect("change");
        self.commands
            .change(id, command, CommandContext::default(), None)
            .await
            .expect("change");
    }

    async fn catch_up(&self) {
        Projector::new(
            self.store.clone(),
            self.store.clone(),
            ProjectorConfig::default(),
        )
        .catch_up()
        .await
        .expect("catch up");
    }

    async fn head(&self) -> Position {
        self.store.head().await.expect("head")
    }
}

async fn next(subscription: &mut Subscription) -> ListChange {
    tokio::time::timeout(PATIENCE, subscription.next())
        .await
        .expect("a change in time")
        .expect("a change")
}

async fn nothing_more(subscription: &mut Subscription) {
    if let Ok(change) = tokio::time::timeout(QUIET, subscription.next()).await {
        panic!("unexpected change {change:?}");
    }
}

fn change(position: Position, id: Uuid, version: u64, status: Status) -> ListChange {
    ListChange {
        position,
        id,
        version,
        status,
    }
}

#[tokio::test]
async fn one_change_per_event_in_order_once_the_projector_applied_it() {
    let fx = Fixture::new();
    let start = fx.feed.checkpoint().await.expect("checkpoint");
    assert_eq!(start, 0);
    let mut subscription = fx.feed.subscribe(start);

    let a = fx.open("a").await;
    let b = fx.open("b").await;
    // One command, three events: each is its own change, with the status
    // the row has after it.
    fx.change(a, Some(Status::Triaged), Some("ana"), Some("looking"))
        .await;
    fx.change(b, Some(Status::Closed), None, None).await;
    fx.change(a, None, None, Some("still looking")).await;
    assert_eq!(fx.head().await, 7);

    nothing_more(&mut subscription).await;
    fx.catch_up().await;

    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(next(&mut subscription).await);
    }
    let events = fx.store.read_all(0, 10).await.expect("events");
    let positions: Vec<Position> = events.iter().map(|event| event.position).collect();
    assert_eq!(
        seen.iter().map(|c| c.position).collect::<Vec<_>>(),
        positions
    );
    let by_position: Vec<ListChange> = events
        .iter()
        .zip(&seen)
        .map(|(event, change)| {
            assert_eq!(
                (change.id, change.version),
                (event.ticket_id, event.version)
            );
            *change
        })
        .collect();
    assert_eq!(
        by_position
            .iter()
            .map(|c| (c.id, c.version, c.status))
            .collect::<Vec<_>>(),
        vec![
            (a, 1, Status::Open),
            (b, 1, Status::Open),
            (a, 2, Status::Triaged),
            (a, 3, Status::Triaged),
            (a, 4, Status::Triaged),
            (b, 2, Status::Closed),
            (a, 5, Status::Triaged),
        ]
    );
    assert_eq!(subscription.position(), 7);
    nothing_more(&mut subscription).await;
}

#[tokio::test]
async fn a_subscription_resumes_after_the_position_it_names() {
    let fx = Fixture::new();
    let a = fx.open("a").await;
    fx.change(a, Some(Status::Triaged), None, None).await;
    fx.change(a, None, Some("ana"), None).await;
    fx.change(a, Some(Status::Closed), None, None).await;
    fx.catch_up().await;

    // After 2: the ticket's status at 3 is not in the event (an assignment)
    // nor in a fresh subscription's cache, so it is folded from the stream.
    let mut subscription = fx.feed.subscribe(2);
    assert_eq!(subscription.position(), 2);
    assert_eq!(
        next(&mut subscription).await,
        change(3, a, 3, Status::Triaged)
    );
    assert_eq!(
        next(&mut subscription).await,
        change(4, a, 4, Status::Closed)
    );
    nothing_more(&mut subscription).await;

    // From the checkpoint: only what comes next.
    let start = fx.feed.checkpoint().await.expect("checkpoint");
    assert_eq!(start, 4);
    let mut live = fx.feed.subscribe(start);
    nothing_more(&mut live).await;
    fx.change(a, None, None, Some("after closing")).await;
    fx.catch_up().await;
    assert_eq!(next(&mut live).await, change(5, a, 5, Status::Closed));
    assert_eq!(
        next(&mut subscription).await,
        change(5, a, 5, Status::Closed)
    );
}

#[tokio::test]
async fn small_batches_and_a_waiting_subscription_see_every_change() {
    let fx = Fixture::with_feed(|feed| feed.with_batch(2));
    let mut subscription = fx.feed.subscribe(0);
    let waiting = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..9 {
            seen.push(next(&mut subscription).await);
        }
        seen
    });
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = fx.open(&format!("customer {n}")).await;
        fx.change(id, Some(Status::Triaged), None, None).await;
        fx.change(id, None, None, Some("note")).await;
        ids.push(id);
        // The projector applies what is there so far, while the
        // subscription waits.
        fx.catch_up().await;
    }
    let seen = waiting.await.expect("join");
    let expected: Vec<ListChange> = ids
        .iter()
        .enumerate()
        .flat_map(|(n, id)| {
            let base = 3 * n as u64;
            [
                change(base + 1, *id, 1, Status::Open),
                change(base + 2, *id, 2, Status::Triaged),
                change(base + 3, *id, 3, Status::Triaged),
            ]
        })
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_subscription_nobody_polls_holds_up_no_other() {
    let fx = Fixture::new();
    let mut parked = fx.feed.subscribe(0);
    let mut parked_next = Box::pin(parked.next());
    // Polled once, then left waiting (as hyper leaves the stream of a client
    // that stopped reading): it is parked inside its checkpoint read.
    let _ = tokio::time::timeout(Duration::ZERO, &mut parked_next).await;

    let id = fx.open("a").await;
    fx.catch_up().await;
    let mut other = fx.feed.subscribe(0);
    assert_eq!(next(&mut other).await, change(1, id, 1, Status::Open));
    drop(parked_next);
}

#[tokio::test]
async fn a_subscription_far_behind_the_head_is_paced() {
    // 10 events a second, two per batch: a replay of 20 events (ten batches,
    // the last one within a batch of the checkpoint) takes at least 1.6 s.
    let fixture = Fixture::with_feed(|feed| feed.with_batch(2).with_replay_rate(10));
    for n in 0..20 {
        fixture.open(&format!("customer-{n}")).await;
    }
    fixture.catch_up().await;

    let started = tokio::time::Instant::now();
    let mut replay = fixture.feed.subscribe(0);
    for position in 1..=20 {
        assert_eq!(next(&mut replay).await.position, position);
    }
    let replayed_in = started.elapsed();
    assert!(
        replayed_in >= Duration::from_millis(1600),
        "a replay from far back was not paced: {replayed_in:?}"
    );
}
