//! `GET /metrics`: the process's metrics in the Prometheus text format.
//!
//! The libraries record through the `metrics` facade; this module installs
//! the one recorder of the process (the Prometheus exporter, without its HTTP
//! listener: ticketd serves [`PrometheusHandle::render`] from its own router,
//! so `/metrics` gets the same middleware as every other route). The projector
//! gauges are refreshed from `projector::status` on every scrape, so they are
//! right whether the projector runs in this process or in another one.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::Backend;

/// How long a scrape waits for the store before rendering stale gauges.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// Request latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Batch size buckets, in events.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// The recorder installed by the first call in this process.
static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the process's Prometheus recorder on the first call and returns
/// its handle; later calls (several servers in one test process) share it.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let mut installed = HANDLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("http_request_duration_seconds".to_owned()),
            LATENCY_BUCKETS,
        )
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(projector::BATCH_SIZE.to_owned()),
                BATCH_BUCKETS,
            )
        })
        .context("configuring the Prometheus recorder")?
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// HELP lines, and the write counters at 0 so a scrape shows them before the
/// first write.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("http_requests_total", "HTTP requests answered");
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency"
    );
    describe_counter!(write::EVENTS_APPENDED, "Events appended by the write side");
    describe_counter!(
        write::APPEND_CONFLICTS,
        "Appends that lost a race to another writer (before the retry)"
    );
    describe_gauge!(
        "projector_position",
        "The projection's live checkpoint (global position)"
    );
    describe_gauge!("projector_lag_events", "Events after the live checkpoint");
    describe_gauge!(
        "projector_lag_seconds",
        Unit::Seconds,
        "Age of the oldest event the projection has not applied"
    );
    describe_histogram!(
        projector::BATCH_SIZE,
        "Events per batch committed by the in-process projector"
    );
    describe_gauge!(
        "projector_dead_letters_pending",
        "Dead letters pending or asked to be retried"
    );
    describe_counter!(
        store_sqlite::CHECKPOINTS,
        "Copies of the SQLite write-ahead log into the file, by the background thread or the writer"
    );
    metrics::counter!(write::EVENTS_APPENDED).increment(0);
    metrics::counter!(write::APPEND_CONFLICTS).increment(0);
}

#[derive(Debug, Clone)]
struct Scrape {
    backend: Backend,
    handle: PrometheusHandle,
}

/// The `/metrics` route.
pub fn router(backend: Backend, handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Scrape { backend, handle })
}

async fn metrics(State(scrape): State<Scrape>) -> Response {
    let backend = &scrape.backend;
    let checked = tokio::time::timeout(
        STORE_TIMEOUT,
        projector::status(&*backend.events, &*backend.views),
    )
    .await;
    match checked {
        Ok(Ok(report)) => projector::record_status(&report),
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics: cannot read the projector status; gauges are stale");
        }
        Err(_) => {
            tracing::warn!(
                "metrics: the store did not answer within {STORE_TIMEOUT:?}; gauges are stale"
            );
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        scrape.handle.render(),
    )
        .into_response()
}
