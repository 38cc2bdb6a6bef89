//! Processes: the default one-command start, a separate projector daemon,
//! restarts, graceful shutdown, and SIGKILL of the projector under write load.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

#[test]
fn with_no_flags_it_creates_the_default_store_under_the_working_directory() {
    let ws = Workspace::sqlite();
    let ticketd = Ticketd::start_in(
        ws.dir.path(),
        &["--listen", "127.0.0.1:0"],
        &ws.log("ticketd"),
    );
    let ticket = ticketd.http.create("c", "s", "m");
    read_model_reaches(&ticketd.http, &ticket);
    assert!(ws.dir.path().join("data/tickets.db").is_file());
}

#[test]
fn a_bad_store_url_fails_start_up_with_a_clear_message() {
    let output = std::process::Command::new(TICKETD)
        .args(["--listen", "127.0.0.1:0", "--store", "postgres://nope"])
        .output()
        .expect("run ticketd");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sqlite://PATH"), "{stderr}");
}

fn events_and_views_survive_a_graceful_restart(ws: Workspace) {
    let mut first = Ticketd::start(&ws, &[]);
    let ticket = first.http.create("c", "s", "m");
    let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
    let noted = first.http.patch(&path, &json!({"note": "kept"})).body;
    read_model_reaches(&first.http, &noted);
    let status = first.process.terminate();
    assert!(status.success(), "SIGTERM exits cleanly: {status:?}");

    let second = Ticketd::start(&ws, &[]);
    assert_eq!(second.http.get(&path).body, noted);
    let closed = second.http.patch(&path, &json!({"status": "closed"})).body;
    assert_eq!(closed["version"], 3, "the write side continues the stream");
    read_model_reaches(&second.http, &closed);
}

/// SIGTERM lets a request that is in flight finish with its answer before
/// the process exits 0. The request is a read waiting for a position no
/// projector will reach (there is none): it answers stale after the wait bound.
fn sigterm_drains_in_flight_requests_then_exits_cleanly(ws: Workspace) {
    let mut ticketd = Ticketd::start(&ws, &["--no-projector", "--read-wait-max", "1500ms"]);
    let base = ticketd.http.base.clone();
    let waiting = std::thread::spawn(move || {
        crate::consistency::call(&base, "GET", "/dashboard?min_position=1000000", &[], None)
    });
    // Long enough for the request to be read and to be waiting.
    std::thread::sleep(Duration::from_millis(400));
    let asked_to_stop = std::time::Instant::now();
    let status = ticketd.process.terminate();
    assert!(status.success(), "SIGTERM exits cleanly: {status:?}");
    let reply = waiting.join().expect("the waiting client");
    assert_eq!(
        reply.status, 200,
        "the in-flight request got its answer: {:?}",
        reply.body
    );
    assert_eq!(reply.header("x-read-stale"), Some("behind=1000000"));
    assert!(
        asked_to_stop.elapsed() >= Duration::from_millis(900),
        "the process waited for the request (the wait bound) before exiting"
    );
    let logs = ticketd.process.logs();
    assert!(logs.contains("ticketd stopped"), "{logs}");
}

/// A request that outlasts the shutdown grace period does not keep the
/// process up: its connection is closed and the process exits 0.
fn sigterm_closes_requests_that_outlast_the_grace_period(ws: Workspace) {
    let mut ticketd = Ticketd::start(
        &ws,
        &[
            "--no-projector",
            "--read-wait-max",
            "20s",
            "--shutdown-grace",
            "300ms",
        ],
    );
    let base = ticketd.http.base.clone();
    let waiting = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(PATIENCE))
            .build()
            .into();
        agent
            .get(format!("{base}/dashboard?min_position=1000000"))
            .call()
            .map(|response| response.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(400));
    let asked_to_stop = std::time::Instant::now();
    let status = ticketd.process.terminate();
    assert!(status.success(), "exits cleanly: {status:?}");
    assert!(
        asked_to_stop.elapsed() < Duration::from_secs(5),
        "the grace period, not the 20 s wait, bounded the shutdown: {:?}",
        asked_to_stop.elapsed()
    );
    let outcome = waiting.join().expect("the waiting client");
    assert!(outcome.is_err(), "the connection was closed: {outcome:?}");
    assert!(ticketd.process.logs().contains("shutdown grace period"));
}

fn a_separate_projector_process_keeps_the_views_of_a_server_without_one(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &["--no-projector"]);
    let http = &ticketd.http;
    let ticket = http.create("c", "s", "m");
    std::thread::sleep(Duration::from_millis(300));
    http.get(&format!("/tickets/{}", ticket["id"].as_str().expect("id")))
        .assert_problem(404, None);
    assert_eq!(
        http.get("/dashboard").body["total"],
        0,
        "nothing projects yet"
    );

    let _projector = start_projector(&ws);
    assert_eq!(read_model_reaches(http, &ticket), ticket);
    let triaged = http
        .patch(
            &format!("/tickets/{}", ticket["id"].as_str().expect("id")),
            &json!({"status": "triaged"}),
        )
        .body;
    assert_eq!(read_model_reaches(http, &triaged), triaged);
}

fn sigkill_of_the_projector_under_write_load_loses_and_double_counts_nothing(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &["--no-projector"]);
    let base = ticketd.http.base.clone();

    let writing = Arc::new(AtomicBool::new(true));
    let killer = {
        let writing = writing.clone();
        let ws_store = ws.store_url();
        let log = ws.log("projector");
        std::thread::spawn(move || {
            let mut rng = Rng(7);
            let mut kills = 0;
            // Keep killing while the load runs, and at least 8 times in all.
            while writing.load(Ordering::SeqCst) || kills < 8 {
                let mut projector = spawn_projector(&ws_store, &log);
                // A killed projector's lease stays taken until its TTL runs
                // out (500 ms here) and a standby looks every second: give the
                // new one time to take over, then kill it at a random point.
                std::thread::sleep(Duration::from_millis(700 + rng.next(800)));
                projector.kill().expect("SIGKILL the projector");
                projector.wait().expect("reap the projector");
                kills += 1;
            }
            kills
        })
    };

    let tickets_per_writer = ws.load(50);
    let writers: Vec<_> = (0..4)
        .map(|seed| {
            let http = Http::new(base.clone());
            std::thread::spawn(move || write_load(&http, seed + 1, tickets_per_writer))
        })
        .collect();
    let truth: Vec<Value> = writers
        .into_iter()
        .flat_map(|writer| writer.join().expect("writer"))
        .collect();
    writing.store(false, Ordering::SeqCst);
    let kills = killer.join().expect("killer");
    assert!(kills >= 8, "the projector was killed only {kills} times");

    let _projector = start_projector(&ws);
    let http = &ticketd.http;
    for ticket in &truth {
        assert_eq!(&read_model_reaches(http, ticket), ticket);
    }
    ws.wait_caught_up();
    assert_eq!(http.get("/dashboard").body, dashboard_of(&truth));

    let rows = all_list_rows(http, "limit=37");
    assert_eq!(rows.len(), truth.len(), "one row per ticket");
    let by_id: HashMap<&str, &Value> = truth
        .iter()
        .map(|t| (t["id"].as_str().expect("id"), t))
        .collect();
    for row in &rows {
        let ticket = by_id[row["id"].as_str().expect("id")];
        for key in [
            "status",
            "agent",
            "version",
            "customer",
            "subject",
            "updated_at",
        ] {
            assert_eq!(row[key], ticket[key], "{key} of {row}");
        }
        let notes = ticket["notes"].as_array().expect("notes");
        assert_eq!(row["has_note"], !notes.is_empty());
        let last_note = notes.last().map_or(Value::Null, |n| n["text"].clone());
        assert_eq!(row["last_note_preview"], last_note);
    }
}

fn spawn_projector(store: &str, log: &std::path::Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    std::process::Command::new(PROJECTOR)
        .args([
            "run",
            "--store",
            store,
            "--batch-size",
            "7",
            "--lease-ttl",
            "500ms",
        ])
        .env_remove("TICKETS_STORE")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn projector")
}

fn migrate_applies_the_schema_once_without_serving(ws: Workspace) {
    let migrate = |binary: &str, args: &[&str]| {
        let output = std::process::Command::new(binary)
            .args(args)
            .args(["--store", &ws.store_url()])
            .env_remove("TICKETS_STORE")
            .output()
            .expect("run migrate");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let first = migrate(TICKETD, &["migrate"]);
    assert!(first.contains("applied migrations 1, 2, 3"), "{first}");
    let again = migrate(PROJECTOR, &["migrate"]);
    assert!(again.contains("schema is current"), "{again}");
    assert_eq!(ws.event_count(), 0);
}

crate::on_every_backend!(
    migrate_applies_the_schema_once_without_serving,
    events_and_views_survive_a_graceful_restart,
    sigterm_drains_in_flight_requests_then_exits_cleanly,
    sigterm_closes_requests_that_outlast_the_grace_period,
    a_separate_projector_process_keeps_the_views_of_a_server_without_one,
    sigkill_of_the_projector_under_write_load_loses_and_double_counts_nothing,
);
