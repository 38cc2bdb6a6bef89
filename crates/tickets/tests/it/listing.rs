//! The ticket list's filters and sorts, and the events' metadata, over real
//! HTTP: every filter alone and combined returns exactly the tickets the write
//! responses say match; every sort and order pages each matching row exactly
//! once, in order; a cursor only works with the sort it was made for.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::harness::*;

crate::on_every_backend!(
    every_filter_alone_and_combined_returns_exactly_the_matching_tickets,
    every_sort_and_order_pages_each_matching_row_once_in_order,
    a_cursor_only_works_with_its_own_sort,
    unknown_sort_or_order_is_422_naming_it,
    events_metadata_carries_the_actor_and_the_request_id,
);

const CUSTOMERS: [&str; 3] = ["acme", "globex", "initech"];
const AGENTS: [Option<&str>; 3] = [Some("ana"), Some("bo"), None];
const STATUSES: [&str; 4] = ["open", "triaged", "closed", "triaged"];

/// Opens a few tens of tickets (fewer on jongodb) spread over customers,
/// agents and statuses, then notes some of them in reverse order so that
/// `updated_at` order differs from `created_at` order. Returns the last write
/// response of every ticket, once every projection has caught up.
fn seed(ws: &Workspace, http: &Http) -> Vec<Value> {
    let count = ws.load(30).max(12);
    let mut truth = Vec::new();
    for n in 0..count {
        let customer = CUSTOMERS[n % CUSTOMERS.len()];
        let ticket = http.create(customer, &format!("subject {n}"), "message body");
        let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
        let mut change = json!({"status": STATUSES[(n / 3) % STATUSES.len()]});
        if let Some(agent) = AGENTS[(n / 2) % AGENTS.len()] {
            change["agent"] = json!(agent);
        }
        let reply = http.patch(&path, &change);
        assert_eq!(reply.status, 200, "{reply:?}");
        truth.push(reply.body);
    }
    for n in (0..count).rev().filter(|n| n % 3 != 1) {
        let path = format!("/tickets/{}", truth[n]["id"].as_str().expect("id"));
        let reply = http.patch(&path, &json!({"note": format!("later note {n}")}));
        assert_eq!(reply.status, 200, "{reply:?}");
        truth[n] = reply.body;
    }
    ws.wait_caught_up();
    truth
}

/// An RFC 3339 UTC time as a key that sorts like the time (the fraction has a
/// varying number of digits on the wire).
fn time_key(time: &Value) -> (String, u32) {
    let text = time.as_str().expect("a time").trim_end_matches('Z');
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let nanos = format!("{fraction:0<9}")[..9].parse().expect("a fraction");
    (whole.to_owned(), nanos)
}

/// Whether a row (or a write response) passes the filters.
fn matches(
    ticket: &Value,
    status: Option<&str>,
    agent: Option<&str>,
    customer: Option<&str>,
) -> bool {
    status.is_none_or(|s| ticket["status"] == s)
        && agent.is_none_or(|a| ticket["agent"] == a)
        && customer.is_none_or(|c| ticket["customer"] == c)
}

fn query(filters: &[(&str, Option<&str>)]) -> String {
    filters
        .iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name}={v}")))
        .collect::<Vec<_>>()
        .join("&")
}

/// Checks that each row equals what the write responses say of its ticket.
#[track_caller]
fn assert_rows_agree(rows: &[Value], truth: &[Value]) {
    for row in rows {
        let ticket = truth
            .iter()
            .find(|t| t["id"] == row["id"])
            .unwrap_or_else(|| panic!("a row of no written ticket: {row}"));
        for field in [
            "customer",
            "subject",
            "status",
            "agent",
            "created_at",
            "updated_at",
            "version",
        ] {
            assert_eq!(row[field], ticket[field], "{field} of {row}");
        }
    }
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|row| row["id"].as_str().expect("id").to_owned())
        .collect()
}

fn every_filter_alone_and_combined_returns_exactly_the_matching_tickets(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;
    let truth = seed(&ws, http);

    let statuses = [None, Some("open"), Some("triaged"), Some("closed")];
    let agents = [None, Some("ana"), Some("bo"), Some("nobody")];
    let customers = [None, Some("acme"), Some("globex"), Some("nobody")];
    let mut nonempty_combined = 0;
    for status in statuses {
        for agent in agents {
            for customer in customers {
                let filters =
                    query(&[("status", status), ("agent", agent), ("customer", customer)]);
                let rows = all_list_rows(http, &format!("{filters}&limit=4"));
                let got = ids(&rows);
                let unique: BTreeSet<_> = got.iter().cloned().collect();
                assert_eq!(
                    unique.len(),
                    got.len(),
                    "a row twice for {filters}: {got:?}"
                );
                let expected: BTreeSet<String> = truth
                    .iter()
                    .filter(|t| matches(t, status, agent, customer))
                    .map(|t| t["id"].as_str().expect("id").to_owned())
                    .collect();
                assert_eq!(unique, expected, "rows for `{filters}`");
                assert_rows_agree(&rows, &truth);
                let given = [status, agent, customer].iter().flatten().count();
                if given >= 2 && !expected.is_empty() {
                    nonempty_combined += 1;
                }
            }
        }
    }
    assert!(
        nonempty_combined >= 5,
        "the seed must make combined filters match something"
    );
    // Every filter narrows: no single one of them matches everything.
    for filter in ["status=triaged", "agent=ana", "customer=acme"] {
        let rows = all_list_rows(http, filter);
        assert!(!rows.is_empty() && rows.len() < truth.len(), "{filter}");
    }
    // An empty value is refused, naming the parameter, not read as absent:
    // a half-filled form must not widen the filter silently.
    let empty = http.get("/tickets?status=&agent=&customer=&limit=7");
    assert_eq!(empty.status, 400, "{:?}", empty.body);
    assert_eq!(empty.body["field"], "status", "{:?}", empty.body);
}

fn every_sort_and_order_pages_each_matching_row_once_in_order(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;
    let truth = seed(&ws, http);

    let expected_order = |field: &str, descending: bool, filter: &dyn Fn(&Value) -> bool| {
        let mut rows: Vec<&Value> = truth.iter().filter(|t| filter(t)).collect();
        rows.sort_by(|a, b| {
            let by = (time_key(&a[field]), a["id"].as_str())
                .cmp(&(time_key(&b[field]), b["id"].as_str()));
            if descending { by.reverse() } else { by }
        });
        rows.iter()
            .map(|t| t["id"].as_str().expect("id").to_owned())
            .collect::<Vec<_>>()
    };

    let created_desc = expected_order("created_at", true, &|_| true);
    let updated_desc = expected_order("updated_at", true, &|_| true);
    assert_ne!(
        created_desc, updated_desc,
        "the seed must order created_at and updated_at differently"
    );

    // The default is newest created first.
    assert_eq!(ids(&all_list_rows(http, "limit=5")), created_desc);
    assert_eq!(
        ids(&all_list_rows(http, "sort=created_at&limit=5")),
        created_desc
    );
    assert_eq!(
        ids(&all_list_rows(http, "order=desc&limit=5")),
        created_desc
    );
    assert_eq!(
        ids(&all_list_rows(http, "sort=updated_at&limit=5")),
        updated_desc
    );

    type Filter = (&'static str, fn(&Value) -> bool);
    let filters: [Filter; 3] = [
        ("", |_| true),
        ("status=triaged", |t| t["status"] == "triaged"),
        ("status=triaged&customer=acme", |t| {
            t["status"] == "triaged" && t["customer"] == "acme"
        }),
    ];
    for field in ["created_at", "updated_at"] {
        for order in ["asc", "desc"] {
            for (filter, keep) in &filters {
                let expected = expected_order(field, order == "desc", keep);
                assert!(!expected.is_empty(), "{filter} matches something");
                for limit in [1, 2, 3, 7] {
                    let query = format!("sort={field}&order={order}&limit={limit}&{filter}");
                    let rows = all_list_rows(http, &query);
                    assert_eq!(ids(&rows), expected, "pages of `{query}`");
                    assert_rows_agree(&rows, &truth);
                }
                // A page is full (and followed by a cursor) only when more rows
                // follow; the last page has no cursor.
                let query = format!(
                    "sort={field}&order={order}&limit={}&{filter}",
                    expected.len()
                );
                let page = http.get(&format!("/tickets?{query}"));
                assert_eq!(page.status, 200, "{page:?}");
                assert_eq!(page.body["next_cursor"], Value::Null, "{query}");
            }
        }
    }
}

fn a_cursor_only_works_with_its_own_sort(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;
    let truth = seed(&ws, http);

    let sorts = [
        ("created_at", "desc"),
        ("created_at", "asc"),
        ("updated_at", "desc"),
        ("updated_at", "asc"),
    ];
    for (field, order) in sorts {
        let first = http.get(&format!("/tickets?sort={field}&order={order}&limit=2"));
        assert_eq!(first.status, 200, "{first:?}");
        let cursor = first.body["next_cursor"]
            .as_str()
            .expect("a next cursor")
            .to_owned();
        let same = http.get(&format!(
            "/tickets?sort={field}&order={order}&limit=2&cursor={cursor}"
        ));
        assert_eq!(same.status, 200, "the same sort takes it: {same:?}");
        for (other_field, other_order) in sorts {
            if (other_field, other_order) == (field, order) {
                continue;
            }
            let reply = http.get(&format!(
                "/tickets?sort={other_field}&order={other_order}&limit=2&cursor={cursor}"
            ));
            reply.assert_problem(400, Some("cursor"));
        }
        // With filters too: the sort, not the filter, binds the cursor.
        let filtered = http.get(&format!(
            "/tickets?sort={field}&order={order}&status=triaged&cursor={cursor}"
        ));
        assert_eq!(filtered.status, 200, "{filtered:?}");
    }

    // No sort named is created_at descending, for the cursor too.
    let first = http.get("/tickets?limit=3");
    let cursor = first.body["next_cursor"].as_str().expect("a next cursor");
    let explicit = http.get(&format!(
        "/tickets?sort=created_at&order=desc&limit=3&cursor={cursor}"
    ));
    assert_eq!(explicit.status, 200, "{explicit:?}");
    http.get(&format!("/tickets?sort=updated_at&limit=3&cursor={cursor}"))
        .assert_problem(400, Some("cursor"));
    http.get(&format!("/tickets?order=asc&limit=3&cursor={cursor}"))
        .assert_problem(400, Some("cursor"));
    assert!(truth.len() > 3);
}

fn unknown_sort_or_order_is_422_naming_it(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;
    http.create("acme", "subject", "message");

    for sort in ["title", "CREATED_AT", "created", "id", "created_at.desc"] {
        http.get(&format!("/tickets?sort={sort}"))
            .assert_problem(422, Some("sort"));
    }
    for order in ["up", "DESC", "ascending", "1"] {
        http.get(&format!("/tickets?order={order}"))
            .assert_problem(422, Some("order"));
    }
    // A repeated parameter is refused before its values are read.
    http.get("/tickets?sort=created_at&sort=updated_at")
        .assert_problem(400, Some("sort"));
    http.get("/tickets?order=asc&order=desc")
        .assert_problem(400, Some("order"));
    http.get("/tickets?status=pending")
        .assert_problem(422, Some("status"));
    http.get("/tickets?sort=updated_at&order=sideways")
        .assert_problem(422, Some("order"));
    let fine = http.get("/tickets?sort=updated_at&order=asc&status=open&agent=x&customer=acme");
    assert_eq!(fine.status, 200, "{fine:?}");
}

/// A request with extra headers; answers the status and the JSON body.
fn call(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into();
    let url = format!("{base}{path}");
    let response = match method {
        "GET" => {
            let mut request = agent.get(url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.call()
        }
        "POST" | "PATCH" => {
            let mut request = if method == "POST" {
                agent.post(url)
            } else {
                agent.patch(url)
            };
            request = request.header("content-type", "application/json");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.send(body.expect("a body").to_string())
        }
        other => panic!("unsupported method {other}"),
    };
    let mut response = response.expect("HTTP call");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn events_metadata_carries_the_actor_and_the_request_id(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let base = &ticketd.http.base;

    let opened_by = uuid::Uuid::new_v4().to_string();
    let (status, ticket) = call(
        base,
        "POST",
        "/tickets",
        &[("X-Actor", "customer:acme"), ("X-Request-Id", &opened_by)],
        Some(&json!({"customer": "acme", "subject": "Printer", "message": "On fire"})),
    );
    assert_eq!(status, 201, "{ticket}");
    let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));

    let changed_by = uuid::Uuid::now_v7().to_string();
    let (status, changed) = call(
        base,
        "PATCH",
        &path,
        &[("X-Actor", "agent ana"), ("X-Request-Id", &changed_by)],
        Some(&json!({"status": "triaged", "agent": "ana", "note": "looking"})),
    );
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["version"], 4);

    // Without an actor the events say so (null), with a fresh correlation id.
    let (status, _) = call(
        base,
        "PATCH",
        &path,
        &[],
        Some(&json!({"note": "anonymous"})),
    );
    assert_eq!(status, 200);

    let (status, history) = call(base, "GET", &format!("{path}/events"), &[], None);
    assert_eq!(status, 200, "{history}");
    let events = history["events"].as_array().expect("events");
    assert_eq!(events.len(), 5, "{history}");
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event["version"], n as u64 + 1);
        let metadata = event["metadata"].as_object().expect("metadata");
        let mut keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["actor", "causation_id", "correlation_id"], "{event}");
    }
    let metadata = |n: usize| &events[n]["metadata"];

    assert_eq!(metadata(0)["actor"], "customer:acme");
    assert_eq!(metadata(0)["correlation_id"], opened_by.as_str());
    for event in &events[1..4] {
        let metadata = &event["metadata"];
        assert_eq!(metadata["actor"], "agent ana", "{event}");
        assert_eq!(metadata["correlation_id"], changed_by.as_str(), "{event}");
        assert_eq!(
            metadata["causation_id"], events[1]["metadata"]["causation_id"],
            "one request's events share their cause"
        );
    }
    assert_ne!(metadata(0)["causation_id"], metadata(1)["causation_id"]);
    assert_eq!(metadata(4)["actor"], Value::Null, "{}", events[4]);
    let fresh = metadata(4)["correlation_id"]
        .as_str()
        .expect("a correlation id");
    assert!(uuid::Uuid::try_parse(fresh).is_ok(), "{fresh}");
    assert_ne!(fresh, opened_by);
    assert_ne!(fresh, changed_by);
    for n in 0..5 {
        let cause = metadata(n)["causation_id"]
            .as_str()
            .expect("a causation id");
        assert!(uuid::Uuid::try_parse(cause).is_ok(), "{cause}");
    }
}
