//! ETag / If-Match, event positions, `min_position` and time travel.

use std::time::Duration;

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::App;

async fn patch_if_match(
    app: &App,
    id: &str,
    if_match: &str,
    body: &Value,
) -> crate::harness::Reply {
    app.request(
        Method::PATCH,
        &format!("/tickets/{id}"),
        &[("if-match", if_match)],
        Some("application/json"),
        body.to_string(),
    )
    .await
}

async fn get_now(app: &App, uri: &str) -> crate::harness::Reply {
    app.send(Method::GET, uri, None, Body::empty()).await
}

#[tokio::test]
async fn ticket_responses_carry_the_version_as_a_strong_etag() {
    let app = App::new();
    let created = app
        .post(
            "/tickets",
            &json!({"customer": "ACME", "subject": "s", "message": "m"}),
        )
        .await;
    assert_eq!(created.header("etag"), Some("\"1\""));
    let id = created.body["id"].as_str().expect("id").to_owned();

    let changed = app
        .patch(&format!("/tickets/{id}"), &json!({"note": "hi"}))
        .await;
    assert_eq!(changed.header("etag"), Some("\"2\""));
    assert_eq!(changed.body["version"], 2);

    let shown = app.get(&format!("/tickets/{id}")).await;
    assert_eq!(shown.header("etag"), Some("\"2\""));
}

#[tokio::test]
async fn if_match_on_the_current_version_or_star_writes() {
    let app = App::new();
    let id = app.create("ACME").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let reply = patch_if_match(&app, &id, "\"1\"", &json!({"note": "one"})).await;
    assert_eq!(reply.assert_json(200)["version"], 2);
    let reply = patch_if_match(&app, &id, "*", &json!({"note": "two"})).await;
    assert_eq!(reply.assert_json(200)["version"], 3);
}

#[tokio::test]
async fn if_match_on_an_old_version_is_412_and_writes_nothing() {
    let app = App::new();
    let id = app.create("ACME").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.patch(&format!("/tickets/{id}"), &json!({"note": "moved on"}))
        .await
        .assert_json(200);
    let head = app.head().await;

    let reply = patch_if_match(&app, &id, "\"1\"", &json!({"status": "closed"})).await;
    reply.assert_problem(412, "precondition-failed", None);
    let detail = reply.body["detail"].as_str().expect("detail");
    assert!(detail.contains('1') && detail.contains('2'), "{detail}");
    assert_eq!(app.head().await, head, "nothing appended");
    let shown = app.get(&format!("/tickets/{id}")).await;
    assert_eq!(shown.body["status"], "open");
}

#[tokio::test]
async fn a_malformed_if_match_is_400_naming_the_header() {
    let app = App::new();
    let id = app.create("ACME").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for bad in ["1", "W/\"1\"", "\"one\"", "\"1\", \"2\"", ""] {
        let reply = patch_if_match(&app, &id, bad, &json!({"note": "x"})).await;
        reply.assert_problem(400, "invalid-parameter", Some("If-Match"));
    }
    assert_eq!(app.head().await, 1, "nothing appended");
}

#[tokio::test]
async fn writes_carry_the_position_of_their_last_event() {
    let app = App::new();
    let created = app.create("ACME").await;
    let id = created["id"].as_str().expect("id").to_owned();
    let first = app
        .patch(&format!("/tickets/{id}"), &json!({"note": "a"}))
        .await;
    let position = |reply: &crate::harness::Reply| -> u64 {
        reply
            .header("x-event-position")
            .expect("X-Event-Position")
            .parse()
            .expect("a number")
    };
    assert_eq!(position(&first), app.head().await);
    let second = app
        .patch(
            &format!("/tickets/{id}"),
            &json!({"status": "triaged", "note": "b"}),
        )
        .await;
    assert!(position(&second) > position(&first));
    assert_eq!(position(&second), app.head().await);

    let noop = app
        .patch(&format!("/tickets/{id}"), &json!({"status": "triaged"}))
        .await;
    assert_eq!(noop.body["version"], second.body["version"]);
    assert_eq!(
        position(&noop),
        position(&second),
        "the ticket's last event"
    );

    let other = app
        .post(
            "/tickets",
            &json!({"customer": "B", "subject": "s", "message": "m"}),
        )
        .await;
    assert_eq!(position(&other), app.head().await);
}

#[tokio::test]
async fn min_position_reads_answer_once_the_projection_got_there() {
    let app = App::new();
    let created = app
        .post(
            "/tickets",
            &json!({"customer": "ACME", "subject": "s", "message": "m"}),
        )
        .await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    let position = created
        .header("x-event-position")
        .expect("position")
        .to_owned();
    app.catch_up().await;
    for uri in [
        format!("/tickets/{id}?min_position={position}"),
        format!("/tickets?min_position={position}"),
        format!("/dashboard?min_position={position}"),
    ] {
        let reply = get_now(&app, &uri).await;
        reply.assert_json(200);
        assert_eq!(
            reply.header("x-read-position"),
            Some(position.as_str()),
            "{uri}"
        );
        assert_eq!(reply.header("x-read-stale"), None, "{uri}");
    }
    let plain = get_now(&app, "/dashboard").await;
    assert_eq!(plain.header("x-read-position"), None);
}

#[tokio::test]
async fn min_position_waits_for_a_projector_that_catches_up_meanwhile() {
    let app = std::sync::Arc::new(App::new());
    let created = app.create("ACME").await;
    let id = created["id"].as_str().expect("id").to_owned();
    let projector = {
        let app = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            app.catch_up().await;
        })
    };
    let reply = get_now(&app, &format!("/tickets/{id}?min_position=1")).await;
    assert_eq!(reply.assert_json(200)["id"], id.as_str());
    assert_eq!(reply.header("x-read-stale"), None);
    projector.await.expect("join");
}

#[tokio::test]
async fn past_the_bound_a_read_answers_stale_with_how_far_behind() {
    let app = App::with_read_wait_max(Duration::from_millis(50));
    app.create("ACME").await;
    app.catch_up().await;
    app.create("BETA").await;
    app.create("GAMMA").await;

    let reply = get_now(&app, "/tickets?min_position=3").await;
    assert_eq!(
        reply.assert_json(200)["items"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(reply.header("x-read-position"), Some("1"));
    assert_eq!(reply.header("x-read-stale"), Some("behind=2"));
    let reply = get_now(&app, "/dashboard?min_position=3").await;
    assert_eq!(reply.assert_json(200)["total"], 1);
    assert_eq!(reply.header("x-read-stale"), Some("behind=2"));
}

#[tokio::test]
async fn a_bad_min_position_is_422_naming_it() {
    let app = App::new();
    let id = app.create("ACME").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for uri in [
        format!("/tickets/{id}?min_position=-1"),
        "/tickets?min_position=x".to_owned(),
        "/dashboard?min_position=1.5".to_owned(),
    ] {
        get_now(&app, &uri)
            .await
            .assert_problem(422, "validation", Some("min_position"));
    }
}

#[tokio::test]
async fn as_of_version_and_as_of_show_the_ticket_as_it_was() {
    let app = App::new();
    let created = app.create("ACME").await;
    let id = created["id"].as_str().expect("id").to_owned();
    let opened_at = created["updated_at"].as_str().expect("time").to_owned();
    tokio::time::sleep(Duration::from_millis(5)).await;
    app.patch(&format!("/tickets/{id}"), &json!({"status": "closed"}))
        .await
        .assert_json(200);

    // No catch-up: time travel reads the write side.
    let old = get_now(&app, &format!("/tickets/{id}?as_of_version=1")).await;
    assert_eq!(old.assert_json(200)["status"], "open");
    assert_eq!(old.header("etag"), Some("\"1\""));
    let old = get_now(&app, &format!("/tickets/{id}?as_of={opened_at}")).await;
    assert_eq!(old.assert_json(200)["version"], 1);
    let now = get_now(&app, &format!("/tickets/{id}?as_of_version=2")).await;
    assert_eq!(now.assert_json(200)["status"], "closed");

    get_now(&app, &format!("/tickets/{id}?as_of=2000-01-01T00:00:00Z"))
        .await
        .assert_problem(404, "not-found", None);
    get_now(&app, &format!("/tickets/{id}?as_of_version=0"))
        .await
        .assert_problem(422, "validation", Some("as_of_version"));
    get_now(&app, &format!("/tickets/{id}?as_of=yesterday"))
        .await
        .assert_problem(422, "validation", Some("as_of"));
    get_now(
        &app,
        &format!("/tickets/{id}?as_of_version=1&as_of=2000-01-01T00:00:00Z"),
    )
    .await
    .assert_problem(422, "validation", Some("as_of"));
    get_now(&app, &format!("/tickets/{id}?colour=red"))
        .await
        .assert_problem(400, "invalid-parameter", Some("colour"));
}
