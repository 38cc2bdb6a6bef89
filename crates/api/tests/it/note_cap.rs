//! A ticket holds at most `domain::MAX_NOTES` notes: the next note is a 422
//! naming `note`, and the whole change is refused.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::App;

async fn event_count(app: &App, path: &str) -> usize {
    // No catch-up: this endpoint reads the event store, not the read model.
    let reply = app
        .send(Method::GET, &format!("{path}/events"), None, Body::empty())
        .await;
    reply.assert_json(200)["events"]
        .as_array()
        .expect("events")
        .len()
}

#[tokio::test]
async fn the_note_past_the_cap_is_refused_whole_with_422_naming_note() {
    assert_eq!(domain::MAX_NOTES, 1_000);
    let app = App::new();
    let ticket = app.create("ACME").await;
    let id = ticket["id"].as_str().expect("id");
    let path = format!("/tickets/{id}");
    for i in 1..=domain::MAX_NOTES {
        let reply = app
            .patch(&path, &json!({"note": format!("note {i}")}))
            .await;
        assert_eq!(reply.assert_json(200)["version"], i + 1, "note {i}");
    }
    let before = event_count(&app, &path).await;
    assert_eq!(before, 1 + domain::MAX_NOTES);

    // Status and agent ride along: they are refused with the note.
    let reply = app
        .patch(
            &path,
            &json!({"status": "closed", "agent": "ana", "note": "one too many"}),
        )
        .await;
    reply.assert_problem(422, "validation", Some("note"));
    assert_eq!(
        reply.body["detail"], "a ticket holds at most 1000 notes",
        "{reply:?}"
    );
    assert_eq!(event_count(&app, &path).await, before, "nothing appended");

    let detail = app.get(&path).await;
    let detail = detail.assert_json(200);
    assert_eq!(detail["version"], before);
    assert_eq!(detail["status"], "open");
    assert_eq!(detail["agent"], Value::Null);
    assert_eq!(
        detail["notes"].as_array().expect("notes").len(),
        domain::MAX_NOTES
    );

    // A full ticket still takes every change but a note.
    app.patch(&path, &json!({"status": "closed"}))
        .await
        .assert_json(200);
    assert_eq!(event_count(&app, &path).await, before + 1);
}
