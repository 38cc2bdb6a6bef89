//! The runner, rebuild and verify against a real SQLite store, in process:
//! the paths the black-box tests cannot reach (a dead letter that a retry
//! applies once the reader is upgraded, a rebuild interrupted from inside).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use domain::Event;
use eventstore::{EventStore, Forwarding, NewEvent, Position, RecordedEvent, StoreError};
use projector::{
    DeadLetterPolicy, Progress, Projector, ProjectorConfig, ProjectorError, RebuildOptions,
    RebuildOutcome, VerifyOptions, VerifyReport, rebuild, verify,
};
use readmodel::{
    DeadLetterState, DeadLetterStore, LeaseStore, Projection, RunState, SlotAdmin, Target,
    ViewReader, ViewStore,
};
use store_sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn quick() -> ProjectorConfig {
    ProjectorConfig {
        idle_wait: Duration::from_millis(50),
        retry_backoff: Duration::from_millis(50),
        lease_ttl: Duration::from_secs(2),
        standby_poll: Duration::from_millis(50),
        dead_letter_poll: Duration::from_millis(50),
        ..ProjectorConfig::default()
    }
}

fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
    (dir, Arc::new(store))
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn open_ticket(store: &SqliteStore, changes: &[Event]) -> Uuid {
    let id = Uuid::now_v7();
    let mut events = vec![NewEvent::from(&Event::TicketOpened {
        customer: "c".into(),
        subject: "s".into(),
        message: "m".into(),
    })];
    events.extend(changes.iter().map(NewEvent::from));
    store.append(id, 0, events).await.expect("append");
    id
}

/// A store whose reader does not know the type of one event until it is
/// "upgraded": what a dead letter from a newer writer looks like, and what a
/// retry after deploying the newer reader fixes.
#[derive(Debug)]
struct Upgradable {
    inner: Arc<SqliteStore>,
    unknown: Mutex<Option<Position>>,
}

impl Upgradable {
    fn mask(&self, mut events: Vec<RecordedEvent>) -> Vec<RecordedEvent> {
        let unknown = self.unknown.lock().map(|u| *u).unwrap_or(None);
        for event in &mut events {
            if Some(event.position) == unknown {
                event.event_type = "TicketEscalated".into();
            }
        }
        events
    }
}

#[async_trait]
impl Forwarding for Upgradable {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self.mask(self.inner.read_stream(ticket_id).await?))
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self.mask(self.inner.read_all(after, limit).await?))
    }

    async fn read_by_ticket(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self.mask(self.inner.read_by_ticket(after, limit).await?))
    }
}

/// The live slot of `projection` checked against the history.
async fn verify_live(store: &SqliteStore, projection: Projection) -> VerifyReport {
    verify(
        store,
        store,
        projection,
        Target::Live,
        &VerifyOptions::default(),
    )
    .await
    .expect("verify")
}

async fn letter_states(views: &dyn ViewStore, position: Position) -> Vec<DeadLetterState> {
    views
        .dead_letters(None)
        .await
        .expect("dead letters")
        .into_iter()
        .filter(|letter| letter.position == position)
        .map(|letter| letter.state)
        .collect()
}

#[tokio::test]
async fn a_retried_dead_letter_that_now_applies_is_resolved_and_the_projection_runs_on() {
    let (_dir, store) = store();
    let id = open_ticket(&store, &[Event::TicketTriaged, Event::TicketClosed]).await;
    let events = Arc::new(Upgradable {
        inner: store.clone(),
        unknown: Mutex::new(Some(2)),
    });
    let projector = Projector::new(events.clone(), store.clone(), quick());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let projector = projector.clone();
        let shutdown = shutdown.clone();
        async move { projector.run(shutdown).await }
    });

    eventually("a pending dead letter per projection", || async {
        let states = letter_states(&*store, 2).await;
        (states == [DeadLetterState::Pending; 3]).then_some(())
    })
    .await;
    for projection in Projection::ALL {
        let status = eventually("the stop to be reported", || async {
            let status = store.status(projection).await.expect("status");
            let lease = status.live_lease.clone()?;
            (lease.state == RunState::Stopped).then_some(status)
        })
        .await;
        let lease = status.live_lease.expect("lease");
        assert!(
            lease
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("TicketEscalated")),
            "{lease:?}"
        );
        assert_eq!(status.live.checkpoint, 1, "the good prefix is committed");
        assert_eq!(status.dead_letters_pending, 1);
    }

    // A retry with the old reader fails again and stays pending.
    projector::set_dead_letter(&*store, Projection::List, 2, DeadLetterState::Retry)
        .await
        .expect("retry");
    eventually("the failed retry to be pending again", || async {
        let letters = store.dead_letters(Some(Projection::List)).await.ok()?;
        let letter = letters.into_iter().find(|letter| letter.position == 2)?;
        (letter.state == DeadLetterState::Pending).then_some(())
    })
    .await;

    // The reader is upgraded: a retry applies it and resolves the letter.
    *events.unknown.lock().expect("lock") = None;
    for projection in Projection::ALL {
        projector::set_dead_letter(&*store, projection, 2, DeadLetterState::Retry)
            .await
            .expect("retry");
    }
    eventually("the letters to be resolved", || async {
        let states = letter_states(&*store, 2).await;
        (states == [DeadLetterState::Resolved; 3]).then_some(())
    })
    .await;
    let detail = eventually("the ticket to be closed in the view", || async {
        store
            .ticket(id)
            .await
            .expect("ticket")
            .filter(|t| t.version == 3)
    })
    .await;
    assert_eq!(detail.status, domain::Status::Closed);
    for projection in Projection::ALL {
        let report = verify_live(&store, projection).await;
        assert!(report.is_clean(), "{report}");
    }
    shutdown.cancel();
    running.await.expect("join").expect("run");
    for projection in Projection::ALL {
        let status = store.status(projection).await.expect("status");
        let lease = status.live_lease.expect("lease");
        assert!(lease.expires_at <= status.now, "released on shutdown");
    }
}

#[tokio::test]
async fn the_skip_policy_records_the_event_as_skipped_and_carries_on() {
    let (_dir, store) = store();
    let id = open_ticket(&store, &[Event::TicketTriaged, Event::TicketClosed]).await;
    let events = Arc::new(Upgradable {
        inner: store.clone(),
        unknown: Mutex::new(Some(2)),
    });
    let config = ProjectorConfig {
        dead_letter_policy: DeadLetterPolicy::Skip,
        ..quick()
    };
    let reached = Projector::new(events, store.clone(), config)
        .catch_up()
        .await
        .expect("catch up");
    assert_eq!(reached, 3);
    assert_eq!(
        letter_states(&*store, 2).await,
        [DeadLetterState::Skipped; 3]
    );
    let detail = store.ticket(id).await.expect("ticket").expect("row");
    assert_eq!(detail.version, 3);
    assert_eq!(detail.status, domain::Status::Closed);
}

#[tokio::test]
async fn catch_up_refuses_a_projection_a_running_daemon_holds() {
    let (_dir, store) = store();
    open_ticket(&store, &[]).await;
    let fence = store
        .acquire_lease(
            Projection::List,
            Target::Live,
            "other:1:0",
            Duration::from_secs(30),
        )
        .await
        .expect("acquire")
        .expect("free");
    let error = Projector::new(store.clone(), store.clone(), quick())
        .catch_up()
        .await
        .expect_err("held");
    assert!(
        matches!(&error, ProjectorError::LeaseHeld { projection: Projection::List, holder } if holder == "other:1:0"),
        "{error}"
    );
    store.release_lease(&fence).await.expect("release");
}

/// Cancels a token once the replay has gone past a position.
#[derive(Debug)]
struct StopAt {
    at: Position,
    token: CancellationToken,
}

impl StopAt {
    fn at(at: Position) -> Self {
        StopAt {
            at,
            token: CancellationToken::new(),
        }
    }
}

impl Progress for StopAt {
    fn started(&self, _: Projection, _: Position, _: Position, _: bool) {}
    fn advanced(&self, _: Projection, done: Position, _: Position) {
        if done >= self.at {
            self.token.cancel();
        }
    }
    fn phase(&self, _: Projection, _: &str) {}
    fn finished(&self, _: &RebuildOutcome) {}
}

/// A rebuild of `projection` that is told to shut down once it has gone past
/// position `at`.
async fn rebuild_stopped_at(
    store: &Arc<SqliteStore>,
    projection: Projection,
    options: &RebuildOptions,
    at: Position,
) -> Result<RebuildOutcome, projector::RebuildError> {
    let stop = StopAt::at(at);
    rebuild(
        store.clone(),
        store.clone(),
        projection,
        options,
        &stop,
        &stop.token,
    )
    .await
}

#[tokio::test]
async fn an_interrupted_rebuild_resumes_and_a_running_daemon_follows_the_swap() {
    let (_dir, store) = store();
    for _ in 0..20 {
        open_ticket(&store, &[Event::TicketTriaged]).await;
    }
    let projector = Projector::new(store.clone(), store.clone(), quick());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let projector = projector.clone();
        let shutdown = shutdown.clone();
        async move { projector.run(shutdown).await }
    });
    // The global-order replay is what resumes; the by-ticket pass starts over.
    let options = RebuildOptions {
        batch_size: 3,
        by_ticket: false,
        ..RebuildOptions::default()
    };
    let interrupted = rebuild_stopped_at(&store, Projection::Dashboard, &options, 15).await;
    assert!(
        matches!(
            interrupted,
            Err(projector::RebuildError::Interrupted { .. })
        ),
        "{interrupted:?}"
    );
    let status = store.status(Projection::Dashboard).await.expect("status");
    assert!(status.shadow.checkpoint >= 15, "{status:?}");
    // The live view serves throughout (the daemon applies the history at its
    // own pace, which a loaded machine may make slower than the rebuild's).
    eventually("the live dashboard to count every ticket", || async {
        (store.dashboard().await.expect("dashboard").triaged == 20).then_some(())
    })
    .await;

    let go_on = StopAt::at(Position::MAX);
    let outcome = rebuild(
        store.clone(),
        store.clone(),
        Projection::Dashboard,
        &options,
        &go_on,
        &go_on.token,
    )
    .await
    .expect("rebuild");
    assert_eq!(outcome.resumed_from, Some(status.shadow.checkpoint));
    assert!(outcome.verify.is_clean());

    // The daemon follows the swapped-in slot.
    for _ in 0..5 {
        open_ticket(&store, &[Event::TicketClosed]).await;
    }
    eventually("the daemon to apply events after the swap", || async {
        let counts = store.dashboard().await.expect("dashboard");
        (counts.closed == 5 && counts.triaged == 20).then_some(())
    })
    .await;
    let report = verify_live(&store, Projection::Dashboard).await;
    assert!(report.is_clean() && report.counts_checked, "{report}");
    shutdown.cancel();
    running.await.expect("join").expect("run");
}

/// Writes to the store while a rebuild reads it by ticket: one more event for
/// an existing ticket and a new ticket, once, at the first read. Counts the
/// events the global-order reads return.
#[derive(Debug)]
struct WritesDuringPass {
    inner: Arc<SqliteStore>,
    existing: Uuid,
    written: Mutex<Option<Uuid>>,
    read_in_order: AtomicU64,
}

#[async_trait]
impl Forwarding for WritesDuringPass {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_all(after, limit).await?;
        self.read_in_order
            .fetch_add(events.len() as u64, Ordering::SeqCst);
        Ok(events)
    }

    async fn read_by_ticket(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let first = self.written.lock().expect("lock").is_none();
        if first {
            let version = self.inner.read_stream(self.existing).await?.len() as u64;
            self.inner
                .append(
                    self.existing,
                    version,
                    vec![NewEvent::from(&Event::TicketClosed)],
                )
                .await?;
            let new = open_ticket(&self.inner, &[Event::TicketTriaged]).await;
            *self.written.lock().expect("lock") = Some(new);
        }
        self.inner.read_by_ticket(after, limit).await
    }
}

/// Tickets with one to five events each, so that reads of a few events end
/// inside a ticket's stream.
async fn varied_history(store: &SqliteStore, tickets: usize) -> Vec<Uuid> {
    let changes = [
        Event::TicketTriaged,
        Event::AgentAssigned {
            agent: "ana".into(),
        },
        Event::NoteAdded { text: "n".into() },
        Event::TicketClosed,
    ];
    let mut ids = Vec::new();
    for n in 0..tickets {
        ids.push(open_ticket(store, &changes[..n % 5]).await);
    }
    ids
}

#[tokio::test]
async fn a_fresh_rebuild_writes_each_row_once_and_applies_events_written_meanwhile_after() {
    for projection in [Projection::List, Projection::Dashboard, Projection::Detail] {
        let (_dir, store) = store();
        let ids = varied_history(&store, 30).await;
        let history = store.head().await.expect("head");
        let events = Arc::new(WritesDuringPass {
            inner: store.clone(),
            existing: ids[0],
            written: Mutex::new(None),
            read_in_order: AtomicU64::new(0),
        });
        let options = RebuildOptions {
            batch_size: 4,
            ..RebuildOptions::default()
        };
        let outcome = rebuild(
            events.clone(),
            store.clone(),
            projection,
            &options,
            &projector::LogProgress::new(Duration::from_secs(60)),
            &CancellationToken::new(),
        )
        .await
        .expect("rebuild");
        assert!(events.written.lock().expect("lock").is_some());
        assert_eq!(outcome.swapped_at, history + 3, "{projection}");
        // Only the events written during the pass came in global order:
        // the history before them was folded ticket by ticket.
        let in_order = events.read_in_order.load(Ordering::SeqCst);
        assert!(
            in_order < history,
            "{projection}: {in_order} of {history} events read in global order"
        );
        let report = verify_live(&store, projection).await;
        assert!(report.is_clean(), "{projection}: {report}");
        if projection == Projection::Dashboard {
            let counts = store.dashboard().await.expect("dashboard");
            // 30 tickets, n % 5 changes each: 6 with none (open), 18 triaged
            // (one, two or three changes), 6 closed; ticket 0 was closed
            // and a triaged one opened during the pass.
            assert_eq!((counts.open, counts.triaged, counts.closed), (5, 19, 7));
        }
    }
}

#[tokio::test]
async fn an_interrupted_by_ticket_pass_starts_over() {
    let (_dir, store) = store();
    varied_history(&store, 30).await;
    let options = RebuildOptions {
        batch_size: 4,
        ..RebuildOptions::default()
    };
    let interrupted = rebuild_stopped_at(&store, Projection::List, &options, 20).await;
    assert!(
        matches!(
            interrupted,
            Err(projector::RebuildError::Interrupted { checkpoint: 0, .. })
        ),
        "{interrupted:?}"
    );
    let status = store.status(Projection::List).await.expect("status");
    assert_eq!(status.shadow.checkpoint, 0, "{status:?}");

    let outcome = rebuild(
        store.clone(),
        store.clone(),
        Projection::List,
        &options,
        &projector::LogProgress::new(Duration::from_secs(60)),
        &CancellationToken::new(),
    )
    .await
    .expect("rebuild");
    assert_eq!(outcome.resumed_from, None);
    assert!(outcome.verify.is_clean(), "{}", outcome.verify);
    // Both passes set the shadow's indexes aside; the list reads the
    // swapped-in slot through them (a missing one is an error).
    let assigned = store
        .list(&readmodel::ListQuery {
            agent: Some("ana".into()),
            customer: Some("c".into()),
            limit: 100,
            ..readmodel::ListQuery::default()
        })
        .await
        .expect("a list page by customer and agent from the rebuilt slot");
    assert_eq!(
        assigned.len(),
        18,
        "tickets 2, 3 and 4 of every five are assigned"
    );
}

#[tokio::test]
async fn a_by_ticket_pass_that_meets_a_bad_event_gives_way_to_the_replay_which_stops_there() {
    let (_dir, store) = store();
    varied_history(&store, 10).await;
    let bad = 7;
    let events = Arc::new(Upgradable {
        inner: store.clone(),
        unknown: Mutex::new(Some(bad)),
    });
    let outcome = rebuild(
        events,
        store.clone(),
        Projection::List,
        &RebuildOptions::default(),
        &projector::LogProgress::new(Duration::from_secs(60)),
        &CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(
            outcome,
            Err(projector::RebuildError::Stuck { position, .. }) if position == bad
        ),
        "{outcome:?}"
    );
    // The replay committed everything before the bad event, as it always has.
    let status = store.status(Projection::List).await.expect("status");
    assert_eq!(status.shadow.checkpoint, bad - 1, "{status:?}");
}

/// A store whose by-ticket reads fail once `pages` of them have been served.
#[derive(Debug)]
struct FailsAfterPages {
    inner: Arc<SqliteStore>,
    pages: AtomicU64,
}

#[async_trait]
impl Forwarding for FailsAfterPages {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn read_by_ticket(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let served = self
            .pages
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            });
        if served.is_err() {
            return Err(StoreError::unavailable(std::io::Error::other(
                "the history read failed",
            )));
        }
        self.inner.read_by_ticket(after, limit).await
    }
}

#[tokio::test]
async fn verify_fails_when_the_history_cannot_be_read_to_its_end() {
    // The history is read ahead of the comparison; a read that fails midway
    // ends the pages early, and that must not pass for the end of the
    // history (a report of "missing" tickets, or a clean one).
    let (_dir, store) = store();
    varied_history(&store, 12).await;
    let options = VerifyOptions {
        page_size: 4,
        ..VerifyOptions::default()
    };
    for projection in Projection::ALL {
        let complete = verify(&*store, &*store, projection, Target::Live, &options)
            .await
            .expect("verify over a readable history");
        assert_eq!(complete.tickets, 12, "{projection}: {complete:?}");

        let failing = FailsAfterPages {
            inner: Arc::clone(&store),
            pages: AtomicU64::new(2),
        };
        let outcome = verify(&failing, &*store, projection, Target::Live, &options).await;
        assert!(
            matches!(
                outcome,
                Err(ProjectorError::Events(StoreError::Unavailable(_)))
            ),
            "{projection}: {outcome:?}"
        );
    }
}
