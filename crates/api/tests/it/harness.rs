//! An app on a temporary SQLite file, and a small request helper.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use eventstore::{EventStore, Position};
use projector::{Projector, ProjectorConfig};
use query::{ChangeFeed, History, QueryService};
use serde_json::Value;
use store_sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use write::CommandService;

pub struct App {
    _dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub router: Router,
    /// The server's shutdown signal: open change streams end when it fires.
    pub shutdown: CancellationToken,
}

impl App {
    pub fn new() -> Self {
        Self::with_events(|store| store)
    }

    /// An app whose write side and `/events` use `events` (built around the
    /// real store); reads use the real store.
    pub fn with_events(events: impl FnOnce(Arc<SqliteStore>) -> Arc<dyn EventStore>) -> Self {
        Self::build(events, query::DEFAULT_READ_WAIT_MAX)
    }

    /// An app whose `min_position` reads wait at most `read_wait_max`.
    pub fn with_read_wait_max(read_wait_max: std::time::Duration) -> Self {
        Self::build(|store| store, read_wait_max)
    }

    /// An app held to `limits`, with its write side and feed on `events`.
    pub fn with_limits(
        limits: api::HttpLimits,
        events: impl FnOnce(Arc<SqliteStore>) -> Arc<dyn EventStore>,
    ) -> Self {
        Self::build_with(events, query::DEFAULT_READ_WAIT_MAX, limits)
    }

    fn build(
        events: impl FnOnce(Arc<SqliteStore>) -> Arc<dyn EventStore>,
        read_wait_max: std::time::Duration,
    ) -> Self {
        Self::build_with(events, read_wait_max, api::HttpLimits::default())
    }

    fn build_with(
        events: impl FnOnce(Arc<SqliteStore>) -> Arc<dyn EventStore>,
        read_wait_max: std::time::Duration,
        limits: api::HttpLimits,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            Arc::new(SqliteStore::open(&dir.path().join("tickets.db")).expect("open store"));
        let events = events(store.clone());
        let shutdown = CancellationToken::new();
        let state = api::AppState {
            commands: Arc::new(CommandService::new(events.clone())),
            queries: Arc::new(QueryService::new(store.clone()).with_read_wait_max(read_wait_max)),
            history: Arc::new(History::new(events.clone())),
            feed: Arc::new(
                ChangeFeed::new(events, store.clone())
                    .with_poll(std::time::Duration::from_millis(5)),
            ),
            shutdown: shutdown.clone(),
            access: api::Access::Open,
        };
        Self {
            _dir: dir,
            store,
            router: api::router_with(state, limits, Router::new()),
            shutdown,
        }
    }

    pub async fn head(&self) -> Position {
        self.store.head().await.expect("head")
    }

    pub async fn catch_up(&self) {
        Projector::new(
            self.store.clone(),
            self.store.clone(),
            ProjectorConfig::default(),
        )
        .catch_up()
        .await
        .expect("catch up");
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        self.request(method, uri, &[], content_type, body).await
    }

    pub async fn request(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body.into()).expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A GET after the projector caught up with every event written so far.
    pub async fn get(&self, uri: &str) -> Reply {
        self.catch_up().await;
        self.send(Method::GET, uri, None, Body::empty()).await
    }

    pub async fn post(&self, uri: &str, body: &Value) -> Reply {
        self.send(
            Method::POST,
            uri,
            Some("application/json"),
            body.to_string(),
        )
        .await
    }

    pub async fn patch(&self, uri: &str, body: &Value) -> Reply {
        self.send(
            Method::PATCH,
            uri,
            Some("application/json"),
            body.to_string(),
        )
        .await
    }

    /// Opens a ticket and returns its detail.
    pub async fn create(&self, customer: &str) -> Value {
        let reply = self
            .post(
                "/tickets",
                &serde_json::json!({"customer": customer, "subject": "subject", "message": "message"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        reply.body
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    #[track_caller]
    pub fn assert_json(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        &self.body
    }

    /// Asserts a problem+json reply: status, `type` and (if given) `field`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, kind: &str, field: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        assert_eq!(self.body["status"], status, "{self:?}");
        assert_eq!(self.body["type"], format!("/problems/{kind}"), "{self:?}");
        for key in ["title", "detail"] {
            assert!(
                self.body[key].is_string(),
                "problem without `{key}`: {self:?}"
            );
        }
        match field {
            Some(field) => assert_eq!(self.body["field"], field, "{self:?}"),
            None => assert!(self.body.get("field").is_none(), "{self:?}"),
        }
    }
}
