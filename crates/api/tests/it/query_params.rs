//! The strict query extractor through the router: on every endpoint that
//! reads a query string, an unknown, repeated or empty-valued parameter is a
//! 400 naming it and the rule it broke; a documented parameter is accepted.

use axum::body::Body;
use axum::http::Method;

use crate::harness::{App, Reply};

/// Every endpoint with a query, and one valid parameter of each.
fn endpoints(id: &str) -> [(String, &'static str, &'static str); 4] {
    [
        ("/tickets".to_owned(), "limit", "5"),
        (format!("/tickets/{id}"), "as_of_version", "1"),
        ("/dashboard".to_owned(), "min_position", "0"),
        ("/tickets/stream".to_owned(), "after", "0"),
    ]
}

async fn get(app: &App, path: &str, query: &str) -> Reply {
    app.catch_up().await;
    app.send(Method::GET, &format!("{path}?{query}"), None, Body::empty())
        .await
}

fn assert_refused(reply: &Reply, field: &str, rule: &str) {
    reply.assert_problem(400, "invalid-parameter", Some(field));
    let detail = reply.body["detail"].as_str().expect("detail");
    assert!(
        detail.contains(rule),
        "{detail:?} lacks {rule:?}: {reply:?}"
    );
}

#[tokio::test]
async fn an_unknown_parameter_is_refused_naming_it_and_the_known_ones() {
    let app = App::new();
    let id = app.create("ACME").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (path, known, value) in endpoints(&id) {
        let reply = get(&app, &path, &format!("{known}={value}&colour=red")).await;
        assert_refused(&reply, "colour", "unknown query parameter");
        assert_refused(&reply, "colour", known);
    }
    // Names are exact: no case folding, no near misses.
    assert_refused(&get(&app, "/tickets", "Limit=5").await, "Limit", "unknown");
    assert_refused(
        &get(&app, "/tickets", "limit[]=5").await,
        "limit[]",
        "unknown",
    );
}

#[tokio::test]
async fn a_repeated_parameter_is_refused_even_with_the_same_value() {
    let app = App::new();
    let id = app.create("ACME").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (path, known, value) in endpoints(&id) {
        let reply = get(&app, &path, &format!("{known}={value}&{known}={value}")).await;
        assert_refused(&reply, known, "at most once");
    }
}

#[tokio::test]
async fn an_empty_value_is_refused_rather_than_read_as_absent() {
    let app = App::new();
    let id = app.create("ACME").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (path, known, _) in endpoints(&id) {
        for query in [format!("{known}="), known.to_owned()] {
            let reply = get(&app, &path, &query).await;
            assert_refused(&reply, known, "must not be empty");
        }
    }
    for name in ["status", "agent", "customer", "sort", "order", "cursor"] {
        let reply = get(&app, "/tickets", &format!("{name}=")).await;
        assert_refused(&reply, name, "must not be empty");
    }
    // The first fault in the query string is the one reported.
    let reply = get(&app, "/tickets", "agent=ana&status=&colour=red").await;
    assert_refused(&reply, "status", "must not be empty");
}

#[tokio::test]
async fn documented_parameters_are_accepted_and_bad_values_stay_422s() {
    let app = App::new();
    let id = app.create("ACME").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let list = "status=open&agent=ana&customer=ACME&sort=updated_at&order=asc&limit=5\
                &min_position=0";
    get(&app, "/tickets", list).await.assert_json(200);
    get(&app, &format!("/tickets/{id}"), "min_position=0")
        .await
        .assert_json(200);
    get(&app, "/dashboard", "min_position=0")
        .await
        .assert_json(200);
    for (query, field) in [
        ("order=up", "order"),
        ("sort=id", "sort"),
        ("status=done", "status"),
        ("limit=ten", "limit"),
    ] {
        get(&app, "/tickets", query)
            .await
            .assert_problem(422, "validation", Some(field));
    }
}
