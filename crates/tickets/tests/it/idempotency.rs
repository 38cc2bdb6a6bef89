//! `Idempotency-Key` over real HTTP: a retry gets the first answer and appends
//! nothing, on the same instance, on another instance sharing the store, and
//! after a restart; a key reused for a different request is a 422.

use serde_json::{Value, json};

use crate::consistency::{Reply, call};
use crate::harness::{Ticketd, Workspace};

crate::on_every_backend!(
    a_retried_post_gets_the_first_answer_on_any_instance_and_after_a_restart,
    a_retried_patch_gets_the_first_answer_though_the_ticket_moved_on,
    a_key_reused_for_another_request_is_a_422_writing_nothing,
    racing_retries_across_two_instances_open_one_ticket,
    malformed_keys_are_400_naming_the_header,
);

const OPEN_BODY: &str = r#"{"customer": "ACME", "subject": "Printer", "message": "On fire."}"#;

fn post(base: &str, key: &str, body: &str) -> Reply {
    let body: Value = serde_json::from_str(body).expect("a JSON body");
    call(
        base,
        "POST",
        "/tickets",
        &[("idempotency-key", key)],
        Some(&body),
    )
}

/// What a client compares between an answer and its replay.
fn answer(reply: &Reply) -> (u16, Value, Option<String>, Option<String>, Option<String>) {
    let header = |name: &str| reply.header(name).map(str::to_owned);
    (
        reply.status,
        reply.body.clone(),
        header("location"),
        header("etag"),
        header("x-event-position"),
    )
}

fn a_retried_post_gets_the_first_answer_on_any_instance_and_after_a_restart(ws: Workspace) {
    let mut first_instance = Ticketd::start(&ws, &[]);
    let second_instance = Ticketd::start(&ws, &["--no-projector"]);
    let key = uuid::Uuid::now_v7().to_string();

    let first = post(&first_instance.http.base, &key, OPEN_BODY);
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    let count = ws.event_count();

    // The same body, spaced and ordered differently, to the other instance.
    let reordered = r#"{"message":"On fire.","subject":"Printer","customer":"ACME"}"#;
    let retry = post(&second_instance.http.base, &key, reordered);
    assert_eq!(answer(&retry), answer(&first), "the first answer, again");
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(ws.event_count(), count, "a retry appends nothing");

    assert!(first_instance.process.terminate().success());
    let restarted = Ticketd::start(&ws, &[]);
    let after_restart = post(&restarted.http.base, &key, OPEN_BODY);
    assert_eq!(
        answer(&after_restart),
        answer(&first),
        "keys outlive the process"
    );
    assert_eq!(ws.event_count(), count);

    // Without a key, the same body opens another ticket.
    let unkeyed = call(
        &restarted.http.base,
        "POST",
        "/tickets",
        &[],
        Some(&serde_json::from_str(OPEN_BODY).expect("json")),
    );
    assert_eq!(unkeyed.status, 201);
    assert_ne!(unkeyed.body["id"], first.body["id"]);
}

fn a_retried_patch_gets_the_first_answer_though_the_ticket_moved_on(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let base = ticketd.http.base.as_str();
    let opened = post(base, "open-1", OPEN_BODY);
    let path = format!("/tickets/{}", opened.body["id"].as_str().expect("id"));
    let change = json!({"status": "triaged", "agent": "ana", "note": "on it"});
    let headers = [("idempotency-key", "change-1"), ("if-match", "\"1\"")];

    let first = call(base, "PATCH", &path, &headers, Some(&change));
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["version"], 4);
    let later = call(base, "PATCH", &path, &[], Some(&json!({"note": "later"})));
    assert_eq!(later.status, 200);
    let count = ws.event_count();

    // The retry's If-Match is stale by now; it is answered, not refused.
    let retry = call(base, "PATCH", &path, &headers, Some(&change));
    assert_eq!(answer(&retry), answer(&first));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(ws.event_count(), count, "a retry appends nothing");

    let history = call(base, "GET", &format!("{path}/events"), &[], None);
    let notes: Vec<&Value> = history.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["type"] == "NoteAdded")
        .collect();
    assert_eq!(
        notes.len(),
        2,
        "the note was added once: {:?}",
        history.body
    );
}

fn a_key_reused_for_another_request_is_a_422_writing_nothing(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let base = ticketd.http.base.as_str();
    let opened = post(base, "key-a", OPEN_BODY);
    assert_eq!(opened.status, 201);
    let path = format!("/tickets/{}", opened.body["id"].as_str().expect("id"));
    let count = ws.event_count();

    let other_body = post(
        base,
        "key-a",
        r#"{"customer": "ACME", "subject": "Printer", "message": "Still on fire."}"#,
    );
    let other_route = call(
        base,
        "PATCH",
        &path,
        &[("idempotency-key", "key-a")],
        Some(&json!({"note": "n"})),
    );
    for reply in [other_body, other_route] {
        assert_eq!(reply.status, 422, "{:?}", reply.body);
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(reply.body["field"], "Idempotency-Key");
    }
    assert_eq!(ws.event_count(), count, "a reused key appends nothing");
}

/// Racing retries of one `POST` (as a client's retry after a timeout that
/// reaches another instance): one ticket, one answer for all.
fn racing_retries_across_two_instances_open_one_ticket(ws: Workspace) {
    let one = Ticketd::start(&ws, &[]);
    let two = Ticketd::start(&ws, &["--no-projector"]);
    let before = ws.event_count();
    // jongodb does not keep two processes' transactions apart (both can take
    // the same position), so there the racers meet in one instance, whose
    // appends queue; a real server and SQLite get them from both.
    let bases = if ws.cross_process_transactions() {
        [one.http.base.clone(), two.http.base.clone()]
    } else {
        eprintln!("smoke server: racing retries through one instance");
        [one.http.base.clone(), one.http.base.clone()]
    };
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|racer| {
                let base = bases[racer % 2].clone();
                scope.spawn(move || post(&base, "racing-key", OPEN_BODY))
            })
            .collect();
        racers
            .into_iter()
            .map(|racer| racer.join().expect("racer"))
            .collect()
    });
    for reply in &replies {
        assert_eq!(
            answer(reply),
            answer(&replies[0]),
            "every racer, one answer"
        );
    }
    assert_eq!(
        replies
            .iter()
            .filter(|reply| reply.header("idempotent-replayed").is_none())
            .count(),
        1,
        "exactly one racer opened the ticket"
    );
    assert_eq!(ws.event_count(), before + 1, "one event for all racers");
}

fn malformed_keys_are_400_naming_the_header(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let base = ticketd.http.base.as_str();
    let count = ws.event_count();
    let too_long = "k".repeat(256);
    for key in ["", "has space", "\"\"", too_long.as_str()] {
        let reply = post(base, key, OPEN_BODY);
        assert_eq!(reply.status, 400, "key {key:?}: {:?}", reply.body);
        assert_eq!(reply.body["field"], "Idempotency-Key", "key {key:?}");
    }
    // The quoted form of the IETF draft is the same key as the bare one.
    let bare = post(base, "quoted-or-not", OPEN_BODY);
    let quoted = post(base, "\"quoted-or-not\"", OPEN_BODY);
    assert_eq!(answer(&quoted), answer(&bare));
    assert_eq!(ws.event_count(), count + 1);
}
