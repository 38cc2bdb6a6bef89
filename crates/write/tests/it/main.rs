//! The write side against a real SQLite event store in a temporary folder.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use domain::{ChangeTicket, DomainError, Event, OpenTicket, Status};
use eventstore::{EventStore, Forwarding, NewEvent, Position, RecordedEvent, StoreError};
use projector::{Projector, ProjectorConfig};
use readmodel::ViewReader;
use store_sqlite::SqliteStore;
use uuid::Uuid;
use write::{CommandContext, CommandService, Idempotency, WriteError};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    service: CommandService,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            Arc::new(SqliteStore::open(&dir.path().join("tickets.db")).expect("open store"));
        let service = CommandService::new(store.clone());
        Self {
            _dir: dir,
            store,
            service,
        }
    }

    async fn open(&self) -> Uuid {
        let outcome = self
            .service
            .open(open_command(), CommandContext::default())
            .await
            .expect("open");
        outcome.ticket.id
    }

    async fn change(
        &self,
        id: Uuid,
        status: Option<Status>,
        agent: Option<Option<&str>>,
        note: Option<&str>,
    ) -> Result<write::WriteOutcome, WriteError> {
        let command = ChangeTicket::new(status, agent, note).expect("valid change");
        self.service
            .change(id, command, CommandContext::default(), None)
            .await
    }

    async fn stream(&self, id: Uuid) -> Vec<RecordedEvent> {
        self.store.read_stream(id).await.expect("read stream")
    }

    async fn head(&self) -> Position {
        self.store.head().await.expect("head")
    }
}

fn open_command() -> OpenTicket {
    OpenTicket::new("  ACME ", "Printer on fire", "It is\non fire.").expect("valid open")
}

#[tokio::test]
async fn opening_appends_one_event_and_answers_the_new_ticket() {
    let fx = Fixture::new();
    let correlation_id = Uuid::now_v7();
    let context = CommandContext {
        correlation_id: Some(correlation_id),
        actor: Some("ana@example.com".into()),
        idempotency: None,
    };
    let outcome = fx
        .service
        .open(open_command(), context)
        .await
        .expect("open");

    assert_eq!(outcome.appended, 1);
    assert_eq!(outcome.position, fx.head().await);
    let ticket = &outcome.ticket;
    assert_eq!(ticket.id.get_version_num(), 7, "ticket ids are UUID v7");
    assert_eq!(ticket.customer, "ACME", "fields arrive trimmed");
    assert_eq!(ticket.status, Status::Open);
    assert_eq!(ticket.version, 1);
    assert_eq!(ticket.agent, None);
    assert!(ticket.notes.is_empty());
    assert_eq!(ticket.created_at, ticket.updated_at);

    let stream = fx.stream(ticket.id).await;
    assert_eq!(stream.len(), 1);
    let event = &stream[0];
    assert_eq!(event.event_type, "TicketOpened");
    assert_eq!(event.occurred_at, ticket.created_at);
    assert_eq!(event.metadata.correlation_id, Some(correlation_id));
    assert_eq!(event.metadata.actor.as_deref(), Some("ana@example.com"));
    assert!(event.metadata.causation_id.is_some(), "the command id");
}

#[tokio::test]
async fn one_change_appends_its_events_in_order_with_one_causation() {
    let fx = Fixture::new();
    let id = fx.open().await;
    let outcome = fx
        .change(id, Some(Status::Triaged), Some(Some("ana")), Some("on it"))
        .await
        .expect("change");

    assert_eq!(outcome.appended, 3);
    assert_eq!(outcome.position, fx.head().await);
    assert_eq!(outcome.ticket.version, 4);
    assert_eq!(outcome.ticket.status, Status::Triaged);
    assert_eq!(outcome.ticket.agent.as_deref(), Some("ana"));
    assert_eq!(outcome.ticket.notes.len(), 1);
    assert_eq!(outcome.ticket.notes[0].text, "on it");

    let stream = fx.stream(id).await;
    let types: Vec<&str> = stream.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "TicketOpened",
            "TicketTriaged",
            "AgentAssigned",
            "NoteAdded"
        ]
    );
    let causes: Vec<_> = stream[1..]
        .iter()
        .map(|e| e.metadata.causation_id)
        .collect();
    assert!(causes.iter().all(|c| c.is_some() && *c == causes[0]));
    assert_ne!(stream[0].metadata.causation_id, causes[0]);
}

#[tokio::test]
async fn the_write_response_equals_what_the_projector_makes_of_the_stream() {
    let fx = Fixture::new();
    let id = fx.open().await;
    fx.change(id, Some(Status::Triaged), None, Some("first"))
        .await
        .expect("triage");
    fx.change(id, None, Some(Some("bo")), None)
        .await
        .expect("assign");
    let last = fx
        .change(id, Some(Status::Closed), Some(None), Some("done"))
        .await
        .expect("close");

    Projector::new(
        fx.store.clone(),
        fx.store.clone(),
        ProjectorConfig::default(),
    )
    .catch_up()
    .await
    .expect("catch up");
    let view = fx.store.ticket(id).await.expect("view").expect("projected");
    assert_eq!(view, last.ticket);
}

#[tokio::test]
async fn setting_the_current_status_appends_nothing() {
    let fx = Fixture::new();
    let id = fx.open().await;
    let head = fx.head().await;

    let outcome = fx
        .change(id, Some(Status::Open), None, None)
        .await
        .expect("same status");
    assert_eq!(outcome.appended, 0);
    assert_eq!(outcome.position, head, "the ticket's last event");
    assert_eq!(outcome.ticket.version, 1, "version unchanged");
    assert_eq!(outcome.ticket.status, Status::Open);
    assert_eq!(fx.head().await, head);
    assert_eq!(fx.stream(id).await.len(), 1);

    fx.change(id, None, Some(Some("ana")), None)
        .await
        .expect("assign");
    let again = fx
        .change(id, None, Some(Some("ana")), None)
        .await
        .expect("same agent");
    assert_eq!(again.appended, 0);
    assert_eq!(again.ticket.version, 2);
}

#[tokio::test]
async fn a_closed_ticket_refuses_status_changes_but_takes_notes() {
    let fx = Fixture::new();
    let id = fx.open().await;
    fx.change(id, Some(Status::Closed), None, None)
        .await
        .expect("close");
    let head = fx.head().await;

    let refused = fx
        .change(id, Some(Status::Triaged), None, Some("and a note"))
        .await;
    assert!(
        matches!(
            refused,
            Err(WriteError::Rejected(DomainError::ClosedIsFinal {
                requested: Status::Triaged
            }))
        ),
        "{refused:?}"
    );
    assert_eq!(fx.head().await, head, "a refused command appends nothing");

    let noted = fx
        .change(id, None, Some(Some("ana")), Some("post mortem"))
        .await
        .expect("note on closed");
    assert_eq!(noted.appended, 2);
    assert_eq!(noted.ticket.status, Status::Closed);
}

#[tokio::test]
async fn changing_an_unknown_ticket_is_not_found() {
    let fx = Fixture::new();
    fx.open().await;
    let head = fx.head().await;
    let result = fx.change(Uuid::now_v7(), None, None, Some("hello")).await;
    assert!(matches!(result, Err(WriteError::NotFound)), "{result:?}");
    assert_eq!(fx.head().await, head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_all_land_through_retries() {
    const WRITERS: usize = 20;
    let fx = Fixture::new();
    let id = fx.open().await;
    let store = Arc::new(SameStart {
        inner: fx.store.clone(),
        held: WRITERS,
        barrier: tokio::sync::Barrier::new(WRITERS),
        reads: AtomicUsize::new(0),
        conflicts: AtomicUsize::new(0),
    });
    let service = Arc::new(CommandService::new(store.clone()));

    let mut tasks = Vec::new();
    for n in 0..WRITERS {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let command = ChangeTicket::new(None, None, Some(&format!("note {n}"))).expect("note");
            service
                .change(id, command, CommandContext::default(), None)
                .await
        }));
    }
    for task in tasks {
        let outcome = task.await.expect("join").expect("every writer succeeds");
        assert_eq!(outcome.appended, 1);
    }
    assert!(
        store.conflicts.load(Ordering::SeqCst) >= WRITERS - 1,
        "all started from version 1, so all but one lost at least once"
    );

    let stream = fx.stream(id).await;
    assert_eq!(stream.len(), WRITERS + 1);
    let versions: Vec<u64> = stream.iter().map(|e| e.version).collect();
    let gapless: Vec<u64> = (1..=WRITERS as u64 + 1).collect();
    assert_eq!(versions, gapless);
    let mut notes: Vec<String> = stream
        .iter()
        .filter_map(|e| match e.decode().expect("decode") {
            Event::NoteAdded { text } => Some(text),
            _ => None,
        })
        .collect();
    notes.sort();
    let mut expected: Vec<String> = (0..WRITERS).map(|n| format!("note {n}")).collect();
    expected.sort();
    assert_eq!(notes, expected, "each note exactly once");
}

/// A real store that holds the first `held` reads until all of them
/// have read, so those writers all decide on the same version and race; it
/// counts the conflicts the store reports.
#[derive(Debug)]
struct SameStart {
    inner: Arc<SqliteStore>,
    held: usize,
    barrier: tokio::sync::Barrier,
    reads: AtomicUsize,
    conflicts: AtomicUsize,
}

#[async_trait]
impl Forwarding for SameStart {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn append(
        &self,
        ticket_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let result = self.inner.append(ticket_id, expected_version, events).await;
        if let Err(StoreError::Conflict { .. }) = result {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = self.inner.read_stream(ticket_id).await?;
        if self.reads.fetch_add(1, Ordering::SeqCst) < self.held {
            self.barrier.wait().await;
        }
        Ok(stream)
    }
}

/// A real store with a rival writer that slips a note in after every read, so
/// every append the service tries loses the race.
#[derive(Debug)]
struct AlwaysOvertaken {
    inner: Arc<SqliteStore>,
    reads: AtomicUsize,
}

#[async_trait]
impl Forwarding for AlwaysOvertaken {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let stream = self.inner.read_stream(ticket_id).await?;
        let version = stream.last().map_or(0, |e| e.version);
        let rival = NewEvent::from(&Event::NoteAdded {
            text: "rival".into(),
        });
        self.inner.append(ticket_id, version, vec![rival]).await?;
        Ok(stream)
    }
}

#[tokio::test]
async fn a_race_lost_on_every_attempt_is_a_conflict() {
    let fx = Fixture::new();
    let id = fx.open().await;
    let racing = Arc::new(AlwaysOvertaken {
        inner: fx.store.clone(),
        reads: AtomicUsize::new(0),
    });
    let service = CommandService::new(racing.clone()).with_max_attempts(3);
    let command = ChangeTicket::new(None, None, Some("mine")).expect("note");
    let result = service
        .change(id, command, CommandContext::default(), None)
        .await;

    assert!(
        matches!(result, Err(WriteError::Conflict { ticket_id }) if ticket_id == id),
        "{result:?}"
    );
    assert_eq!(
        racing.reads.load(Ordering::SeqCst),
        3,
        "one read per attempt"
    );
    let texts: Vec<Event> = fx
        .stream(id)
        .await
        .iter()
        .map(|e| e.decode().expect("decode"))
        .collect();
    assert_eq!(texts.len(), 4, "the opening and three rival notes");
    assert!(!texts.contains(&Event::NoteAdded {
        text: "mine".into()
    }));
}

#[tokio::test]
async fn an_undecodable_history_is_a_store_error() {
    let fx = Fixture::new();
    let id = fx.open().await;
    let mut alien = NewEvent::from(&Event::TicketTriaged);
    alien.event_type = "TicketMerged".into();
    fx.store
        .append(id, 1, vec![alien])
        .await
        .expect("append alien");

    let result = fx.change(id, None, None, Some("x")).await;
    assert!(
        matches!(result, Err(WriteError::Store(StoreError::Corrupt(_)))),
        "{result:?}"
    );
    assert_eq!(fx.stream(id).await.len(), 2);
}

#[tokio::test]
async fn an_expected_version_that_matches_lets_the_change_through() {
    let fx = Fixture::new();
    let id = fx.open().await;
    let command = ChangeTicket::new(None, None, Some("checked")).expect("note");
    let outcome = fx
        .service
        .change(id, command, CommandContext::default(), Some(1))
        .await
        .expect("version 1 is current");
    assert_eq!(outcome.ticket.version, 2);
}

#[tokio::test]
async fn an_expected_version_the_ticket_moved_on_from_appends_nothing() {
    let fx = Fixture::new();
    let id = fx.open().await;
    fx.change(id, None, None, Some("first"))
        .await
        .expect("note");
    let head = fx.head().await;

    let command = ChangeTicket::new(None, None, Some("stale")).expect("note");
    let result = fx
        .service
        .change(id, command, CommandContext::default(), Some(1))
        .await;
    assert!(
        matches!(
            result,
            Err(WriteError::VersionMismatch {
                expected: 1,
                actual: 2
            })
        ),
        "{result:?}"
    );
    assert_eq!(fx.head().await, head, "nothing appended");
    assert_eq!(fx.stream(id).await.len(), 2);
}

fn keyed(key: &str, digest: &str) -> CommandContext {
    CommandContext {
        idempotency: Some(Idempotency {
            key: key.into(),
            request_digest: digest.into(),
        }),
        ..CommandContext::default()
    }
}

#[tokio::test]
async fn a_retried_open_answers_the_first_ticket_and_appends_nothing() {
    let fx = Fixture::new();
    let first = fx
        .service
        .open(open_command(), keyed("k-open", "d1"))
        .await
        .expect("open");
    assert!(!first.replayed);
    let head = fx.head().await;
    let retry = fx
        .service
        .open(open_command(), keyed("k-open", "d1"))
        .await
        .expect("retry");
    assert!(retry.replayed, "the retry is a replay");
    assert_eq!(
        retry.ticket, first.ticket,
        "the same ticket, as it was then"
    );
    assert_eq!(retry.position, first.position);
    assert_eq!(retry.appended, 1, "what the first command appended");
    assert_eq!(fx.head().await, head, "a retry appends nothing");

    let reused = fx
        .service
        .open(open_command(), keyed("k-open", "another body"))
        .await;
    assert!(
        matches!(reused, Err(WriteError::IdempotencyKeyReused { ref key }) if key == "k-open"),
        "{reused:?}"
    );
    assert_eq!(fx.head().await, head, "a reused key appends nothing");
}

#[tokio::test]
async fn a_retried_change_answers_the_ticket_as_that_change_left_it() {
    let fx = Fixture::new();
    let id = fx.open().await;
    let command = || ChangeTicket::new(Some(Status::Triaged), None, Some("on it")).expect("valid");
    let first = fx
        .service
        .change(id, command(), keyed("k-change", "d"), Some(1))
        .await
        .expect("change");
    assert_eq!((first.appended, first.ticket.version), (2, 3));
    // The ticket moves on; the retry still answers with the first answer, and
    // its stale expected version is not checked again.
    fx.change(id, None, None, Some("later"))
        .await
        .expect("later");
    let head = fx.head().await;
    let retry = fx
        .service
        .change(id, command(), keyed("k-change", "d"), Some(1))
        .await
        .expect("retry");
    assert!(retry.replayed);
    assert_eq!(retry.ticket, first.ticket);
    assert_eq!((retry.position, retry.appended), (first.position, 2));
    assert_eq!(fx.head().await, head);
    let stream = fx.stream(id).await;
    assert_eq!(stream.len(), 4, "opened, triaged, noted, noted later");
    assert!(
        stream[1..3]
            .iter()
            .all(|e| e.metadata.idempotency_key.as_deref() == Some("k-change")),
        "the change's events carry its key"
    );
}

#[tokio::test]
async fn a_change_that_appends_nothing_records_no_key() {
    let fx = Fixture::new();
    let id = fx.open().await;
    let same = || ChangeTicket::new(Some(Status::Open), None, None).expect("valid");
    let outcome = fx
        .service
        .change(id, same(), keyed("k-noop", "d"), None)
        .await
        .expect("no-op");
    assert_eq!((outcome.appended, outcome.replayed), (0, false));
    assert_eq!(
        fx.store.read_idempotent("k-noop").await.expect("lookup"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retries_of_one_open_make_one_ticket() {
    let fx = Arc::new(Fixture::new());
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let fx = fx.clone();
        racers.spawn(async move {
            fx.service
                .open(open_command(), keyed("k-race", "d"))
                .await
                .expect("every racer gets an answer")
        });
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = racers.join_next().await {
        outcomes.push(outcome.expect("racer"));
    }
    let ids: std::collections::HashSet<Uuid> = outcomes.iter().map(|o| o.ticket.id).collect();
    assert_eq!(ids.len(), 1, "one ticket for all racers");
    assert_eq!(
        outcomes.iter().filter(|o| !o.replayed).count(),
        1,
        "exactly one racer appended"
    );
    assert_eq!(fx.head().await, 1, "one event in the store");
}

/// A store that only counts stream reads and lost races.
fn counting(fx: &Fixture) -> Arc<SameStart> {
    Arc::new(SameStart {
        inner: fx.store.clone(),
        held: 0,
        barrier: tokio::sync::Barrier::new(1),
        reads: AtomicUsize::new(0),
        conflicts: AtomicUsize::new(0),
    })
}

fn note(text: &str) -> ChangeTicket {
    ChangeTicket::new(None, None, Some(text)).expect("valid")
}

#[tokio::test]
async fn commands_on_a_ticket_this_service_wrote_read_no_stream() {
    let fx = Fixture::new();
    let store = counting(&fx);
    let service = CommandService::new(store.clone());
    let opened = service
        .open(open_command(), CommandContext::default())
        .await
        .expect("open");
    let id = opened.ticket.id;
    let mut last = opened;
    for text in ["a", "b", "c"] {
        last = service
            .change(id, note(text), CommandContext::default(), None)
            .await
            .expect("change");
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), 0, "no stream was read");
    // The answers are what the stream folds to.
    let uncached = CommandService::new(fx.store.clone()).with_cache_capacity(0);
    let noop = uncached
        .change(
            id,
            ChangeTicket::new(Some(Status::Open), None, None).expect("valid"),
            CommandContext::default(),
            None,
        )
        .await
        .expect("no-op");
    assert_eq!(noop.ticket, last.ticket);
    assert_eq!(noop.position, last.position);
}

/// Two services on one store (two instances): each one's memory goes stale
/// when the other writes, and nothing is lost or refused for it.
#[tokio::test]
async fn a_stale_memory_costs_a_retry_not_a_write() {
    let fx = Fixture::new();
    let store = counting(&fx);
    let here = CommandService::new(store.clone());
    let there = CommandService::new(fx.store.clone());
    let id = here
        .open(open_command(), CommandContext::default())
        .await
        .expect("open")
        .ticket
        .id;
    there
        .change(id, note("from there"), CommandContext::default(), None)
        .await
        .expect("change there");
    // `here` remembers version 1; the ticket is at 2.
    let changed = here
        .change(id, note("from here"), CommandContext::default(), None)
        .await
        .expect("change here");
    assert_eq!(changed.ticket.version, 3);
    assert_eq!(changed.ticket.notes.len(), 2, "both notes are kept");
    assert_eq!(store.conflicts.load(Ordering::SeqCst), 1, "one lost race");

    there
        .change(id, note("again"), CommandContext::default(), None)
        .await
        .expect("change there");
    // A client that read version 4 elsewhere is right, whatever `here`
    // remembers (version 3).
    let matched = here
        .change(
            id,
            note("with If-Match"),
            CommandContext::default(),
            Some(4),
        )
        .await
        .expect("If-Match of the stored version passes");
    assert_eq!(matched.ticket.version, 5);
    // And one that is really behind is refused.
    let stale = here
        .change(id, note("late"), CommandContext::default(), Some(4))
        .await;
    assert!(
        matches!(
            stale,
            Err(WriteError::VersionMismatch {
                expected: 4,
                actual: 5
            })
        ),
        "{stale:?}"
    );
    assert_eq!(fx.stream(id).await.len(), 5);
}
