//! The projector's operations surface, black-box: rebuild (under load, killed
//! halfway), verify, status lag, dead letters, and two daemons on one store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// Every projection's entry of a `status --json` document, by name.
fn projections(status: &Value) -> HashMap<String, Value> {
    status["projections"]
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

fn all_caught_up(ws: &Workspace) -> bool {
    let status = ws.status();
    projections(&status).values().all(|p| p["lag_events"] == 0)
}

/// Waits for every projection to reach the head; on a timeout, shows the
/// status and the daemon's log.
#[track_caller]
fn wait_caught_up(ws: &Workspace, daemon: &Running) {
    let deadline = Instant::now() + PATIENCE;
    while !all_caught_up(ws) {
        assert!(
            Instant::now() < deadline,
            "the daemon did not catch up:\n{}\n{}",
            ws.projector(&["status"]).stdout,
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `ticket-projector rebuild` with `args`. A rebuild releases its shadow
/// leases as it finishes, so on SQLite and MongoDB a rebuild right after
/// another starts at once, and a refusal fails the test. On jongodb a running
/// daemon's commit can undo that release (its transactions detect no write
/// conflicts and can undo other committed writes to the same collection; see
/// docs/mongodb.md), leaving the finished rebuild's lease in place until its
/// TTL runs out: there a refusal naming another rebuild is run again until
/// that lease has expired.
#[track_caller]
fn run_rebuild(ws: &Workspace, args: &[&str]) -> Ran {
    let args: Vec<&str> = ["rebuild"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let run = ws.projector(&args);
        let undone_release = !run.status.success()
            && !ws.cross_process_transactions()
            && run.stderr.contains("another rebuild holds");
        if !undone_release || Instant::now() > deadline {
            return run;
        }
        eprintln!("smoke server: a released shadow lease came back; running the rebuild again");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What the query side serves: every list page, the dashboard, and the detail
/// of each given ticket.
fn snapshot(http: &Http, ids: &[&str]) -> (Vec<Value>, Value, Vec<Value>) {
    let rows = all_list_rows(http, "limit=37");
    let dashboard = http.get("/dashboard").body;
    let details = ids
        .iter()
        .map(|id| http.get(&format!("/tickets/{id}")).body)
        .collect();
    (rows, dashboard, details)
}

fn ids(truth: &[Value]) -> Vec<&str> {
    truth
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect()
}

#[track_caller]
fn assert_verify_clean(ws: &Workspace) {
    let verify = ws.projector(&["verify"]);
    assert!(
        verify.status.success(),
        "verify found differences: {verify:?}"
    );
    assert!(verify.stdout.contains("the views match"), "{verify:?}");
}

fn a_rebuild_under_write_load_verifies_and_a_second_one_gives_identical_views(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &["--no-projector"]);
    let daemon = ws.spawn_projector(&["run"], "projector");
    let mut truth = write_load(&ticketd.http, 100, ws.load(40));
    // As an operator runs it: the daemon keeps running through the rebuild
    // and follows its swap, while two writers create and close tickets.
    let writers: Vec<_> = (0..2)
        .map(|seed| {
            let http = Http::new(ticketd.http.base.clone());
            let tickets = ws.load(30);
            std::thread::spawn(move || write_load(&http, seed + 1, tickets))
        })
        .collect();
    let join = |writers: Vec<std::thread::JoinHandle<Vec<Value>>>| -> Vec<Value> {
        writers
            .into_iter()
            .flat_map(|writer| writer.join().expect("writer"))
            .collect()
    };
    let rebuild = if ws.cross_process_transactions() {
        let rebuild = run_rebuild(&ws, &["--batch-size", "20"]);
        truth.extend(join(writers));
        rebuild
    } else {
        // jongodb's transactions do not isolate processes from each other:
        // the daemon's commits under load undo the rebuild's writes to the
        // same collections (docs/mongodb.md). There the rebuild runs beside
        // a daemon that has caught up with the writes.
        eprintln!("smoke server: the rebuild runs after the writes, beside the daemon");
        truth.extend(join(writers));
        wait_caught_up(&ws, &daemon);
        run_rebuild(&ws, &["--batch-size", "20"])
    };
    assert!(rebuild.status.success(), "{rebuild:?}");
    for projection in ["detail", "list", "dashboard"] {
        assert!(
            rebuild.stdout.contains(&format!("{projection}: rebuilt")),
            "{rebuild:?}"
        );
    }

    let http = &ticketd.http;
    for ticket in &truth {
        assert_eq!(&read_model_reaches(http, ticket), ticket);
    }
    wait_caught_up(&ws, &daemon);
    assert_verify_clean(&ws);
    assert_eq!(http.get("/dashboard").body, dashboard_of(&truth));
    let first = snapshot(http, &ids(&truth));

    let again = run_rebuild(&ws, &[]);
    assert!(again.status.success(), "{again:?}");
    wait_caught_up(&ws, &daemon);
    assert_eq!(
        snapshot(http, &ids(&truth)),
        first,
        "a second rebuild changes nothing"
    );
    assert_verify_clean(&ws);
    drop(daemon);
}

fn a_rebuild_killed_halfway_leaves_the_live_views_serving_and_the_next_one_resumes(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;
    let truth = write_load(http, 5, ws.load(100));
    for ticket in &truth {
        read_model_reaches(http, ticket);
    }
    ws.wait_caught_up();

    // Paced so that each projection's replay takes seconds: the kill lands
    // mid-replay however loaded the machine is. It is killed once a shadow
    // is partway built: a checkpoint past its start and short of the head.
    let events = ws.event_count();
    let rate = (events / 4).max(1).to_string();
    let args = [
        "rebuild",
        "--batch-size",
        "5",
        "--lease-ttl",
        "2s",
        "--max-rate",
        &rate,
    ];
    let mut rebuild = ws.spawn_projector(&args, "rebuild");
    let head = events;
    // On jongodb under the whole suite's load a rebuild crawls (2 events/s
    // seen) and loses its shadow lease to the live projector's commits
    // (its transactions can undo another process's committed writes;
    // docs/mongodb.md), so it gets longer than the usual patience.
    let patience = if ws.cross_process_transactions() {
        PATIENCE
    } else {
        PATIENCE * 3
    };
    let deadline = Instant::now() + patience;
    let killed_in = loop {
        // A rebuild that ended before it was seen partway fails the test
        // with its logs, except on jongodb, where losing its shadow three
        // times ends it; there it is started again.
        if let Some(exit) = rebuild.child.try_wait().expect("wait") {
            let logs = rebuild.logs();
            assert!(
                !ws.cross_process_transactions(),
                "the rebuild ended before it was seen partway ({exit}): {logs}"
            );
            eprintln!("smoke server: the rebuild ended early ({exit}); starting it again: {logs}");
            rebuild = ws.spawn_projector(&args, "rebuild");
            continue;
        }
        let status = ws.status();
        let partway = projections(&status).into_iter().find_map(|(name, p)| {
            let shadow = &p["shadow"];
            let checkpoint = shadow["checkpoint"].as_u64().unwrap_or(0);
            (shadow["building"] == true && checkpoint > 0 && checkpoint < head).then_some(name)
        });
        if let Some(name) = partway {
            break name;
        }
        assert!(
            Instant::now() < deadline,
            "no shadow seen partway built (head {head}); last status: {status:#}\nrebuild logs: {}",
            rebuild.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    rebuild.kill();
    assert!(
        !rebuild.logs().contains("swapped in at checkpoint"),
        "{killed_in} was meant to be killed before its swap: {}",
        rebuild.logs()
    );

    // The live views were never touched.
    assert_eq!(http.get("/dashboard").body, dashboard_of(&truth));
    assert_eq!(
        all_list_rows(http, "limit=50").len(),
        truth.len(),
        "the list still serves every ticket"
    );
    assert_verify_clean(&ws);

    // The killed rebuild's lease frees itself within its TTL; then the next
    // rebuild resumes the shadow it left.
    let deadline = Instant::now() + PATIENCE;
    let next = loop {
        let run = ws.projector(&["rebuild", "--projection", &killed_in]);
        if run.status.success() || Instant::now() > deadline {
            break run;
        }
        assert!(run.stderr.contains("another rebuild holds"), "{run:?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(next.status.success(), "{next:?}");
    assert!(
        next.stdout
            .contains(&format!("{killed_in}: rebuilt resumed at")),
        "the rebuild resumes the shadow: {next:?}"
    );
    assert_eq!(http.get("/dashboard").body, dashboard_of(&truth));
    assert_verify_clean(&ws);
    let all = run_rebuild(&ws, &[]);
    assert!(all.status.success(), "{all:?}");
    assert_verify_clean(&ws);
}

fn status_shows_lag_growing_while_the_projector_is_stopped_and_zero_after_it_restarts(
    ws: Workspace,
) {
    let ticketd = Ticketd::start(&ws, &["--no-projector"]);
    let http = &ticketd.http;
    let mut daemon = ws.spawn_projector(&["run"], "projector");
    let first = http.create("c", "s", "m");
    read_model_reaches(http, &first);
    eventually("no lag", || all_caught_up(&ws).then_some(()));
    let status = ws.status();
    for (name, p) in projections(&status) {
        assert_eq!(p["lag_seconds"], 0.0, "{name}: {p}");
        assert!(p["state"] == "idle" || p["state"] == "running", "{p}");
    }
    assert!(daemon.terminate().success());

    for n in 0..3 {
        http.create("c", &format!("while stopped {n}"), "m");
    }
    let stopped = projections(&ws.status());
    for (name, p) in &stopped {
        assert_eq!(p["state"], "stopped", "{name}: the lease was released: {p}");
        assert_eq!(p["lag_events"], 3, "{name}: {p}");
        assert!(p["lag_seconds"].as_f64().expect("seconds") >= 0.0);
    }
    std::thread::sleep(Duration::from_millis(1100));
    http.create("c", "later", "m");
    let later = projections(&ws.status());
    for (name, p) in &later {
        assert_eq!(p["lag_events"], 4, "{name}: {p}");
        let before = stopped[name]["lag_seconds"].as_f64().expect("seconds");
        let now = p["lag_seconds"].as_f64().expect("seconds");
        assert!(now >= before + 1.0, "{name}: lag {before}s then {now}s");
    }

    let _daemon = ws.spawn_projector(&["run"], "projector");
    eventually("the lag to return to zero", || {
        let status = ws.status();
        projections(&status)
            .values()
            .all(|p| p["lag_events"] == 0 && p["lag_seconds"] == 0.0)
            .then_some(())
    });
}

/// The dead letters at `position`, by projection.
fn letters_at(ws: &Workspace, position: u64) -> HashMap<String, Value> {
    ws.dead_letters()
        .into_iter()
        .filter(|letter| letter["position"] == position)
        .map(|letter| {
            (
                letter["projection"].as_str().expect("name").to_owned(),
                letter,
            )
        })
        .collect()
}

fn a_poison_event_is_dead_lettered_stops_the_projection_and_skip_and_retry_work(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &["--no-projector"]);
    let http = &ticketd.http;
    let _daemon = ws.spawn_projector(&["run"], "projector");
    let ticket = http.create("c", "poisoned", "m");
    let id = ticket["id"].as_str().expect("id").to_owned();
    read_model_reaches(http, &ticket);

    let poison = ws.insert_poison(&id, 2, "TicketMerged");
    let letters = eventually("dead letters for the poison", || {
        let letters = letters_at(&ws, poison);
        (letters.len() == 3).then_some(letters)
    });
    for (name, letter) in &letters {
        assert_eq!(letter["state"], "pending", "{name}: {letter}");
        assert_eq!(letter["event_type"], "TicketMerged");
        assert_eq!(letter["ticket_id"], id.as_str());
        assert_eq!(letter["version"], 2);
        let reason = letter["reason"].as_str().expect("reason");
        assert!(
            reason.contains("unknown event type `TicketMerged`"),
            "{reason}"
        );
        assert_eq!(letter["event"]["data"]["merged_into"], "elsewhere");
    }
    let status = eventually("the projections to report the stop", || {
        let status = projections(&ws.status());
        status
            .values()
            .all(|p| p["state"] == "stopped on error")
            .then_some(status)
    });
    for (name, p) in &status {
        let error = p["last_error"].as_str().expect("last error");
        assert!(error.contains("TicketMerged"), "{name}: {error}");
        assert_eq!(p["dead_letters_pending"], 1, "{name}: {p}");
    }
    let table = ws.projector(&["status"]);
    assert!(table.stdout.contains("stopped on error"), "{table:?}");

    // Stopped: later events wait behind the poison.
    let later = http.create("c", "after the poison", "m");
    std::thread::sleep(Duration::from_millis(500));
    let path = format!("/tickets/{}", later["id"].as_str().expect("id"));
    assert_eq!(
        http.get(&path).status,
        404,
        "nothing passes a stopped projection"
    );

    for projection in ["detail", "list", "dashboard"] {
        let skip = ws.projector(&["dead-letters", "skip", projection, &poison.to_string()]);
        assert!(skip.status.success(), "{skip:?}");
    }
    assert_eq!(read_model_reaches(http, &later), later);
    let detail = http.get(&format!("/tickets/{id}")).body;
    assert_eq!(detail["version"], 2, "a skipped event moves the version on");
    assert_eq!(detail["subject"], "poisoned", "and changes nothing else");
    eventually("the projections to run again", || {
        projections(&ws.status())
            .values()
            .all(|p| p["state"] != "stopped on error" && p["lag_events"] == 0)
            .then_some(())
    });
    for (_, letter) in letters_at(&ws, poison) {
        assert_eq!(letter["state"], "skipped", "{letter}");
    }

    // A second poison: retry applies it again (and it fails again), skip passes it.
    let second = ws.insert_poison(&id, 3, "TicketSplit");
    let pending = eventually("dead letters for the second poison", || {
        let letters = letters_at(&ws, second);
        (letters.len() == 3).then_some(letters)
    });
    let retry = ws.projector(&["dead-letters", "retry", "list", &second.to_string()]);
    assert!(retry.status.success(), "{retry:?}");
    let retried = eventually(
        "the retry to fail and the letter to be pending again",
        || {
            let letter = letters_at(&ws, second).remove("list")?;
            (letter["state"] == "pending"
                && letter["recorded_at"] != pending["list"]["recorded_at"])
                .then_some(letter)
        },
    );
    assert!(
        retried["reason"]
            .as_str()
            .expect("reason")
            .contains("TicketSplit")
    );
    let missing = ws.projector(&["dead-letters", "retry", "list", "999999"]);
    assert!(!missing.status.success(), "{missing:?}");

    for projection in ["detail", "list", "dashboard"] {
        let skip = ws.projector(&["dead-letters", "skip", projection, &second.to_string()]);
        assert!(skip.status.success(), "{skip:?}");
    }
    let last = http.create("c", "after both", "m");
    assert_eq!(read_model_reaches(http, &last), last);
    assert_eq!(http.get(&format!("/tickets/{id}")).body["version"], 3);
    eventually("no lag", || all_caught_up(&ws).then_some(()));
    assert_verify_clean(&ws);
    let list = ws.projector(&["dead-letters", "list", "--projection", "list"]);
    assert!(list.stdout.contains("TicketSplit"), "{list:?}");
    assert!(!list.stdout.contains("dashboard"), "{list:?}");
}

fn pid_of(holder: &Value) -> Option<u32> {
    holder.as_str()?.split(':').nth(1)?.parse().ok()
}

fn holders(ws: &Workspace) -> Vec<Option<u32>> {
    let status = ws.status();
    projections(&status)
        .values()
        .map(|p| {
            if p["state"] == "stopped" {
                None
            } else {
                pid_of(&p["holder"])
            }
        })
        .collect()
}

fn of_two_daemons_one_applies_and_the_other_takes_over_within_the_ttl(ws: Workspace) {
    // Long enough that a heartbeat (every TTL/3) delayed by a loaded CI machine
    // does not lose the lease; short enough to wait for the takeover. jongodb
    // takes hundreds of milliseconds per transaction once collections grow,
    // and a heartbeat waits for the commit in flight, so it gets longer.
    let ttl_seconds = if ws.is_smoke_server() { 12 } else { 4 };
    let ttl = format!("{ttl_seconds}s");
    let ttl = ttl.as_str();
    let ticketd = Ticketd::start(&ws, &["--no-projector"]);
    let http = &ticketd.http;
    let mut first = ws.spawn_projector(&["run", "--lease-ttl", ttl], "first");
    let first_pid = first.child.id();
    eventually("the first daemon to hold every projection", || {
        holders(&ws)
            .iter()
            .all(|pid| *pid == Some(first_pid))
            .then_some(())
    });
    let second = ws.spawn_projector(&["run", "--lease-ttl", ttl], "second");
    let second_pid = second.child.id();
    eventually("the second daemon to wait as a standby", || {
        second.logs().contains("standby:").then_some(())
    });

    let mut truth = write_load(http, 11, ws.load(30));
    for ticket in &truth {
        read_model_reaches(http, ticket);
    }
    let before_the_kill = holders(&ws);
    if ws.is_smoke_server() {
        // jongodb's concurrent transactions can undo each other's writes to
        // one collection (docs/mongodb.md): a projection's checkpoint or
        // lease write can vanish, its runner then gives the lease up, and the
        // standby may take it before the kill. What follows (the takeover,
        // nothing lost or counted twice) is checked all the same.
        eprintln!("smoke server: holders before the kill: {before_the_kill:?}");
    } else {
        assert!(
            before_the_kill.iter().all(|pid| *pid == Some(first_pid)),
            "the first daemon applied everything: {before_the_kill:?}"
        );
        assert!(
            !second.logs().contains("lease acquired"),
            "the standby applied nothing: {}",
            second.logs()
        );
    }

    first.kill();
    let killed = Instant::now();
    eventually("the standby to take every projection over", || {
        holders(&ws)
            .iter()
            .all(|pid| *pid == Some(second_pid))
            .then_some(())
    });
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(ttl_seconds) + Duration::from_secs(5),
        "took over after {took:?}, TTL {ttl}"
    );

    truth.extend(write_load(http, 12, ws.load(10)));
    for ticket in &truth {
        read_model_reaches(http, ticket);
    }
    eventually("no lag", || all_caught_up(&ws).then_some(()));
    assert_eq!(http.get("/dashboard").body, dashboard_of(&truth));
    assert_verify_clean(&ws);
}

fn verify_names_a_tampered_row_and_fails(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;
    let tickets: Vec<Value> = (0..3)
        .map(|n| http.create("c", &format!("s{n}"), "m"))
        .collect();
    for ticket in &tickets {
        read_model_reaches(http, ticket);
    }
    eventually("no lag", || all_caught_up(&ws).then_some(()));
    assert_verify_clean(&ws);

    let id = tickets[1]["id"].as_str().expect("id");
    ws.tamper_list_row(id, "tampered");
    let verify = ws.projector(&["verify"]);
    assert!(!verify.status.success(), "{verify:?}");
    let line = verify
        .stdout
        .lines()
        .find(|line| line.contains(id))
        .unwrap_or_else(|| panic!("the tampered row is named: {verify:?}"));
    assert!(line.contains("list"), "{line}");
    assert!(
        line.contains("subject stored \"tampered\", expected \"s1\""),
        "{line}"
    );
    assert!(verify.stdout.contains("list (live slot"), "{verify:?}");
    assert!(verify.stderr.contains("1 difference"), "{verify:?}");
    let detail = ws.projector(&["verify", "--projection", "detail"]);
    assert!(
        detail.status.success(),
        "only the list was touched: {detail:?}"
    );
}

fn readyz_reports_the_projections_and_their_lag(ws: Workspace) {
    let mut ticketd = Ticketd::start(&ws, &["--ready-max-lag", "1s"]);
    let http = &ticketd.http;
    let ticket = http.create("c", "s", "m");
    read_model_reaches(http, &ticket);
    let ready = eventually("ready and caught up", || {
        let reply = http.get("/readyz");
        let caught_up = reply.body["projections"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["lag_events"] == 0));
        (reply.status == 200 && caught_up).then_some(reply.body)
    });
    assert_eq!(ready["ready"], true);
    assert_eq!(
        ready["projections"].as_array().expect("projections").len(),
        3
    );
    assert!(ticketd.process.terminate().success());

    // Without a projector, an unapplied event ages past the bound.
    let unprojected = Ticketd::start(&ws, &["--no-projector", "--ready-max-lag", "1s"]);
    unprojected.http.create("c", "unprojected", "m");
    let unready = eventually("unready", || {
        let reply = unprojected.http.get("/readyz");
        (reply.status == 503).then_some(reply.body)
    });
    assert_eq!(unready["ready"], false);
    for p in unready["projections"].as_array().expect("projections") {
        assert_eq!(p["lag_events"], 1, "{p}\nwhole answer: {unready}");
        assert!(p["lag_seconds"].as_f64().expect("lag") > 1.0, "{p}");
    }
}

fn a_daemon_rebuilds_a_projection_whose_stored_version_is_older_at_start_up(ws: Workspace) {
    let mut ticketd = Ticketd::start(&ws, &[]);
    let tickets: Vec<Value> = (0..5)
        .map(|n| ticketd.http.create("c", &format!("s{n}"), "m"))
        .collect();
    for ticket in &tickets {
        read_model_reaches(&ticketd.http, ticket);
    }
    eventually("no lag", || all_caught_up(&ws).then_some(()));
    assert!(ticketd.process.terminate().success());

    // As an older build would have left it: the list built by version 0 of its
    // fold, and (so the rebuild shows) one row unlike what the fold gives.
    let id = tickets[2]["id"].as_str().expect("id");
    ws.age_live_slot("list", 0);
    ws.tamper_list_row(id, "built by the old code");
    let aged = projections(&ws.status())["list"].clone();
    assert_eq!(aged["version"]["stored"], 0, "{aged}");

    let ticketd = Ticketd::start(&ws, &[]);
    let rebuilt = eventually("the daemon to rebuild the list at start-up", || {
        let list = projections(&ws.status())["list"].clone();
        (list["version"]["stored"] == list["version"]["code"]).then_some(list)
    });
    assert_eq!(rebuilt["version"]["code"], 1, "{rebuilt}");
    let row = all_list_rows(&ticketd.http, "")
        .into_iter()
        .find(|row| row["id"] == id)
        .expect("the row");
    assert_eq!(
        row["subject"], "s2",
        "the new slot is the fold of the history"
    );
    let later = ticketd.http.create("c", "after the rebuild", "m");
    assert_eq!(read_model_reaches(&ticketd.http, &later), later);
    eventually("no lag", || all_caught_up(&ws).then_some(()));
    assert_verify_clean(&ws);
}

crate::on_every_backend!(
    a_daemon_rebuilds_a_projection_whose_stored_version_is_older_at_start_up,
    a_rebuild_under_write_load_verifies_and_a_second_one_gives_identical_views,
    a_rebuild_killed_halfway_leaves_the_live_views_serving_and_the_next_one_resumes,
    status_shows_lag_growing_while_the_projector_is_stopped_and_zero_after_it_restarts,
    a_poison_event_is_dead_lettered_stops_the_projection_and_skip_and_retry_work,
    of_two_daemons_one_applies_and_the_other_takes_over_within_the_ttl,
    verify_names_a_tampered_row_and_fails,
    readyz_reports_the_projections_and_their_lag,
);
