//! A rebuild of every projection while writes keep coming: none fails.
//!
//! The store holds enough tickets that emptying a shadow slot or building
//! the list's indexes in one transaction holds SQLite's write lock far
//! longer than `ticketd` is allowed to answer (`--request-timeout`, an
//! operator's bound on any request): a rebuild that took the lock that long
//! fails writes with 408. A rebuild that writes in short transactions and
//! leaves the lock free between them fails none. The views are brought up
//! to date first, so the measured rebuild empties populated shadow slots,
//! as an operator's rebuild of a running service does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use eventstore::{Metadata, NewEvent, Payload};
use serde_json::json;

use crate::harness::{Http, Ticketd, Workspace};

/// Tickets seeded (four events each). At this size one transaction that
/// empties the list's shadow or builds its eight indexes holds the lock for
/// well over [`REQUEST_TIMEOUT`], even in a release build.
const TICKETS: u64 = 100_000;

/// `ticketd --request-timeout`: a write waiting longer answers 408.
const REQUEST_TIMEOUT: &str = "500ms";

/// Writers running beside the rebuild, each one request at a time.
const WRITERS: usize = 4;

#[test]
fn sqlite_writes_never_fail_during_a_rebuild_of_every_projection() {
    let ws = Workspace::sqlite();
    let seeded = Instant::now();
    seed(&ws, TICKETS);
    let prepared = Instant::now();
    let prepare = ws.projector(&["rebuild"]);
    assert!(prepare.status.success(), "{prepare:?}");
    eprintln!(
        "rebuild under load: seeded {TICKETS} tickets in {:.1}s; first rebuild {:.1}s",
        (prepared - seeded).as_secs_f64(),
        prepared.elapsed().as_secs_f64()
    );

    let server = Ticketd::start(&ws, &["--request-timeout", REQUEST_TIMEOUT]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|k| {
            let (http, stop, tally) = (
                Http::new(server.http.base.clone()),
                stop.clone(),
                tally.clone(),
            );
            std::thread::spawn(move || write_until(&http, k, &stop, &tally))
        })
        .collect();
    // Writes are flowing before the rebuild starts.
    crate::harness::eventually("the writers to get going", || {
        (tally.acknowledged.load(Ordering::Relaxed) >= 20).then_some(())
    });

    let before = tally.snapshot();
    let started = Instant::now();
    let rebuild = ws.projector(&["rebuild"]);
    let rebuild_time = started.elapsed();
    let during = tally.snapshot();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("a writer panicked");
    }
    let after = tally.snapshot();
    eprintln!(
        "rebuild under load: rebuild of every projection took {:.1}s; during it {} writes \
         acknowledged, {} failed (slowest {:.0} ms); over the whole run {} acknowledged, {} failed",
        rebuild_time.as_secs_f64(),
        during.0 - before.0,
        during.1 - before.1,
        tally.slowest_ms.load(Ordering::Relaxed),
        after.0,
        after.1,
    );
    eprintln!("{}", rebuild.stdout.trim());
    assert!(rebuild.status.success(), "{rebuild:?}");
    for projection in ["detail", "list", "dashboard"] {
        assert!(
            rebuild
                .stdout
                .lines()
                .any(|line| line.starts_with(&format!("{projection}: rebuilt from the start"))),
            "{projection} was not rebuilt: {rebuild:?}"
        );
    }
    assert!(
        during.0 - before.0 >= 50,
        "too few writes ran during the rebuild to prove anything: {}",
        during.0 - before.0
    );
    assert_eq!(
        after.1,
        0,
        "writes failed while the rebuild ran; ticketd's log:\n{}",
        tail(&server.process.logs())
    );

    ws.wait_caught_up();
    let verify = ws.projector(&["verify"]);
    assert!(verify.status.success(), "{verify:?}");
    assert!(
        verify.stdout.contains("the views match the event history"),
        "{verify:?}"
    );
}

/// Writes acknowledged and failed, and the slowest write.
#[derive(Default)]
struct Tally {
    acknowledged: AtomicU64,
    failed: AtomicU64,
    slowest_ms: AtomicU64,
}

impl Tally {
    fn snapshot(&self) -> (u64, u64) {
        (
            self.acknowledged.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn record(&self, ok: bool, took: Duration) {
        let counter = if ok { &self.acknowledged } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.slowest_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

/// Opens tickets and changes them until told to stop; every answer other
/// than the expected one counts as failed.
fn write_until(http: &Http, writer: usize, stop: &AtomicBool, tally: &Tally) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let created = http.post(
            "/tickets",
            &json!({"customer": format!("writer-{writer}"), "subject": format!("load {n}"), "message": "during a rebuild"}),
        );
        tally.record(created.status == 201, started.elapsed());
        n += 1;
        let Some(location) = created.location.filter(|_| created.status == 201) else {
            continue;
        };
        for body in [
            json!({"status": "triaged"}),
            json!({"agent": format!("agent-{writer}")}),
            json!({"note": "still on it"}),
        ] {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let started = Instant::now();
            let reply = http.patch(&location, &body);
            tally.record(reply.status == 200, started.elapsed());
        }
    }
}

/// Imports `tickets` tickets (opened, triaged, assigned, a note) straight
/// into the SQLite store, as a store with a long history holds them.
fn seed(ws: &Workspace, tickets: u64) {
    let path = ws.dir.path().join("tickets.db");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = store_sqlite::SqliteStore::open(&path).expect("open the store");
        let start = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("a time");
        let mut at = 0;
        let mut tick = || {
            at += 1;
            start + chrono::Duration::milliseconds(at)
        };
        for chunk in 0..tickets.div_ceil(10_000) {
            let mut events = Vec::new();
            for i in chunk * 10_000..((chunk + 1) * 10_000).min(tickets) {
                let id = uuid::Uuid::from_u128(u128::from(i) + 1);
                let script = [
                    (
                        "TicketOpened",
                        json!({
                            "customer": format!("customer-{}", i % 100),
                            "subject": format!("Ticket {i}"),
                            "message": "Seeded for the rebuild under load.",
                        }),
                    ),
                    ("TicketTriaged", json!({})),
                    (
                        "AgentAssigned",
                        json!({"agent": format!("agent-{}", i % 10)}),
                    ),
                    ("NoteAdded", json!({"text": format!("Note on {i}")})),
                ];
                for (event_type, data) in &script {
                    events.push((
                        id,
                        NewEvent {
                            event_id: uuid::Uuid::now_v7(),
                            event_type: (*event_type).to_owned(),
                            schema_version: 1,
                            occurred_at: tick(),
                            data: Payload::from_value(data),
                            metadata: Metadata::default(),
                        },
                    ));
                }
            }
            store.import(events).await.expect("import");
        }
    });
}

/// The end of a log, enough to see why.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
