//! The web console: a small single-page app that `ticketd` serves at `/`.
//!
//! Everything is static and embedded in the binary (`include_str!`): one
//! HTML page, one stylesheet, one script and an icon, no build step. The
//! page talks to the HTTP API like any other client (`fetch`, with the
//! bearer token the user signs in with, kept in the tab's
//! `sessionStorage`), so this crate knows nothing of tickets: it only serves
//! files.
//!
//! Each answer carries its content type, a strong `ETag` (a hash of the
//! embedded bytes, so it changes with every build that changes the file)
//! with `Cache-Control: no-cache` (the browser revalidates and gets `304`
//! while the file is unchanged), and a strict Content-Security-Policy: only
//! this origin's script and stylesheet, no inline script or style
//! attributes, no framing. The routes are public (the page must load before
//! anyone signs in); the API calls it makes are authenticated as usual.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The paths this router serves, for whoever mounts it.
pub const PATHS: [&str; 4] = [
    "/",
    "/console/app.js",
    "/console/app.css",
    "/console/icon.svg",
];

/// The policy every console answer carries: the page's own script, style,
/// images and API calls (`connect-src 'self'`), nothing inline, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its bytes, content type and entity tag.
#[derive(Debug)]
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Self {
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(body.as_bytes())))
            .expect("a hex entity tag is a valid header value");
        Self {
            body,
            content_type,
            etag,
        }
    }

    /// `200` with the file, or `304` when the client already has this version.
    fn answer(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .map(|tag| tag.trim().trim_start_matches("W/"))
                    .any(|tag| tag == "*" || tag.as_bytes() == self.etag.as_bytes())
            });
        let headers = [
            (header::ETAG, self.etag.clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        (
            headers,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            )],
            self.body,
        )
            .into_response()
    }
}

/// FNV-1a, 64 bits: enough to tell one build's file from another's.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("../assets/index.html"),
        "text/html; charset=utf-8",
    )
});
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("../assets/app.js"),
        "text/javascript; charset=utf-8",
    )
});
static STYLE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("../assets/app.css"), "text/css; charset=utf-8"));
static ICON: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("../assets/icon.svg"), "image/svg+xml"));

/// The console's routes ([`PATHS`]), `GET` (and `HEAD`) only, no state.
pub fn router() -> Router {
    Router::new()
        .route(
            PATHS[0],
            get(|headers: HeaderMap| async move { INDEX.answer(&headers) }),
        )
        .route(
            PATHS[1],
            get(|headers: HeaderMap| async move { SCRIPT.answer(&headers) }),
        )
        .route(
            PATHS[2],
            get(|headers: HeaderMap| async move { STYLE.answer(&headers) }),
        )
        .route(
            PATHS[3],
            get(|headers: HeaderMap| async move { ICON.answer(&headers) }),
        )
}
