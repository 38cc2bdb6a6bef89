//! `GET /tickets/stream` through the router: where a stream starts, what its
//! messages say, and when it ends (shutdown, a failing store), plus the
//! request timeout that must not cut it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, BodyDataStream};
use axum::http::{Method, Request, StatusCode};
use eventstore::{EventStore, Forwarding, Position, RecordedEvent, StoreError};
use futures::StreamExt;
use serde_json::{Value, json};
use store_sqlite::SqliteStore;
use tower::ServiceExt;

use crate::harness::App;

const PATIENCE: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(300);

/// One SSE record (a message, an id-only record or a comment).
#[derive(Debug, Default, Clone, PartialEq)]
struct Record {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<String>,
    comment: bool,
}

impl Record {
    fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).expect("JSON data")
    }
}

/// An open stream, read record by record.
struct Stream {
    body: BodyDataStream,
    buffer: String,
}

impl Stream {
    async fn open(app: &App, uri: &str, headers: &[(&str, &str)]) -> Self {
        let mut request = Request::builder().method(Method::GET).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app
            .router
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        assert_eq!(response.headers()["cache-control"], "no-cache");
        Stream {
            body: response.into_body().into_data_stream(),
            buffer: String::new(),
        }
    }

    /// The next record; `None` when the stream ended.
    async fn record(&mut self) -> Option<Record> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let text: String = self.buffer.drain(..end + 2).collect();
                return Some(parse(&text));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next())
                .await
                .expect("a record in time")?
                .expect("body chunk");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next change message (skipping comments and id-only records).
    async fn message(&mut self) -> Option<Record> {
        loop {
            let record = self.record().await?;
            if record.data.is_some() {
                return Some(record);
            }
        }
    }

    /// Asserts no message arrives for a while.
    async fn quiet(&mut self) {
        if let Ok(record) = tokio::time::timeout(QUIET, self.message()).await {
            panic!("unexpected {record:?}");
        }
    }

    /// Asserts the stream ends (after any records still in flight).
    async fn ends(&mut self) {
        while let Some(record) = self.record().await {
            assert!(
                record.data.is_none(),
                "a message instead of the end: {record:?}"
            );
        }
    }
}

fn parse(text: &str) -> Record {
    let mut record = Record::default();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if line.starts_with(':') {
            record.comment = true;
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "id" => record.id = Some(value),
            "event" => record.event = Some(value),
            "data" => record.data = Some(value),
            "retry" => record.retry = Some(value),
            other => panic!("unknown SSE field {other} in {text:?}"),
        }
    }
    record
}

#[track_caller]
fn assert_change(record: &Record, id: &str, version: u64, status: &str, position: Position) {
    assert_eq!(record.id.as_deref(), Some(position.to_string().as_str()));
    assert_eq!(record.event.as_deref(), Some("ticket"));
    assert_eq!(
        record.json(),
        json!({"id": id, "version": version, "status": status, "position": position})
    );
}

fn id_of(ticket: &Value) -> String {
    ticket["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_stream_starts_at_the_checkpoint_and_tells_each_applied_change() {
    let app = App::new();
    let before = app.create("before").await;
    app.catch_up().await;

    let mut stream = Stream::open(&app, "/tickets/stream", &[]).await;
    let opening = stream.record().await.expect("opening record");
    assert_eq!(opening.id.as_deref(), Some("1"), "starts at the checkpoint");
    assert_eq!(opening.data, None, "the opening record is no message");
    assert_eq!(opening.retry.as_deref(), Some("1000"));

    let ticket = app.create("ACME").await;
    let id = id_of(&ticket);
    app.patch(
        &format!("/tickets/{id}"),
        &json!({"status": "triaged", "agent": "ana"}),
    )
    .await;
    stream.quiet().await;
    app.catch_up().await;
    assert_change(&stream.message().await.expect("m"), &id, 1, "open", 2);
    assert_change(&stream.message().await.expect("m"), &id, 2, "triaged", 3);
    assert_change(&stream.message().await.expect("m"), &id, 3, "triaged", 4);
    stream.quiet().await;

    // Resuming from the header names the earlier ticket's event too.
    let mut resumed = Stream::open(&app, "/tickets/stream", &[("last-event-id", "0")]).await;
    assert_eq!(
        resumed.record().await.expect("opening").id.as_deref(),
        Some("0")
    );
    assert_change(
        &resumed.message().await.expect("m"),
        &id_of(&before),
        1,
        "open",
        1,
    );
    assert_change(&resumed.message().await.expect("m"), &id, 1, "open", 2);
}

#[tokio::test]
async fn last_event_id_wins_over_after() {
    let app = App::new();
    let ticket = app.create("ACME").await;
    let id = id_of(&ticket);
    for note in ["a", "b", "c"] {
        app.patch(&format!("/tickets/{id}"), &json!({"note": note}))
            .await;
    }
    app.catch_up().await;

    let mut by_query = Stream::open(&app, "/tickets/stream?after=2", &[]).await;
    assert_change(&by_query.message().await.expect("m"), &id, 3, "open", 3);
    assert_change(&by_query.message().await.expect("m"), &id, 4, "open", 4);

    let mut both = Stream::open(&app, "/tickets/stream?after=1", &[("last-event-id", "3")]).await;
    assert_change(&both.message().await.expect("m"), &id, 4, "open", 4);
    both.quiet().await;
}

#[tokio::test]
async fn bad_positions_and_parameters_are_problems() {
    let app = App::new();
    for bad in ["abc", "-1", "1.5", "99999999999999999999"] {
        app.request(
            Method::GET,
            "/tickets/stream",
            &[("last-event-id", bad)],
            None,
            Body::empty(),
        )
        .await
        .assert_problem(400, "invalid-parameter", Some("Last-Event-ID"));
    }
    app.send(Method::GET, "/tickets/stream?after=x", None, Body::empty())
        .await
        .assert_problem(422, "validation", Some("after"));
    app.send(Method::GET, "/tickets/stream?since=1", None, Body::empty())
        .await
        .assert_problem(400, "invalid-parameter", Some("since"));
    app.send(
        Method::GET,
        "/tickets/stream?after=1&after=2",
        None,
        Body::empty(),
    )
    .await
    .assert_problem(400, "invalid-parameter", Some("after"));
    app.send(Method::POST, "/tickets/stream", None, Body::empty())
        .await
        .assert_problem(405, "method-not-allowed", None);
}

#[tokio::test]
async fn streams_end_when_the_server_shuts_down() {
    let app = App::new();
    let mut stream = Stream::open(&app, "/tickets/stream", &[]).await;
    stream.record().await.expect("opening");
    app.shutdown.cancel();
    stream.ends().await;
}

#[tokio::test]
async fn the_request_timeout_does_not_cut_a_stream() {
    let limits = api::HttpLimits {
        request_timeout: Duration::from_millis(200),
        ..api::HttpLimits::default()
    };
    let app = App::with_limits(limits, |store| store);
    let mut stream = Stream::open(&app, "/tickets/stream", &[]).await;
    stream.record().await.expect("opening");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ticket = app.create("late").await;
    app.catch_up().await;
    assert_change(
        &stream.message().await.expect("m"),
        &id_of(&ticket),
        1,
        "open",
        1,
    );
}

/// The real store, whose `read_all` fails while `down` is set.
#[derive(Debug)]
struct Flaky {
    inner: Arc<SqliteStore>,
    down: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the disk went away")]
struct Gone;

#[async_trait]
impl Forwarding for Flaky {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(Gone));
        }
        self.inner.read_all(after, limit).await
    }
}

#[tokio::test]
async fn a_store_failure_ends_the_stream_and_the_client_resumes() {
    let down = Arc::new(AtomicBool::new(false));
    let flag = down.clone();
    let app = App::with_limits(api::HttpLimits::default(), move |inner| {
        Arc::new(Flaky { inner, down: flag })
    });
    let mut stream = Stream::open(&app, "/tickets/stream", &[]).await;
    let first = app.create("first").await;
    app.catch_up().await;
    assert_change(
        &stream.message().await.expect("m"),
        &id_of(&first),
        1,
        "open",
        1,
    );

    down.store(true, Ordering::SeqCst);
    let second = app.create("second").await;
    app.catch_up().await;
    stream.ends().await;

    down.store(false, Ordering::SeqCst);
    let mut resumed = Stream::open(&app, "/tickets/stream", &[("last-event-id", "1")]).await;
    assert_change(
        &resumed.message().await.expect("m"),
        &id_of(&second),
        1,
        "open",
        2,
    );
}
