//! The HTTP contract, end to end: writes answered by the write side, reads
//! served from read models the in-process projector keeps.

use serde_json::{Value, json};

use crate::harness::*;

fn a_ticket_lives_through_create_triage_assign_note_and_close(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;

    let created = http.post(
        "/tickets",
        &json!({"customer": "  ACME Corp ", "subject": "Printer on fire", "message": "It is\n\non   fire."}),
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert!(created.content_type.starts_with("application/json"));
    let ticket = created.body;
    let id = ticket["id"].as_str().expect("id").to_owned();
    assert_eq!(
        created.location.as_deref(),
        Some(format!("/tickets/{id}").as_str())
    );
    assert_eq!(ticket["customer"], "ACME Corp", "fields are trimmed");
    assert_eq!(ticket["status"], "open");
    assert_eq!(ticket["version"], 1);
    assert_eq!(ticket["agent"], Value::Null);
    assert_eq!(ticket["notes"], json!([]));
    assert_eq!(ticket["created_at"], ticket["updated_at"]);
    assert_eq!(
        read_model_reaches(http, &ticket),
        ticket,
        "read model equals the write response"
    );

    let path = format!("/tickets/{id}");
    let changed = http.patch(
        &path,
        &json!({"status": "triaged", "agent": "ana", "note": "first\n\n  look"}),
    );
    assert_eq!(changed.status, 200, "{changed:?}");
    let ticket = changed.body;
    assert_eq!(ticket["version"], 4, "one request, three events");
    assert_eq!(ticket["status"], "triaged");
    assert_eq!(ticket["agent"], "ana");
    assert_eq!(ticket["notes"][0]["text"], "first\n\n  look");
    assert!(ticket["notes"][0]["added_at"].is_string());

    let same = http.patch(&path, &json!({"status": "triaged"}));
    assert_eq!(same.status, 200);
    assert_eq!(
        same.body, ticket,
        "the status it already has appends nothing"
    );
    assert_eq!(ws.event_count(), 4);

    let unassigned = http.patch(&path, &json!({"agent": null}));
    assert_eq!(unassigned.body["agent"], Value::Null);
    assert_eq!(unassigned.body["version"], 5);

    let closed = http.patch(&path, &json!({"status": "closed"}));
    assert_eq!(closed.body["status"], "closed");
    http.patch(&path, &json!({"status": "open"}))
        .assert_problem(409, Some("status"));
    let noted = http.patch(&path, &json!({"note": "after close", "agent": "bo"}));
    assert_eq!(
        noted.status, 200,
        "notes and agents stay allowed when closed"
    );
    let ticket = noted.body;
    assert_eq!(ticket["version"], 8);
    assert_eq!(ticket["agent"], "bo");
    assert_eq!(read_model_reaches(http, &ticket), ticket);
    ws.wait_caught_up();

    let rows = all_list_rows(http, "");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["preview"], "It is on fire.");
    assert_eq!(row["has_note"], true);
    assert_eq!(row["last_note_preview"], "after close");
    assert_eq!(row["status"], "closed");
    assert_eq!(row["agent"], "bo");
    assert_eq!(row["version"], 8);
    assert!(
        row.get("message").is_none(),
        "list rows carry no full message"
    );
    assert!(row.get("notes").is_none());

    let dashboard = http.get("/dashboard");
    assert_eq!(dashboard.status, 200);
    assert_eq!(
        dashboard.body,
        json!({"open": 0, "triaged": 0, "closed": 1, "total": 1})
    );

    let events = http.get(&format!("/tickets/{id}/events"));
    assert_eq!(events.status, 200);
    let events = events.body["events"].as_array().expect("events").clone();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        types,
        [
            "TicketOpened",
            "TicketTriaged",
            "AgentAssigned",
            "NoteAdded",
            "AgentUnassigned",
            "TicketClosed",
            "AgentAssigned",
            "NoteAdded"
        ]
    );
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["version"], index as u64 + 1);
        assert!(event["occurred_at"].is_string());
    }
    assert_eq!(events[0]["data"]["customer"], "ACME Corp");
    assert_eq!(events[2]["data"]["agent"], "ana");
}

fn list_pages_newest_first_filters_by_status_and_previews_long_texts(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;

    let long = format!("{}   \n{}", "word ".repeat(30), "x".repeat(100));
    let mut created = Vec::new();
    for n in 0..8 {
        created.push(http.create(&format!("customer {n}"), "subject", &long));
    }
    for ticket in &created[..3] {
        let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
        assert_eq!(http.patch(&path, &json!({"status": "triaged"})).status, 200);
    }
    let last = http.patch(
        &format!("/tickets/{}", created[7]["id"].as_str().expect("id")),
        &json!({"note": "a note"}),
    );
    read_model_reaches(http, &last.body);
    eventually("the dashboard to count every ticket", || {
        let body = http.get("/dashboard").body;
        (body == json!({"open": 5, "triaged": 3, "closed": 0, "total": 8})).then_some(())
    });
    ws.wait_caught_up();

    let first = http.get("/tickets?limit=3");
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(3));
    assert!(first.body["next_cursor"].is_string());

    let rows = all_list_rows(http, "limit=3");
    let ids: Vec<&Value> = rows.iter().map(|row| &row["id"]).collect();
    let mut expected: Vec<&Value> = created.iter().map(|t| &t["id"]).collect();
    expected.reverse();
    assert_eq!(ids, expected, "every ticket once, newest first");

    let preview = rows[0]["preview"].as_str().expect("preview");
    assert_eq!(preview.chars().count(), 100);
    assert!(preview.ends_with('…'));
    assert!(!preview.contains("  ") && !preview.contains('\n'));
    assert_eq!(rows[0]["has_note"], true);
    assert_eq!(rows[1]["has_note"], false);
    assert_eq!(rows[1]["last_note_preview"], Value::Null);

    let triaged = all_list_rows(http, "status=triaged&limit=2");
    let mut triaged_ids: Vec<&Value> = triaged.iter().map(|row| &row["id"]).collect();
    triaged_ids.reverse();
    let expected: Vec<&Value> = created[..3].iter().map(|t| &t["id"]).collect();
    assert_eq!(triaged_ids, expected);
    assert!(triaged.iter().all(|row| row["status"] == "triaged"));

    let default_page = http.get("/tickets");
    assert_eq!(default_page.body["items"].as_array().map(Vec::len), Some(8));
    assert_eq!(default_page.body["next_cursor"], Value::Null);
}

fn racing_writers_on_one_ticket_lose_no_update(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let ticket = ticketd.http.create("c", "s", "m");
    let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
    let writers: Vec<_> = (0..12)
        .map(|n| {
            let http = Http::new(ticketd.http.base.clone());
            let path = path.clone();
            std::thread::spawn(move || http.patch(&path, &json!({"note": format!("note {n}")})))
        })
        .collect();
    for writer in writers {
        let reply = writer.join().expect("writer");
        assert!(
            reply.status == 200 || reply.status == 409,
            "a lost race is retried or answered 409: {reply:?}"
        );
    }
    let events = ticketd.http.get(&format!("{path}/events")).body;
    let versions: Vec<u64> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(
        versions,
        (1..=versions.len() as u64).collect::<Vec<_>>(),
        "gapless"
    );
    let final_view = eventually("the view to catch up", || {
        let body = ticketd.http.get(&path).body;
        (body["version"].as_u64() == Some(versions.len() as u64)).then_some(body)
    });
    let notes = final_view["notes"].as_array().expect("notes").len();
    assert_eq!(
        notes,
        versions.len() - 1,
        "every accepted note is in the view"
    );
    assert_eq!(notes, 12, "with retries, no writer lost its note");
}

crate::on_every_backend!(
    a_ticket_lives_through_create_triage_assign_note_and_close,
    list_pages_newest_first_filters_by_status_and_previews_long_texts,
    racing_writers_on_one_ticket_lose_no_update,
);
