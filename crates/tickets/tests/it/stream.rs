//! `GET /tickets/stream` over real HTTP against the real `ticketd`: one
//! message per applied event in order, resuming with `Last-Event-ID`, no
//! message before the projector (here a separate process) applied the event,
//! a malformed `Last-Event-ID` refused, and a prompt clean exit on SIGTERM
//! while a client is connected.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{PATIENCE, Ticketd, Workspace, start_projector};

crate::on_every_backend!(
    every_applied_event_is_one_message_in_order_and_resumes_after_last_event_id,
    no_message_before_the_projector_applied_the_event,
    a_malformed_last_event_id_is_a_400_problem,
    sigterm_with_a_stream_open_exits_cleanly_and_promptly,
);

/// How long a test watches for a message it does not expect.
const QUIET: Duration = Duration::from_millis(800);

/// One SSE record: a message, an id-only record or a comment.
#[derive(Debug, Default, Clone)]
struct Record {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

/// An open event stream, read by a thread, record by record.
struct Stream {
    records: mpsc::Receiver<Record>,
}

enum Opened {
    Stream(Stream),
    Refused {
        status: u16,
        content_type: String,
        body: Value,
    },
}

fn open(base: &str, headers: &[(&str, &str)]) -> Opened {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(PATIENCE))
        .build()
        .into();
    let mut request = agent.get(format!("{base}/tickets/stream"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().expect("GET /tickets/stream");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if status != 200 {
        let text = response.body_mut().read_to_string().expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        return Opened::Refused {
            status,
            content_type,
            body,
        };
    }
    assert_eq!(content_type, "text/event-stream");
    let (tx, records) = mpsc::channel();
    let reader = response.into_body().into_reader();
    std::thread::spawn(move || {
        let mut record = Record::default();
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if line.is_empty() {
                if tx.send(std::mem::take(&mut record)).is_err() {
                    return;
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "id" => record.id = Some(value),
                "event" => record.event = Some(value),
                "data" => record.data = Some(value),
                _ => {}
            }
        }
        // The sender drops here: the stream ended.
    });
    Opened::Stream(Stream { records })
}

fn stream(base: &str, headers: &[(&str, &str)]) -> Stream {
    match open(base, headers) {
        Opened::Stream(stream) => stream,
        Opened::Refused { status, body, .. } => panic!("stream refused: {status} {body}"),
    }
}

impl Stream {
    /// The next record within `wait`; `None` when none came, `Some(None)`
    /// when the stream ended.
    fn record_within(&self, wait: Duration) -> Option<Option<Record>> {
        match self.records.recv_timeout(wait) {
            Ok(record) => Some(Some(record)),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(None),
        }
    }

    /// The opening id-only record: the position the stream starts after.
    #[track_caller]
    fn start(&self) -> u64 {
        let record = self
            .record_within(PATIENCE)
            .flatten()
            .expect("the opening record");
        assert_eq!(record.data, None, "{record:?}");
        record.id.expect("an id").parse().expect("a position")
    }

    /// The next message (skipping comments), as its `id` and JSON data.
    #[track_caller]
    fn message(&self) -> (String, Option<String>, Value) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let record = self
                .record_within(wait)
                .expect("a message in time")
                .expect("a message before the stream ended");
            if let Some(data) = record.data {
                let data = serde_json::from_str(&data).expect("JSON data");
                return (record.id.expect("an id"), record.event, data);
            }
        }
    }

    /// Asserts no message comes for a while.
    #[track_caller]
    fn quiet(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.record_within(left) {
                None => return,
                Some(Some(record)) if record.data.is_none() => continue,
                Some(other) => panic!("expected quiet, got {other:?}"),
            }
        }
    }

    /// Waits for the server to end the stream.
    #[track_caller]
    fn ends_within(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.record_within(left) {
                Some(None) => return,
                Some(Some(_)) => continue,
                None => panic!("the stream did not end within {wait:?}"),
            }
        }
    }
}

/// Asserts the message is the change (ticket, version, status) at `position`.
#[track_caller]
fn assert_change(
    message: &(String, Option<String>, Value),
    ticket: &str,
    version: u64,
    status: &str,
    position: u64,
) {
    let (id, event, data) = message;
    assert_eq!(id, &position.to_string(), "{message:?}");
    assert_eq!(event.as_deref(), Some("ticket"), "{message:?}");
    assert_eq!(
        data,
        &json!({"id": ticket, "version": version, "status": status, "position": position})
    );
}

fn id_of(ticket: &Value) -> String {
    ticket["id"].as_str().expect("id").to_owned()
}

fn every_applied_event_is_one_message_in_order_and_resumes_after_last_event_id(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;
    let live = stream(&http.base, &[]);
    assert_eq!(live.start(), 0, "a fresh store's list checkpoint");

    let a = id_of(&http.create("ACME", "Printer", "On fire"));
    let b = id_of(&http.create("Globex", "Mouse", "Lost"));
    // One request, three events: three messages, in the order appended.
    let reply = http.patch(
        &format!("/tickets/{a}"),
        &json!({"status": "triaged", "agent": "ana", "note": "on it"}),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = http.patch(&format!("/tickets/{b}"), &json!({"status": "closed"}));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(ws.event_count(), 6);

    let expected = [
        (&a, 1, "open", 1),
        (&b, 1, "open", 2),
        (&a, 2, "triaged", 3),
        (&a, 3, "triaged", 4),
        (&a, 4, "triaged", 5),
        (&b, 2, "closed", 6),
    ];
    for (ticket, version, status, position) in expected {
        assert_change(&live.message(), ticket, version, status, position);
    }
    live.quiet(QUIET);

    // Resuming in the middle: exactly the later changes.
    let resumed = stream(&http.base, &[("Last-Event-ID", "3")]);
    assert_eq!(resumed.start(), 3);
    for (ticket, version, status, position) in &expected[3..] {
        assert_change(&resumed.message(), ticket, *version, status, *position);
    }
    resumed.quiet(QUIET);

    // Both streams carry on with the next change.
    let reply = http.patch(&format!("/tickets/{a}"), &json!({"status": "closed"}));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_change(&live.message(), &a, 5, "closed", 7);
    assert_change(&resumed.message(), &a, 5, "closed", 7);
}

fn no_message_before_the_projector_applied_the_event(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &["--no-projector"]);
    let http = &ticketd.http;
    let live = stream(&http.base, &[]);
    assert_eq!(live.start(), 0);

    let ticket = id_of(&http.create("ACME", "Printer", "On fire"));
    assert_eq!(ws.event_count(), 1, "the write is in the store");
    // Written but not applied: the list does not show it, nor may the stream.
    live.quiet(Duration::from_millis(1500));

    let _projector = start_projector(&ws);
    assert_change(&live.message(), &ticket, 1, "open", 1);
}

fn a_malformed_last_event_id_is_a_400_problem(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    for bad in ["abc", "-1", "2.5"] {
        match open(&ticketd.http.base, &[("Last-Event-ID", bad)]) {
            Opened::Refused {
                status,
                content_type,
                body,
            } => {
                assert_eq!(status, 400, "{body}");
                assert_eq!(content_type, "application/problem+json");
                assert_eq!(body["type"], "/problems/invalid-parameter");
                assert_eq!(body["field"], "Last-Event-ID");
            }
            Opened::Stream(_) => panic!("Last-Event-ID {bad:?} was accepted"),
        }
    }
}

fn sigterm_with_a_stream_open_exits_cleanly_and_promptly(ws: Workspace) {
    let mut ticketd = Ticketd::start(&ws, &[]);
    let live = stream(&ticketd.http.base, &[]);
    live.start();
    let ticket = id_of(&ticketd.http.create("ACME", "Printer", "On fire"));
    assert_change(&live.message(), &ticket, 1, "open", 1);

    let asked = Instant::now();
    let status = ticketd.process.terminate();
    let took = asked.elapsed();
    assert!(
        status.success(),
        "{status:?}; log:\n{}",
        ticketd.process.logs()
    );
    assert!(
        took < Duration::from_secs(5),
        "ticketd took {took:?} to stop with a stream open"
    );
    live.ends_within(Duration::from_secs(5));
}
