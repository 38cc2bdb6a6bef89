//! The app's own extractors: their rejections are [`ApiError`]s, so a bad
//! request gets the same problem+json shape whichever extractor refused it.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use query::QueryService;
use readmodel::Projection;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use write::{CommandContext, Idempotency, MAX_IDEMPOTENCY_KEY_LEN};

use crate::access::Caller;
use crate::error::ApiError;

/// A JSON request body.
///
/// Unlike `axum::Json` it tells the failures apart the way the API contract
/// does: no JSON content type → 415, unreadable or empty body or bad syntax →
/// 400, a body that is JSON but of the wrong shape (missing, unknown or
/// mistyped field) → 422 naming the field.
///
/// It keeps the raw body too, so that an idempotent write can digest it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Json<T>(pub T, pub Bytes);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType {
                detail: "the body must be sent with `Content-Type: application/json`".into(),
            });
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::MalformedJson {
                        detail: "the request body could not be read".into(),
                    }
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::MalformedJson {
                detail: "the request body is empty; a JSON object is expected".into(),
            });
        }
        // Syntax first, so a body that is not JSON at all is a 400 whatever its
        // shape would have been; then the shape, where every error is a 422.
        serde_json::from_slice::<JsonObject>(&bytes).map_err(syntax_error)?;
        let deserializer = &mut serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(deserializer).map_err(shape_error)?;
        Ok(Json(value, bytes))
    }
}

/// Any JSON object, read and thrown away: the body's syntax check. It also
/// refuses other top-level values, which serde would otherwise accept for a
/// struct (a JSON array fills its fields by position).
struct JsonObject;

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonObject)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonObject {
    type Value = JsonObject;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(JsonObject)
    }
}

fn syntax_error(error: serde_json::Error) -> ApiError {
    let detail = error.to_string();
    match error.classify() {
        serde_json::error::Category::Data => ApiError::validation("body", detail),
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => ApiError::MalformedJson { detail },
    }
}

/// `application/json`, or any `application/…+json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body is a syntactically valid JSON object, so whatever serde refuses
/// now is its shape: a missing, unknown or mistyped field.
fn shape_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let detail = error.inner().to_string();
    let path = error.path().to_string();
    let field = if path == "." || path.is_empty() {
        field_named_in(&detail).unwrap_or("body").to_owned()
    } else {
        path
    };
    ApiError::Validation { field, detail }
}

/// serde reports a missing, unknown or repeated field at the object that holds
/// it, so the path stops one short; the field is named in the message instead.
fn field_named_in(message: &str) -> Option<&str> {
    let rest = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))?;
    rest.split('`').next()
}

/// The `{id}` path segment, a ticket id; anything but a UUID is a 400 naming `id`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TicketId(pub Uuid);

impl<S> FromRequestParts<S> for TicketId
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || ApiError::invalid_parameter("id", "the ticket id must be a UUID");
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid())?;
        Uuid::try_parse(&raw).map(TicketId).map_err(|_| invalid())
    }
}

/// The command context of a request: its correlation id (the client's
/// `X-Correlation-Id` when that is a UUID, else a fresh one).
#[derive(Debug, Clone)]
pub(crate) struct Context(pub CommandContext);

const CORRELATION_HEADER: &str = "x-correlation-id";

impl<S> FromRequestParts<S> for Context
where
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let correlation_id = parts
            .headers
            .get(CORRELATION_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| Uuid::try_parse(value.trim()).ok())
            .unwrap_or_else(Uuid::now_v7);
        Ok(Context(CommandContext {
            correlation_id: Some(correlation_id),
            // Set by the handler from `IdempotencyKey`, once it has the body.
            idempotency: None,
            // The authenticated principal, else the X-Actor header (checked
            // by the middleware).
            actor: match parts.extensions.get::<Caller>() {
                Some(Caller::Principal(principal)) => Some(principal.name.clone()),
                _ => parts
                    .extensions
                    .get::<crate::middleware::Actor>()
                    .map(|actor| actor.0.clone()),
            },
        }))
    }
}

/// The `If-Match` precondition of a write: the ticket version the client made
/// its change against (`None` when absent or `*`, which any existing ticket
/// matches). Only a single strong entity tag as this API hands out
/// (`"<version>"`) or `*` is accepted; anything else is a 400 naming the header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IfMatch(pub Option<u64>);

impl<S> FromRequestParts<S> for IfMatch
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all(header::IF_MATCH).iter();
        let Some(value) = values.next() else {
            return Ok(IfMatch(None));
        };
        let invalid = || {
            ApiError::invalid_parameter(
                "If-Match",
                "must be `*` or one strong entity tag as sent in `ETag`, e.g. `\"3\"`",
            )
        };
        if values.next().is_some() {
            return Err(invalid());
        }
        let text = value.to_str().map_err(|_| invalid())?.trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        parse_etag(text)
            .map(|v| IfMatch(Some(v)))
            .ok_or_else(invalid)
    }
}

/// The `Idempotency-Key` of a write, with the method and path it came with.
///
/// The key is 1 to 255 visible ASCII characters, sent bare or as a quoted
/// string (`"…"`, the IETF draft's form); anything else, or the header given
/// twice, is a 400 naming the header.
#[derive(Debug, Clone)]
pub(crate) struct IdempotencyKey(Option<(String, String)>);

pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub(crate) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

impl IdempotencyKey {
    /// The command's idempotency, when the request had a key: the key and a
    /// digest of the method, the path and the body's canonical JSON (objects'
    /// keys sorted, no insignificant whitespace), so that a retry matches
    /// whatever the client's serialiser does with spacing and key order.
    pub(crate) fn for_body(self, body: &[u8]) -> Option<Idempotency> {
        let (key, route) = self.0?;
        let canonical = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(mut value) => {
                value.sort_all_objects();
                serde_json::to_vec(&value).unwrap_or_else(|_| body.to_vec())
            }
            // Unreachable: the body was parsed before this is called.
            Err(_) => body.to_vec(),
        };
        let mut hasher = Sha256::new();
        hasher.update(route.as_bytes());
        hasher.update(b"\n");
        hasher.update(&canonical);
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Some(Idempotency {
            key,
            request_digest: format!("sha256:{digest}"),
        })
    }
}

impl<S> FromRequestParts<S> for IdempotencyKey
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all(IDEMPOTENCY_KEY).iter();
        let Some(value) = values.next() else {
            return Ok(IdempotencyKey(None));
        };
        let invalid = || {
            ApiError::invalid_parameter(
                "Idempotency-Key",
                format!(
                    "must be given once, 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII \
                     characters (a UUID is a good key)"
                ),
            )
        };
        if values.next().is_some() {
            return Err(invalid());
        }
        let text = value.to_str().map_err(|_| invalid())?.trim();
        let key = text
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
            .unwrap_or(text);
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_LEN
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid());
        }
        let route = format!("{} {}", parts.method, parts.uri.path());
        Ok(IdempotencyKey(Some((key.to_owned(), route))))
    }
}

/// `"<version>"` → the version.
fn parse_etag(text: &str) -> Option<u64> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    inner.parse().ok()
}

/// The `ETag` of a ticket at this version.
pub(crate) fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

pub(crate) const EVENT_POSITION: &str = "x-event-position";
pub(crate) const READ_POSITION: &str = "x-read-position";
pub(crate) const READ_STALE: &str = "x-read-stale";

/// Waits, when a read asked for `min_position`, until `projection` has
/// applied it (or the query side's bound passes), and says how far it got in
/// the read's headers: where the projection was and, when it had not got
/// there in time, how far behind it was. No headers without `min_position`.
pub(crate) async fn wait_for(
    queries: &QueryService,
    projection: Projection,
    min_position: Option<u64>,
) -> Result<HeaderMap, ApiError> {
    let mut headers = HeaderMap::new();
    let Some(position) = min_position else {
        return Ok(headers);
    };
    let freshness = queries.wait_for(projection, position).await?;
    headers.insert(READ_POSITION, freshness.checkpoint.into());
    if freshness.is_stale() {
        let value = format!("behind={}", freshness.behind);
        if let Ok(value) = value.parse() {
            headers.insert(READ_STALE, value);
        }
    }
    Ok(headers)
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    /// The caller the access middleware found; every non-public route has one.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::Internal(
                "a handler asked for the caller on a route without access control".into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let check = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().expect("header"));
            is_json(&headers)
        };
        assert!(check("application/json"));
        assert!(check("Application/JSON; charset=utf-8"));
        assert!(check("application/merge-patch+json"));
        assert!(!check("text/plain"));
        assert!(!check("application/jsonx"));
        assert!(!check("text/json+xml"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn entity_tags() {
        assert_eq!(parse_etag("\"3\""), Some(3));
        assert_eq!(parse_etag("\"0\""), Some(0));
        assert_eq!(parse_etag("W/\"3\""), None);
        assert_eq!(parse_etag("3"), None);
        assert_eq!(parse_etag("\"\""), None);
        assert_eq!(parse_etag("\"-1\""), None);
        assert_eq!(parse_etag("\"3\", \"4\""), None);
        assert_eq!(etag(7), "\"7\"");
    }

    fn key(value: &str, route: &str) -> IdempotencyKey {
        IdempotencyKey(Some((value.to_owned(), route.to_owned())))
    }

    #[test]
    fn request_digests_ignore_spacing_and_key_order_only() {
        let digest = |key: IdempotencyKey, body: &str| {
            key.for_body(body.as_bytes())
                .expect("a key was given")
                .request_digest
        };
        let base = digest(key("k", "POST /tickets"), r#"{"a":1,"b":{"c":2,"d":3}}"#);
        assert_eq!(
            base,
            digest(
                key("k", "POST /tickets"),
                "{ \"b\": {\"d\": 3, \"c\": 2},\n \"a\": 1 }"
            )
        );
        assert_ne!(
            base,
            digest(key("k", "POST /tickets"), r#"{"a":2,"b":{"c":2,"d":3}}"#)
        );
        assert_ne!(
            base,
            digest(key("k", "PATCH /tickets"), r#"{"a":1,"b":{"c":2,"d":3}}"#)
        );
        assert!(
            base.starts_with("sha256:") && base.len() == 7 + 64,
            "{base}"
        );
        assert!(IdempotencyKey(None).for_body(b"{}").is_none());
    }

    #[test]
    fn field_names_come_from_serde_messages() {
        assert_eq!(
            field_named_in("missing field `message` at line 1 column 2"),
            Some("message")
        );
        assert_eq!(
            field_named_in("unknown field `colour`, expected one of `a`, `b`"),
            Some("colour")
        );
        assert_eq!(field_named_in("invalid type: sequence"), None);
    }
}
