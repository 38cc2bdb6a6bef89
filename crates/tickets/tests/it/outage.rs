//! A MongoDB that stops answering: the real `ticketd`, on jongodb (or
//! `MONGODB_URI`) through `store_mongo::fault_proxy`. Writes must answer
//! 503 with `Retry-After` well inside the request timeout (never hang to a
//! 408), and must succeed again once the server answers, without a restart.

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
