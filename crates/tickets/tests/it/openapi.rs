//! `GET /openapi.json` against the real router: every operation the document
//! describes is answered by a route (with a status the document lists), every
//! method it does not describe on those paths is a 405, and the routes the
//! API reference (docs/api.md) documents are all in it, with their headers and problems.

use serde_json::{Value, json};

use crate::harness::{PATIENCE, Ticketd, Workspace};

/// Methods probed on every path; HEAD and OPTIONS are left to axum.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The routes docs/api.md documents (method, path template).
const DOCUMENTED_ROUTES: [(&str, &str); 15] = [
    ("post", "/tickets"),
    ("get", "/tickets"),
    ("get", "/tickets/{id}"),
    ("patch", "/tickets/{id}"),
    ("get", "/tickets/{id}/events"),
    ("get", "/tickets/stream"),
    ("get", "/dashboard"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/projections/dead-letters"),
    (
        "post",
        "/projections/{projection}/dead-letters/{position}/retry",
    ),
    (
        "post",
        "/projections/{projection}/dead-letters/{position}/skip",
    ),
    ("delete", "/customers/{customer}"),
];

/// A concrete path for a template: the ticket `id`, and a dead letter's
/// projection and position (none exists on a fresh store).
fn concrete(template: &str, id: &str) -> String {
    template
        .replace("{id}", id)
        .replace("{projection}", "list")
        .replace("{position}", "1")
        .replace("{customer}", ERASABLE)
}

/// The customer whose erasure the route check asks for: it has a ticket of
/// its own, so that no other check meets an erased ticket.
const ERASABLE: &str = "Erasable";

/// Status, content type and body (JSON, or the text as a string; an event
/// stream, which never ends, is not read: its body is `null`).
fn call(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    let response = match body {
        Some(body) => agent.run(
            request
                .header("content-type", "application/json")
                .body(body.to_string())
                .expect("request"),
        ),
        None => agent.run(request.body(()).expect("request")),
    };
    let mut response = response.expect("HTTP call");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let status = response.status().as_u16();
    if content_type.starts_with("text/event-stream") {
        return (status, content_type, Value::Null);
    }
    let text = response.body_mut().read_to_string().expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, body)
}

fn spec(base: &str) -> Value {
    let (status, content_type, spec) = call(base, "GET", "/openapi.json", None);
    assert_eq!(status, 200, "{spec}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "not OpenAPI 3.1: {}",
        spec["openapi"]
    );
    spec
}

/// Every (method, path template) the document describes.
fn operations(spec: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.to_uppercase().as_str()) {
                found.push((method.clone(), path.clone()));
            }
        }
    }
    found
}

/// The fallback's 404 (no route), as opposed to a handler's "no such ticket".
fn is_unrouted(status: u16, body: &Value) -> bool {
    status == 404 && body["detail"] == "no resource at this path"
}

#[test]
fn the_served_document_and_the_router_agree() {
    let ws = Workspace::sqlite();
    let server = Ticketd::start(&ws, &[]);
    let base = server.http.base.clone();
    let spec = spec(&base);
    let ticket = server
        .http
        .create("ACME", "Spec", "Every route is described.");
    let id = ticket["id"].as_str().expect("id");
    server
        .http
        .create(ERASABLE, "Spec", "Erased by the route check.");

    let operations = operations(&spec);
    assert!(!operations.is_empty());
    for (method, template) in &operations {
        let path = concrete(template, id);
        let body = match (method.as_str(), template.as_str()) {
            ("post", "/tickets") => Some(json!({"customer": "c", "subject": "s", "message": "m"})),
            ("patch", _) => Some(json!({"note": "checked by the spec test"})),
            _ => None,
        };
        let (status, _, answer) = call(&base, &method.to_uppercase(), &path, body.as_ref());
        assert!(
            !is_unrouted(status, &answer) && status != 405,
            "{method} {template} is in the spec but not routed: {status} {answer}"
        );
        let documented = &spec["paths"][template][method]["responses"];
        assert!(
            documented.get(status.to_string()).is_some(),
            "{method} {template} answered {status}, which the spec does not list: {answer}"
        );
        // A fresh store has no dead letter: retrying or skipping one is the
        // handler's documented 404.
        let no_dead_letter = template.contains("/dead-letters/") && status == 404;
        assert!(
            (200..300).contains(&status) || template == "/readyz" || no_dead_letter,
            "{method} {template} with valid input answered {status}: {answer}"
        );
    }

    // The methods the document does not list on its paths are not routed either.
    let paths = spec["paths"].as_object().expect("paths");
    for (template, item) in paths {
        let path = concrete(template, id);
        for method in METHODS {
            if item.get(method.to_lowercase()).is_some() {
                continue;
            }
            let body = json!({});
            let (status, content_type, answer) = call(&base, method, &path, Some(&body));
            assert_eq!(
                status, 405,
                "{method} {template} is not in the spec but answered {status}: {answer}"
            );
            assert_eq!(
                content_type, "application/problem+json",
                "{method} {template}: {answer}"
            );
        }
    }

    // And the routes docs/api.md documents are all in it.
    for (method, template) in DOCUMENTED_ROUTES {
        assert!(
            operations.iter().any(|(m, t)| m == method && t == template),
            "{method} {template} is missing from the spec"
        );
    }
    // A path the document does not know is the fallback's 404.
    let (status, _, answer) = call(&base, "GET", "/nope", None);
    assert!(is_unrouted(status, &answer), "{status} {answer}");
}

#[test]
fn the_document_describes_headers_parameters_and_problems() {
    let ws = Workspace::sqlite();
    let server = Ticketd::start(&ws, &[]);
    let spec = spec(&server.http.base);
    let schemas = &spec["components"]["schemas"];
    for schema in [
        "Problem",
        "Ticket",
        "TicketPage",
        "TicketEvents",
        "Dashboard",
        "Status",
        "TicketChange",
    ] {
        assert!(schemas.get(schema).is_some(), "no {schema} schema");
    }
    // Every reference resolves to a component schema.
    fn refs(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target.clone());
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&spec, &mut found);
    for target in found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {target}"));
        assert!(schemas.get(name).is_some(), "unresolvable $ref {target}");
    }

    let op = |method: &str, path: &str| spec["paths"][path][method].clone();
    let params = |operation: &Value| -> Vec<String> {
        operation["parameters"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let headers = |operation: &Value, status: &str| -> Vec<String> {
        operation["responses"][status]["headers"]
            .as_object()
            .map(|all| all.keys().cloned().collect())
            .unwrap_or_default()
    };

    for (method, path) in operations(&spec) {
        let operation = op(&method, &path);
        for name in ["X-Request-Id", "X-Actor"] {
            assert!(
                params(&operation).contains(&name.to_owned()),
                "{method} {path} lacks {name}"
            );
        }
        for (status, response) in operation["responses"].as_object().expect("responses") {
            assert!(
                headers(&operation, status).contains(&"X-Request-Id".to_owned()),
                "{method} {path} {status} lacks X-Request-Id"
            );
            if status.starts_with('4') || status.starts_with('5') && path != "/readyz" {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status} is not a problem"
                );
            }
        }
    }

    let expect_statuses = |method: &str, path: &str, statuses: &[&str]| {
        for status in statuses {
            assert!(
                op(method, path)["responses"].get(*status).is_some(),
                "{method} {path} lacks {status}"
            );
        }
    };
    expect_statuses(
        "post",
        "/tickets",
        &["201", "400", "413", "415", "422", "503"],
    );
    expect_statuses(
        "patch",
        "/tickets/{id}",
        &[
            "200", "400", "404", "409", "412", "413", "415", "422", "503",
        ],
    );
    expect_statuses("get", "/tickets/{id}", &["200", "400", "404", "422", "503"]);
    expect_statuses("get", "/tickets", &["200", "400", "422", "503"]);
    expect_statuses("get", "/tickets/{id}/events", &["200", "400", "404", "503"]);
    expect_statuses("get", "/dashboard", &["200", "422", "503"]);
    expect_statuses("get", "/tickets/stream", &["200", "400", "422", "503"]);
    let stream = op("get", "/tickets/stream");
    assert_eq!(
        stream["responses"]["200"]["content"]["text/event-stream"]["schema"]["$ref"],
        "#/components/schemas/TicketChange",
        "{stream}"
    );
    for name in ["Last-Event-ID", "after"] {
        assert!(
            params(&stream).contains(&name.to_owned()),
            "GET /tickets/stream lacks {name}"
        );
    }
    expect_statuses("get", "/readyz", &["200", "503"]);

    for name in ["Location", "ETag", "X-Event-Position"] {
        assert!(headers(&op("post", "/tickets"), "201").contains(&name.to_owned()));
    }
    for name in ["ETag", "X-Event-Position"] {
        assert!(headers(&op("patch", "/tickets/{id}"), "200").contains(&name.to_owned()));
    }
    assert!(params(&op("patch", "/tickets/{id}")).contains(&"If-Match".to_owned()));
    for (path, extra) in [
        ("/tickets/{id}", &["ETag"][..]),
        ("/tickets", &[][..]),
        ("/dashboard", &[][..]),
    ] {
        let names = headers(&op("get", path), "200");
        for name in ["X-Read-Position", "X-Read-Stale"].iter().chain(extra) {
            assert!(
                names.contains(&(*name).to_owned()),
                "GET {path} lacks {name}"
            );
        }
        assert!(params(&op("get", path)).contains(&"min_position".to_owned()));
    }
    let list = params(&op("get", "/tickets"));
    for name in [
        "status", "agent", "customer", "sort", "order", "limit", "cursor",
    ] {
        assert!(
            list.contains(&name.to_owned()),
            "GET /tickets lacks ?{name}"
        );
    }
    let show = params(&op("get", "/tickets/{id}"));
    for name in ["id", "as_of_version", "as_of"] {
        assert!(
            show.contains(&name.to_owned()),
            "GET /tickets/{{id}} lacks {name}"
        );
    }
}
