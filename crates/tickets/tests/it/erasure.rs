//! Erasing a customer (crypto-shredding), black-box: personal fields are
//! sealed in the store; after `ticketd erase-customer` the customer's words
//! read `[erased]` everywhere, ids, statuses and counts stay, the tickets
//! take no more changes, a rebuild gives the same views, `verify` is clean,
//! and (on SQLite) no byte of the customer's words is left in the store's
//! files or the logs, while another customer's are.

use serde_json::{Value, json};

use crate::harness::{Ticketd, Workspace, all_list_rows};

const ERASED: &str = "[erased]";

/// Opens a ticket for `customer` whose words all carry `marker`, then adds
/// a note and triages it.
fn ticket_with_words(ticketd: &Ticketd, customer: &str, marker: &str) -> Value {
    let http = &ticketd.http;
    let ticket = http.create(
        customer,
        &format!("subject {marker}"),
        &format!("message {marker}"),
    );
    let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
    let reply = http.patch(
        &path,
        &json!({"status": "triaged", "agent": "ana", "note": format!("note {marker}")}),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

/// Every file of the workspace whose bytes hold `needle`: the SQLite file,
/// its write-ahead log and shared memory, and the processes' logs.
fn files_holding(ws: &Workspace, needle: &str) -> Vec<String> {
    let mut holding = Vec::new();
    for entry in std::fs::read_dir(ws.dir.path()).expect("read the workspace") {
        let path = entry.expect("an entry").path();
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            holding.push(
                path.file_name()
                    .expect("a name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    holding
}

fn an_erased_customer_leaves_no_words_and_keeps_every_count(ws: Workspace) {
    let ada_marker = format!("ADA-{}", uuid::Uuid::now_v7().simple());
    let bob_marker = format!("BOB-{}", uuid::Uuid::now_v7().simple());
    // A ticket of Ada's stored in clear by a version from before sealing,
    // with a note: the erasure must rewrite it.
    let legacy = ws.append_in_clear(&[
        (
            "TicketOpened",
            json!({"customer": "Ada", "subject": format!("old {ada_marker}"), "message": format!("old {ada_marker}")}),
        ),
        ("NoteAdded", json!({"text": format!("old note {ada_marker}")})),
    ]);

    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;
    let ada: Vec<Value> = (0..3)
        .map(|_| ticket_with_words(&ticketd, "Ada", &ada_marker))
        .collect();
    let bob = ticket_with_words(&ticketd, "Bob", &bob_marker);
    let closed = http.patch(
        &format!("/tickets/{}", ada[0]["id"].as_str().expect("id")),
        &json!({"status": "closed"}),
    );
    assert_eq!(closed.status, 200, "{closed:?}");
    ws.wait_caught_up();

    // Sealed at rest: the words are in no stored event, but read in clear.
    let sealed = ws.sealed_events();
    let in_store =
        serde_json::to_string(&sealed.iter().map(|e| &e.data).collect::<Vec<_>>()).expect("json");
    assert!(
        !in_store.contains(&bob_marker),
        "Bob's words are stored in clear"
    );
    assert!(
        in_store.contains(&ada_marker),
        "the legacy ticket is in clear before erasure"
    );
    let opened = ws.stored_events();
    assert!(
        opened
            .iter()
            .any(|e| e.data["subject"] == format!("subject {bob_marker}")),
        "the store opens what it sealed"
    );
    let dashboard_before = http.get("/dashboard").body;
    let statuses_before: Vec<Value> = all_list_rows(http, "limit=50")
        .iter()
        .map(|row| json!([row["id"], row["status"], row["agent"]]))
        .collect();

    let erase = ws.ticketd(&["erase-customer", "Ada", "--yes"]);
    assert!(erase.status.success(), "{erase:?}");
    assert!(
        erase.stdout.contains("tickets: 4 (4 erased now"),
        "{erase:?}"
    );
    assert!(erase.stdout.contains("rewritten: 2"), "{erase:?}");
    assert!(erase.stdout.contains("key: destroyed"), "{erase:?}");
    assert!(erase.stdout.contains("files scrubbed"), "{erase:?}");
    ws.wait_caught_up();

    // Every read model: Ada's words erased, everything else kept.
    let mut ada_ids: Vec<&str> = ada.iter().map(|t| t["id"].as_str().expect("id")).collect();
    ada_ids.push(&legacy);
    for id in &ada_ids {
        let detail = http.get(&format!("/tickets/{id}")).body;
        for field in ["customer", "subject", "message"] {
            assert_eq!(detail[field], ERASED, "{field} of {detail}");
        }
        for note in detail["notes"].as_array().expect("notes") {
            assert_eq!(note["text"], ERASED, "{detail}");
        }
        let history = http.get(&format!("/tickets/{id}/events")).body.to_string();
        assert!(!history.contains(&ada_marker), "{history}");
        let refused = http.patch(&format!("/tickets/{id}"), &json!({"note": "more"}));
        refused.assert_problem(409, None);
    }
    let history = http.get(&format!("/tickets/{legacy}/events")).body;
    let erasure = history["events"]
        .as_array()
        .expect("events")
        .last()
        .expect("the erasure")
        .clone();
    assert_eq!(erasure["type"], "CustomerErased", "{history}");
    assert_eq!(erasure["data"], json!({"rewritten": [1, 2]}), "{history}");
    let bob_now = http
        .get(&format!("/tickets/{}", bob["id"].as_str().expect("id")))
        .body;
    assert_eq!(bob_now["subject"], format!("subject {bob_marker}"));
    assert_eq!(http.get("/dashboard").body, dashboard_before);
    let statuses_after: Vec<Value> = all_list_rows(http, "limit=50")
        .iter()
        .map(|row| json!([row["id"], row["status"], row["agent"]]))
        .collect();
    assert_eq!(statuses_after, statuses_before);
    let listed = http.get("/tickets?limit=50").body.to_string();
    assert!(
        !listed.contains(&ada_marker) && listed.contains(ERASED),
        "{listed}"
    );
    assert!(!listed.contains("\"Ada\""), "{listed}");

    // The events say so, and a rebuild from them gives the same views.
    let verify = ws.projector(&["verify"]);
    assert!(verify.status.success(), "{verify:?}");
    let before_rebuild = all_list_rows(http, "limit=50");
    let rebuild = ws.projector(&["rebuild"]);
    assert!(rebuild.status.success(), "{rebuild:?}");
    assert_eq!(all_list_rows(http, "limit=50"), before_rebuild);
    assert!(ws.projector(&["verify"]).status.success());
    // Erasing again finds nothing more to do.
    let again = ws.ticketd(&["erase-customer", "Ada", "--yes"]);
    assert!(again.status.success(), "{again:?}");
    assert!(again.stdout.contains("key: none"), "{again:?}");

    // No copy of Ada's words in any file the project writes; Bob's are still
    // in the read models (so the search would find them).
    if ws.store_url().starts_with("sqlite://") {
        let erase = ws.ticketd(&["erase-customer", "Nobody", "--yes"]);
        assert!(erase.status.success(), "{erase:?}");
        assert_eq!(files_holding(&ws, &ada_marker), Vec::<String>::new());
        assert!(
            files_holding(&ws, &bob_marker).contains(&"tickets.db".to_owned())
                || files_holding(&ws, &bob_marker).contains(&"tickets.db-wal".to_owned()),
            "the search finds Bob's words: {:?}",
            files_holding(&ws, &bob_marker)
        );
    }
    let events = ws.stored_events();
    let all =
        serde_json::to_string(&events.iter().map(|e| &e.data).collect::<Vec<_>>()).expect("json");
    assert!(!all.contains(&ada_marker));
    let sealed = serde_json::to_string(
        &ws.sealed_events()
            .iter()
            .map(|e| &e.data)
            .collect::<Vec<_>>(),
    )
    .expect("json");
    assert!(!sealed.contains(&ada_marker));
    eprintln!(
        "erased Ada: 4 tickets (one stored in clear, 2 events rewritten), views rewritten, \
         counts kept, rebuild and verify clean; marker found in no file"
    );
}

/// A token of `role` made with `ticketd token create`; its secret.
fn token(ws: &Workspace, role: &str, name: &str) -> String {
    let made = ws.ticketd(&["token", "create", "--role", role, "--name", name]);
    assert!(made.status.success(), "{made:?}");
    made.stdout
        .lines()
        .last()
        .expect("the secret")
        .trim()
        .to_owned()
}

fn erasure_over_http_is_for_admins_and_shows_at_once(ws: Workspace) {
    let (admin, agent) = (token(&ws, "admin", "root"), token(&ws, "agent", "ana"));
    let ticketd = Ticketd::start(&ws, &["--auth", "token"]);
    let (admin, agent) = (
        ticketd.http.with_bearer(&admin),
        ticketd.http.with_bearer(&agent),
    );
    let marker = format!("CY-{}", uuid::Uuid::now_v7().simple());
    let ticket = admin.create("Cy", &format!("subject {marker}"), "message");

    agent.delete("/customers/Cy").assert_problem(403, None);
    admin
        .delete("/customers/%20")
        .assert_problem(400, Some("customer"));
    let erased = admin.delete("/customers/Cy");
    assert_eq!(erased.status, 200, "{erased:?}");
    assert_eq!(erased.body["tickets"], 1, "{erased:?}");
    assert_eq!(erased.body["newly_erased"], 1, "{erased:?}");
    assert_eq!(erased.body["key_destroyed"], true, "{erased:?}");
    assert_eq!(erased.body["views_scrubbed"], true, "{erased:?}");
    // The read models show it as soon as the answer comes.
    let id = ticket["id"].as_str().expect("id");
    let detail = agent.get(&format!("/tickets/{id}")).body;
    assert_eq!(detail["subject"], ERASED, "{detail}");
    assert_eq!(detail["customer"], ERASED, "{detail}");
    admin.delete("/customers/Cy").assert_problem(404, None);
    // A new ticket of the same name is a new customer, with a new key.
    let again = admin.create("Cy", "new", "new");
    let again = crate::harness::read_model_reaches(&agent, &again);
    assert_eq!(again["subject"], "new", "{again}");
    assert_eq!(again["customer"], "Cy", "{again}");
}

fn a_master_key_wraps_the_data_keys_and_every_process_needs_it(ws: Workspace) {
    let master = ws.dir.path().join("master.key");
    std::fs::write(&master, format!("{}\n", "5a".repeat(32))).expect("write the master key");
    let master = master.display().to_string();
    let ticketd = Ticketd::start(&ws, &["--master-key-file", &master]);
    let ticket = ticketd.http.create("Dee", "subject", "message");
    crate::harness::read_model_reaches(&ticketd.http, &ticket);

    // At rest the data key is wrapped: 60 bytes, not the raw 32.
    let url: tickets::StoreUrl = ws.store_url().parse().expect("store url");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stored = runtime.block_on(async {
        let backend = tickets::Backend::open(&url).await.expect("open store");
        backend.keys.by_customer("Dee").await.expect("read the key")
    });
    assert_eq!(stored.expect("Dee's key").material.len(), 60);

    // A process without it cannot open the customer's fields, and says why;
    // with it, it can.
    let without = ws.projector(&["verify"]);
    assert!(!without.status.success(), "{without:?}");
    assert!(
        without.stderr.contains("--master-key-file"),
        "the refusal names the flag: {without:?}"
    );
    let with = ws.projector(&["verify", "--master-key-file", &master]);
    assert!(with.status.success(), "{with:?}");
    let wrong = ws.dir.path().join("wrong.key");
    std::fs::write(&wrong, "ab".repeat(32)).expect("write a wrong key");
    let wrong = ws.projector(&["verify", "--master-key-file", &wrong.display().to_string()]);
    assert!(!wrong.status.success(), "{wrong:?}");
    let bad = ws.dir.path().join("bad.key");
    std::fs::write(&bad, "not a key").expect("write a bad key");
    let bad = ws.projector(&["verify", "--master-key-file", &bad.display().to_string()]);
    assert!(
        !bad.status.success() && bad.stderr.contains("32 bytes"),
        "{bad:?}"
    );
}

crate::on_every_backend!(
    a_master_key_wraps_the_data_keys_and_every_process_needs_it,
    an_erased_customer_leaves_no_words_and_keeps_every_count,
    erasure_over_http_is_for_admins_and_shows_at_once,
);
