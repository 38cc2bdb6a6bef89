//! The dead-letter routes, black-box: a real `ticketd --auth token` (with
//! its in-process projector) over real HTTP, a poison event written straight
//! into the store, and `ticket-projector dead-letters list` / `status` as the
//! witnesses of what a retry or a skip over HTTP changed. On every backend.

use std::collections::HashMap;

use serde_json::Value;

use crate::harness::*;

crate::on_every_backend!(dead_letters_are_listed_retried_and_skipped_over_http_by_admins_only);

/// Creates a token with the CLI and returns its secret (stdout's last line).
fn token(ws: &Workspace, role: &str, name: &str, customer: Option<&str>) -> String {
    let mut args = vec!["token", "create", "--role", role, "--name", name];
    if let Some(customer) = customer {
        args.extend(["--customer", customer]);
    }
    let ran = ws.ticketd(&args);
    assert!(ran.status.success(), "{ran:?}");
    ran.stdout.lines().last().expect("a secret").to_owned()
}

/// The HTTP list's letters at `position`, by projection.
fn listed_at(admin: &Http, query: &str, position: u64) -> HashMap<String, Value> {
    let reply = admin.get(&format!("/projections/dead-letters{query}"));
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["dead_letters"]
        .as_array()
        .expect("dead_letters")
        .iter()
        .filter(|letter| letter["position"] == position)
        .map(|letter| {
            (
                letter["projection"]
                    .as_str()
                    .expect("projection")
                    .to_owned(),
                letter.clone(),
            )
        })
        .collect()
}

/// What `ticket-projector dead-letters list --json` says at `position`.
fn cli_letters_at(ws: &Workspace, position: u64) -> HashMap<String, Value> {
    ws.dead_letters()
        .into_iter()
        .filter(|letter| letter["position"] == position)
        .map(|letter| {
            (
                letter["projection"]
                    .as_str()
                    .expect("projection")
                    .to_owned(),
                letter,
            )
        })
        .collect()
}

/// What `ticket-projector status --json` says, by projection.
fn cli_status(ws: &Workspace) -> HashMap<String, Value> {
    ws.status()["projections"]
        .as_array()
        .expect("projections")
        .iter()
        .map(|p| {
            (
                p["projection"].as_str().expect("name").to_owned(),
                p.clone(),
            )
        })
        .collect()
}

fn path(projection: &str, position: impl std::fmt::Display, action: &str) -> String {
    format!("/projections/{projection}/dead-letters/{position}/{action}")
}

fn post(http: &Http, path: &str) -> Reply {
    http.send("POST", path, None, "")
}

fn dead_letters_are_listed_retried_and_skipped_over_http_by_admins_only(ws: Workspace) {
    let admin_secret = token(&ws, "admin", "root", None);
    let ticketd = Ticketd::start(&ws, &["--auth", "token"]);
    let admin = ticketd.http.with_bearer(&admin_secret);
    let others = [
        (
            "agent",
            ticketd.http.with_bearer(&token(&ws, "agent", "ana", None)),
        ),
        (
            "metrics",
            ticketd
                .http
                .with_bearer(&token(&ws, "metrics", "prometheus", None)),
        ),
        (
            "customer",
            ticketd
                .http
                .with_bearer(&token(&ws, "customer", "acme-web", Some("acme"))),
        ),
    ];

    // Nothing yet: an empty list.
    let empty = admin.get("/projections/dead-letters");
    assert_eq!(empty.status, 200, "{empty:?}");
    assert_eq!(
        empty.body["dead_letters"],
        Value::Array(vec![]),
        "{empty:?}"
    );

    let ticket = admin.create("acme", "poisoned", "m");
    let id = ticket["id"].as_str().expect("id").to_owned();
    read_model_reaches(&admin, &ticket);
    let poison = ws.insert_poison(&id, 2, "TicketMerged");

    // Listed: one per projection, with the event and the reason.
    let letters = eventually("the poison's dead letters over HTTP", || {
        let letters = listed_at(&admin, "", poison);
        (letters.len() == 3).then_some(letters)
    });
    for (name, letter) in &letters {
        assert_eq!(letter["state"], "pending", "{name}: {letter}");
        assert_eq!(letter["event_type"], "TicketMerged", "{letter}");
        assert_eq!(letter["ticket_id"], id.as_str(), "{letter}");
        assert_eq!(letter["version"], 2, "{letter}");
        assert_eq!(letter["event"]["data"]["merged_into"], "elsewhere");
        let reason = letter["reason"].as_str().expect("reason");
        assert!(
            reason.contains("unknown event type `TicketMerged`"),
            "{reason}"
        );
    }
    // The same as the command line says.
    let cli = cli_letters_at(&ws, poison);
    for (name, letter) in &letters {
        for key in ["state", "event_type", "reason", "ticket_id", "version"] {
            assert_eq!(letter[key], cli[name][key], "{name} {key}");
        }
    }
    let only_list = listed_at(&admin, "?projection=list", poison);
    assert_eq!(
        only_list.keys().collect::<Vec<_>>(),
        ["list"],
        "{only_list:?}"
    );

    // Refused: other roles (403, nothing changed), no token (401), bad
    // parameters (problems naming them), an unknown dead letter (404).
    for (role, http) in &others {
        http.get("/projections/dead-letters")
            .assert_problem(403, None);
        for action in ["retry", "skip"] {
            let reply = post(http, &path("list", poison, action));
            assert_eq!(reply.status, 403, "{role} {action}: {reply:?}");
        }
    }
    ticketd
        .http
        .get("/projections/dead-letters")
        .assert_problem(401, None);
    assert_eq!(
        post(&ticketd.http, &path("list", poison, "skip")).status,
        401
    );
    assert!(
        listed_at(&admin, "", poison)
            .values()
            .all(|letter| letter["state"] == "pending"),
        "a refused request changed a dead letter"
    );
    admin
        .get("/projections/dead-letters?projection=nope")
        .assert_problem(422, Some("projection"));
    admin
        .get("/projections/dead-letters?state=pending")
        .assert_problem(400, Some("state"));
    for action in ["retry", "skip"] {
        post(&admin, &path("list", 999_999, action)).assert_problem(404, None);
        post(&admin, &path("nope", poison, action)).assert_problem(400, Some("projection"));
        post(&admin, &path("list", "first", action)).assert_problem(400, Some("position"));
    }

    // Retry: marked at once; the projection stopped at it applies it again,
    // fails again (this build still cannot read it), and it is pending again.
    let retried = post(&admin, &path("list", poison, "retry"));
    assert_eq!(retried.status, 200, "{retried:?}");
    assert_eq!(retried.body["dead_letter"]["state"], "retry", "{retried:?}");
    assert_eq!(retried.body["dead_letter"]["position"], poison);
    assert_eq!(retried.body["already_passed"], false, "{retried:?}");
    assert!(
        retried.body["live_checkpoint"]
            .as_u64()
            .expect("checkpoint")
            < poison
    );
    let again = eventually(
        "the retry to fail and the letter to be pending again",
        || {
            let letter = cli_letters_at(&ws, poison).remove("list")?;
            (letter["state"] == "pending"
                && letter["recorded_at"] != letters["list"]["recorded_at"])
                .then_some(letter)
        },
    );
    assert!(
        again["reason"]
            .as_str()
            .expect("reason")
            .contains("TicketMerged")
    );
    // The lease's state follows on the holder's next heartbeat, which a
    // stop hurries but does not make part of recording the letter.
    let status = eventually("the projection to report itself stopped again", || {
        let status = cli_status(&ws);
        (status["list"]["state"] == "stopped on error").then_some(status)
    });
    assert_eq!(status["list"]["dead_letters_pending"], 1, "{status:?}");

    // Skip, in every projection: they carry on past it.
    let later = admin.create("acme", "after the poison", "m");
    for projection in ["detail", "list", "dashboard"] {
        let skipped = post(&admin, &path(projection, poison, "skip"));
        assert_eq!(skipped.status, 200, "{projection}: {skipped:?}");
        assert_eq!(
            skipped.body["dead_letter"]["state"], "skipped",
            "{skipped:?}"
        );
        assert_eq!(skipped.body["dead_letter"]["projection"], projection);
    }
    assert_eq!(read_model_reaches(&admin, &later), later);
    let status = eventually("the projections to run again", || {
        let status = cli_status(&ws);
        status
            .values()
            .all(|p| {
                p["state"] != "stopped on error"
                    && p["lag_events"] == 0
                    && p["dead_letters_pending"] == 0
            })
            .then_some(status)
    });
    assert_eq!(status.len(), 3, "{status:?}");
    for (name, letter) in cli_letters_at(&ws, poison) {
        assert_eq!(letter["state"], "skipped", "{name}: {letter}");
    }
    let detail = admin.get(&format!("/tickets/{id}")).body;
    assert_eq!(detail["version"], 2, "a skipped event moves the version on");
    assert_eq!(detail["subject"], "poisoned", "and changes nothing else");

    // Once past it, the answer says so (a retry now takes a rebuild).
    let past = post(&admin, &path("list", poison, "skip"));
    assert_eq!(past.status, 200, "{past:?}");
    assert_eq!(past.body["already_passed"], true, "{past:?}");
    assert!(past.body["live_checkpoint"].as_u64().expect("checkpoint") >= poison);

    // The document names the routes' one role.
    let spec = ticketd.http.get("/openapi.json").body;
    for (method, template) in [
        ("get", "/projections/dead-letters"),
        (
            "post",
            "/projections/{projection}/dead-letters/{position}/retry",
        ),
        (
            "post",
            "/projections/{projection}/dead-letters/{position}/skip",
        ),
    ] {
        let operation = &spec["paths"][template][method];
        assert_eq!(
            operation["x-roles"],
            serde_json::json!(["admin"]),
            "{method} {template}"
        );
        for status in ["200", "400", "401", "403", "503"] {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {template} lacks {status}"
            );
        }
    }
}
