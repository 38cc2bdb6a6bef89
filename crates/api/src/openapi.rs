//! The OpenAPI 3.1 document of the HTTP API, generated from the code with
//! utoipa and served at `GET /openapi.json`.
//!
//! Each handler carries its own `#[utoipa::path]` (path, parameters, body,
//! every status it can answer with the headers of each); the wire types derive
//! `ToSchema`. What every route shares because the middleware does it (the
//! `X-Request-Id`, `X-Correlation-Id` and `X-Actor` request headers, the
//! `X-Request-Id` response header, the `400` for a bad `X-Actor`, the `408`
//! timeout and the `500`) is added to every operation by [`Middleware`], so
//! it cannot be forgotten on a new route. Likewise [`Conventions`] adds what
//! follows from an operation's shape: a write (an operation with a body) takes
//! `Idempotency-Key` and answers `ETag`, `X-Event-Position`,
//! `Idempotent-Replayed`, 413 and 415 (the `Json` and `IdempotencyKey`
//! extractors, the `written` answer); a read with `min_position` answers
//! `X-Read-Position` and `X-Read-Stale`; a resource route may answer 503. `/readyz` and `/metrics` are served by
//! the composition root (`tickets`); their operations are documented here, and
//! the black-box test `openapi` checks the served document against the real
//! router in both directions.

use axum::Json;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::Problem;

/// `GET /readyz`'s body: whether the service is ready, and why. The route is
/// the composition root's; the body is defined here so that what it sends is
/// what the document describes. Absent figures are left out of the body.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Readiness {
    /// True when the store answers and every projection lags within the bound.
    pub ready: bool,
    /// The configured lag bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lag_seconds: Option<f64>,
    /// The store's last event position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
    /// The time of the check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub now: Option<DateTime<Utc>>,
    /// Per-projection figures, as `ticket-projector status --json` prints them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub projections: Option<Vec<serde_json::Value>>,
    /// Why the store could not be checked (503 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object))
)]
pub(crate) async fn serve() -> impl IntoResponse {
    Json(openapi())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tickets",
        description = "An event-sourced customer-support ticket service. Writes answer from the \
                       write side; reads come from read models that may trail a write (see \
                       `min_position`)."
    ),
    paths(
        crate::tickets::open,
        crate::tickets::list,
        crate::tickets::show,
        crate::tickets::change,
        crate::tickets::events,
        crate::stream::stream,
        crate::dashboard::show,
        crate::dead_letters::list,
        crate::dead_letters::retry,
        crate::dead_letters::skip,
        crate::customers::erase,
        crate::middleware::healthz,
        serve,
    ),
    components(schemas(Problem, Readiness)),
    // In this order: the composition root's operations get the middleware's too.
    modifiers(&CompositionRoot, &Conventions, &AccessControl, &Middleware),
    tags(
        (name = "tickets", description = "Open, change, read and list tickets"),
        (name = "dashboard", description = "Counts per status"),
        (name = "projections", description = "The projections' dead letters: list, retry, skip (admins)"),
        (name = "customers", description = "A customer's right to erasure (admins)"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

/// The OpenAPI document of the whole API (the composition root's `/readyz`
/// and `/metrics` included).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Documents the composition root's routes, `/readyz` and `/metrics`: they
/// are served by `tickets` (which knows the backend and the recorder), so no
/// handler here carries their `#[utoipa::path]`.
struct CompositionRoot;

impl Modify for CompositionRoot {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let readiness = |description: &str| {
            body_response(
                description,
                "application/json",
                RefOr::Ref(Ref::from_schema_name("Readiness")),
            )
        };
        let readyz = OperationBuilder::new()
            .tag("operations")
            .operation_id(Some("readyz"))
            .summary(Some(
                "Ready: the store answers, migrations are applied and every projection lags \
                 less than `--ready-max-lag`.",
            ))
            .response("200", readiness("Ready"))
            .response(
                "503",
                readiness("Not ready: the store does not answer, or a projection lags too much"),
            );
        let metrics = OperationBuilder::new()
            .tag("operations")
            .operation_id(Some("metrics"))
            .summary(Some("Prometheus metrics, in the text exposition format."))
            .response(
                "200",
                body_response(
                    "The metrics (docs/operations.md lists them)",
                    "text/plain; version=0.0.4; charset=utf-8",
                    RefOr::T(string_schema(None, None)),
                ),
            );
        let paths = &mut openapi.paths;
        paths.add_path_operation("/readyz", vec![HttpMethod::Get], readyz);
        paths.add_path_operation("/metrics", vec![HttpMethod::Get], metrics);
    }
}

/// Declares the bearer scheme and, on every operation the role table
/// covers (see `access`), that it needs a bearer token when auth is on
/// (`security`), which roles may call it (`x-roles`), and its 401 and 403.
struct AccessControl;

impl Modify for AccessControl {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "An API token (`ticketd token create`) or, when configured, a JWT \
                             from the identity provider. Needed on every route but `/healthz` \
                             and `/openapi.json` when the server runs with `--auth token`.",
                        ))
                        .build(),
                ),
            );
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in [
                (axum::http::Method::GET, &mut item.get),
                (axum::http::Method::POST, &mut item.post),
                (axum::http::Method::PATCH, &mut item.patch),
                (axum::http::Method::DELETE, &mut item.delete),
            ] {
                let Some(operation) = operation else {
                    continue;
                };
                let roles = crate::access::route_roles(&method, path);
                if roles.is_empty() {
                    continue;
                }
                operation.security =
                    Some(vec![SecurityRequirement::new::<_, _, &str>("bearer", [])]);
                let extensions = operation.extensions.get_or_insert_with(Default::default);
                extensions.merge(
                    utoipa::openapi::extensions::ExtensionsBuilder::new()
                        .add("x-roles", roles)
                        .build(),
                );
                let responses = &mut operation.responses.responses;
                for (status, description) in [
                    (
                        "401",
                        "Auth on: no bearer token, or not a valid one (`WWW-Authenticate: Bearer`)",
                    ),
                    ("403", "Auth on: the token's role may not do this"),
                ] {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::T(problem_response(description)));
                }
            }
        }
    }
}

/// Adds what follows from an operation's shape (see the module docs).
struct Conventions;

/// The tags of the routes that read or write a store.
const RESOURCE_TAGS: [&str; 4] = ["tickets", "dashboard", "projections", "customers"];

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                add_conventions(operation);
            }
        }
    }
}

fn add_conventions(operation: &mut Operation) {
    let is_write = operation.request_body.is_some();
    let waits = operation
        .parameters
        .iter()
        .flatten()
        .any(|parameter| matches!(parameter, RefOr::T(p) if p.name == "min_position"));
    let on_a_store = operation
        .tags
        .iter()
        .flatten()
        .any(|tag| RESOURCE_TAGS.contains(&tag.as_str()));
    let mut problems = Vec::new();
    let mut success_headers = Vec::new();
    if is_write {
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(header_parameter(
                "Idempotency-Key",
                "A key for safe retries (1 to 255 visible ASCII characters, e.g. a UUID): a \
                 retry with the same key and body gets the first answer and appends nothing",
                string_schema(Some(1), Some(255)),
            ));
        problems.push(("413", "Body too large"));
        problems.push(("415", "The body is not `application/json`"));
        success_headers.extend([
            (
                "ETag",
                "The ticket's version as a strong entity tag, e.g. `\"1\"`",
                string_schema(None, None),
            ),
            (
                "X-Event-Position",
                "Store position of the write's last event (of the ticket's last event when \
                 nothing was appended)",
                position_schema(),
            ),
            (
                "Idempotent-Replayed",
                "`true` when this answers a retry: the first request's answer, nothing appended",
                string_schema(None, None),
            ),
        ]);
    }
    if waits {
        success_headers.extend([
            (
                "X-Read-Position",
                "With `min_position`: the position the read model had applied",
                position_schema(),
            ),
            (
                "X-Read-Stale",
                "With `min_position`, when the wait bound passed first: `behind=K`",
                string_schema(None, None),
            ),
        ]);
    }
    if on_a_store {
        problems.push((
            "503",
            "The store is unavailable, or the server is at its bound of requests in flight \
             (`/problems/overloaded`); retry after `Retry-After`",
        ));
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in problems {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem_response(description)));
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with('2') && response.content.is_empty() {
            // A route lists its error answers by status and description; what
            // they carry is this one definition.
            *response = problem_response(&response.description);
        }
        if status.starts_with('2') {
            for (name, description, schema) in &success_headers {
                let mut header = Header::new(schema.clone());
                header.description = Some((*description).to_owned());
                response
                    .headers
                    .entry((*name).to_owned())
                    .or_insert(RefOr::T(header));
            }
        }
    }
}

/// A store position: a whole number.
fn position_schema() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .build(),
    )
}

fn header_parameter(
    name: &str,
    description: &str,
    schema: Schema,
) -> RefOr<utoipa::openapi::path::Parameter> {
    RefOr::T(
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema))
            .build(),
    )
}

/// Adds what the middleware gives every route to every operation.
struct Middleware;

impl Modify for Middleware {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                add_middleware(operation);
            }
        }
    }
}

fn string_schema(min: Option<usize>, max: Option<usize>) -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(min)
            .max_length(max)
            .build(),
    )
}

fn add_middleware(operation: &mut Operation) {
    let uuid = Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .build(),
    );
    let headers = [
        (
            "X-Request-Id",
            "The request's id (1 to 128 visible ASCII characters), echoed on the response; \
             a UUID also becomes the correlation id of the events written",
            string_schema(Some(1), Some(128)),
        ),
        (
            "X-Correlation-Id",
            "The correlation id of the events written when `X-Request-Id` is not a UUID",
            uuid,
        ),
        (
            "X-Actor",
            "Who asks (1 to 100 characters, no control characters); recorded in the events' \
             metadata; a bad value answers 400",
            string_schema(Some(1), Some(100)),
        ),
    ];
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    for (name, description, schema) in headers {
        parameters.push(header_parameter(name, description, schema));
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in [
        ("400", "A bad `X-Actor` header"),
        (
            "408",
            "The request took too long to arrive or to answer (`--request-timeout`)",
        ),
        ("500", "The server failed to handle the request"),
    ] {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem_response(description)));
    }
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            let mut header = Header::new(string_schema(None, None));
            header.description = Some(
                "The request's id: the client's own when sane, else a generated UUID v7".into(),
            );
            response
                .headers
                .insert("X-Request-Id".into(), RefOr::T(header));
        }
    }
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    body_response(
        description,
        "application/problem+json",
        RefOr::Ref(Ref::from_schema_name("Problem")),
    )
}

fn body_response(
    description: &str,
    content_type: &str,
    schema: RefOr<Schema>,
) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            content_type,
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn document() -> Value {
        serde_json::to_value(super::openapi()).expect("the document serialises")
    }

    fn names(list: &Value) -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["name"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn writes_get_the_write_conventions() {
        let doc = document();
        for (method, path, success) in [
            ("post", "/tickets", "201"),
            ("patch", "/tickets/{id}", "200"),
        ] {
            let operation = &doc["paths"][path][method];
            assert!(names(&operation["parameters"]).contains(&"Idempotency-Key".to_owned()));
            for status in ["413", "415", "503"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{method} {path} {status}"
                );
            }
            for header in [
                "ETag",
                "X-Event-Position",
                "Idempotent-Replayed",
                "X-Request-Id",
            ] {
                assert!(
                    operation["responses"][success]["headers"][header].is_object(),
                    "{method} {path} {header}"
                );
            }
        }
    }

    #[test]
    fn reads_that_wait_say_how_fresh_they_are() {
        let doc = document();
        for path in ["/tickets", "/tickets/{id}", "/dashboard"] {
            let operation = &doc["paths"][path]["get"];
            assert!(names(&operation["parameters"]).contains(&"min_position".to_owned()));
            for header in ["X-Read-Position", "X-Read-Stale"] {
                assert!(
                    operation["responses"]["200"]["headers"][header].is_object(),
                    "{path}"
                );
            }
            assert!(operation["responses"]["503"].is_object(), "{path}");
            assert!(
                operation["parameters"]
                    .as_array()
                    .is_some_and(|all| { !all.iter().any(|p| p["name"] == "Idempotency-Key") })
            );
        }
    }

    #[test]
    fn operations_routes_keep_their_own_answers() {
        let doc = document();
        for path in ["/healthz", "/openapi.json", "/metrics"] {
            assert!(
                doc["paths"][path]["get"]["responses"]["503"].is_null(),
                "{path}"
            );
        }
        let readyz = &doc["paths"]["/readyz"]["get"]["responses"];
        for status in ["200", "503"] {
            assert_eq!(
                readyz[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Readiness"
            );
        }
        assert!(doc["components"]["schemas"]["Problem"]["properties"]["type"].is_object());
        assert!(doc["components"]["schemas"]["Health"].is_object());
    }
}
