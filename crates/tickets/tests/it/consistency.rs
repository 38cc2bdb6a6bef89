//! Consistency and concurrency headers over real HTTP: `ETag` / `If-Match`,
//! `X-Event-Position`, `min_position` (with and without a projector) and
//! time travel.

use serde_json::{Value, json};

use crate::harness::{PATIENCE, Ticketd, Workspace, eventually};

crate::on_every_backend!(
    etag_is_the_version_and_a_stale_if_match_is_412_writing_nothing,
    event_positions_grow_and_match_the_store_head,
    min_position_reads_include_the_write,
    min_position_without_a_projector_answers_stale,
    time_travel_shows_the_ticket_as_it_was,
);

/// A reply with its headers (the shared harness keeps only a few).
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Value,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn position(&self) -> u64 {
        self.header("x-event-position")
            .expect("X-Event-Position")
            .parse()
            .expect("a number")
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into()
}

/// One request with extra headers; `body` for POST and PATCH.
pub(crate) fn call(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    let url = format!("{base}{path}");
    let agent = agent();
    let response = match (method, body) {
        ("GET", _) => {
            let mut request = agent.get(url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.call()
        }
        (method, Some(body)) => {
            let mut request = match method {
                "POST" => agent.post(url),
                "PATCH" => agent.patch(url),
                other => panic!("unsupported method {other}"),
            };
            request = request.header("content-type", "application/json");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.send(body.to_string())
        }
        (method, None) => panic!("{method} needs a body"),
    };
    let mut response = response.expect("HTTP call");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect();
    let text = response.body_mut().read_to_string().expect("read body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}

fn open(base: &str, customer: &str) -> Reply {
    let reply = call(
        base,
        "POST",
        "/tickets",
        &[],
        Some(&json!({"customer": customer, "subject": "s", "message": "m"})),
    );
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply
}

fn id_of(reply: &Reply) -> String {
    reply.body["id"].as_str().expect("id").to_owned()
}

fn etag_is_the_version_and_a_stale_if_match_is_412_writing_nothing(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let base = ticketd.http.base.as_str();
    let opened = open(base, "ACME");
    assert_eq!(opened.header("etag"), Some("\"1\""));
    let id = id_of(&opened);
    let path = format!("/tickets/{id}");

    let changed = call(
        base,
        "PATCH",
        &path,
        &[("if-match", "\"1\"")],
        Some(&json!({"note": "a"})),
    );
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.header("etag"), Some("\"2\""));
    assert_eq!(changed.body["version"], 2);

    let before = ws.event_count();
    let stale = call(
        base,
        "PATCH",
        &path,
        &[("if-match", "\"1\"")],
        Some(&json!({"status": "closed"})),
    );
    assert_eq!(stale.status, 412, "{:?}", stale.body);
    assert_eq!(
        stale.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(stale.body["type"], "/problems/precondition-failed");
    assert_eq!(ws.event_count(), before, "a 412 writes nothing");

    let malformed = call(
        base,
        "PATCH",
        &path,
        &[("if-match", "2")],
        Some(&json!({"note": "b"})),
    );
    assert_eq!(malformed.status, 400, "{:?}", malformed.body);
    assert_eq!(malformed.body["field"], "If-Match");
    assert_eq!(ws.event_count(), before);

    let shown = call(
        base,
        "GET",
        &format!("{path}?min_position={before}"),
        &[],
        None,
    );
    assert_eq!(shown.status, 200, "{:?}", shown.body);
    assert_eq!(shown.header("etag"), Some("\"2\""));
    assert_eq!(shown.body["version"], 2);
}

fn event_positions_grow_and_match_the_store_head(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let base = ticketd.http.base.as_str();
    let opened = open(base, "ACME");
    assert_eq!(opened.position(), ws.event_count());
    let path = format!("/tickets/{}", id_of(&opened));
    let changed = call(
        base,
        "PATCH",
        &path,
        &[],
        Some(&json!({"status": "triaged", "note": "n"})),
    );
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert!(changed.position() > opened.position());
    assert_eq!(changed.position(), ws.event_count());

    let noop = call(
        base,
        "PATCH",
        &path,
        &[],
        Some(&json!({"status": "triaged"})),
    );
    assert_eq!(noop.status, 200, "{:?}", noop.body);
    assert_eq!(
        noop.position(),
        changed.position(),
        "the ticket's last event"
    );
    assert_eq!(ws.event_count(), changed.position());
}

/// A `min_position` read, answered fresh (200, not marked stale), whose body
/// must pass `shows_the_write`.
#[track_caller]
fn read_at_least(
    ws: &Workspace,
    base: &str,
    path_and_query: &str,
    shows_the_write: impl Fn(&Value) -> bool,
) -> Reply {
    let fresh = |reply: &Reply| {
        assert_eq!(reply.status, 200, "{path_and_query}: {:?}", reply.body);
        assert_eq!(reply.header("x-read-stale"), None, "{path_and_query}");
    };
    let reply = call(base, "GET", path_and_query, &[], None);
    fresh(&reply);
    if shows_the_write(&reply.body) {
        return reply;
    }
    // jongodb makes a committed transaction's writes visible one by one (the
    // checkpoint can show before the rows it covers); MongoDB makes them
    // visible at once, and so does SQLite. On jongodb the rows must still
    // arrive, and the read must never be marked stale.
    assert!(
        ws.is_smoke_server(),
        "{path_and_query} answered before showing the write: {:?}",
        reply.body
    );
    eventually("the rows behind the checkpoint on jongodb", || {
        let again = call(base, "GET", path_and_query, &[], None);
        fresh(&again);
        shows_the_write(&again.body).then_some(again)
    })
}

fn min_position_reads_include_the_write(ws: Workspace) {
    // A bound no loaded test machine reaches: this test is about the wait
    // ending when the projection arrives, not about the bound.
    let ticketd = Ticketd::start(&ws, &["--read-wait-max", "20s"]);
    let base = ticketd.http.base.as_str();
    let opened = open(base, "ACME");
    let path = format!("/tickets/{}", id_of(&opened));
    let changed = call(
        base,
        "PATCH",
        &path,
        &[],
        Some(&json!({"status": "closed"})),
    );
    let position = changed.position();

    // No polling: the read itself waits for the projection.
    let shown = read_at_least(
        &ws,
        base,
        &format!("{path}?min_position={position}"),
        |body| body["status"] == "closed",
    );
    let read_at: u64 = shown
        .header("x-read-position")
        .expect("X-Read-Position")
        .parse()
        .expect("number");
    assert!(read_at >= position);

    read_at_least(
        &ws,
        base,
        &format!("/tickets?min_position={position}"),
        |body| body["items"][0]["status"] == "closed",
    );
    read_at_least(
        &ws,
        base,
        &format!("/dashboard?min_position={position}"),
        |body| body["closed"] == 1,
    );

    let bad = call(base, "GET", "/dashboard?min_position=soon", &[], None);
    assert_eq!(bad.status, 422, "{:?}", bad.body);
    assert_eq!(bad.body["field"], "min_position");
}

fn min_position_without_a_projector_answers_stale(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &["--no-projector", "--read-wait-max", "200ms"]);
    let base = ticketd.http.base.as_str();
    let opened = open(base, "ACME");
    let position = opened.position();
    let started = std::time::Instant::now();
    let list = call(
        base,
        "GET",
        &format!("/tickets?min_position={position}"),
        &[],
        None,
    );
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    assert_eq!(list.body["items"], json!([]));
    assert_eq!(list.header("x-read-position"), Some("0"));
    let behind = format!("behind={position}");
    assert_eq!(list.header("x-read-stale"), Some(behind.as_str()));

    let dashboard = call(
        base,
        "GET",
        &format!("/dashboard?min_position={position}"),
        &[],
        None,
    );
    assert_eq!(dashboard.body["total"], 0);
    assert_eq!(dashboard.header("x-read-stale"), Some(behind.as_str()));
}

fn time_travel_shows_the_ticket_as_it_was(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &["--no-projector"]);
    let base = ticketd.http.base.as_str();
    let opened = open(base, "ACME");
    let path = format!("/tickets/{}", id_of(&opened));
    let opened_at = opened.body["updated_at"].as_str().expect("time").to_owned();
    std::thread::sleep(std::time::Duration::from_millis(10));
    let closed = call(
        base,
        "PATCH",
        &path,
        &[],
        Some(&json!({"status": "closed", "agent": "ana"})),
    );
    assert_eq!(closed.status, 200, "{:?}", closed.body);

    // Served from the write side: no projector runs here.
    let v1 = call(base, "GET", &format!("{path}?as_of_version=1"), &[], None);
    assert_eq!(v1.status, 200, "{:?}", v1.body);
    assert_eq!(v1.body, opened.body);
    assert_eq!(v1.header("etag"), Some("\"1\""));
    let then = call(base, "GET", &format!("{path}?as_of={opened_at}"), &[], None);
    assert_eq!(then.body, opened.body);
    // One PATCH, two events (status, then agent): version 2 is in between.
    assert_eq!(closed.body["version"], 3);
    let between = call(base, "GET", &format!("{path}?as_of_version=2"), &[], None);
    assert_eq!(between.body["status"], "closed");
    assert_eq!(between.body["agent"], Value::Null);
    let now = call(base, "GET", &format!("{path}?as_of_version=3"), &[], None);
    assert_eq!(now.body, closed.body);

    let before = call(
        base,
        "GET",
        &format!("{path}?as_of=2000-01-01T00:00:00Z"),
        &[],
        None,
    );
    assert_eq!(before.status, 404, "{:?}", before.body);
    let both = call(
        base,
        "GET",
        &format!("{path}?as_of_version=1&as_of={opened_at}"),
        &[],
        None,
    );
    assert_eq!(both.status, 422, "{:?}", both.body);
    let bad = call(
        base,
        "GET",
        &format!("{path}?as_of_version=first"),
        &[],
        None,
    );
    assert_eq!(bad.status, 422, "{:?}", bad.body);
    assert_eq!(bad.body["field"], "as_of_version");
}
