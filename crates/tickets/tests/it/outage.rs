//! A store that stops answering, and comes back.
//!
//! - MongoDB silent (jongodb or `MONGODB_URI` through
//!   `store_mongo::fault_proxy`): a burst of writes answers 503 with
//!   `Retry-After` well inside the request timeout (never a hang to a 408),
//!   and writes succeed again once the server answers, without a restart.
//! - A ten-second outage under steady load, on both stores (MongoDB frozen
//!   by the proxy; SQLite's write lock held by another process, the closest
//!   a local file comes to an unreachable store): every request is answered
//!   well inside the request timeout (none hangs to a 408), most at once: a
//!   few wait out the store's own bounds, and once they have waited a second
//!   the rest are refused at once (`tickets::silence`); no write succeeds
//!   while the store is away, SQLite's reads keep serving, and `ticketd` and
//!   a separate `ticket-projector` daemon both carry on afterwards without a
//!   restart.

use std::time::{Duration, Instant};

use serde_json::json;
use store_mongo::fault_proxy::{self, FaultProxy};

use crate::harness::{PATIENCE, Ticketd};

/// The API's request timeout (ticketd's default): past it, a 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How soon a write must answer while the server is silent: the store's
/// bounds (`store_mongo::OPERATION_DEADLINE`) plus slack.
const PROMPT: Duration = Duration::from_secs(12);

struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: String,
    took: Duration,
}

/// POSTs a ticket with a client that waits longer than the request timeout,
/// so that a hung request would show as a 408 or a late answer.
fn create(base: &str, n: usize) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT + Duration::from_secs(15)))
        .max_idle_connections(0)
        .build()
        .into();
    let body = json!({"customer": format!("c{n}"), "subject": "s", "message": "m"});
    let started = Instant::now();
    let mut response = agent
        .post(format!("{base}/tickets"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .expect("an answer");
    let took = started.elapsed();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let (retry_after, content_type) = (header("retry-after"), header("content-type"));
    let _ = response.body_mut().read_to_string();
    Answer {
        status: response.status().as_u16(),
        retry_after,
        content_type: content_type.unwrap_or_default(),
        took,
    }
}

#[test]
fn writes_to_a_silent_mongodb_answer_503_promptly_and_resume_after_it_answers() {
    let Some(database) = store_mongo::testing::database("mongo_outage") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the proxy");
    let upstream = fault_proxy::first_host(database.uri())
        .unwrap_or_else(|| panic!("the proxy needs a mongodb:// URI: {}", database.uri()));
    let proxy = runtime
        .block_on(FaultProxy::start(upstream))
        .expect("start the proxy");
    let store = proxy.uri(database.uri()).expect("a URI through the proxy");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("ticketd.log");
    let ticketd = Ticketd::start_in(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--store", &store],
        &log,
    );
    let base = ticketd.http.base.clone();
    assert_eq!(create(&base, 0).status, 201, "a write before the outage");

    proxy.faults().freeze();
    let writers: Vec<_> = (1..=8)
        .map(|n| {
            let base = base.clone();
            std::thread::spawn(move || create(&base, n))
        })
        .collect();
    let answers: Vec<Answer> = writers
        .into_iter()
        .map(|writer| writer.join().expect("a writer"))
        .collect();
    let mut times: Vec<Duration> = answers.iter().map(|a| a.took).collect();
    times.sort();
    eprintln!(
        "server silent: {} POSTs answered {:?} in {times:?}",
        answers.len(),
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for answer in &answers {
        assert_eq!(answer.status, 503, "took {:?}", answer.took);
        assert!(answer.retry_after.is_some(), "a 503 without Retry-After");
        assert_eq!(answer.content_type, "application/problem+json");
        assert!(
            answer.took < PROMPT,
            "a 503 after {:?}, not well inside the {REQUEST_TIMEOUT:?} request timeout",
            answer.took
        );
    }

    proxy.faults().thaw();
    let thawed = Instant::now();
    loop {
        let answer = create(&base, 100);
        if answer.status == 201 {
            break;
        }
        assert_eq!(answer.status, 503, "after the thaw");
        assert!(
            thawed.elapsed() < PATIENCE,
            "writes did not resume within {PATIENCE:?} of the server answering again; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("writes resumed {:?} after the thaw", thawed.elapsed());
    drop(ticketd);
    drop(proxy);
}

/// How soon most requests sent during an outage are answered: ticketd's
/// `--store-silence` (1 s) and slack.
const QUICK: Duration = Duration::from_secs(2);

/// How long each outage lasts (the ten seconds).
const OUTAGE: Duration = Duration::from_secs(10);

/// One request of the steady load.
#[derive(Debug, Clone)]
struct Sample {
    kind: &'static str,
    started: Instant,
    took: Duration,
    /// 0: no answer at all (the connection failed or the client gave up).
    status: u16,
}

/// Sends one request, a create or a read (list, detail or dashboard, by
/// `n`), and times it; with a client that waits past the request timeout, so
/// that a hung request would show.
fn one_request(base: &str, write: bool, n: u64, ticket: &str) -> Sample {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT + Duration::from_secs(15)))
        .max_idle_connections(0)
        .build()
        .into();
    let started = Instant::now();
    let (kind, result) = if write {
        let body = json!({"customer": "steady", "subject": format!("s{n}"), "message": "m"});
        let result = agent
            .post(format!("{base}/tickets"))
            .header("content-type", "application/json")
            .send(body.to_string());
        ("write", result)
    } else {
        let (kind, path) = match n % 3 {
            0 => ("detail", format!("/tickets/{ticket}")),
            1 => ("dashboard", "/dashboard".to_owned()),
            _ => ("list", "/tickets?limit=5".to_owned()),
        };
        (kind, agent.get(format!("{base}{path}")).call())
    };
    let status = match result {
        Ok(mut response) => {
            let _ = response.body_mut().read_to_string();
            response.status().as_u16()
        }
        Err(_) => 0,
    };
    Sample {
        kind,
        started,
        took: started.elapsed(),
        status,
    }
}

/// An open loop: a write and a read every `LOAD_INTERVAL`, each on a thread
/// of its own so that a slow answer holds back no later request, until
/// `running` is cleared.
fn steady_load(
    base: String,
    ticket: String,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Sample> {
    let mut requests = Vec::new();
    let mut n = 0;
    while running.load(std::sync::atomic::Ordering::SeqCst) {
        n += 1;
        for write in [true, false] {
            let (base, ticket) = (base.clone(), ticket.clone());
            requests.push(std::thread::spawn(move || {
                one_request(&base, write, n, &ticket)
            }));
        }
        std::thread::sleep(LOAD_INTERVAL);
    }
    requests
        .into_iter()
        .map(|request| request.join().expect("a request"))
        .collect()
}

/// How often the open loop sends a write and a read.
const LOAD_INTERVAL: Duration = Duration::from_millis(200);

/// Runs ticketd (no projector of its own) and a projector daemon on `store`
/// under steady load; calls `begin` to start the outage and, `OUTAGE` later,
/// `end` to end it; then checks what the module promises. `reads_serve`:
/// whether reads keep answering 200 during the outage (SQLite: the views
/// are readable while the write lock is taken) or answer 503 like writes.
fn ten_second_outage(
    store: &str,
    dir: &std::path::Path,
    reads_serve: bool,
    begin: impl FnOnce(),
    end: impl FnOnce(),
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let ticketd = Ticketd::start_in(
        dir,
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            store,
            "--no-projector",
        ],
        &dir.join("ticketd.log"),
    );
    let projector_log = dir.join("projector.log");
    let mut projector = std::process::Command::new(crate::harness::PROJECTOR)
        .args(["run", "--store", store])
        .env_remove("TICKETS_STORE")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&projector_log).expect("projector log"))
        .spawn()
        .expect("spawn ticket-projector");
    let http = &ticketd.http;
    let before = http.create("before", "s", "m");
    crate::harness::read_model_reaches(http, &before);

    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let (base, running) = (http.base.clone(), running.clone());
        let ticket = before["id"].as_str().expect("id").to_owned();
        std::thread::spawn(move || steady_load(base, ticket, running))
    };
    std::thread::sleep(Duration::from_millis(500));
    let began = Instant::now();
    begin();
    std::thread::sleep(OUTAGE);
    let ended = Instant::now();
    end();
    std::thread::sleep(Duration::from_secs(2));
    running.store(false, Ordering::SeqCst);
    let samples: Vec<Sample> = load.join().expect("the load");

    // Requests sent during the outage (a little after its start, so that
    // none answered just before it began counts).
    let sent_during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.started > began + Duration::from_millis(100) && s.started < ended)
        .collect();
    let of_kind = |writes: bool| -> Vec<&Sample> {
        sent_during
            .iter()
            .copied()
            .filter(|s| (s.kind == "write") == writes)
            .collect()
    };
    let (writes, reads) = (of_kind(true), of_kind(false));
    let figures = |set: &[&Sample]| {
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for s in set {
            *statuses.entry(s.status).or_default() += 1;
        }
        let mut took: Vec<Duration> = set.iter().map(|s| s.took).collect();
        took.sort();
        let median = took.get(took.len() / 2).copied().unwrap_or_default();
        let slowest = took.last().copied().unwrap_or_default();
        format!(
            "{} answered {statuses:?} in median {median:.2?}, slowest {slowest:.2?}",
            set.len()
        )
    };
    eprintln!(
        "{OUTAGE:?} outage: writes sent during it: {}; reads: {}",
        figures(&writes),
        figures(&reads)
    );
    for sample in &samples {
        assert!(sample.status != 0, "a request got no answer: {sample:?}");
        assert!(
            sample.took < PROMPT && sample.status != 408,
            "a request took {:?} ({sample:?}); the request timeout is {REQUEST_TIMEOUT:?}",
            sample.took
        );
    }
    // An answer that came before the outage ended cannot be a success for a
    // write (nor, on MongoDB, for a read); one that came after may be.
    let answered_during = |sample: &Sample| sample.started + sample.took < ended;
    assert!(
        writes.len() >= 10,
        "only {} writes were sent during the outage",
        writes.len()
    );
    for sample in writes.iter().filter(|s| answered_during(s)) {
        assert_eq!(sample.status, 503, "a write during the outage: {sample:?}");
    }
    // Refused at once: past the first second of silence (ticketd's
    // `--store-silence`), a request no longer queues behind those already
    // waiting, so most are answered long before the store's own bounds.
    let quick = |set: &[&Sample]| set.iter().filter(|s| s.took < QUICK).count();
    assert!(
        quick(&writes) * 2 > writes.len(),
        "only {} of {} writes sent during the outage were answered within {QUICK:?}",
        quick(&writes),
        writes.len()
    );
    if !reads_serve {
        assert!(
            quick(&reads) * 2 > reads.len(),
            "only {} of {} reads sent during the outage were answered within {QUICK:?}",
            quick(&reads),
            reads.len()
        );
    }
    assert!(!reads.is_empty(), "no read was sent during the outage");
    for sample in &reads {
        if reads_serve {
            assert_eq!(sample.status, 200, "a read during the outage: {sample:?}");
        } else if answered_during(sample) {
            assert_eq!(sample.status, 503, "a read during the outage: {sample:?}");
        }
    }

    // Afterwards: writes succeed, and the daemon projects them, with no
    // process restarted.
    let first_success = samples
        .iter()
        .filter(|s| s.kind == "write" && s.status == 201 && s.started + s.took > ended)
        .map(|s| (s.started + s.took).saturating_duration_since(ended))
        .min();
    let after = eventually_created(http);
    let projecting = Instant::now();
    crate::harness::read_model_reaches(http, &after);
    eprintln!(
        "after the outage: the first write succeeded {first_success:.2?} after it ended; \
         a later one was in the views {:.2?} after its answer",
        projecting.elapsed()
    );
    assert!(
        projector.try_wait().expect("projector").is_none(),
        "the projector exited; its log:\n{}",
        std::fs::read_to_string(&projector_log).unwrap_or_default()
    );
    let _ = projector.kill();
    let _ = projector.wait();
    drop(ticketd);
}

/// Creates a ticket, retrying 503s for up to [`PATIENCE`].
fn eventually_created(http: &crate::harness::Http) -> serde_json::Value {
    crate::harness::eventually("a write to succeed after the outage", || {
        let reply = http.post(
            "/tickets",
            &json!({"customer": "after", "subject": "s", "message": "m"}),
        );
        (reply.status == 201).then_some(reply.body)
    })
}

#[test]
fn a_ten_second_mongodb_outage_is_answered_at_once_and_everything_carries_on() {
    let Some(database) = store_mongo::testing::database("mongo_ten_seconds") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the proxy");
    let upstream = fault_proxy::first_host(database.uri())
        .unwrap_or_else(|| panic!("the proxy needs a mongodb:// URI: {}", database.uri()));
    let proxy = runtime
        .block_on(FaultProxy::start(upstream))
        .expect("start the proxy");
    let store = proxy.uri(database.uri()).expect("a URI through the proxy");
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = proxy.faults().clone();
    ten_second_outage(
        &store,
        dir.path(),
        false,
        || faults.freeze(),
        || faults.thaw(),
    );
    drop(proxy);
}

#[test]
fn a_ten_second_sqlite_write_lock_is_answered_at_once_and_everything_carries_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tickets.db");
    let store = format!("sqlite://{}", path.display());
    let holder = std::sync::Mutex::new(None::<rusqlite::Connection>);
    ten_second_outage(
        &store,
        dir.path(),
        true,
        || {
            let shell = rusqlite::Connection::open(&path).expect("open the store");
            shell
                .execute_batch("BEGIN IMMEDIATE")
                .expect("take the write lock");
            *holder.lock().expect("holder") = Some(shell);
        },
        || {
            let shell = holder.lock().expect("holder").take().expect("the shell");
            shell
                .execute_batch("COMMIT")
                .expect("release the write lock");
        },
    );
}
