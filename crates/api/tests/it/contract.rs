//! Every endpoint's happy path.

use axum::body::Body;
use axum::http::Method;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::harness::App;

#[track_caller]
fn assert_utc_time(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().expect("a time string");
    assert!(text.ends_with('Z'), "UTC, spelled Z: {text}");
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

#[tokio::test]
async fn creating_a_ticket_answers_201_with_its_location_and_detail() {
    let app = App::new();
    let reply = app
        .post(
            "/tickets",
            &json!({"customer": "  ACME Corp ", "subject": "Printer on fire", "message": "It is\n\non fire."}),
        )
        .await;
    let ticket = reply.assert_json(201).clone();
    let id = ticket["id"].as_str().expect("id");
    let id = uuid::Uuid::parse_str(id).expect("uuid");
    assert_eq!(
        reply.header("location"),
        Some(format!("/tickets/{id}").as_str())
    );
    assert_eq!(ticket["customer"], "ACME Corp");
    assert_eq!(ticket["subject"], "Printer on fire");
    assert_eq!(ticket["message"], "It is\n\non fire.");
    assert_eq!(ticket["status"], "open");
    assert_eq!(ticket["agent"], Value::Null);
    assert_eq!(ticket["notes"], json!([]));
    assert_eq!(ticket["version"], 1);
    assert_eq!(ticket["created_at"], ticket["updated_at"]);
    assert_utc_time(&ticket["created_at"]);
    let mut keys: Vec<&str> = ticket
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "agent",
            "created_at",
            "customer",
            "id",
            "message",
            "notes",
            "status",
            "subject",
            "updated_at",
            "version"
        ]
    );

    let read = app.get(&format!("/tickets/{id}")).await;
    assert_eq!(
        read.assert_json(200),
        &ticket,
        "the read model equals the write response"
    );
}

#[tokio::test]
async fn a_json_content_type_with_parameters_is_accepted() {
    let app = App::new();
    let body = json!({"customer": "c", "subject": "s", "message": "m"}).to_string();
    let reply = app
        .send(
            Method::POST,
            "/tickets",
            Some("application/json; charset=utf-8"),
            body,
        )
        .await;
    reply.assert_json(201);
}

#[tokio::test]
async fn patching_changes_status_agent_and_notes() {
    let app = App::new();
    let ticket = app.create("ACME").await;
    let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));

    let changed = app
        .patch(
            &path,
            &json!({"status": "triaged", "agent": " ana ", "note": "first\n\n  look "}),
        )
        .await;
    let changed = changed.assert_json(200).clone();
    assert_eq!(changed["version"], 4, "one request, three events");
    assert_eq!(changed["status"], "triaged");
    assert_eq!(changed["agent"], "ana");
    assert_eq!(changed["notes"][0]["text"], "first\n\n  look");
    let added_at = assert_utc_time(&changed["notes"][0]["added_at"]);
    assert_eq!(assert_utc_time(&changed["updated_at"]), added_at);
    assert_eq!(changed["created_at"], ticket["created_at"]);

    let head = app.head().await;
    let same = app.patch(&path, &json!({"status": "triaged"})).await;
    assert_eq!(
        same.assert_json(200),
        &changed,
        "the status it has appends nothing"
    );
    assert_eq!(app.head().await, head);

    let noted = app.patch(&path, &json!({"note": "second"})).await;
    let noted = noted.assert_json(200).clone();
    assert_eq!(noted["agent"], "ana", "an absent agent is left alone");
    assert_eq!(noted["version"], 5);

    let unassigned = app.patch(&path, &json!({"agent": null})).await;
    let unassigned = unassigned.assert_json(200).clone();
    assert_eq!(unassigned["agent"], Value::Null, "null unassigns");
    assert_eq!(unassigned["version"], 6);

    let closed = app.patch(&path, &json!({"status": "closed"})).await;
    assert_eq!(closed.assert_json(200)["status"], "closed");
    let after_close = app
        .patch(
            &path,
            &json!({"note": "post mortem", "agent": "bo", "status": "closed"}),
        )
        .await;
    let after_close = after_close.assert_json(200).clone();
    assert_eq!(after_close["agent"], "bo", "agents and notes stay allowed");
    assert_eq!(after_close["notes"][2]["text"], "post mortem");
    assert_eq!(after_close["version"], 9);

    assert_eq!(app.get(&path).await.assert_json(200), &after_close);
}

#[tokio::test]
async fn the_list_pages_newest_first_with_an_opaque_cursor() {
    let app = App::new();
    let mut created = Vec::new();
    for n in 0..5 {
        created.push(app.create(&format!("customer {n}")).await);
    }
    let long = format!("{}\n\n{}", "word ".repeat(30), "x".repeat(50));
    let newest = format!("/tickets/{}", created[4]["id"].as_str().expect("id"));
    app.patch(&newest, &json!({"status": "triaged", "note": long}))
        .await
        .assert_json(200);

    let first = app.get("/tickets?limit=2").await;
    let first = first.assert_json(200).clone();
    let items = first["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    let row = &items[0];
    assert_eq!(row["id"], created[4]["id"]);
    assert_eq!(row["customer"], "customer 4");
    assert_eq!(row["subject"], "subject");
    assert_eq!(row["status"], "triaged");
    assert_eq!(row["agent"], Value::Null);
    assert_eq!(row["preview"], "message");
    assert_eq!(row["has_note"], true);
    let note_preview = row["last_note_preview"].as_str().expect("note preview");
    assert_eq!(note_preview.chars().count(), 100);
    assert!(note_preview.ends_with('…') && !note_preview.contains('\n'));
    assert_eq!(row["version"], 3);
    assert_utc_time(&row["created_at"]);
    assert_utc_time(&row["updated_at"]);
    assert!(row.get("message").is_none(), "never the full message");
    assert!(row.get("notes").is_none());
    assert_eq!(items[1]["has_note"], false);
    assert_eq!(items[1]["last_note_preview"], Value::Null);

    let mut ids: Vec<Value> = items.iter().map(|row| row["id"].clone()).collect();
    let mut cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    loop {
        let page = app.get(&format!("/tickets?limit=2&cursor={cursor}")).await;
        let page = page.assert_json(200).clone();
        ids.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|row| row["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let expected: Vec<Value> = created.iter().rev().map(|t| t["id"].clone()).collect();
    assert_eq!(ids, expected, "every ticket once, newest first");

    let all = app.get("/tickets").await;
    let all = all.assert_json(200);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(5));
    assert_eq!(all["next_cursor"], Value::Null);

    let triaged = app.get("/tickets?status=triaged").await;
    let triaged = triaged.assert_json(200);
    assert_eq!(triaged["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(triaged["items"][0]["id"], created[4]["id"]);

    // An empty value is refused, not read as absent: a half-filled form
    // must not widen the filter silently.
    app.get("/tickets?status=&limit=&cursor=")
        .await
        .assert_problem(400, "invalid-parameter", Some("status"));
}

#[tokio::test]
async fn the_dashboard_counts_per_status() {
    let app = App::new();
    assert_eq!(
        app.get("/dashboard").await.assert_json(200),
        &json!({"open": 0, "triaged": 0, "closed": 0, "total": 0})
    );
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(
            app.create(&format!("c{n}")).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    app.patch(
        &format!("/tickets/{}", ids[0]),
        &json!({"status": "triaged"}),
    )
    .await
    .assert_json(200);
    app.patch(
        &format!("/tickets/{}", ids[1]),
        &json!({"status": "closed"}),
    )
    .await
    .assert_json(200);
    assert_eq!(
        app.get("/dashboard").await.assert_json(200),
        &json!({"open": 2, "triaged": 1, "closed": 1, "total": 4})
    );
}

#[tokio::test]
async fn a_tickets_events_come_from_the_store_in_version_order() {
    let app = App::new();
    let ticket = app.create("ACME").await;
    let id = ticket["id"].as_str().expect("id");
    let path = format!("/tickets/{id}");
    app.patch(
        &path,
        &json!({"status": "triaged", "agent": "ana", "note": "hi"}),
    )
    .await
    .assert_json(200);

    // No catch-up: this endpoint reads the event store, not the read model.
    let reply = app
        .send(Method::GET, &format!("{path}/events"), None, Body::empty())
        .await;
    let events = reply.assert_json(200)["events"]
        .as_array()
        .expect("events")
        .clone();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "TicketOpened",
            "TicketTriaged",
            "AgentAssigned",
            "NoteAdded"
        ]
    );
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["version"], index + 1);
        assert_utc_time(&event["occurred_at"]);
        let mut keys: Vec<&str> = event
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["data", "metadata", "occurred_at", "type", "version"]);
        let mut metadata: Vec<&str> = event["metadata"]
            .as_object()
            .expect("metadata object")
            .keys()
            .map(String::as_str)
            .collect();
        metadata.sort_unstable();
        assert_eq!(metadata, ["actor", "causation_id", "correlation_id"]);
    }
    assert_eq!(
        events[0]["data"],
        json!({"customer": "ACME", "subject": "subject", "message": "message"})
    );
    assert_eq!(events[1]["data"], json!({}));
    assert_eq!(events[2]["data"], json!({"agent": "ana"}));
    assert_eq!(events[3]["data"], json!({"text": "hi"}));
}

#[tokio::test]
async fn a_correlation_id_header_is_recorded_with_the_events() {
    use eventstore::EventStore;

    let app = App::new();
    let correlation = uuid::Uuid::now_v7();
    let body = json!({"customer": "c", "subject": "s", "message": "m"}).to_string();
    let reply = app
        .request(
            Method::POST,
            "/tickets",
            &[("x-correlation-id", &correlation.to_string())],
            Some("application/json"),
            body,
        )
        .await;
    let id = reply.assert_json(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let id = uuid::Uuid::parse_str(&id).expect("uuid");
    let stream = app.store.read_stream(id).await.expect("stream");
    assert_eq!(stream[0].metadata.correlation_id, Some(correlation));
}

#[tokio::test]
async fn events_carry_their_metadata_with_nulls_where_absent() {
    let app = App::new();
    let correlation = uuid::Uuid::now_v7();
    let body = json!({"customer": "c", "subject": "s", "message": "m"}).to_string();
    let reply = app
        .request(
            Method::POST,
            "/tickets",
            &[
                ("x-correlation-id", &correlation.to_string()),
                ("x-actor", "ana"),
            ],
            Some("application/json"),
            body,
        )
        .await;
    let id = reply.assert_json(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let reply = app
        .send(
            Method::GET,
            &format!("/tickets/{id}/events"),
            None,
            Body::empty(),
        )
        .await;
    let events = reply.assert_json(200)["events"].clone();
    let metadata = &events[0]["metadata"];
    assert_eq!(metadata["correlation_id"], json!(correlation.to_string()));
    assert_eq!(metadata["actor"], json!("ana"));
    assert!(
        metadata["causation_id"].is_null() || metadata["causation_id"].is_string(),
        "{metadata}"
    );
}
