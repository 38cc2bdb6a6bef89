//! Every rejected request: the right status, a problem+json body with a stable
//! `type` naming the field, and nothing written.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Method;
use domain::Event;
use eventstore::{EventStore, Forwarding, NewEvent, RecordedEvent, StoreError};
use serde_json::{Value, json};
use store_sqlite::SqliteStore;
use uuid::Uuid;

use crate::harness::App;

fn long(n: usize) -> String {
    "x".repeat(n)
}

#[tokio::test]
async fn invalid_tickets_are_refused_naming_the_field() {
    let app = App::new();
    let valid = json!({"customer": "c", "subject": "s", "message": "m"});
    let with = |key: &str, value: Value| {
        let mut body = valid.clone();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = valid.clone();
        body.as_object_mut().expect("object").remove(key);
        body
    };
    let cases = [
        (with("customer", json!("   ")), "customer"),
        (with("customer", json!(long(201))), "customer"),
        (with("subject", json!("")), "subject"),
        (with("subject", json!(long(201))), "subject"),
        (with("message", json!(" \n ")), "message"),
        (with("message", json!(long(10_001))), "message"),
        (with("customer", json!(42)), "customer"),
        (with("customer", Value::Null), "customer"),
        (with("subject", json!(["s"])), "subject"),
        (with("unexpected", json!("x")), "unexpected"),
        (without("message"), "message"),
        (without("customer"), "customer"),
        (json!(["c", "s", "m"]), "body"),
        (json!("text"), "body"),
    ];
    for (body, field) in cases {
        app.post("/tickets", &body)
            .await
            .assert_problem(422, "validation", Some(field));
    }
    assert_eq!(app.head().await, 0, "nothing was written");

    // The limits are inclusive and count characters, not bytes.
    let edge = json!({"customer": "é".repeat(200), "subject": long(200), "message": long(10_000)});
    app.post("/tickets", &edge).await.assert_json(201);
}

#[tokio::test]
async fn invalid_changes_are_refused_naming_the_field() {
    let app = App::new();
    let ticket = app.create("ACME").await;
    let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
    let head = app.head().await;

    let cases = [
        (json!({}), "body"),
        (json!({"status": "done"}), "status"),
        (json!({"status": "Closed"}), "status"),
        (json!({"status": 3}), "status"),
        (json!({"status": null}), "status"),
        (json!({"note": "  \t "}), "note"),
        (json!({"note": long(5_001)}), "note"),
        (json!({"note": null}), "note"),
        (json!({"note": 7}), "note"),
        (json!({"agent": ""}), "agent"),
        (json!({"agent": long(101)}), "agent"),
        (json!({"agent": false}), "agent"),
        (json!({"note": "ok", "colour": "red"}), "colour"),
        (json!({"note": "ok", "agent": long(101)}), "agent"),
        (json!({"status": "closed", "note": ""}), "note"),
        (json!([{"note": "x"}]), "body"),
    ];
    for (body, field) in cases {
        app.patch(&path, &body)
            .await
            .assert_problem(422, "validation", Some(field));
    }
    assert_eq!(app.head().await, head, "nothing was written");
    assert_eq!(app.get(&path).await.assert_json(200)["status"], "open");
}

#[tokio::test]
async fn bodies_that_are_not_json_are_400_or_415() {
    let app = App::new();
    let ticket = app.create("ACME").await;
    let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
    let head = app.head().await;
    let valid = json!({"customer": "c", "subject": "s", "message": "m"}).to_string();
    let json = Some("application/json");

    for (method, uri) in [(Method::POST, "/tickets"), (Method::PATCH, path.as_str())] {
        for body in ["{\"customer\": ", "{note: 1}", "", "  \n", "{} {}", "nul"] {
            app.send(method.clone(), uri, json, body)
                .await
                .assert_problem(400, "malformed-json", None);
        }
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            app.send(method.clone(), uri, content_type, valid.clone())
                .await
                .assert_problem(415, "unsupported-media-type", None);
        }
    }
    let huge = json!({"customer": "c", "subject": "s", "message": long(3 * 1024 * 1024)});
    app.post("/tickets", &huge)
        .await
        .assert_problem(413, "payload-too-large", None);
    assert_eq!(app.head().await, head, "nothing was written");
}

#[tokio::test]
async fn malformed_ids_are_400_naming_the_id() {
    let app = App::new();
    app.get("/tickets/not-a-uuid")
        .await
        .assert_problem(400, "invalid-parameter", Some("id"));
    app.get("/tickets/1234/events")
        .await
        .assert_problem(400, "invalid-parameter", Some("id"));
    app.patch("/tickets/not-a-uuid", &json!({"note": "x"}))
        .await
        .assert_problem(400, "invalid-parameter", Some("id"));
    assert_eq!(app.head().await, 0);
}

#[tokio::test]
async fn unknown_tickets_and_routes_are_404_and_wrong_methods_405() {
    let app = App::new();
    let ticket = app.create("ACME").await;
    let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
    let head = app.head().await;
    let unknown = format!("/tickets/{}", Uuid::now_v7());

    app.get(&unknown)
        .await
        .assert_problem(404, "not-found", None);
    app.get(&format!("{unknown}/events"))
        .await
        .assert_problem(404, "not-found", None);
    app.patch(&unknown, &json!({"note": "x"}))
        .await
        .assert_problem(404, "not-found", None);
    for uri in ["/", "/no-such-route", "/tickets/", &format!("{path}/notes")] {
        app.get(uri).await.assert_problem(404, "not-found", None);
    }

    for (method, uri, allowed) in [
        (Method::DELETE, path.as_str(), "GET,HEAD,PATCH"),
        (Method::PUT, "/tickets", "GET,HEAD,POST"),
        (Method::POST, "/dashboard", "GET,HEAD"),
        (Method::PATCH, "/tickets/not-a-uuid/events", "GET,HEAD"),
    ] {
        let reply = app.send(method, uri, Some("application/json"), "{}").await;
        reply.assert_problem(405, "method-not-allowed", None);
        let mut allow: Vec<&str> = reply
            .header("allow")
            .expect("Allow")
            .split(',')
            .map(str::trim)
            .collect();
        allow.sort_unstable();
        assert_eq!(allow.join(","), allowed);
    }
    assert_eq!(app.head().await, head, "nothing was written");
}

#[tokio::test]
async fn closed_is_final_for_status_and_refuses_the_whole_change() {
    let app = App::new();
    let ticket = app.create("ACME").await;
    let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
    app.patch(&path, &json!({"status": "closed"}))
        .await
        .assert_json(200);
    let head = app.head().await;

    for body in [
        json!({"status": "open"}),
        json!({"status": "triaged", "note": "x", "agent": "ana"}),
    ] {
        let reply = app.patch(&path, &body).await;
        reply.assert_problem(409, "conflict", Some("status"));
        assert!(
            reply.body["detail"]
                .as_str()
                .expect("detail")
                .contains("closed")
        );
    }
    assert_eq!(
        app.head().await,
        head,
        "a refused change appends none of its events"
    );
}

#[tokio::test]
async fn bad_list_parameters_are_named() {
    let app = App::new();
    app.create("ACME").await;
    for limit in ["0", "201", "-1", "ten", "1.5", "99999999999"] {
        app.get(&format!("/tickets?limit={limit}"))
            .await
            .assert_problem(422, "validation", Some("limit"));
    }
    for status in ["done", "OPEN"] {
        app.get(&format!("/tickets?status={status}"))
            .await
            .assert_problem(422, "validation", Some("status"));
    }
    for cursor in ["not-a-cursor", "%21%21", "MjAyNA"] {
        app.get(&format!("/tickets?cursor={cursor}"))
            .await
            .assert_problem(400, "invalid-parameter", Some("cursor"));
    }
    app.get("/tickets?sort=asc")
        .await
        .assert_problem(422, "validation", Some("sort"));
    app.get("/tickets?limit=1&limit=2").await.assert_problem(
        400,
        "invalid-parameter",
        Some("limit"),
    );
    for limit in ["1", "200"] {
        app.get(&format!("/tickets?limit={limit}"))
            .await
            .assert_json(200);
    }
}

/// The real store with one thing rigged on ticket streams.
#[derive(Debug)]
struct Rigged {
    inner: Arc<SqliteStore>,
    rig: Rig,
}

#[derive(Debug, Clone, Copy)]
enum Rig {
    /// A rival writer slips an event in after every read, so every append of
    /// the write side loses the race.
    AlwaysOvertaken,
    /// Streams cannot be read.
    StreamsDown,
}

#[derive(Debug, thiserror::Error)]
#[error("disk on fire at /var/secret/path")]
struct DiskOnFire;

#[async_trait]
impl Forwarding for Rigged {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        match self.rig {
            Rig::StreamsDown => Err(StoreError::unavailable(DiskOnFire)),
            Rig::AlwaysOvertaken => {
                let stream = self.inner.read_stream(ticket_id).await?;
                let version = stream.last().map_or(0, |e| e.version);
                let rival = NewEvent::from(&Event::NoteAdded {
                    text: "rival".into(),
                });
                self.inner.append(ticket_id, version, vec![rival]).await?;
                Ok(stream)
            }
        }
    }
}

fn rigged(rig: Rig) -> impl FnOnce(Arc<SqliteStore>) -> Arc<dyn EventStore> {
    move |inner| Arc::new(Rigged { inner, rig })
}

#[tokio::test]
async fn a_write_that_loses_every_race_is_409() {
    let app = App::with_events(rigged(Rig::AlwaysOvertaken));
    let id = Uuid::now_v7();
    let opened = Event::TicketOpened {
        customer: "c".into(),
        subject: "s".into(),
        message: "m".into(),
    };
    app.store
        .append(id, 0, vec![NewEvent::from(&opened)])
        .await
        .expect("open");
    let path = format!("/tickets/{id}");
    let reply = app.patch(&path, &json!({"note": "mine"})).await;
    reply.assert_problem(409, "conflict", None);
    let events = app.get(&path).await;
    let notes = events.assert_json(200)["notes"]
        .as_array()
        .expect("notes")
        .clone();
    assert!(
        notes.iter().all(|note| note["text"] == "rival"),
        "mine was never written"
    );
}

#[tokio::test]
async fn an_unavailable_store_is_503_without_internals() {
    let app = App::with_events(rigged(Rig::StreamsDown));
    let id = Uuid::now_v7();
    for reply in [
        app.patch(&format!("/tickets/{id}"), &json!({"note": "x"}))
            .await,
        app.send(
            Method::GET,
            &format!("/tickets/{id}/events"),
            None,
            Body::empty(),
        )
        .await,
    ] {
        reply.assert_problem(503, "unavailable", None);
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert!(!reply.body.to_string().contains("secret"), "{reply:?}");
    }
}

#[tokio::test]
async fn corrupt_history_is_500_without_internals() {
    let app = App::new();
    let ticket = app.create("ACME").await;
    let id = Uuid::parse_str(ticket["id"].as_str().expect("id")).expect("uuid");
    let mut alien = NewEvent::from(&Event::TicketTriaged);
    alien.event_type = "TicketMergedIntoSecretProject".into();
    app.store.append(id, 1, vec![alien]).await.expect("append");
    let head = app.head().await;

    let reply = app
        .patch(&format!("/tickets/{id}"), &json!({"note": "x"}))
        .await;
    reply.assert_problem(500, "internal", None);
    assert!(!reply.body.to_string().contains("Secret"), "{reply:?}");
    assert_eq!(app.head().await, head);
}
