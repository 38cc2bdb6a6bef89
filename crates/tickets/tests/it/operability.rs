//! Operability over real HTTP: `/healthz`, request ids, `X-Actor`, JSON logs,
//! the body size limit and the request timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{PATIENCE, Ticketd, Workspace, eventually};

/// A reply with its headers.
#[derive(Debug)]
struct Answer {
    status: u16,
    request_id: Option<String>,
    content_type: String,
    body: Value,
}

/// Sends `method path` with extra headers and an optional JSON body.
fn call(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into();
    let url = format!("{base}{path}");
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = match body {
        Some(body) => {
            let request = request
                .header("content-type", "application/json")
                .body(body.to_owned())
                .expect("request");
            agent.run(request)
        }
        None => agent.run(request.body(()).expect("request")),
    };
    let mut response = response.expect("HTTP call");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = header("x-request-id");
    let content_type = header("content-type").unwrap_or_default();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        request_id,
        content_type,
        body,
    }
}

fn create_body(message: &str) -> String {
    json!({"customer": "c@example.com", "subject": "s", "message": message}).to_string()
}

/// The stored events of a ticket, read from the store itself.
fn stored_events(ws: &Workspace, ticket: &str) -> Vec<Stored> {
    let url: tickets::StoreUrl = ws.store_url().parse().expect("store url");
    let ticket = uuid::Uuid::parse_str(ticket).expect("ticket id");
    let runtime = tokio_runtime();
    runtime.block_on(async {
        let backend = tickets::Backend::open(&url).await.expect("open store");
        let events = backend.events.read_stream(ticket).await.expect("read");
        events
            .into_iter()
            .map(|event| Stored {
                correlation_id: event.metadata.correlation_id,
                actor: event.metadata.actor,
            })
            .collect()
    })
}

/// The metadata of a stored event that these tests look at.
#[derive(Debug)]
struct Stored {
    correlation_id: Option<uuid::Uuid>,
    actor: Option<String>,
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn healthz_answers_ok_with_a_request_id() {
    let ws = Workspace::sqlite();
    let server = Ticketd::start(&ws, &[]);
    let answer = call(&server.http.base, "GET", "/healthz", &[], None);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, json!({"status": "ok"}));
    let id = answer.request_id.expect("a generated request id");
    uuid::Uuid::parse_str(&id).expect("generated ids are UUIDs");
}

crate::on_every_backend!(request_id_becomes_the_correlation_id, actor_is_checked);

fn request_id_becomes_the_correlation_id(ws: Workspace) {
    let server = Ticketd::start(&ws, &[]);
    let base = &server.http.base;
    let request_id = uuid::Uuid::now_v7().to_string();
    let created = call(
        base,
        "POST",
        "/tickets",
        &[("x-request-id", &request_id)],
        Some(&create_body("hello")),
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.request_id.as_deref(), Some(request_id.as_str()));
    let ticket = created.body["id"].as_str().expect("id").to_owned();
    let events = stored_events(&ws, &ticket);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].correlation_id.map(|id| id.to_string()),
        Some(request_id)
    );

    // A token that is not a UUID is echoed; the events get a UUID of their own.
    let patched = call(
        base,
        "PATCH",
        &format!("/tickets/{ticket}"),
        &[("x-request-id", "req-42.abc")],
        Some(&json!({"note": "n"}).to_string()),
    );
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.request_id.as_deref(), Some("req-42.abc"));
    let events = stored_events(&ws, &ticket);
    assert!(events[1].correlation_id.is_some(), "{events:?}");

    // Errors carry it too; an unusable one is replaced by a generated UUID.
    let missing = call(base, "GET", "/nowhere", &[("x-request-id", "err-1")], None);
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.request_id.as_deref(), Some("err-1"));
    let too_long = "x".repeat(129);
    let replaced = call(
        base,
        "GET",
        "/healthz",
        &[("x-request-id", &too_long)],
        None,
    );
    let id = replaced.request_id.expect("request id");
    uuid::Uuid::parse_str(&id).expect("a generated UUID");
}

fn actor_is_checked(ws: Workspace) {
    let server = Ticketd::start(&ws, &[]);
    let base = &server.http.base;
    let too_long = "a".repeat(101);
    let refused = call(
        base,
        "POST",
        "/tickets",
        &[("x-actor", &too_long), ("x-request-id", "bad-actor")],
        Some(&create_body("hello")),
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(refused.content_type, "application/problem+json");
    assert_eq!(refused.body["field"], "X-Actor", "{refused:?}");
    assert_eq!(refused.request_id.as_deref(), Some("bad-actor"));
    let longest = "a".repeat(100);
    let accepted = call(
        base,
        "POST",
        "/tickets",
        &[("x-actor", &longest)],
        Some(&create_body("hello")),
    );
    assert_eq!(accepted.status, 201, "{accepted:?}");
    assert_eq!(ws.event_count(), 1);
}

#[test]
fn actor_is_recorded_in_the_events() {
    let ws = Workspace::sqlite();
    let server = Ticketd::start(&ws, &[]);
    let created = call(
        &server.http.base,
        "POST",
        "/tickets",
        &[("x-actor", "agent Zoë")],
        Some(&create_body("hello")),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let ticket = created.body["id"].as_str().expect("id");
    let events = stored_events(&ws, ticket);
    assert_eq!(events[0].actor.as_deref(), Some("agent Zoë"), "{events:?}");
}

#[test]
fn json_logs_have_one_line_per_request() {
    let ws = Workspace::sqlite();
    let server = Ticketd::start(&ws, &["--log-format", "json"]);
    let base = &server.http.base;
    let created = call(
        base,
        "POST",
        "/tickets",
        &[("x-request-id", "log-create")],
        Some(&create_body("hello")),
    );
    let ticket = created.body["id"].as_str().expect("id").to_owned();
    let read = call(
        base,
        "GET",
        &format!("/tickets/{ticket}"),
        &[("x-request-id", "log-read")],
        None,
    );
    assert!(read.status == 200 || read.status == 404, "{read:?}");

    let line = |request_id: &str| {
        let request_id = request_id.to_owned();
        let process = &server.process;
        eventually("the request's log line", move || {
            let logs = process.logs();
            // Whole lines only: the last one may be half written.
            for line in logs.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
                if value["fields"]["message"] == "request completed"
                    && value["fields"]["request_id"] == request_id.as_str()
                {
                    return Some(value);
                }
            }
            None
        })
    };
    let create_line = line("log-create");
    assert_eq!(create_line["level"], "INFO", "{create_line}");
    assert_eq!(create_line["fields"]["method"], "POST", "{create_line}");
    assert_eq!(create_line["fields"]["route"], "/tickets", "{create_line}");
    assert_eq!(create_line["fields"]["status"], 201, "{create_line}");
    assert!(
        create_line["fields"]["latency_ms"].is_number(),
        "{create_line}"
    );
    assert_eq!(
        create_line["span"]["request_id"], "log-create",
        "{create_line}"
    );
    let read_line = line("log-read");
    assert_eq!(read_line["fields"]["method"], "GET", "{read_line}");
    assert_eq!(read_line["fields"]["route"], "/tickets/{id}", "{read_line}");
    assert_eq!(read_line["fields"]["status"], read.status, "{read_line}");
}

/// A create body of exactly `len` bytes.
fn body_of_len(len: usize) -> String {
    let empty = create_body("");
    let body = create_body(&"m".repeat(len - empty.len()));
    assert_eq!(body.len(), len);
    body
}

#[test]
fn bodies_over_the_limit_are_refused() {
    let ws = Workspace::sqlite();
    let server = Ticketd::start(&ws, &["--max-body-bytes", "300"]);
    let base = &server.http.base;
    let at_limit = call(base, "POST", "/tickets", &[], Some(&body_of_len(300)));
    assert_eq!(at_limit.status, 201, "{at_limit:?}");
    let over = call(
        base,
        "POST",
        "/tickets",
        &[("x-request-id", "too-big")],
        Some(&body_of_len(301)),
    );
    assert_eq!(over.status, 413, "{over:?}");
    assert_eq!(over.content_type, "application/problem+json", "{over:?}");
    assert_eq!(over.body["status"], 413, "{over:?}");
    assert_eq!(over.request_id.as_deref(), Some("too-big"));
    assert_eq!(ws.event_count(), 1);
}

#[test]
fn the_default_limit_is_64_kib() {
    let ws = Workspace::sqlite();
    let server = Ticketd::start(&ws, &[]);
    let base = &server.http.base;
    let over = call(
        base,
        "POST",
        "/tickets",
        &[],
        Some(&body_of_len(64 * 1024 + 1)),
    );
    assert_eq!(over.status, 413, "{over:?}");
}

#[test]
fn slow_clients_time_out() {
    let ws = Workspace::sqlite();
    let server = Ticketd::start(&ws, &["--request-timeout", "1s"]);
    let address = server
        .http
        .base
        .strip_prefix("http://")
        .expect("http base")
        .to_owned();
    let mut stream = TcpStream::connect(&address).expect("connect");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    let started = Instant::now();
    // Promise 100 bytes of body, send 10, then stall.
    write!(
        stream,
        "POST /tickets HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"custome"
    )
    .expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        elapsed >= Duration::from_millis(900),
        "{elapsed:?}: {answer}"
    );
    assert!(elapsed < PATIENCE, "never timed out");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(lower.contains("x-request-id: "), "{answer}");
    assert_eq!(ws.event_count(), 0);
}
