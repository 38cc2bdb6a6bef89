//! Every rejected request: the right 4xx, a problem+json body naming the field
//! and the rule, and nothing written.

use serde_json::json;

use crate::harness::*;

fn bad_requests_get_problems_and_write_nothing(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;
    let ticket = http.create("ACME", "subject", "message");
    let id = ticket["id"].as_str().expect("id").to_owned();
    let path = format!("/tickets/{id}");
    let before = ws.event_count();

    let long = |n: usize| "x".repeat(n);
    let valid = json!({"customer": "c", "subject": "s", "message": "m"});
    let with = |key: &str, value: serde_json::Value| {
        let mut body = valid.clone();
        body[key] = value;
        body
    };

    // (body, status, field)
    let bad_creates = [
        (with("customer", json!("   ")), 422, "customer"),
        (with("customer", json!(long(201))), 422, "customer"),
        (with("subject", json!("")), 422, "subject"),
        (with("subject", json!(long(201))), 422, "subject"),
        (with("message", json!(" \n ")), 422, "message"),
        (with("message", json!(long(10_001))), 422, "message"),
        (with("customer", json!(42)), 422, "customer"),
        (with("unexpected", json!("x")), 422, "unexpected"),
        (json!({"customer": "c", "subject": "s"}), 422, "message"),
    ];
    for (body, status, field) in bad_creates {
        http.post("/tickets", &body)
            .assert_problem(status, Some(field));
    }

    let bad_patches = [
        (json!({}), 422, "body"),
        (json!({"status": "done"}), 422, "status"),
        (json!({"status": 3}), 422, "status"),
        (json!({"note": "  \t "}), 422, "note"),
        (json!({"note": long(5_001)}), 422, "note"),
        (json!({"agent": ""}), 422, "agent"),
        (json!({"agent": long(101)}), 422, "agent"),
        (json!({"note": "ok", "colour": "red"}), 422, "colour"),
        (json!({"note": "ok", "agent": long(101)}), 422, "agent"),
    ];
    for (body, status, field) in bad_patches {
        http.patch(&path, &body).assert_problem(status, Some(field));
    }

    // Syntax, media type and ids.
    http.send(
        "POST",
        "/tickets",
        Some("application/json"),
        "{\"customer\": ",
    )
    .assert_problem(400, None);
    http.send("POST", "/tickets", Some("application/json"), "")
        .assert_problem(400, None);
    http.send("POST", "/tickets", Some("text/plain"), &valid.to_string())
        .assert_problem(415, None);
    http.send("POST", "/tickets", None, &valid.to_string())
        .assert_problem(415, None);
    http.send("PATCH", &path, Some("text/plain"), "{\"note\": \"x\"}")
        .assert_problem(415, None);
    http.patch("/tickets/not-a-uuid", &json!({"note": "x"}))
        .assert_problem(400, Some("id"));
    http.get("/tickets/not-a-uuid")
        .assert_problem(400, Some("id"));
    http.get("/tickets/not-a-uuid/events")
        .assert_problem(400, Some("id"));

    // Unknown things.
    let unknown = uuid::Uuid::now_v7();
    http.patch(&format!("/tickets/{unknown}"), &json!({"note": "x"}))
        .assert_problem(404, None);
    http.get(&format!("/tickets/{unknown}"))
        .assert_problem(404, None);
    http.get(&format!("/tickets/{unknown}/events"))
        .assert_problem(404, None);
    http.get("/no-such-route").assert_problem(404, None);
    http.delete(&path).assert_problem(405, None);

    // Query parameters.
    for limit in ["0", "201", "-1", "ten"] {
        http.get(&format!("/tickets?limit={limit}"))
            .assert_problem(422, Some("limit"));
    }
    http.get("/tickets?status=done")
        .assert_problem(422, Some("status"));
    http.get("/tickets?cursor=not-a-cursor")
        .assert_problem(400, Some("cursor"));
    assert_eq!(http.get("/tickets?limit=1").status, 200);
    assert_eq!(http.get("/tickets?limit=200").status, 200);

    // Rules.
    assert_eq!(http.patch(&path, &json!({"status": "closed"})).status, 200);
    let after_close = ws.event_count();
    http.patch(&path, &json!({"status": "triaged", "note": "x"}))
        .assert_problem(409, Some("status"));
    assert_eq!(
        ws.event_count(),
        after_close,
        "a refused request appends none of its events"
    );

    assert_eq!(before + 1, after_close, "only the close was written");
    let events = http.get(&format!("/tickets/{id}/events"));
    assert_eq!(events.body["events"].as_array().map(Vec::len), Some(2));
}

crate::on_every_backend!(bad_requests_get_problems_and_write_nothing,);
