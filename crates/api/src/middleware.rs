//! What every request goes through before its handler: request ids, the
//! actor header, the body size limit, the request timeout, the bound on
//! requests in flight (503 at once past it), the one log
//! line per request and the request metrics (`http_requests_total`,
//! `http_request_duration_seconds`, labelled by method, route template and
//! status).
//!
//! The middleware hands the handlers what it learnt through request
//! extensions ([`RequestMeta`], [`Actor`]) and, for the correlation id, by
//! setting `X-Correlation-Id` on the request to the id the events must carry,
//! which the `Context` extractor already reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self as axum_middleware, Next};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::{Access, Caller};
use crate::error::ApiError;

/// The request id header, read from the request and echoed on the response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Who asks for the change; recorded in the events' metadata.
pub const ACTOR: HeaderName = HeaderName::from_static("x-actor");
const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// Longest client request id kept; a longer one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;
/// Longest `X-Actor` accepted, in characters.
const MAX_ACTOR_CHARS: usize = 100;

/// The `route` label of a request no route matched (a 404): never the raw
/// URL, so a scanner cannot grow the label set without bound.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The limits every request is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Larger request bodies answer 413.
    pub max_body_bytes: usize,
    /// A request (reading its body included) that takes longer answers 408.
    /// It bounds the time until the response head: a streamed response body
    /// (`GET /tickets/stream`) is not cut by it.
    pub request_timeout: Duration,
    /// Requests being handled at once (until their response head; a change
    /// stream's body does not count). One more answers 503 with
    /// `Retry-After` at once, rather than queueing until it times out.
    pub max_in_flight: usize,
    /// Change streams (`GET /tickets/stream`) open at once; one more answers
    /// 503 with `Retry-After`.
    pub max_streams: usize,
    /// Change streams one client (its principal, else its address) may hold
    /// open at once; one more answers 429 with `Retry-After`.
    pub max_streams_per_client: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 256,
            max_streams: 256,
            max_streams_per_client: 8,
        }
    }
}

/// The request's id and the correlation id its events carry (equal when the
/// request id is a UUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub request_id: String,
    pub correlation_id: Uuid,
}

/// The validated `X-Actor` of a request, when it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// Wraps every route of `router` (fallbacks included) in the middleware.
pub(crate) fn apply(router: Router, limits: HttpLimits, access: Access) -> Router {
    // The last layer added runs first: the request id and log line wrap
    // everything, so even a timeout or a refused actor answer carries the id.
    // Shedding comes before the timeout: a refused request answers at once
    // and never waits.
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    router
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum_middleware::from_fn(actor))
        .layer(axum_middleware::from_fn_with_state(
            access,
            crate::access::authenticate,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(axum_middleware::from_fn_with_state(in_flight, shed))
        .layer(axum_middleware::from_fn(request_id))
}

/// Answers 503 at once when [`HttpLimits::max_in_flight`] requests are
/// being handled. `/healthz` is never refused: a liveness probe failing under
/// load would have a healthy, busy server restarted.
async fn shed(
    axum::extract::State(in_flight): axum::extract::State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let Ok(_permit) = in_flight.try_acquire() else {
        metrics::counter!("http_requests_shed_total").increment(1);
        return ApiError::Overloaded {
            detail: "the server is handling as many requests as it may; retry after the Retry-After delay".to_owned(),
        }
        .into_response();
    };
    next.run(request).await
}

/// `GET /healthz`'s body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// `GET /healthz`: the process is up; touches nothing else.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up", body = Health))
)]
pub(crate) async fn healthz() -> impl IntoResponse {
    axum::Json(Health { status: "ok" })
}

/// Gives the request its id and correlation id, runs it inside a span that
/// carries them, echoes the id and logs one line when the response is ready.
async fn request_id(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let client_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_sane_request_id(value))
        .map(str::to_owned);
    let client_correlation = request
        .headers()
        .get(&CORRELATION_ID)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| Uuid::try_parse(value.trim()).ok());
    let meta = meta_for(client_id, client_correlation);
    if let Ok(value) = HeaderValue::from_str(&meta.correlation_id.to_string()) {
        request.headers_mut().insert(CORRELATION_ID, value);
    }
    let method = request.method().clone();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let route = matched.as_deref().unwrap_or("<unmatched>");
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        request_id = %meta.request_id,
        correlation_id = %meta.correlation_id,
    );
    request.extensions_mut().insert(meta.clone());

    let mut response = next.run(request).instrument(span.clone()).await;
    // The timeout layer answers an empty 408; clients get a problem instead.
    if response.status() == StatusCode::REQUEST_TIMEOUT
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        response = ApiError::RequestTimeout.into_response();
    }
    if let Ok(value) = HeaderValue::from_str(&meta.request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let elapsed = started.elapsed().as_secs_f64();
    record_request(&method, matched.as_deref(), response.status(), elapsed);
    let latency_ms = elapsed * 1000.0;
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            route = %route,
            status = response.status().as_u16(),
            latency_ms,
            request_id = %meta.request_id,
            "request completed"
        );
    });
    response
}

/// Counts the request and records its latency, labelled by the route
/// template (`/tickets/{id}`), or [`UNMATCHED_ROUTE`] when no route matched.
fn record_request(method: &Method, route: Option<&str>, status: StatusCode, seconds: f64) {
    let labels = [
        ("method", method.as_str().to_owned()),
        ("route", route.unwrap_or(UNMATCHED_ROUTE).to_owned()),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(seconds);
}

/// The request id (the client's when sane, else a fresh UUID v7) and the
/// correlation id: the request id when it is a UUID, else the client's
/// `X-Correlation-Id`, else a fresh one.
fn meta_for(client_id: Option<String>, client_correlation: Option<Uuid>) -> RequestMeta {
    match client_id {
        Some(request_id) => {
            let correlation_id = Uuid::try_parse(&request_id)
                .ok()
                .or(client_correlation)
                .unwrap_or_else(Uuid::now_v7);
            RequestMeta {
                request_id,
                correlation_id,
            }
        }
        None => {
            let generated = Uuid::now_v7();
            RequestMeta {
                request_id: generated.to_string(),
                correlation_id: client_correlation.unwrap_or(generated),
            }
        }
    }
}

/// 1..=128 visible ASCII characters (no spaces, no controls).
fn is_sane_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value.bytes().all(|byte| byte.is_ascii_graphic())
}

/// Checks `X-Actor` and hands it to the handlers as an [`Actor`] extension.
/// With an authenticated principal the header is ignored: the principal is
/// the actor.
async fn actor(mut request: Request, next: Next) -> Response {
    if let Some(Caller::Principal(_)) = request.extensions().get::<Caller>() {
        return next.run(request).await;
    }
    let Some(value) = request.headers().get(&ACTOR) else {
        return next.run(request).await;
    };
    match parse_actor(value.as_bytes()) {
        Ok(actor) => {
            request.extensions_mut().insert(Actor(actor));
            next.run(request).await
        }
        Err(detail) => ApiError::invalid_parameter("X-Actor", detail).into_response(),
    }
}

/// 1..=100 characters of UTF-8, none of them a control character, not all
/// whitespace.
fn parse_actor(bytes: &[u8]) -> Result<String, &'static str> {
    const RULE: &str = "X-Actor must be 1 to 100 visible characters";
    let text = std::str::from_utf8(bytes).map_err(|_| RULE)?;
    let chars = text.chars().count();
    if chars == 0
        || chars > MAX_ACTOR_CHARS
        || text.chars().any(char::is_control)
        || text.trim().is_empty()
    {
        return Err(RULE);
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(is_sane_request_id("abc-123_X.y"));
        assert!(is_sane_request_id(&"a".repeat(128)));
        assert!(!is_sane_request_id(&"a".repeat(129)));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id("has space"));
        assert!(!is_sane_request_id("tab\there"));
    }

    #[test]
    fn correlation_follows_a_uuid_request_id() {
        let id = Uuid::now_v7();
        let other = Uuid::now_v7();
        let meta = meta_for(Some(id.to_string()), Some(other));
        assert_eq!(meta.correlation_id, id);
        let meta = meta_for(Some("not-a-uuid".into()), Some(other));
        assert_eq!(
            (meta.request_id.as_str(), meta.correlation_id),
            ("not-a-uuid", other)
        );
        let meta = meta_for(None, None);
        assert_eq!(meta.request_id, meta.correlation_id.to_string());
    }

    #[test]
    fn actors() {
        assert_eq!(parse_actor("ana".as_bytes()), Ok("ana".into()));
        assert_eq!(parse_actor("agent Zoë".as_bytes()), Ok("agent Zoë".into()));
        assert!(parse_actor(&[b'a'; 100]).is_ok());
        assert!(parse_actor(&[b'a'; 101]).is_err());
        assert!(parse_actor(b"").is_err());
        assert!(parse_actor(b"   ").is_err());
        assert!(parse_actor(b"a\x01b").is_err());
        assert!(parse_actor(&[0xff, 0xfe]).is_err());
    }
}
