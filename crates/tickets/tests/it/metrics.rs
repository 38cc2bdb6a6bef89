//! `GET /metrics` over real HTTP: the Prometheus text parses, the counters
//! equal what the test did, routes are labelled by template, and the
//! projector gauges read 0 lag once caught up (in-process projector or a
//! separate daemon).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::{Http, Ticketd, Workspace, eventually, start_projector};

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Scrapes `/metrics` and parses every sample line, failing on any line that
/// is not a comment, blank, or `name{labels} value`.
fn scrape(http: &Http) -> Vec<Sample> {
    let reply = http.get("/metrics");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.content_type.starts_with("text/plain"),
        "{}",
        reply.content_type
    );
    let Value::String(text) = reply.body else {
        panic!("/metrics is not text: {reply:?}");
    };
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("not a sample line: {line:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let valid_name = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !valid_name {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    let value = rest.strip_prefix(' ')?.split(' ').next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `key="value",...}` into `labels`; returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut BTreeMap<String, String>) -> Option<&'a str> {
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Some(rest);
        }
        let eq = s.find('=')?;
        let key = &s[..eq];
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let quoted = s[eq + 1..].strip_prefix('"')?;
        let mut chars = quoted.char_indices();
        let mut value = String::new();
        let close = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (i, '"') => break i,
                (_, other) => value.push(other),
            }
        };
        labels.insert(key.to_owned(), value);
        s = &quoted[close + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// The value of the one sample named `name` with exactly these labels.
#[track_caller]
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == wanted)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{name}{wanted:?} in {:#?}",
        samples
            .iter()
            .filter(|s| s.name == name)
            .collect::<Vec<_>>()
    );
    found[0].value
}

/// Every sample named `name`, by its `projection` label.
fn per_projection(samples: &[Sample], name: &str) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| (s.labels["projection"].clone(), s.value))
        .collect()
}

#[test]
fn metrics_count_what_the_test_did() {
    let ws = Workspace::sqlite();
    let server = Ticketd::start(&ws, &[]);
    let http = &server.http;

    let first = http.create("ana", "printer", "it jams");
    http.create("bo", "login", "forgot my password");
    let id = first["id"].as_str().expect("id").to_owned();
    let path = format!("/tickets/{id}");
    let changed = http.patch(&path, &json!({"status": "triaged", "agent": "cy"}));
    assert_eq!(changed.status, 200, "{changed:?}");
    ws.wait_caught_up();
    for _ in 0..3 {
        assert_eq!(http.get(&path).status, 200);
    }
    assert_eq!(http.get("/no/such/route").status, 404);
    assert_eq!(http.get(&format!("{path}/nope")).status, 404);

    let samples = scrape(http);
    let requests = |method, route, status| {
        value(
            &samples,
            "http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("POST", "/tickets", "201"), 2.0);
    assert_eq!(requests("PATCH", "/tickets/{id}", "200"), 1.0);
    assert_eq!(requests("GET", "/tickets/{id}", "200"), 3.0);
    assert_eq!(requests("GET", "unmatched", "404"), 2.0);
    // Every route label is a template or `unmatched`, never a raw URL.
    for sample in samples.iter().filter(|s| s.name.starts_with("http_")) {
        let route = &sample.labels["route"];
        assert!(
            route == "unmatched" || !route.contains(&id),
            "raw URL as a label: {sample:?}"
        );
        assert!(!route.contains("no/such"), "raw URL as a label: {sample:?}");
    }

    // The latency histogram has one observation per request, in buckets.
    let get_detail = [
        ("method", "GET"),
        ("route", "/tickets/{id}"),
        ("status", "200"),
    ];
    assert_eq!(
        value(&samples, "http_request_duration_seconds_count", &get_detail),
        3.0
    );
    let mut inf = get_detail.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        value(&samples, "http_request_duration_seconds_bucket", &inf),
        3.0
    );
    assert!(value(&samples, "http_request_duration_seconds_sum", &get_detail) > 0.0);

    let events = ws.event_count();
    assert!(events >= 3, "{events} events");
    assert_eq!(value(&samples, "events_appended_total", &[]), events as f64);
    assert_eq!(value(&samples, "append_conflicts_total", &[]), 0.0);

    let positions = per_projection(&samples, "projector_position");
    assert_eq!(positions.len(), 3, "{positions:?}");
    assert!(
        positions.values().all(|p| *p == events as f64),
        "{positions:?}"
    );
    for gauge in [
        "projector_lag_events",
        "projector_lag_seconds",
        "projector_dead_letters_pending",
    ] {
        let values = per_projection(&samples, gauge);
        assert_eq!(values.len(), 3, "{gauge}: {values:?}");
        assert!(values.values().all(|v| *v == 0.0), "{gauge}: {values:?}");
    }
    // The in-process projector committed every event once per projection.
    let batched = per_projection(&samples, "projector_batch_size_sum");
    assert_eq!(batched.len(), 3, "{batched:?}");
    assert!(batched.values().all(|v| *v == events as f64), "{batched:?}");
}

#[test]
fn projector_gauges_follow_a_separate_daemon() {
    let ws = Workspace::sqlite();
    let server = Ticketd::start(&ws, &["--no-projector"]);
    let http = &server.http;
    http.create("ana", "printer", "it jams");
    http.create("bo", "login", "forgot my password");
    let _projector = start_projector(&ws);
    let events = ws.event_count() as f64;
    let samples = eventually("the gauges to show the daemon caught up", || {
        let samples = scrape(http);
        let lag = per_projection(&samples, "projector_lag_events");
        (lag.len() == 3 && lag.values().all(|v| *v == 0.0)).then_some(samples)
    });
    let positions = per_projection(&samples, "projector_position");
    assert!(positions.values().all(|p| *p == events), "{positions:?}");
    let seconds = per_projection(&samples, "projector_lag_seconds");
    assert!(seconds.values().all(|v| *v == 0.0), "{seconds:?}");
    assert!(
        !samples
            .iter()
            .any(|s| s.name.starts_with("projector_batch_size")),
        "batch sizes are recorded by the process that runs the projector"
    );
    assert_eq!(value(&samples, "events_appended_total", &[]), events);
}

#[test]
fn the_background_checkpoints_are_counted() {
    let ws = Workspace::sqlite();
    let server = Ticketd::start(&ws, &[]);
    let http = &server.http;
    let checkpoints = |samples: &[Sample], by: &str| {
        samples
            .iter()
            .find(|s| {
                s.name == "sqlite_checkpoints_total"
                    && s.labels.get("by").map(String::as_str) == Some(by)
            })
            .map(|s| s.value)
    };
    // Each command writes a few pages to the log (the event, then the three
    // views); the thread wakes at 1,000 pages waiting.
    let mut created = 0;
    let samples = loop {
        for _ in 0..50 {
            http.create("ana", "printer", "it jams");
        }
        created += 50;
        let samples = scrape(http);
        if checkpoints(&samples, "thread").is_some() || created >= 5_000 {
            break samples;
        }
    };
    assert!(
        checkpoints(&samples, "thread").is_some_and(|n| n >= 1.0),
        "no background checkpoint after {created} tickets"
    );
    assert_eq!(
        checkpoints(&samples, "writer"),
        None,
        "a light load never needs the writer's backstop"
    );
}
