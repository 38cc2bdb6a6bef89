//! The one HTTP error type and its one status mapping.
//!
//! Every failure a handler or extractor can meet becomes an [`ApiError`], and
//! every [`ApiError`] is answered as `application/problem+json` (RFC 9457):
//! `{"type", "title", "status", "detail", "field"?}`. `type` is a stable relative
//! URI per kind of problem, so clients can branch on it; `field` names the body
//! field, path segment or query parameter at fault. Server-side failures (5xx)
//! are logged here with their full cause and answered with a generic detail.

use std::error::Error as StdError;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{DomainError, FieldError};
use eventstore::StoreError;
use query::{FeedError, HistoryError, QueryError};
use readmodel::ViewError;
use serde::Serialize;
use utoipa::ToSchema;
use write::WriteError;

type Cause = Box<dyn StdError + Send + Sync>;

/// Why a request failed, in the terms HTTP answers with.
#[derive(Debug)]
pub enum ApiError {
    /// 422: a body field, or a query parameter, breaks a rule or has the wrong shape.
    Validation { field: String, detail: String },
    /// 400: the body is not JSON (bad syntax, truncated, empty).
    MalformedJson { detail: String },
    /// 400: a path segment or header is not well-formed, or a query
    /// parameter is unknown, repeated or empty.
    InvalidParameter { field: String, detail: String },
    /// 415: the body is not declared as JSON.
    UnsupportedMediaType { detail: String },
    /// 413: the body is larger than the server accepts.
    PayloadTooLarge,
    /// 404: no such ticket, or no such route.
    NotFound { detail: String },
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 408: the request took too long to arrive or to answer.
    RequestTimeout,
    /// 409: a rule refused the change (`field` names what it refused), or the
    /// write lost every race for the ticket.
    Conflict {
        field: Option<String>,
        detail: String,
    },
    /// 412: `If-Match` named a version the ticket is not at; nothing was written.
    PreconditionFailed { detail: String },
    /// 401: no credential, or not a valid one (auth on).
    Unauthorized { detail: String },
    /// 403: the principal's role does not allow this (`field` names what it
    /// refused, when one field did).
    Forbidden {
        field: Option<String>,
        detail: String,
    },
    /// 429: the client holds as many change streams as it may.
    TooManyStreams { detail: String },
    /// 503: the server is at its bound of requests in flight (or open change
    /// streams); refused at once, so the client may retry after `Retry-After`.
    Overloaded { detail: String },
    /// 503: a store is unreachable or busy; the request may be retried.
    Unavailable(Cause),
    /// 500: anything else; a bug or corrupt data.
    Internal(Cause),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub fn invalid_parameter(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::InvalidParameter {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::NotFound {
            detail: detail.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MalformedJson { .. } | ApiError::InvalidParameter { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded { .. } | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `type` URI and the `title` of this kind of problem.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Validation { .. } => ("/problems/validation", "Validation failed"),
            ApiError::MalformedJson { .. } => ("/problems/malformed-json", "Malformed JSON"),
            ApiError::InvalidParameter { .. } => {
                ("/problems/invalid-parameter", "Invalid parameter")
            }
            ApiError::UnsupportedMediaType { .. } => {
                ("/problems/unsupported-media-type", "Unsupported media type")
            }
            ApiError::PayloadTooLarge => ("/problems/payload-too-large", "Payload too large"),
            ApiError::NotFound { .. } => ("/problems/not-found", "Not found"),
            ApiError::MethodNotAllowed => ("/problems/method-not-allowed", "Method not allowed"),
            ApiError::RequestTimeout => ("/problems/request-timeout", "Request timeout"),
            ApiError::Conflict { .. } => ("/problems/conflict", "Conflict"),
            ApiError::PreconditionFailed { .. } => {
                ("/problems/precondition-failed", "Precondition failed")
            }
            ApiError::Unauthorized { .. } => ("/problems/unauthorized", "Unauthorized"),
            ApiError::Forbidden { .. } => ("/problems/forbidden", "Forbidden"),
            ApiError::TooManyStreams { .. } => ("/problems/too-many-streams", "Too many streams"),
            ApiError::Overloaded { .. } => ("/problems/overloaded", "Server overloaded"),
            ApiError::Unavailable(_) => ("/problems/unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("/problems/internal", "Internal server error"),
        }
    }
}

/// An error: `application/problem+json` (RFC 9457). `type` is a stable
/// relative URI per kind of problem (`/problems/validation`,
/// `/problems/not-found`, …) to branch on.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Problem<'a> {
    /// A stable relative URI naming the kind of problem.
    #[serde(rename = "type")]
    kind: &'static str,
    /// A short human summary of the kind of problem.
    title: &'static str,
    /// The HTTP status code.
    status: u16,
    /// What went wrong with this request.
    detail: &'a str,
    /// The body field, path segment, query parameter or header at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (kind, title) = self.kind();
        let (detail, field) = match &self {
            ApiError::Validation { field, detail }
            | ApiError::InvalidParameter { field, detail } => {
                (detail.as_str(), Some(field.as_str()))
            }
            ApiError::MalformedJson { detail }
            | ApiError::UnsupportedMediaType { detail }
            | ApiError::NotFound { detail }
            | ApiError::PreconditionFailed { detail }
            | ApiError::TooManyStreams { detail }
            | ApiError::Unauthorized { detail }
            | ApiError::Overloaded { detail } => (detail.as_str(), None),
            ApiError::Conflict { field, detail } | ApiError::Forbidden { field, detail } => {
                (detail.as_str(), field.as_deref())
            }
            ApiError::PayloadTooLarge => ("the request body is too large", None),
            ApiError::MethodNotAllowed => ("the resource does not support this method", None),
            ApiError::RequestTimeout => ("the request took too long to arrive or to answer", None),
            ApiError::Unavailable(cause) => {
                tracing::warn!(error = %chain(cause.as_ref()), "answering 503");
                ("a backing store is unavailable; try again shortly", None)
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %chain(cause.as_ref()), "answering 500");
                ("the server failed to handle the request", None)
            }
        };
        let problem = Problem {
            kind,
            title,
            status: status.as_u16(),
            detail,
            field,
        };
        // Serialising a struct of strings and a number does not fail.
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// An error and its sources, for the log.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::validation(error.field, error.rule)
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::NotFound => ApiError::not_found("no ticket with this id"),
            WriteError::Rejected(rule) => rule.into(),
            WriteError::VersionMismatch { expected, actual } => ApiError::PreconditionFailed {
                detail: format!(
                    "If-Match expected version {expected}, but the ticket is at version {actual}; \
                     read it again and retry"
                ),
            },
            WriteError::Conflict { .. } => ApiError::Conflict {
                field: None,
                detail: "the ticket kept changing while this request was applied; try again".into(),
            },
            WriteError::IdempotencyKeyReused { .. } => ApiError::validation(
                "Idempotency-Key",
                "was already used for a different request (method, path or body); \
                 send a new key with a new request",
            ),
            WriteError::Store(error) => error.into(),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let detail = error.to_string();
        let field = error.field().map(String::from);
        match error {
            DomainError::NotFound => ApiError::not_found(detail),
            DomainError::ClosedIsFinal { .. }
            | DomainError::AlreadyExists
            | DomainError::Erased => ApiError::Conflict { field, detail },
            // A limit on the field `note` (it needs the ticket's state, so the
            // domain checks it, not the field rules): 422, as for the others.
            DomainError::TooManyNotes { .. } => ApiError::Validation {
                field: field.unwrap_or_default(),
                detail,
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => ApiError::Unavailable(Box::new(error)),
            // A version conflict is retried by the write side; one that escapes is a bug.
            StoreError::Conflict { .. } | StoreError::Corrupt(_) => {
                ApiError::Internal(Box::new(error))
            }
            // The write side answers a taken key with a replay; one that
            // escapes means the recorded key could not be read back yet.
            // A ticket opened with a key an erasure was destroying: erased
            // in effect, as a `CustomerErased` makes it.
            StoreError::Erased { .. } => ApiError::Conflict {
                field: None,
                detail: "the ticket's customer was erased; it takes no more changes".into(),
            },
            StoreError::IdempotencyKeyTaken { .. } => ApiError::Conflict {
                field: Some("Idempotency-Key".into()),
                detail: "a request with this key is being recorded; try again".into(),
            },
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::NotFound => ApiError::not_found("no ticket with this id"),
            QueryError::InvalidLimit { limit, max } => ApiError::validation(
                "limit",
                format!("must be between 1 and {max} (got {limit})"),
            ),
            QueryError::InvalidCursor { source } => ApiError::invalid_parameter(
                "cursor",
                format!("{source}; use a `next_cursor` from a previous page"),
            ),
            QueryError::Unavailable(error) => error.into(),
        }
    }
}

impl From<HistoryError> for ApiError {
    fn from(error: HistoryError) -> Self {
        match error {
            HistoryError::NotFound => ApiError::not_found("no ticket with this id"),
            HistoryError::Store(error) => error.into(),
        }
    }
}

impl From<FeedError> for ApiError {
    fn from(error: FeedError) -> Self {
        match error {
            FeedError::Events(error) => error.into(),
            FeedError::Views(error) => error.into(),
        }
    }
}

impl From<ViewError> for ApiError {
    fn from(error: ViewError) -> Self {
        match error {
            ViewError::Unavailable(_) => ApiError::Unavailable(Box::new(error)),
            // Projector-side failures: the query side never sees them.
            ViewError::CheckpointMoved { .. }
            | ViewError::LeaseLost { .. }
            | ViewError::Corrupt(_) => ApiError::Internal(Box::new(error)),
        }
    }
}

/// The fallback for paths no route matches.
pub(crate) async fn no_route() -> ApiError {
    ApiError::not_found("no resource at this path")
}

/// The fallback for a known path asked with a method it does not support.
/// (The router adds the `Allow` header.)
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
