//! `GET /readyz`: ready when the store answers and every projection's lag is
//! within the configured bound; the body carries the same per-projection
//! figures as `ticket-projector status --json`.
//!
//! A store that answers reads but refuses writes (a full disk) leaves
//! `/readyz` at 200 on purpose: every instance on that store would turn
//! unready at once, and a load balancer would then drop the reads that still
//! work, while the writes already answer 503 with `Retry-After` themselves.
//! What a full disk does to the views still shows here: events the projector
//! cannot commit count as lag, and past `--ready-max-lag` the answer is 503.

use std::time::Duration;

use api::Readiness;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Backend;

/// How long `/readyz` waits for the store before answering 503.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct ReadinessCheck {
    backend: Backend,
    max_lag: Duration,
}

/// The `/readyz` route.
pub fn router(backend: Backend, max_lag: Duration) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .with_state(ReadinessCheck { backend, max_lag })
}

async fn readyz(State(readiness): State<ReadinessCheck>) -> Response {
    let backend = &readiness.backend;
    let max_lag_seconds = readiness.max_lag.as_secs_f64();
    let checked = tokio::time::timeout(
        STORE_TIMEOUT,
        projector::status(&*backend.events, &*backend.views),
    )
    .await;
    match checked {
        Ok(Ok(report)) => {
            let ready = report
                .projections
                .iter()
                .all(|projection| projection.within(max_lag_seconds));
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = Readiness {
                ready,
                max_lag_seconds: Some(max_lag_seconds),
                head: Some(report.head),
                now: Some(report.now),
                projections: report
                    .projections
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<_, _>>()
                    .ok(),
                error: None,
            };
            (status, axum::Json(body)).into_response()
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "readyz: the store did not answer");
            unready("the store is unavailable")
        }
        Err(_) => {
            tracing::warn!("readyz: the store did not answer within {STORE_TIMEOUT:?}");
            unready("the store did not answer in time")
        }
    }
}

fn unready(reason: &str) -> Response {
    let body = Readiness {
        error: Some(reason.to_owned()),
        ..Readiness::default()
    };
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}
